"""Tensor.register_post_accumulate_grad_hook: when it runs and what it sees."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import nn
from cnnkit.tensor import Tensor


def test_runs_once_per_backward_with_the_complete_gradient():
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    seen = []
    handle = w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    x = Tensor(np.array([3.0, 4.0]))
    ((w * x).sum() + (w * w).sum()).backward()  # two paths into w: one call, after both
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], [3.0 + 2.0, 4.0 + 4.0])
    (w * x).sum().backward()  # accumulated: the hook sees the sum of both passes
    np.testing.assert_array_equal(seen[1], [5.0 + 3.0, 8.0 + 4.0])
    handle.remove()
    (w * x).sum().backward()
    assert len(seen) == 2


def test_last_layer_first_in_a_chain():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    order = []
    for name, p in net.named_parameters():
        p.register_post_accumulate_grad_hook(lambda t, name=name: order.append(name))
    net(Tensor(np.ones((2, 3), dtype=np.float32))).sum().backward()
    assert set(order) == {"0.weight", "0.bias", "2.weight", "2.bias"} and len(order) == 4
    assert max(order.index("2.weight"), order.index("2.bias")) < min(
        order.index("0.weight"), order.index("0.bias")
    )


def test_only_on_leaves_that_require_grad():
    w = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(print)
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).register_post_accumulate_grad_hook(print)
