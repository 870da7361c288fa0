"""``cnnkit.inspect.gradcheck``: every functional and tensor op passes a finite-difference
check of its full Jacobian, and a deliberately wrong backward is caught."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit as ck
import cnnkit.nn.functional as F
from cnnkit.autograd import Function
from cnnkit.inspect import GradcheckError, gradcheck, gradcheck_module


def _x(rng, *shape, low=None, away=None):
    """A float64 leaf; ``low`` draws uniform in [low, low + 1), ``away`` keeps |x| >= away."""
    if low is not None:
        data = low + rng.random(shape)
    else:
        data = rng.standard_normal(shape)
    if away is not None:
        data = np.where(data < 0, data - away, data + away)
    return ck.tensor(data, requires_grad=True)


def _distinct(rng, *shape):
    """Values whose pairwise gaps are at least 0.01 (no near-ties for max ops)."""
    n = int(np.prod(shape))
    data = rng.permutation(n).reshape(shape) * 0.01 + 0.001 * rng.random(shape)
    return ck.tensor(data, requires_grad=True)


# ------------------------------------------------------------------ gradcheck itself
class _WrongSquare(Function):
    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return 3 * self.x * grad  # wrong: d(x^2)/dx = 2x


def test_wrong_backward_is_caught(rng):
    a = _x(rng, 2, 3, away=0.5)
    b = _x(rng, 4)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda p, q: (p * 2, _WrongSquare.apply(q)), [b, a], names=["ok", "bad"])
    # input 0 is checked first and passes; input 1 is the wrong one
    msg = str(info.value)
    assert "input 0" not in msg
    assert "input 1 ('bad')" in msg
    assert "element (" in msg and "analytic" in msg and "numeric" in msg
    assert isinstance(info.value, AssertionError)
    assert gradcheck(lambda p: _WrongSquare.apply(p), a, raise_exception=False) is False


def test_wrong_backward_message_values(rng):
    x = ck.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 0 at element \(\d,\)") as info:
        gradcheck(lambda p: _WrongSquare.apply(p), x)
    # the worst entry is x = 3: analytic 9, numeric 6
    assert "element (2,)" in str(info.value)
    assert "analytic 9" in str(info.value) and "numeric 6" in str(info.value)


def test_rejects_float32_naming_input(rng):
    x32 = ck.tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
    with pytest.raises(TypeError, match=r"input 1 \('w'\).*float32"):
        gradcheck(lambda a, b: a * b, [_x(rng, 3), x32], names=["x", "w"])


def test_no_input_requires_grad():
    with pytest.raises(ValueError, match="requires grad"):
        gradcheck(lambda a: a * 2, ck.tensor(np.ones(3)))


def test_restores_grad_and_values(rng):
    x = _x(rng, 3, 2)
    before = x.array.copy()
    sentinel = ck.tensor(np.full((3, 2), 7.0))
    x.grad = sentinel
    assert gradcheck(lambda a: (a * a).sum(0), x)
    assert x.grad is sentinel
    np.testing.assert_array_equal(x.array, before)
    y = _x(rng, 3)
    assert gradcheck(lambda a: a.exp(), y)
    assert y.grad is None


def test_non_tensor_inputs_pass_through(rng):
    x = _x(rng, 2, 3)
    idx = np.array([2, 0])
    assert gradcheck(lambda a, k, s: a[np.arange(2), k] * s, [x, idx, 3.0])


def test_tuple_outputs_and_integer_outputs(rng):
    x = _distinct(rng, 3, 4)
    assert gradcheck(lambda a: (a.exp(), a.sum(1)), x)
    assert gradcheck(lambda a: a.max(1), x)  # (values, int64 indices): indices ignored


def test_detached_output_is_a_mismatch(rng):
    x = _x(rng, 3)
    with pytest.raises(GradcheckError, match="analytic 1, numeric 3"):
        gradcheck(lambda a: a.detach() * 2 + a, x)


def test_non_leaf_input(rng):
    x = _x(rng, 3)
    y = x * 2
    assert gradcheck(lambda a: a.tanh(), y)
    assert y.grad is None and x.grad is None


def test_fast_mode(rng):
    x = _x(rng, 3, 4)
    w = _x(rng, 4, 5)
    assert gradcheck(lambda a, b: ((a @ b).tanh(), a.exp()), [x, w], fast_mode=True)
    assert gradcheck(lambda a: a * 2, x, fast_mode=None, max_outputs=4)
    with pytest.raises(GradcheckError, match=r"input 0 at element \(\d, \d\) \(output projected"):
        gradcheck(lambda a: _WrongSquare.apply(a), x, fast_mode=True)
    with pytest.raises(GradcheckError, match=r"w\.r\.t\. the output element"):
        gradcheck(lambda a: _WrongSquare.apply(a), x, fast_mode=None, max_outputs=12)


def test_bad_gradient_dtype_is_reported(rng):
    class Float32Grad(Function):
        def forward(self, a):
            return a * 2

        def backward(self, grad):
            return (grad * 2).astype(np.float32)

    with pytest.raises(GradcheckError, match="dtype float32"):
        gradcheck(lambda a: Float32Grad.apply(a), _x(rng, 3))


# ------------------------------------------------------------------ functional ops
@pytest.mark.parametrize(
    "stride,padding,dilation,groups",
    [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), (2, (1, 0), (1, 2), 2), (1, "same", 1, 4)],
)
def test_conv2d(rng, stride, padding, dilation, groups):
    x = _x(rng, 2, 4, 5, 6)
    w = _x(rng, 4, 4 // groups, 3, 2)
    b = _x(rng, 4)

    def fn(x, w, b):
        return F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)

    assert gradcheck(fn, [x, w, b], names=["x", "w", "b"])


def test_conv2d_unbatched_no_bias(rng):
    assert gradcheck(
        lambda x, w: F.conv2d(x, w, padding=1), [_x(rng, 2, 4, 4), _x(rng, 3, 2, 3, 3)]
    )


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1)])
def test_locally_connected2d(rng, stride, padding):
    x = _x(rng, 2, 2, 5, 5)
    oh = (5 + 2 * padding - 3) // stride + 1
    w = _x(rng, oh, oh, 3, 2, 3, 3)
    b = _x(rng, 3, oh, oh)
    assert gradcheck(
        lambda x, w, b: F.locally_connected2d(x, w, b, stride=stride, padding=padding), [x, w, b]
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 2},
        {"kernel_size": 3, "stride": 2, "padding": 1},
        {"kernel_size": 2, "stride": 1, "dilation": 2},
        {"kernel_size": 3, "stride": 2, "ceil_mode": True},
    ],
)
def test_max_pool2d(rng, kwargs):
    assert gradcheck(lambda x: F.max_pool2d(x, **kwargs), _distinct(rng, 2, 2, 6, 7))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 2},
        {"kernel_size": 3, "stride": 2, "padding": 1},
        {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
        {"kernel_size": 3, "stride": 2, "ceil_mode": True},
        {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
         "count_include_pad": False},
        {"kernel_size": 2, "divisor_override": 3},
    ],
)  # fmt: skip
def test_avg_pool2d(rng, kwargs):
    assert gradcheck(lambda x: F.avg_pool2d(x, **kwargs), _x(rng, 2, 2, 6, 7))


@pytest.mark.parametrize("size", [1, 3, (2, None), (4, 5)])
def test_adaptive_avg_pool2d(rng, size):
    assert gradcheck(lambda x: F.adaptive_avg_pool2d(x, size), _x(rng, 2, 2, 7, 5))


def test_linear(rng):
    x, w, b = _x(rng, 3, 4), _x(rng, 2, 4), _x(rng, 2)
    assert gradcheck(F.linear, [x, w, b])
    assert gradcheck(F.linear, [_x(rng, 2, 3, 4), w])


@pytest.mark.parametrize(
    "fn",
    [
        F.relu,
        F.leaky_relu,
        lambda x: F.leaky_relu(x, 0.2),
        F.sigmoid,
        F.tanh,
        lambda x: F.softmax(x, 1),
        lambda x: F.softmax(x, 0),
        lambda x: F.log_softmax(x, 1),
        lambda x: F.log_softmax(x, -1),
    ],
)
def test_activations(rng, fn):
    assert gradcheck(fn, _x(rng, 3, 5, away=0.01))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(rng, reduction):
    x, t = _x(rng, 3, 4), _x(rng, 3, 4)
    assert gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), [x, t])
    t2 = ck.tensor(
        x.array + np.where(rng.random((3, 4)) < 0.5, -1.0, 1.0) * (0.1 + rng.random((3, 4)))
    )
    assert gradcheck(lambda a: F.l1_loss(a, t2, reduction=reduction), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy(rng, reduction):
    p = ck.tensor(0.1 + 0.8 * rng.random((4, 3)), requires_grad=True)
    t = ck.tensor(rng.random((4, 3)))
    w = ck.tensor(rng.random(3) + 0.5)
    assert gradcheck(lambda a: F.binary_cross_entropy(a, t, reduction=reduction), p)
    assert gradcheck(lambda a: F.binary_cross_entropy(a, t, weight=w, reduction=reduction), p)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_with_logits(rng, reduction):
    x = _x(rng, 4, 3)
    t = ck.tensor(rng.random((4, 3)), requires_grad=True)
    w = ck.tensor(rng.random(3) + 0.5)
    pw = ck.tensor(rng.random(3) + 0.5)

    def fn(a, b):
        return F.binary_cross_entropy_with_logits(
            a, b, weight=w, pos_weight=pw, reduction=reduction
        )

    assert gradcheck(fn, [x, t], names=["input", "target"])
    assert gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b), [x, t])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_indices(rng, reduction):
    x = _x(rng, 5, 4)
    y = np.array([0, 3, 1, 3, 2])
    w = ck.tensor(rng.random(4) + 0.5)
    assert gradcheck(
        lambda a: F.cross_entropy(a, y, weight=w, label_smoothing=0.2, reduction=reduction), x
    )
    y2 = np.array([0, -100, 1, 3, 2])
    assert gradcheck(lambda a: F.cross_entropy(a, y2, reduction=reduction), x)


def test_cross_entropy_spatial_and_probabilities(rng):
    x = _x(rng, 2, 3, 2, 2)
    y = rng.integers(0, 3, (2, 2, 2))
    assert gradcheck(lambda a: F.cross_entropy(a, y, label_smoothing=0.1), x)
    probs = rng.random((4, 3))
    probs /= probs.sum(1, keepdims=True)
    assert gradcheck(lambda a: F.cross_entropy(a, ck.tensor(probs)), _x(rng, 4, 3))
    w = ck.tensor(rng.random(3) + 0.5)
    assert gradcheck(lambda a: F.cross_entropy(a, ck.tensor(probs), weight=w), _x(rng, 4, 3))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss(rng, reduction):
    x = _x(rng, 5, 4)
    y = np.array([0, 3, 1, 3, 2])
    w = ck.tensor(rng.random(4) + 0.5)
    assert gradcheck(lambda a: F.nll_loss(a, y, weight=w, reduction=reduction), x)
    assert gradcheck(lambda a: F.nll_loss(F.log_softmax(a, 1), y, reduction=reduction), x)


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 3, 2)])
def test_batch_norm(rng, shape):
    x, g, b = _x(rng, *shape), _x(rng, shape[1]), _x(rng, shape[1])
    rm, rv = ck.tensor(np.zeros(shape[1])), ck.tensor(np.ones(shape[1]))
    assert gradcheck(lambda x, g, b: F.batch_norm(x, rm, rv, g, b, training=True), [x, g, b])
    assert gradcheck(lambda x: F.batch_norm(x, None, None, training=True), x)
    rm2 = ck.tensor(rng.standard_normal(shape[1]))
    rv2 = ck.tensor(rng.random(shape[1]) + 0.5)
    assert gradcheck(lambda x, g, b: F.batch_norm(x, rm2, rv2, g, b, training=False), [x, g, b])


# ------------------------------------------------------------------ tensor ops
@pytest.mark.parametrize(
    "op",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a * b,
        lambda a, b: a / b,
        lambda a, b: a**b,
    ],
    ids=["add", "sub", "mul", "div", "pow"],
)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1, 4), (5, 1)), ((4,), (2, 3, 1))])
def test_binary_broadcasting(rng, op, shapes):
    a = _x(rng, *shapes[0], low=0.5)
    b = _x(rng, *shapes[1], low=0.5)
    assert gradcheck(op, [a, b])


def test_scalar_operands(rng):
    a = _x(rng, 3, 2, low=0.5)
    for op in (
        lambda x: x + 2,
        lambda x: 2 - x,
        lambda x: x * 3,
        lambda x: 2 / x,
        lambda x: x**3,
        lambda x: x**0.5,
        lambda x: 2.0**x,
        lambda x: -x,
    ):
        assert gradcheck(op, a)


@pytest.mark.parametrize(
    "shapes", [((3, 4), (4, 2)), ((4,), (4, 3)), ((3, 4), (4,)), ((2, 3, 4), (4, 5)),
               ((2, 1, 3, 4), (3, 4, 2)),
               ((4,), (4,))],
)  # fmt: skip
def test_matmul(rng, shapes):
    assert gradcheck(lambda a, b: a @ b, [_x(rng, *shapes[0]), _x(rng, *shapes[1])])


@pytest.mark.parametrize("dim", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_reductions(rng, dim, keepdim):
    x = _distinct(rng, 2, 3, 4)
    assert gradcheck(lambda a: a.sum(dim, keepdim=keepdim), x)
    assert gradcheck(lambda a: a.mean(dim, keepdim=keepdim), x)
    assert gradcheck(lambda a: a.amax(dim, keepdim=keepdim), x)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_min_dim(rng, dim):
    x = _distinct(rng, 3, 4, 2)
    assert gradcheck(lambda a: a.max(dim).values, x)
    assert gradcheck(lambda a: a.max(dim, keepdim=True)[0], x)
    assert gradcheck(lambda a: a.min(dim).values, x)
    assert gradcheck(lambda a: a.max(), x)


def test_unary(rng):
    x = _x(rng, 3, 4, low=0.5)
    for op in (lambda a: a.exp(), lambda a: a.log(), lambda a: a.sqrt(), lambda a: a.abs()):
        assert gradcheck(op, x)


def test_shape_ops(rng):
    x = _x(rng, 2, 3, 4)
    for op in (
        lambda a: a.reshape(4, 6),
        lambda a: a.reshape(-1),
        lambda a: a.view(2, 12),
        lambda a: a.permute(2, 0, 1),
        lambda a: a.transpose(0, 2),
        lambda a: a.T,
        lambda a: a.flatten(),
        lambda a: a.flatten(1),
        lambda a: F.flatten(a, 0, 1),
        lambda a: a.unsqueeze(1).squeeze(1),
        lambda a: a[:, :1].expand(2, 5, 4),
    ):
        assert gradcheck(op, x)


@pytest.mark.parametrize(
    "index",
    [
        (0,),
        (slice(None), 1),
        (slice(0, 2), slice(None, None, 2), -1),
        (Ellipsis, slice(1, 3)),
        (np.array([1, 0, 1]),),
        (slice(None), np.array([2, 2, 0])),
        (np.array([0, 1, 1]), np.array([2, 2, 0])),
        (None, 1),
        (np.array([[True, False, True], [False, True, True]]),),
    ],
)
def test_getitem(rng, index):
    assert gradcheck(lambda a: a[index], _x(rng, 2, 3, 4))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_stack(rng, dim):
    a, b = _x(rng, 2, 3), _x(rng, 2, 3)
    assert gradcheck(lambda p, q: ck.cat([p, q, p], dim=dim), [a, b])
    assert gradcheck(lambda p, q: ck.stack([p, q], dim=dim), [a, b])


def test_cat_different_sizes(rng):
    assert gradcheck(lambda p, q: ck.cat([p, q], 1), [_x(rng, 2, 1, 3), _x(rng, 2, 4, 3)])


@pytest.mark.parametrize("pad", [(1, 2), (0, 1, 2, 0), (1, 1, 1, 1, 1, 0)])
def test_pad(rng, pad):
    assert gradcheck(lambda a: F.pad(a, pad, value=0.5), _x(rng, 2, 3, 2))


def test_composite_graph(rng):
    x, w = _x(rng, 2, 3, 5, 5), _x(rng, 4, 3, 3, 3)

    def fn(x, w):
        h = F.relu(F.conv2d(x, w, padding=1))
        return (h * h + h).mean((2, 3)) @ w.reshape(4, -1)[:, :5]

    assert gradcheck(fn, [x, w])


# ------------------------------------------------------------------ whole models
def _nn():
    nn = pytest.importorskip("cnnkit.nn")
    needed = ("Sequential", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d",
              "LocallyConnected2d", "Flatten", "Linear")  # fmt: skip
    missing = [n for n in needed if not hasattr(nn, n)]
    if missing:
        pytest.skip(f"cnnkit.nn lacks {missing}")
    return nn


def _small_cnn(nn):
    ck.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.LocallyConnected2d(3, 2, 3, 2, 2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2, 3),
    )


def test_gradcheck_module_small_cnn():
    nn = _nn()
    model = _small_cnn(nn)
    before = {k: v.array.copy() for k, v in model.named_parameters()}
    dtypes = {k: v.dtype for k, v in model.named_parameters()}
    result = gradcheck_module(model, (2, 2, 6, 6))
    assert list(result) == [str(i) for i in range(8)]
    assert all(result.values())
    for k, v in model.named_parameters():  # the original model is untouched
        assert v.dtype == dtypes[k]
        np.testing.assert_array_equal(v.array, before[k])
        assert v.grad is None
    model.eval()
    assert all(gradcheck_module(model, ck.randn(2, 2, 6, 6), train=False).values())


def test_gradcheck_module_dropout_and_failure():
    nn = _nn()
    if not hasattr(nn, "Dropout"):
        pytest.skip("cnnkit.nn lacks Dropout")

    class Bad(nn.Module):
        def forward(self, x):
            return _WrongSquare.apply(x)

    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Tanh() if hasattr(nn, "Tanh")
                          else nn.ReLU())  # fmt: skip
    assert all(gradcheck_module(model, (2, 3)).values())
    bad = nn.Sequential(nn.Linear(3, 4), Bad())
    with pytest.raises(GradcheckError, match=r"layer '1' \(Bad\).*input.*element"):
        gradcheck_module(bad, (2, 3))


def test_gradcheck_module_fast_mode_for_large_outputs():
    nn = _nn()
    ck.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64, 2))  # fmt: skip
    x = ck.randn(2, 1, 8, 8)
    assert all(gradcheck_module(model, x, max_outputs=200).values())
