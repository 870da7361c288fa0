"""The autograd engine against PyTorch: DAGs with shared tensors, grad modes, error
messages, retain_graph and very deep graphs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_close

torch = pytest.importorskip("torch")
tF = torch.nn.functional

import cnnkit as ck  # noqa: E402
import cnnkit.nn.functional as F  # noqa: E402
from cnnkit.autograd import Function, iter_graph  # noqa: E402


def _pair(arr):
    return ck.tensor(arr, requires_grad=True), torch.tensor(arr, requires_grad=True)


# ------------------------------------------------------------------ sharing and accumulation
def test_repeated_use_accumulates(rng):
    a = rng.standard_normal((3, 4))
    xc, xt = _pair(a)
    yc = xc * xc + xc
    yt = xt * xt + xt
    assert_close(yc, yt)
    yc.sum().backward()
    yt.sum().backward()
    assert_close(xc.grad, xt.grad)  # 2x + 1


def test_diamond_and_self_ops(rng):
    a = rng.standard_normal((2, 3))
    xc, xt = _pair(a)

    def f(x):
        h = x.tanh()
        u, v = h * 2, h.exp()
        return (u * v + h / (1 + v) + x @ x.T.sum(1, keepdim=True)).sum()

    f(xc).backward()
    f(xt).backward()
    assert_close(xc.grad, xt.grad)


def test_grad_accumulates_across_backward_calls(rng):
    a = rng.standard_normal(3)
    xc, xt = _pair(a)
    for _ in range(3):
        (xc * xc).sum().backward()
        (xt * xt).sum().backward()
    assert_close(xc.grad, xt.grad)


def test_repeated_fancy_index_accumulates(rng):
    a = rng.standard_normal((4, 3))
    idx = np.array([0, 2, 2, 0, 0, 3])
    xc, xt = _pair(a)
    up = rng.standard_normal((6, 3))
    xc[idx].backward(ck.tensor(up))
    xt[torch.as_tensor(idx)].backward(torch.tensor(up))
    assert_close(xc.grad, xt.grad)
    xc2, xt2 = _pair(a)
    (xc2[idx, np.array([1, 1, 1, 1, 2, 2])] * 2).sum().backward()
    (xt2[torch.as_tensor(idx), torch.tensor([1, 1, 1, 1, 2, 2])] * 2).sum().backward()
    assert_close(xc2.grad, xt2.grad)


def test_retain_grad_on_intermediate(rng):
    xc, xt = _pair(rng.standard_normal(3))
    hc, ht = xc * 2, xt * 2
    hc.retain_grad()
    ht.retain_grad()
    (hc * hc).sum().backward()
    (ht * ht).sum().backward()
    assert_close(hc.grad, ht.grad)
    assert_close(xc.grad, xt.grad)


def test_only_inputs_requiring_grad_get_grads(rng):
    x = ck.tensor(rng.standard_normal(3), requires_grad=True)
    c = ck.tensor(rng.standard_normal(3))
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad.array, c.array)


# ------------------------------------------------------------------ grad modes
def test_no_grad_records_nothing(rng):
    x = ck.tensor(rng.standard_normal(3), requires_grad=True)
    with ck.no_grad():
        y = x * 2 + 1
        assert not ck.is_grad_enabled()
        with ck.enable_grad():
            z = x * 2
    assert ck.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_no_grad_decorator_and_set_grad_enabled(rng):
    x = ck.tensor(rng.standard_normal(3), requires_grad=True)

    @ck.no_grad()
    def f(t):
        return t.exp()

    assert not f(x).requires_grad
    with ck.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    with ck.set_grad_enabled(True):
        assert (x * 2).requires_grad
    assert ck.is_grad_enabled()


def test_no_grad_restored_after_exception():
    with pytest.raises(ValueError), ck.no_grad():
        raise ValueError
    assert ck.is_grad_enabled()


# ------------------------------------------------------------------ errors
def test_backward_non_scalar_needs_gradient(rng):
    x = ck.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"scalar outputs.*\(2, 3\)"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(3))
    (x * 2).backward(np.ones((2, 3)))
    np.testing.assert_array_equal(x.grad.array, np.full((2, 3), 2.0))


def test_backward_twice_raises_unless_retained(rng):
    x = ck.tensor(rng.standard_normal(3), requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    xt = torch.tensor(x.array, requires_grad=True)
    yc = (x.exp() * x).sum()
    yt = (xt.exp() * xt).sum()
    x.grad = None
    yc.backward(retain_graph=True)
    yc.backward()
    yt.backward(retain_graph=True)
    yt.backward()
    assert_close(x.grad, xt.grad)


def test_shape_mismatch_from_a_bad_function(rng):
    class Bad(Function):
        def forward(self, a):
            return a * 2

        def backward(self, grad):
            return grad.sum(0)

    x = ck.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Bad\.backward"):
        Bad.apply(x).sum().backward()


def test_custom_function_and_iter_graph(rng):
    class Cube(Function):
        def forward(self, a):
            self.save_for_backward(a)
            return a**3

        def backward(self, grad):
            (a,) = self.saved
            return 3 * a**2 * grad

    a = rng.standard_normal(4)
    x = ck.tensor(a, requires_grad=True)
    y = Cube.apply(x).sum()
    names = [f.name for f in iter_graph(y)]
    assert names == ["Sum", "Cube"]
    y.backward()
    assert_close(x.grad, 3 * a**2)


# ------------------------------------------------------------------ an Inception-style DAG
def test_inception_dag_matches_torch(rng):
    x0 = rng.standard_normal((2, 4, 9, 9))
    shapes = {
        "w1": (3, 4, 1, 1),
        "w2a": (2, 4, 1, 1),
        "w2b": (3, 2, 3, 3),
        "w3": (2, 4, 1, 1),
    }
    weights = {k: rng.standard_normal(s) * 0.5 for k, s in shapes.items()}
    biases = {k: rng.standard_normal(s[0]) for k, s in shapes.items()}

    def block(x, w, b, conv, pool, cat, relu):
        b1 = relu(conv(x, w["w1"], b["w1"]))
        b2 = relu(conv(relu(conv(x, w["w2a"], b["w2a"])), w["w2b"], b["w2b"], padding=1))
        b3 = conv(pool(x, 3, stride=1, padding=1), w["w3"], b["w3"])
        out = cat([b1, b2, b3], 1)
        out = out + cat([b1, b1[:, 1:], b1[:, :1], b1[:, :2]], 1)  # branch 1 used again
        return (out**2).mean()

    xc, xt = _pair(x0)
    wc = {k: ck.tensor(v, requires_grad=True) for k, v in weights.items()}
    wt = {k: torch.tensor(v, requires_grad=True) for k, v in weights.items()}
    bc = {k: ck.tensor(v, requires_grad=True) for k, v in biases.items()}
    bt = {k: torch.tensor(v, requires_grad=True) for k, v in biases.items()}
    lc = block(xc, wc, bc, F.conv2d, F.max_pool2d, ck.cat, F.relu)
    lt = block(xt, wt, bt, tF.conv2d, tF.max_pool2d, torch.cat, torch.relu)
    assert_close(lc, lt, what="loss")
    lc.backward()
    lt.backward()
    assert_close(xc.grad, xt.grad, what="x")
    for k in shapes:
        assert_close(wc[k].grad, wt[k].grad, what=f"weight {k}")
        assert_close(bc[k].grad, bt[k].grad, what=f"bias {k}")


# ------------------------------------------------------------------ deep graphs
def test_deep_chain_no_recursion_error(rng):
    a = rng.standard_normal(5)
    xc, xt = _pair(a)
    yc, yt = xc, xt
    for _ in range(2000):
        yc = yc * 1.0001 + 0.001
        yt = yt * 1.0001 + 0.001
    assert_close(yc, yt)
    yc.sum().backward()
    yt.sum().backward()
    assert_close(xc.grad, xt.grad)


def test_deep_tanh_chain(rng):
    a = rng.standard_normal(4)
    xc, xt = _pair(a)
    yc, yt = xc, xt
    for _ in range(3000):
        yc = yc.tanh()
        yt = yt.tanh()
    assert_close(yc, yt)
    yc.sum().backward()
    yt.sum().backward()
    assert_close(xc.grad, xt.grad)


def test_graph_is_freed_after_backward(rng):
    x = ck.tensor(rng.standard_normal(3), requires_grad=True)
    y = (x * 2).exp().sum()
    y.backward()
    assert y.grad_fn.saved is None
    assert list(iter_graph(y)) == [y.grad_fn]  # parents dropped: no reference chain kept
