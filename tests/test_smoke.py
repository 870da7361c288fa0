import numpy as np

import cnnkit as ck


def test_chain_rule_through_matmul_and_relu():
    x = ck.tensor(np.array([[1.0, -2.0]]), requires_grad=True)
    w = ck.tensor(np.array([[3.0], [4.0]]), requires_grad=True)
    y = (x @ w).relu().sum()  # 1*3 - 2*4 = -5 -> relu 0
    y.backward()
    assert y.item() == 0.0
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 0.0]])
