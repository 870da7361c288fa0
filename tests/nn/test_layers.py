"""Every cnnkit.nn layer against PyTorch in float64: outputs and gradients of input and params."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn as nn
from cnnkit.functional import activation as A
from tests.conftest import assert_close

tnn = torch.nn


def assert_matches_torch(t_layer, c_layer, x_np, rtol=1e-10, atol=1e-12, load=True):
    """Run both layers on ``x_np``, backprop a random upstream gradient, compare everything."""
    t_layer = t_layer.double()
    if load:
        c_layer.load_state_dict(t_layer.state_dict())
    xt = torch.tensor(x_np, dtype=torch.float64, requires_grad=True)
    xc = ck.tensor(x_np.astype(np.float64), requires_grad=True)
    yt = t_layer(xt)
    yc = c_layer(xc)
    assert_close(yc, yt, rtol=rtol, atol=atol, what="forward")
    g = np.random.default_rng(123).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    yc.backward(ck.tensor(g))
    assert_close(xc.grad, xt.grad, rtol=rtol, atol=atol, what="input grad")
    t_params = dict(t_layer.named_parameters())
    c_params = dict(c_layer.named_parameters())
    assert set(c_params) == set(t_params)
    for name, tp in t_params.items():
        assert_close(c_params[name].grad, tp.grad, rtol=rtol, atol=atol, what=f"{name} grad")
    return yc, yt


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------- Linear
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7), (7,)])
def test_linear_matches_torch(bias, shape):
    t = tnn.Linear(7, 4, bias=bias)
    c = nn.Linear(7, 4, bias=bias, dtype="float64")
    assert c.weight.shape == (4, 7)
    assert_matches_torch(t, c, _x(*shape))


# ----------------------------------------------------------------------------- Conv2d
CONV_CASES = [
    dict(in_channels=3, out_channels=5, kernel_size=3),
    dict(in_channels=3, out_channels=4, kernel_size=3, stride=2),
    dict(in_channels=3, out_channels=4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2)),
    dict(in_channels=2, out_channels=4, kernel_size=3, padding="same"),
    dict(in_channels=2, out_channels=4, kernel_size=4, padding="same"),
    dict(in_channels=2, out_channels=4, kernel_size=3, padding="same", dilation=2),
    dict(in_channels=2, out_channels=4, kernel_size=3, padding="valid"),
    dict(in_channels=2, out_channels=3, kernel_size=3, dilation=2, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, padding=1),
    dict(in_channels=4, out_channels=4, kernel_size=3, groups=4, padding=1),  # depthwise
    dict(in_channels=3, out_channels=6, kernel_size=3, groups=3, stride=2),  # multiplier 2
    dict(in_channels=3, out_channels=4, kernel_size=1, bias=False),
    dict(in_channels=3, out_channels=4, kernel_size=3, bias=False, stride=3, padding=2),
]


@pytest.mark.parametrize(
    "kwargs", CONV_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items())
)
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
def test_conv2d_matches_torch(kwargs):
    torch.manual_seed(0)
    t = tnn.Conv2d(**kwargs)
    c = nn.Conv2d(**kwargs, dtype="float64")
    assert_matches_torch(t, c, _x(2, kwargs["in_channels"], 9, 8))


def test_float32_layers_match_torch_float32():
    torch.manual_seed(3)
    t = tnn.Sequential(tnn.Conv2d(3, 4, 3, padding=1), tnn.ReLU(), tnn.Flatten(), tnn.Linear(64, 5))
    c = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5))
    c.load_state_dict(t.state_dict())
    x = _x(2, 3, 4, 4).astype(np.float32)
    yc = c(ck.tensor(x))
    assert yc.dtype == np.float32
    assert_close(yc, t(torch.tensor(x)), rtol=1e-5, atol=1e-6)


def test_conv2d_unbatched_input():
    t = tnn.Conv2d(2, 3, 3, padding=1)
    c = nn.Conv2d(2, 3, 3, padding=1, dtype="float64")
    assert_matches_torch(t, c, _x(2, 6, 5))


# ----------------------------------------------------------------------------- pooling
POOL_CASES = [
    (tnn.MaxPool2d, nn.MaxPool2d, dict(kernel_size=2)),
    (tnn.MaxPool2d, nn.MaxPool2d, dict(kernel_size=3, stride=2)),  # overlapping
    (tnn.MaxPool2d, nn.MaxPool2d, dict(kernel_size=3, stride=1, padding=1)),
    (tnn.MaxPool2d, nn.MaxPool2d, dict(kernel_size=3, stride=2, ceil_mode=True)),
    (tnn.MaxPool2d, nn.MaxPool2d, dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
    (tnn.MaxPool2d, nn.MaxPool2d, dict(kernel_size=2, stride=1, dilation=2)),
    (tnn.AvgPool2d, nn.AvgPool2d, dict(kernel_size=2)),
    (tnn.AvgPool2d, nn.AvgPool2d, dict(kernel_size=3, stride=2, padding=1)),
    (
        tnn.AvgPool2d,
        nn.AvgPool2d,
        dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    ),
    (tnn.AvgPool2d, nn.AvgPool2d, dict(kernel_size=3, stride=2, ceil_mode=True)),
    (
        tnn.AvgPool2d,
        nn.AvgPool2d,
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    ),
    (tnn.AvgPool2d, nn.AvgPool2d, dict(kernel_size=2, ceil_mode=True, padding=1)),
    (tnn.AvgPool2d, nn.AvgPool2d, dict(kernel_size=3, stride=2, padding=1, divisor_override=5)),
    (tnn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d, dict(output_size=1)),
    (tnn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d, dict(output_size=(3, 2))),
    (tnn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d, dict(output_size=4)),
    (tnn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d, dict(output_size=(None, 3))),
]


@pytest.mark.parametrize(
    "t_cls,c_cls,kwargs",
    POOL_CASES,
    ids=[f"{t.__name__}-{i}" for i, (t, _, _) in enumerate(POOL_CASES)],
)
def test_pooling_matches_torch(t_cls, c_cls, kwargs):
    # continuous random input: no ties, so max-pool gradients are unambiguous
    assert_matches_torch(t_cls(**kwargs), c_cls(**kwargs), _x(2, 3, 9, 7), load=False)


def test_pooling_errors():
    with pytest.raises(ValueError, match="half"):
        nn.MaxPool2d(2, padding=2)(ck.zeros(1, 1, 5, 5))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        nn.AvgPool2d(2)(ck.zeros(5, 5))


def test_pooling_unbatched_input():
    assert_matches_torch(tnn.MaxPool2d(2), nn.MaxPool2d(2), _x(3, 6, 6), load=False)
    assert_matches_torch(tnn.AvgPool2d(3, 2), nn.AvgPool2d(3, 2), _x(3, 7, 7), load=False)


# ----------------------------------------------------------------------------- activations
ACT_CASES = [
    (tnn.ReLU(), nn.ReLU()),
    (tnn.LeakyReLU(), nn.LeakyReLU()),
    (tnn.LeakyReLU(0.2), nn.LeakyReLU(0.2)),
    (tnn.Sigmoid(), nn.Sigmoid()),
    (tnn.Tanh(), nn.Tanh()),
    (tnn.Softmax(dim=1), nn.Softmax(dim=1)),
    (tnn.LogSoftmax(dim=1), nn.LogSoftmax(dim=1)),
    (tnn.Softmax(dim=-1), nn.Softmax(dim=-1)),
    (tnn.Flatten(), nn.Flatten()),
    (tnn.Flatten(0, 2), nn.Flatten(0, 2)),
    (tnn.Flatten(2), nn.Flatten(2)),
    (tnn.Identity(), nn.Identity()),
]


@pytest.mark.parametrize(
    "t_layer,c_layer",
    ACT_CASES,
    ids=[type(t).__name__ + str(i) for i, (t, _) in enumerate(ACT_CASES)],
)
def test_parameter_free_layers_match_torch(t_layer, c_layer):
    assert_matches_torch(t_layer, c_layer, 3 * _x(4, 5, 3, 2), load=False)


UNFLATTEN_CASES = [
    ((4, 30, 3), 1, (2, 5, 3)),
    ((4, 30, 3), -2, (5, -1)),
    ((6, 7), 0, (3, 2)),
    ((6, 7), -1, (7, 1)),
    ((2, 12), 1, [-1, 4]),
]


@pytest.mark.parametrize("shape,dim,sizes", UNFLATTEN_CASES)
def test_unflatten_matches_torch(shape, dim, sizes):
    yc, yt = assert_matches_torch(
        tnn.Unflatten(dim, sizes), nn.Unflatten(dim, sizes), _x(*shape), load=False
    )
    assert tuple(yc.shape) == tuple(yt.shape)
    # the function and the method agree with the layer, on a non-contiguous input too
    x = _x(*shape).swapaxes(0, -1).copy().swapaxes(0, -1)
    assert_close(ck.unflatten(ck.tensor(x), dim, sizes), torch.tensor(x).unflatten(dim, sizes))


def test_unflatten_inverts_flatten_and_reprs():
    x = ck.tensor(_x(2, 3, 4, 5))
    y = nn.Unflatten(1, (3, 4, 5))(nn.Flatten()(x))
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    assert repr(nn.Unflatten(1, (32, 7, 7))) == repr(tnn.Unflatten(1, (32, 7, 7)))


@pytest.mark.parametrize(
    "dim,sizes,err,match",
    [
        (1, (4, 4), ValueError, r"unflatten: sizes \(4, 4\) multiply to 16, but dimension 1 has"),
        (1, (-1, 7), ValueError, "cannot be split"),
        (1, (-1, -1), ValueError, "one -1"),
        (3, (2, 5), IndexError, "out of range"),
        (1, 10, TypeError, "tuple"),
    ],
)
def test_unflatten_errors(dim, sizes, err, match):
    with pytest.raises(err, match=match):
        ck.zeros(2, 10).unflatten(dim, sizes)


def test_unflatten_layer_errors():
    with pytest.raises(TypeError, match="Unflatten: unflattened_size"):
        nn.Unflatten(1, 32)
    with pytest.raises(TypeError, match="Unflatten: dim"):
        nn.Unflatten(1.0, (2, 3))


def test_softmax_large_logits_are_stable():
    x = np.array([[1000.0, 0.0, -1000.0], [-800.0, -800.0, -801.0]])
    assert_matches_torch(tnn.Softmax(dim=1), nn.Softmax(dim=1), x, load=False)
    assert_matches_torch(tnn.LogSoftmax(dim=1), nn.LogSoftmax(dim=1), x, load=False)


# ----------------------------------------------------------------------------- dropout
def test_dropout_eval_is_identity():
    d = nn.Dropout(0.5).eval()
    x = ck.tensor(_x(10, 10), requires_grad=True)
    y = d(x)
    assert_close(y, x.data)
    y.sum().backward()
    assert_close(x.grad, np.ones((10, 10)))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_train_statistics(p):
    ck.manual_seed(1)
    d = nn.Dropout(p)
    assert d.training
    x = ck.tensor(np.full(100_000, 2.0), requires_grad=True)
    y = d(x)
    out = y.numpy()
    zero = out == 0
    assert abs(zero.mean() - p) < 0.01
    np.testing.assert_allclose(out[~zero], 2.0 / (1 - p), rtol=1e-12)
    y.sum().backward()
    grad = x.grad.numpy()
    np.testing.assert_allclose(grad[zero], 0.0)
    np.testing.assert_allclose(grad[~zero], 1.0 / (1 - p), rtol=1e-12)


def test_dropout_p_edges():
    x = ck.tensor(_x(50))
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())
    np.testing.assert_array_equal(nn.Dropout(1.0)(x).numpy(), np.zeros(50))
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


# ----------------------------------------------------------------------------- batch norm
BN_CASES = [
    ("1d-NC", tnn.BatchNorm1d, nn.BatchNorm1d, (6, 4), {}),
    ("1d-NCL", tnn.BatchNorm1d, nn.BatchNorm1d, (5, 4, 7), {}),
    ("2d", tnn.BatchNorm2d, nn.BatchNorm2d, (3, 4, 5, 6), {}),
    ("2d-momentum0.3", tnn.BatchNorm2d, nn.BatchNorm2d, (3, 4, 5, 6), dict(momentum=0.3)),
    ("2d-cumulative", tnn.BatchNorm2d, nn.BatchNorm2d, (3, 4, 5, 6), dict(momentum=None)),
    ("1d-cumulative", tnn.BatchNorm1d, nn.BatchNorm1d, (8, 4), dict(momentum=None)),
    ("2d-no-affine", tnn.BatchNorm2d, nn.BatchNorm2d, (3, 4, 5, 6), dict(affine=False)),
    ("1d-no-affine", tnn.BatchNorm1d, nn.BatchNorm1d, (5, 4, 3), dict(affine=False)),
    ("2d-eps", tnn.BatchNorm2d, nn.BatchNorm2d, (2, 4, 3, 3), dict(eps=1e-2)),
]


@pytest.mark.parametrize(
    "t_cls,c_cls,shape,kwargs", [c[1:] for c in BN_CASES], ids=[c[0] for c in BN_CASES]
)
def test_batchnorm_train_steps_then_eval(t_cls, c_cls, shape, kwargs):
    torch.manual_seed(0)
    t = t_cls(4, **kwargs).double()
    c = c_cls(4, **kwargs, dtype="float64")
    if kwargs.get("affine", True):
        with torch.no_grad():  # non-trivial affine parameters
            t.weight.copy_(torch.rand(4, dtype=torch.float64) + 0.5)
            t.bias.copy_(torch.randn(4, dtype=torch.float64))
    c.load_state_dict(t.state_dict())
    for step in range(3):
        t.zero_grad()
        c.zero_grad()
        x = 2.0 * _x(*shape, seed=step) + step
        assert_matches_torch(t, c, x, load=False)
        sd_c, sd_t = c.state_dict(), t.state_dict()
        assert list(sd_c) == list(sd_t)
        for k in ("running_mean", "running_var"):
            assert_close(sd_c[k], sd_t[k], what=f"step {step} {k}")
        assert (
            int(sd_c["num_batches_tracked"].numpy()) == int(sd_t["num_batches_tracked"]) == step + 1
        )
    t.eval()
    c.eval()
    t.zero_grad()
    c.zero_grad()
    assert_matches_torch(t, c, _x(*shape, seed=10), load=False)
    assert int(c.num_batches_tracked.numpy()) == 3  # eval does not count batches
    assert_close(c.running_mean, t.running_mean)


@pytest.mark.parametrize(
    "t_cls,c_cls,shape",
    [(tnn.BatchNorm1d, nn.BatchNorm1d, (6, 4)), (tnn.BatchNorm2d, nn.BatchNorm2d, (3, 4, 2, 5))],
)
def test_batchnorm_without_running_stats(t_cls, c_cls, shape):
    t = t_cls(4, track_running_stats=False).double()
    c = c_cls(4, track_running_stats=False, dtype="float64")
    assert c.running_mean is None and c.running_var is None
    assert list(c.state_dict()) == list(t.state_dict()) == ["weight", "bias"]
    assert_matches_torch(t, c, _x(*shape))
    # batch statistics are used in eval mode too
    t.eval()
    c.eval()
    t.zero_grad()
    c.zero_grad()
    assert_matches_torch(t, c, 3 + _x(*shape, seed=4), load=False)


def test_batchnorm_single_value_per_channel_in_training_raises():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(ck.zeros(1, 3))
    nn.BatchNorm1d(3).eval()(ck.zeros(1, 3))  # fine in eval mode


# ----------------------------------------------------------------------------- losses
REDUCTIONS = ["mean", "sum", "none"]


def assert_loss_matches_torch(t_loss, c_loss, x_np, target_np, target_dtype=np.float64):
    xt = torch.tensor(x_np, requires_grad=True)
    xc = ck.tensor(x_np, requires_grad=True)
    tt = torch.tensor(target_np.astype(target_dtype))
    tc = ck.tensor(target_np.astype(target_dtype))
    lt = t_loss(xt, tt)
    lc = c_loss(xc, tc)
    assert_close(lc, lt, what="loss")
    g = np.random.default_rng(5).standard_normal(tuple(lt.shape)) if lt.ndim else np.array(1.7)
    lt.backward(torch.tensor(g))
    lc.backward(ck.tensor(g))
    assert_close(xc.grad, xt.grad, what="input grad")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["MSELoss", "L1Loss"])
def test_regression_losses(name, reduction):
    x, y = _x(4, 3, seed=1), _x(4, 3, seed=2)
    assert_loss_matches_torch(
        getattr(tnn, name)(reduction=reduction), getattr(nn, name)(reduction=reduction), x, y
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_loss(reduction, weighted):
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, (5, 3))
    y = rng.uniform(0, 1, (5, 3))
    w = rng.uniform(0.5, 2, 3) if weighted else None
    t = tnn.BCELoss(weight=None if w is None else torch.tensor(w), reduction=reduction)
    c = nn.BCELoss(weight=w, reduction=reduction)
    assert_loss_matches_torch(t, c, p, y)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [None, "vec"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_with_logits_loss(reduction, pos_weight, weighted):
    rng = np.random.default_rng(4)
    x = 5 * rng.standard_normal((6, 3))
    y = (rng.uniform(size=(6, 3)) > 0.5).astype(np.float64)
    pw = rng.uniform(0.5, 3, 3) if pos_weight else None
    w = rng.uniform(0.5, 2, 3) if weighted else None
    t = tnn.BCEWithLogitsLoss(
        weight=None if w is None else torch.tensor(w),
        reduction=reduction,
        pos_weight=None if pw is None else torch.tensor(pw),
    )
    c = nn.BCEWithLogitsLoss(weight=w, reduction=reduction, pos_weight=pw)
    assert_loss_matches_torch(t, c, x, y)


def test_bce_with_logits_extreme_logits_are_finite():
    x = np.array([[800.0, -800.0, 0.0]])
    y = np.array([[0.0, 1.0, 1.0]])
    assert_loss_matches_torch(tnn.BCEWithLogitsLoss(), nn.BCEWithLogitsLoss(), x, y)


CE_OPTIONS = [
    {},
    {"weight": "w"},
    {"ignore_index": 2},
    {"ignore_index": 2, "weight": "w"},
    {"label_smoothing": 0.1},
    {"label_smoothing": 0.2, "weight": "w"},
    {"label_smoothing": 0.1, "weight": "w", "ignore_index": 0},
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", CE_OPTIONS, ids=lambda o: "-".join(o) or "plain")
def test_cross_entropy_loss(reduction, opts):
    rng = np.random.default_rng(7)
    x = 2 * rng.standard_normal((8, 5))
    y = np.array([0, 1, 2, 3, 4, 2, 1, 0])
    w = rng.uniform(0.5, 2, 5)
    kw = {k: (w if v == "w" else v) for k, v in opts.items()}
    tkw = {k: (torch.tensor(v) if k == "weight" else v) for k, v in kw.items()}
    t = tnn.CrossEntropyLoss(**tkw, reduction=reduction)
    c = nn.CrossEntropyLoss(**kw, reduction=reduction)
    assert_loss_matches_torch(t, c, x, y, target_dtype=np.int64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_spatial_targets(reduction):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4, 3, 3))
    y = rng.integers(0, 4, (2, 3, 3))
    assert_loss_matches_torch(
        tnn.CrossEntropyLoss(reduction=reduction),
        nn.CrossEntropyLoss(reduction=reduction),
        x,
        y,
        target_dtype=np.int64,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_probability_targets(reduction, smoothing, weighted):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 4))
    y = rng.dirichlet(np.ones(4), 5)
    w = rng.uniform(0.5, 2, 4) if weighted else None
    assert_loss_matches_torch(
        tnn.CrossEntropyLoss(
            weight=None if w is None else torch.tensor(w),
            reduction=reduction,
            label_smoothing=smoothing,
        ),
        nn.CrossEntropyLoss(weight=w, reduction=reduction, label_smoothing=smoothing),
        x,
        y,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_spatial_weight_ignore_smoothing(reduction):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 4, 2))
    y = rng.integers(0, 3, (2, 4, 2))
    w = rng.uniform(0.5, 2, 3)
    kw = dict(ignore_index=1, label_smoothing=0.05, reduction=reduction)
    assert_loss_matches_torch(
        tnn.CrossEntropyLoss(weight=torch.tensor(w), **kw),
        nn.CrossEntropyLoss(weight=w, **kw),
        x,
        y,
        target_dtype=np.int64,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_pos_weight_broadcasts_over_channels(reduction):
    rng = np.random.default_rng(12)
    x = 3 * rng.standard_normal((2, 3, 2, 2))
    y = (rng.uniform(size=(2, 3, 2, 2)) > 0.4).astype(np.float64)
    pw = rng.uniform(0.5, 3, (3, 1, 1))
    assert_loss_matches_torch(
        tnn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw), reduction=reduction),
        nn.BCEWithLogitsLoss(pos_weight=pw, reduction=reduction),
        x,
        y,
    )


def test_loss_weight_buffers_in_state_dict_like_torch():
    w = np.ones(3)
    pairs = [
        (nn.CrossEntropyLoss(weight=w), tnn.CrossEntropyLoss(weight=torch.tensor(w))),
        (nn.NLLLoss(), tnn.NLLLoss()),
        (
            nn.BCEWithLogitsLoss(weight=w, pos_weight=w),
            tnn.BCEWithLogitsLoss(weight=torch.tensor(w), pos_weight=torch.tensor(w)),
        ),
    ]
    for c, t in pairs:
        assert list(c.state_dict()) == list(t.state_dict())


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "opts", [{}, {"weight": "w"}, {"ignore_index": 1}, {"weight": "w", "ignore_index": 3}]
)
def test_nll_loss(reduction, opts):
    rng = np.random.default_rng(11)
    x = np.log(rng.dirichlet(np.ones(4), 7))
    y = np.array([0, 1, 2, 3, 1, 1, 2])
    w = rng.uniform(0.5, 2, 4)
    kw = {k: (w if v == "w" else v) for k, v in opts.items()}
    tkw = {k: (torch.tensor(v) if k == "weight" else v) for k, v in kw.items()}
    assert_loss_matches_torch(
        tnn.NLLLoss(**tkw, reduction=reduction),
        nn.NLLLoss(**kw, reduction=reduction),
        x,
        y,
        target_dtype=np.int64,
    )


def test_cross_entropy_all_ignored_mean_is_nan_like_torch():
    x = _x(3, 4)
    y = np.array([1, 1, 1])
    lt = tnn.CrossEntropyLoss(ignore_index=1)(torch.tensor(x), torch.tensor(y))
    lc = nn.CrossEntropyLoss(ignore_index=1)(ck.tensor(x), ck.tensor(y))
    assert math.isnan(float(lt))
    assert math.isnan(float(lc.numpy()))


# ----------------------------------------------------------------------------- locally connected
def _lc_reference(x, weight, bias, kernel, stride, padding):
    """LocallyConnected2d in torch: unfold patches, one filter per output location."""
    n = x.shape[0]
    oh, ow, cout, cin, kh, kw = weight.shape
    cols = torch.nn.functional.unfold(x, kernel, stride=stride, padding=padding)
    cols = cols.reshape(n, cin * kh * kw, oh, ow)
    w = weight.reshape(oh, ow, cout, cin * kh * kw)
    out = torch.einsum("nkij,ijok->noij", cols, w)
    if bias is not None:
        out = out + bias
    return out


LC_CASES = [
    dict(in_channels=2, out_channels=3, input_size=(7, 6), kernel_size=3),
    dict(in_channels=1, out_channels=2, input_size=8, kernel_size=(3, 2), stride=2),
    dict(in_channels=2, out_channels=2, input_size=(5, 5), kernel_size=3, stride=(2, 1), padding=1),
    dict(in_channels=3, out_channels=1, input_size=6, kernel_size=2, bias=False),
]


@pytest.mark.parametrize("kwargs", LC_CASES, ids=[str(i) for i in range(len(LC_CASES))])
def test_locally_connected_matches_unfold_einsum(kwargs):
    ck.manual_seed(2)
    c = nn.LocallyConnected2d(**kwargs, dtype="float64")
    h, w = c.input_size
    x = _x(2, kwargs["in_channels"], h, w)
    wt = torch.tensor(c.weight.numpy().copy(), requires_grad=True)
    bt = None if c.bias is None else torch.tensor(c.bias.numpy().copy(), requires_grad=True)
    assert wt.shape[:3] == (*c.output_size, kwargs["out_channels"])
    xt = torch.tensor(x, requires_grad=True)
    xc = ck.tensor(x, requires_grad=True)
    yt = _lc_reference(xt, wt, bt, c.kernel_size, c.stride, c.padding)
    yc = c(xc)
    assert_close(yc, yt, what="forward")
    g = np.random.default_rng(1).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    yc.backward(ck.tensor(g))
    assert_close(xc.grad, xt.grad, what="input grad")
    assert_close(c.weight.grad, wt.grad, what="weight grad")
    if bt is not None:
        assert_close(c.bias.grad, bt.grad, what="bias grad")


def test_locally_connected_does_not_share_weights():
    c = nn.LocallyConnected2d(1, 1, input_size=4, kernel_size=2, bias=False, dtype="float64")
    c.weight.data[...] = 0
    c.weight.data[1, 2] = 1.0  # only output location (1, 2) sees the input
    y = c(ck.ones(1, 1, 4, 4, dtype="float64")).numpy()
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 2] = 4.0
    np.testing.assert_array_equal(y, expected)


# ----------------------------------------------------------------------------- PReLU
@pytest.mark.parametrize(
    ("num", "shape"), [(1, (4, 3, 5, 2)), (3, (4, 3, 5, 2)), (3, (2, 3)), (1, (7,)), (4, (2, 4, 5))]
)
def test_prelu_matches_torch(num, shape):
    x = _x(*shape)
    x.flat[:2] = 0.0  # PyTorch: the slope's side at exactly 0
    t = tnn.PReLU(num)
    with torch.no_grad():
        t.weight.copy_(torch.linspace(-0.5, 0.7, num))
    c = nn.PReLU(num, dtype="float64")
    assert assert_matches_torch(t, c, x)[0].shape == shape
    assert list(c.state_dict()) == ["weight"]


def test_prelu_default_init_and_gradcheck():
    c = nn.PReLU(3, dtype="float64")
    assert np.array_equal(c.weight.numpy(), [0.25] * 3)
    assert nn.PReLU(init=0.1).weight.numpy().tolist() == pytest.approx([0.1])
    x = ck.tensor(_x(2, 3, 4) + 0.05, requires_grad=True)
    assert ck.gradcheck(A.prelu, [x, c.weight])


def test_prelu_rejects_bad_arguments():
    with pytest.raises(ValueError, match="PReLU: num_parameters must be positive"):
        nn.PReLU(0)
    with pytest.raises(ValueError, match=r"prelu: weight has 3 slopes but input \(2, 4\) has 4"):
        nn.PReLU(3)(ck.zeros(2, 4))


# ----------------------------------------------------------------------------- Upsample
@pytest.mark.parametrize(
    "kw",
    [
        {"scale_factor": 2},
        {"scale_factor": (1.5, 3)},
        {"size": (7, 5)},
        {"size": 9, "mode": "bilinear"},
        {"scale_factor": 2, "mode": "bilinear", "align_corners": True},
        {"scale_factor": 2.5, "mode": "bilinear", "align_corners": False},
        {"size": (3, 11), "mode": "bilinear", "align_corners": True},
    ],
)
def test_upsample_matches_torch(kw):
    yc, yt = assert_matches_torch(tnn.Upsample(**kw), nn.Upsample(**kw), _x(2, 3, 4, 5))
    assert yc.shape == tuple(yt.shape)


def test_upsample_repr_and_errors():
    for kw in [{"scale_factor": 2}, {"size": (3, 4), "mode": "bilinear"}]:
        assert repr(nn.Upsample(**kw)) == repr(tnn.Upsample(**kw))
    with pytest.raises(ValueError, match="Upsample: give exactly one of size and scale_factor"):
        nn.Upsample()
    with pytest.raises(ValueError, match="Upsample: mode must be 'nearest' or 'bilinear'"):
        nn.Upsample(scale_factor=2, mode="bicubic")
    with pytest.raises(ValueError, match="Upsample: align_corners can only be set"):
        nn.Upsample(scale_factor=2, align_corners=True)
    with pytest.raises(ValueError, match=r"expects input \(N, C, H, W\)"):
        nn.Upsample(scale_factor=2)(ck.zeros(3, 4, 5))
