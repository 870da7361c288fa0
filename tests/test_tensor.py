"""Tensor ops against PyTorch (float64): values and every gradient, with awkward
broadcasting, plus the factory dtype rules and the small Tensor API."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_close

torch = pytest.importorskip("torch")

import cnnkit as ck  # noqa: E402
import cnnkit.nn.functional as F  # noqa: E402


def _pair(arr):
    return ck.tensor(arr, requires_grad=True), torch.tensor(arr, requires_grad=True)


def check(ck_fn, torch_fn, *arrays, rng=None, what=""):
    """Run both, compare the output, backprop the same random upstream, compare grads."""
    rng = rng or np.random.default_rng(1)
    pairs = [_pair(np.asarray(a, dtype=np.float64)) for a in arrays]
    out_c = ck_fn(*(c for c, _ in pairs))
    out_t = torch_fn(*(t for _, t in pairs))
    assert_close(out_c, out_t, what=f"{what} forward")
    up = rng.standard_normal(tuple(out_t.shape))
    out_c.backward(ck.tensor(up))
    out_t.backward(torch.tensor(up))
    for i, (c, t) in enumerate(pairs):
        if t.grad is None:
            assert c.grad is None or not np.any(c.grad.array), f"{what} grad {i}"
            continue
        assert c.grad is not None, f"{what}: no gradient for input {i}"
        assert c.grad.dtype == np.float64, f"{what}: grad {i} dtype {c.grad.dtype}"
        assert_close(c.grad, t.grad, what=f"{what} grad {i}")


# ------------------------------------------------------------------ arithmetic
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "rsub": lambda a, b: b - a,
    "rdiv": lambda a, b: b / a,
}
SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 1, 4), (5, 1)),
    ((5, 1), (3, 1, 4)),
    ((4,), (2, 3, 1)),
    ((), (2, 3)),
    ((2, 1, 3, 1), (1, 4, 1, 5)),
    ((1, 1), (3,)),
]


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_binary_broadcasting(rng, name, shapes):
    a = 0.5 + rng.random(shapes[0])
    b = 0.5 + rng.random(shapes[1])
    op = BINARY[name]
    check(op, op, a, b, what=f"{name}{shapes}")


@pytest.mark.parametrize(
    "op",
    [
        lambda x: x + 2,
        lambda x: 2 + x,
        lambda x: x - 1.5,
        lambda x: 1.5 - x,
        lambda x: x * 3,
        lambda x: 3 * x,
        lambda x: x / 4,
        lambda x: 4 / x,
        lambda x: x**2,
        lambda x: x**0.5,
        lambda x: x**-1.5,
        lambda x: 2.0**x,
        lambda x: -x,
        lambda x: x * x + x,
        lambda x: (x * x).sum() * x,
    ],
)
def test_scalar_operands(rng, op):
    check(op, op, 0.5 + rng.random((3, 4)))


def test_scalar_operand_keeps_dtype():
    x = ck.tensor(np.ones(3, dtype=np.float32))
    assert (x * 2.5).dtype == np.float32
    assert (x + 1).dtype == np.float32
    assert (2 / x).dtype == np.float32
    y = ck.tensor(np.ones(3))
    assert (y * 2).dtype == np.float64


@pytest.mark.parametrize(
    "name",
    ["exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu"],
)
def test_unary(rng, name):
    a = rng.random((3, 4)) + 0.2
    a[0] *= -1 if name in ("abs", "tanh", "sigmoid", "relu", "exp") else 1
    check(lambda x: getattr(x, name)(), lambda x: getattr(x, name)(), a, what=name)


def test_neg(rng):
    check(lambda x: -x, lambda x: -x, rng.standard_normal((2, 3)))


@pytest.mark.parametrize(
    "shapes",
    [((3, 4), (4, 2)), ((4,), (4, 3)), ((3, 4), (4,)), ((2, 3, 4), (4, 5)),
     ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((5, 3, 4), (4,)), ((4,), (2, 4, 3)),
     ((4,), (4,))],
    ids=str,
)  # fmt: skip
def test_matmul(rng, shapes):
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    check(lambda x, y: x @ y, lambda x, y: x @ y, a, b, what=str(shapes))


def test_matmul_with_array(rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    x = ck.tensor(a, requires_grad=True)
    assert_close(x @ b, a @ b)
    r = b.T @ x.T
    assert isinstance(r, ck.Tensor) and r.requires_grad
    assert_close(r, b.T @ a.T)


# ------------------------------------------------------------------ reductions
@pytest.mark.parametrize("dim", [None, 0, 1, -1, (0, 2), (1, 2)], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "amax"])
def test_reductions(rng, dim, keepdim, name):
    a = rng.standard_normal((2, 3, 4))
    if dim is None and name == "amax":
        cfn = lambda x: x.amax()  # noqa: E731
        tfn = lambda x: x.amax()  # noqa: E731
    elif dim is None:
        cfn = lambda x: getattr(x, name)()  # noqa: E731
        tfn = cfn
    else:
        cfn = lambda x: getattr(x, name)(dim, keepdim=keepdim)  # noqa: E731
        tfn = lambda x: getattr(x, name)(dim, keepdim=keepdim)  # noqa: E731
    check(cfn, tfn, a, what=f"{name} {dim} {keepdim}")


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_dim(rng, dim, keepdim):
    a = rng.standard_normal((3, 4, 5))
    xc, xt = _pair(a)
    vc, ic = xc.max(dim, keepdim=keepdim)
    vt, it = xt.max(dim, keepdim=keepdim)
    assert_close(vc, vt)
    np.testing.assert_array_equal(ic.array, it.numpy())
    assert ic.dtype == np.int64
    up = rng.standard_normal(tuple(vt.shape))
    vc.backward(ck.tensor(up))
    vt.backward(torch.tensor(up))
    assert_close(xc.grad, xt.grad)
    mc = xc.min(dim).values
    mt = xt.min(dim).values
    assert_close(mc, mt)


def test_max_no_dim_and_var(rng):
    a = rng.standard_normal((3, 4))
    check(lambda x: x.max(), lambda x: x.max(), a)
    check(lambda x: x.var(1), lambda x: x.var(1), a)
    check(lambda x: x.var(0, unbiased=False), lambda x: x.var(0, unbiased=False), a)


def test_amax_ties_split_like_torch():
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    check(lambda x: x.amax(1), lambda x: x.amax(1), a)
    check(lambda x: x.amax(), lambda x: x.amax(), a)


# ------------------------------------------------------------------ shape ops
@pytest.mark.parametrize(
    "name,cfn,tfn",
    [
        ("reshape", lambda x: x.reshape(4, 6), lambda x: x.reshape(4, 6)),
        ("reshape-1", lambda x: x.reshape(-1, 3), lambda x: x.reshape(-1, 3)),
        ("reshape tuple", lambda x: x.reshape((6, 4)), lambda x: x.reshape((6, 4))),
        ("view", lambda x: x.view(2, 12), lambda x: x.view(2, 12)),
        ("permute", lambda x: x.permute(2, 0, 1), lambda x: x.permute(2, 0, 1)),
        ("transpose", lambda x: x.transpose(0, 2), lambda x: x.transpose(0, 2)),
        ("T", lambda x: x.reshape(6, 4).T, lambda x: x.reshape(6, 4).T),
        ("flatten", lambda x: x.flatten(), lambda x: x.flatten()),
        ("flatten1", lambda x: x.flatten(1), lambda x: x.flatten(1)),
        ("flatten01", lambda x: x.flatten(0, 1), lambda x: x.flatten(0, 1)),
        ("F.flatten", lambda x: F.flatten(x, 1), lambda x: torch.flatten(x, 1)),
        ("unsqueeze", lambda x: x.unsqueeze(-1), lambda x: x.unsqueeze(-1)),
        ("squeeze", lambda x: x[:, :1].squeeze(1), lambda x: x[:, :1].squeeze(1)),
        ("expand", lambda x: x[:, :1].expand(2, 5, 4), lambda x: x[:, :1].expand(2, 5, 4)),
    ],
)
def test_shape_ops(rng, name, cfn, tfn):
    check(cfn, tfn, rng.standard_normal((2, 3, 4)), what=name)


INDICES = [
    0,
    -1,
    (slice(None), 1),
    (slice(0, 2), slice(None, None, 2), -1),
    (Ellipsis, slice(1, 3)),
    (slice(1, None),),
    (None, 1),
    [1, 0, 1],
    (slice(None), [2, 2, 0, 2]),
    ([0, 1, 1, 0], [2, 2, 0, 2]),
    ([[0, 0], [1, 1]], slice(None), [3, 3]),
]


@pytest.mark.parametrize("index", INDICES, ids=str)
def test_getitem(rng, index):
    a = rng.standard_normal((2, 3, 4))

    def conv(ix, to):
        if isinstance(ix, list):
            return to(np.array(ix))
        if isinstance(ix, tuple):
            return tuple(conv(i, to) for i in ix)
        return ix

    check(
        lambda x: x[conv(index, np.asarray)],
        lambda x: x[conv(index, torch.as_tensor)],
        a,
        what=str(index),
    )


def test_getitem_bool_mask_and_tensor_index(rng):
    a = rng.standard_normal((3, 4))
    mask = a > 0
    check(lambda x: x[mask], lambda x: x[torch.as_tensor(mask)], a)
    idx = np.array([2, 0, 2, 2])
    check(lambda x: x[ck.tensor(idx)], lambda x: x[torch.as_tensor(idx)], a)
    check(lambda x: x[:, ck.tensor(idx)], lambda x: x[:, torch.as_tensor(idx)], a, what="tensor 2")


def test_repeated_fancy_index_accumulates():
    x = ck.tensor(np.arange(4.0), requires_grad=True)
    y = x[np.array([1, 1, 1, 3, 0])]
    (y * np.array([1.0, 2.0, 3.0, 4.0, 5.0])).sum().backward()
    np.testing.assert_array_equal(x.grad.array, [5.0, 6.0, 0.0, 4.0])


@pytest.mark.parametrize("dim", [0, 1, -1, 2])
def test_cat_stack(rng, dim):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    check(lambda p, q: ck.cat([p, q, p], dim), lambda p, q: torch.cat([p, q, p], dim), a, b)
    check(lambda p, q: ck.stack([p, q], dim), lambda p, q: torch.stack([p, q], dim), a, b)


def test_cat_unequal_sizes(rng):
    a, b = rng.standard_normal((2, 1, 3)), rng.standard_normal((2, 4, 3))
    check(lambda p, q: ck.cat([p, q], 1), lambda p, q: torch.cat([p, q], 1), a, b)


def test_cat_with_constant(rng):
    a = rng.standard_normal((2, 3))
    c = rng.standard_normal((1, 3))
    check(
        lambda p: ck.cat([ck.tensor(c), p], 0),
        lambda p: torch.cat([torch.tensor(c), p], 0),
        a,
    )


@pytest.mark.parametrize("pad", [(1, 2), (0, 1, 2, 0), (1, 1, 1, 1, 1, 0)], ids=str)
def test_pad(rng, pad):
    a = rng.standard_normal((2, 3, 2))
    check(
        lambda x: F.pad(x, pad, value=0.5),
        lambda x: torch.nn.functional.pad(x, pad, value=0.5),
        a,
    )


def test_where_and_clamp(rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    cond = a > b
    check(
        lambda p, q: ck.where(cond, p, q),
        lambda p, q: torch.where(torch.as_tensor(cond), p, q),
        a,
        b,
    )
    check(lambda p: p.clamp(-0.5, 0.5), lambda p: p.clamp(-0.5, 0.5), a)


# ------------------------------------------------------------------ factories and API
def test_tensor_dtype_rules():
    assert ck.tensor([1.0, 2.0]).dtype == np.float32
    assert ck.tensor(1.5).dtype == np.float32
    assert ck.tensor([[1, 2], [3, 4]]).dtype == np.int64
    assert ck.tensor(3).dtype == np.int64
    assert ck.tensor([True, False]).dtype == np.bool_
    for dt in (np.float64, np.float32, np.float16, np.int32, np.uint8):
        assert ck.tensor(np.zeros(2, dtype=dt)).dtype == dt
    assert ck.tensor([1, 2], dtype="float64").dtype == np.float64
    assert ck.tensor(np.zeros(2), dtype=ck.float32).dtype == np.float32


def test_tensor_copies_ndarray():
    a = np.zeros(3)
    t = ck.tensor(a)
    a[0] = 1.0
    assert t.array[0] == 0.0
    assert ck.as_tensor(a).array is a


def test_requires_grad_on_int_tensor_raises():
    with pytest.raises(TypeError, match="floating"):
        ck.tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(TypeError, match="int64"):
        ck.tensor([1, 2, 3]).requires_grad_()
    with pytest.raises(TypeError):
        ck.Tensor(np.arange(3), requires_grad=True)
    ck.tensor([1.0, 2.0], requires_grad=True)  # floats are fine


def test_item():
    assert ck.tensor(np.array([[2.5]])).item() == 2.5
    assert isinstance(ck.tensor(3).item(), int)
    x = ck.tensor(np.array([1.0, 2.0]), requires_grad=True)
    assert (x * x).sum().item() == 5.0
    with pytest.raises(ValueError, match="2 elements"):
        x.item()


def test_detach():
    x = ck.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * 3
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    np.testing.assert_array_equal(d.array, [3.0, 6.0])
    assert np.shares_memory(d.array, y.array)
    z = (d * x).sum()
    z.backward()
    np.testing.assert_array_equal(x.grad.array, [3.0, 6.0])  # no gradient through d


def test_properties(rng):
    x = ck.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    assert x.shape == (2, 3) and x.ndim == 2 and x.dim() == 2 and x.numel() == 6
    assert x.size() == (2, 3) and x.size(1) == 3 and len(x) == 2
    assert x.is_leaf and not (x * 2).is_leaf
    assert (x * 2).grad_fn is not None
    assert "grad_fn" in repr(x * 2)
    assert x.float().dtype == np.float32 and x.double() is x
    assert x.tolist() == x.array.tolist()


def test_type_cast_gradient(rng):
    a = rng.standard_normal((3,))
    x = ck.tensor(a, requires_grad=True)
    y = x.float()
    assert y.dtype == np.float32
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.array, [2.0, 2.0, 2.0])


def test_comparisons_are_plain(rng):
    x = ck.tensor(rng.standard_normal(4), requires_grad=True)
    m = x > 0
    assert m.dtype == np.bool_ and not m.requires_grad


def test_data_is_a_tensor_sharing_storage_outside_the_graph():
    w = ck.tensor([1.0, 2.0, 3.0], requires_grad=True)
    d = w.data
    assert isinstance(d, ck.Tensor) and not d.requires_grad and d.grad_fn is None
    assert np.shares_memory(d.array, w.array)
    d.copy_(d.array * 2.0)
    np.testing.assert_array_equal(w.array, [2.0, 4.0, 6.0])  # seen through the original
    w.data = ck.tensor([[5.0]])  # assignment swaps the values, shape may change
    assert w.shape == (1, 1) and w.requires_grad
    np.testing.assert_array_equal(np.asarray(w), [[5.0]])
    torch_w = torch.tensor([1.0, 2.0], requires_grad=True)
    assert isinstance(torch_w.data, torch.Tensor)  # the behaviour mirrored above
