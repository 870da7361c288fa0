"""``F.max_pool2d``, ``F.avg_pool2d`` and ``F.adaptive_avg_pool2d`` against PyTorch and loops."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_close
from tests.naive import pool as npl

torch = pytest.importorskip("torch")
tF = torch.nn.functional

import cnnkit as ck  # noqa: E402
import cnnkit.functional.conv as conv_mod  # noqa: E402
import cnnkit.nn.functional as F  # noqa: E402
from cnnkit.functional import _parallel  # noqa: E402

LECTURE = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=np.float64)


def _ck(a):
    return ck.tensor(a, requires_grad=True)


def _t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def _input(rng, shape, ties):
    if ties:  # many equal values: the gradient must go to the first maximum, as in torch
        return rng.integers(0, 3, shape).astype(np.float64)
    return rng.standard_normal(shape)


def _random_pool_config(rng, with_dilation):
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
    r = rng.random()
    if r < 0.25:
        stride = None
    elif r < 0.6:
        stride = int(rng.integers(1, 4))
    else:
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if with_dilation else (1, 1)
    # torch: padding at most half the kernel
    padding = (int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1)))
    if padding[0] == padding[1] and rng.random() < 0.5:
        padding = padding[0]
    eff_h = dilation[0] * (kh - 1) + 1
    eff_w = dilation[1] * (kw - 1) + 1
    return {
        "shape": (
            int(rng.integers(1, 3)),
            int(rng.integers(1, 4)),
            eff_h + int(rng.integers(0, 5)),
            eff_w + int(rng.integers(0, 5)),
        ),
        "kernel_size": (kh, kw) if kh != kw or rng.random() < 0.5 else kh,
        "stride": stride,
        "padding": padding,
        "dilation": dilation if dilation[0] != dilation[1] else dilation[0],
        "ceil_mode": bool(rng.random() < 0.5),
    }


# ---------------------------------------------------------------- max pool


def _max_both(x, g, k, s, p, d, ceil):
    cx, tx = _ck(x), _t(x)
    out = F.max_pool2d(cx, k, s, p, d, ceil)
    tout = tF.max_pool2d(tx, k, s, p, d, ceil_mode=ceil)
    assert tuple(out.shape) == tuple(tout.shape), f"shape {out.shape} vs {tout.shape}"
    if g is None:
        g = np.random.default_rng(0).standard_normal(tuple(tout.shape))
    out.backward(ck.tensor(g))
    tout.backward(torch.tensor(g))
    return out, tout, cx.grad, tx.grad, g


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_max_pool_random_configs_match_torch(seed, ties):
    rng = np.random.default_rng(4000 + seed)
    for trial in range(25):
        cfg = _random_pool_config(rng, with_dilation=True)
        x = _input(rng, cfg["shape"], ties)
        args = (cfg["kernel_size"], cfg["stride"], cfg["padding"], cfg["dilation"])
        out, tout, dx, tdx, g = _max_both(x, None, *args, cfg["ceil_mode"])
        assert_close(out, tout, what=f"forward {cfg}")
        assert_close(dx, tdx, what=f"dx {cfg}")
        if trial < 3:
            assert_close(out, npl.max_pool2d(x, *args, cfg["ceil_mode"]), what=f"naive {cfg}")
            ndx = npl.max_pool2d_backward(x, g, *args, cfg["ceil_mode"])
            assert_close(dx, ndx, what=f"naive dx {cfg}")


MAX_SPECIFIC = [
    # name, (H, W), kernel, stride, padding, dilation, ceil_mode
    ("k2s2", (6, 8), 2, 2, 0, 1, False),
    ("overlap_k3s2", (7, 9), 3, 2, 0, 1, False),
    ("overlap_k3s2_pad", (7, 8), 3, 2, 1, 1, False),
    ("overlap_k3s2_ceil", (8, 8), 3, 2, 0, 1, True),
    ("ceil_drop_last", (5, 5), 2, 2, 1, 1, True),
    ("ceil_pad_k3", (6, 7), 3, 2, 1, 1, True),
    ("stride1", (5, 6), 3, 1, 1, 1, False),
    ("dilated", (9, 10), 3, 1, 0, 2, False),
    ("dilated_pad_ceil", (9, 8), (3, 2), (2, 3), (1, 1), (2, 3), True),
    ("nonsquare", (7, 6), (1, 3), (1, 2), (0, 1), 1, False),
    ("k1", (4, 5), 1, 2, 0, 1, True),
    ("whole", (4, 5), (4, 5), None, 0, 1, False),
]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(
    ("name", "hw", "k", "s", "p", "d", "ceil"), MAX_SPECIFIC, ids=[c[0] for c in MAX_SPECIFIC]
)
def test_max_pool_specific(name, hw, k, s, p, d, ceil, ties):
    rng = np.random.default_rng(41)
    x = _input(rng, (2, 2, *hw), ties)
    out, tout, dx, tdx, g = _max_both(x, None, k, s, p, d, ceil)
    assert_close(out, tout, what=f"{name} forward")
    assert_close(dx, tdx, what=f"{name} dx")
    assert_close(out, npl.max_pool2d(x, k, s, p, d, ceil), what=f"{name} naive")
    assert_close(dx, npl.max_pool2d_backward(x, g, k, s, p, d, ceil), what=f"{name} naive dx")


def test_max_pool_all_equal_window_routes_to_first():
    x = np.ones((1, 1, 4, 4))
    _, _, dx, tdx, _ = _max_both(x, np.ones((1, 1, 2, 2)), 2, 2, 0, 1, False)
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, ::2, ::2] = 1.0
    assert_close(dx, expected)
    assert_close(dx, tdx)


def test_max_pool_overlapping_windows_accumulate():
    # the 9 is the maximum of all four overlapping 3x3 windows (stride 1)
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = 9.0
    _, _, dx, tdx, _ = _max_both(x, np.arange(1.0, 5.0).reshape(1, 1, 2, 2), 3, 1, 0, 1, False)
    assert dx.numpy()[0, 0, 1, 2] == 10.0
    assert_close(dx, tdx)


def test_max_pool_negative_inputs_ignore_padding():
    x = -1.0 - np.random.default_rng(2).random((1, 2, 5, 5))
    out, tout, dx, tdx, _ = _max_both(x, None, 3, 2, 1, 1, True)
    assert np.all(out.numpy() < 0)  # padding is -inf, never zero
    assert_close(out, tout)
    assert_close(dx, tdx)


def test_max_pool_lecture_example():
    x = ck.tensor(LECTURE.reshape(1, 1, 4, 4))
    out = F.max_pool2d(x, 2, 2)
    np.testing.assert_array_equal(out.numpy()[0, 0], [[6, 8], [3, 4]])


def test_max_pool_default_stride_is_kernel():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 6, 6))
    a = F.max_pool2d(ck.tensor(x), 3).numpy()
    b = F.max_pool2d(ck.tensor(x), 3, stride=3).numpy()
    assert a.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- avg pool


def _avg_both(x, g, k, s, p, ceil, cip, div):
    cx, tx = _ck(x), _t(x)
    out = F.avg_pool2d(cx, k, s, p, ceil, cip, div)
    tout = tF.avg_pool2d(tx, k, s, p, ceil, cip, div)
    assert tuple(out.shape) == tuple(tout.shape), f"shape {out.shape} vs {tout.shape}"
    if g is None:
        g = np.random.default_rng(0).standard_normal(tuple(tout.shape))
    out.backward(ck.tensor(g))
    tout.backward(torch.tensor(g))
    return out, tout, cx.grad, tx.grad, g


@pytest.mark.parametrize("seed", range(5))
def test_avg_pool_random_configs_match_torch(seed):
    rng = np.random.default_rng(5000 + seed)
    for trial in range(25):
        cfg = _random_pool_config(rng, with_dilation=False)
        x = rng.standard_normal(cfg["shape"])
        cip = bool(rng.random() < 0.5)
        div = int(rng.integers(1, 7)) if rng.random() < 0.25 else None
        args = (cfg["kernel_size"], cfg["stride"], cfg["padding"], cfg["ceil_mode"], cip, div)
        out, tout, dx, tdx, g = _avg_both(x, None, *args)
        what = f"{cfg} count_include_pad={cip} divisor_override={div}"
        assert_close(out, tout, what=f"forward {what}")
        assert_close(dx, tdx, what=f"dx {what}")
        if trial < 3:
            assert_close(out, npl.avg_pool2d(x, *args), what=f"naive {what}")
            assert_close(dx, npl.avg_pool2d_backward(x, g, *args), what=f"naive dx {what}")


AVG_SPECIFIC = [
    # name, (H, W), kernel, stride, padding, ceil_mode
    ("k2s2", (6, 8), 2, 2, 0, False),
    ("overlap_k3s2", (7, 9), 3, 2, 0, False),
    ("overlap_k3s2_pad", (7, 8), 3, 2, 1, False),
    ("ceil_partial_window", (8, 8), 3, 2, 0, True),
    ("ceil_pad_partial", (6, 5), 4, 3, 2, True),
    ("ceil_drop_last", (5, 5), 2, 2, 1, True),
    ("nonsquare", (7, 6), (3, 1), (2, 1), (1, 0), True),
    ("stride1_pad", (4, 5), 3, 1, 1, False),
]


@pytest.mark.parametrize("div", [None, 3])
@pytest.mark.parametrize("cip", [True, False])
@pytest.mark.parametrize(
    ("name", "hw", "k", "s", "p", "ceil"), AVG_SPECIFIC, ids=[c[0] for c in AVG_SPECIFIC]
)
def test_avg_pool_specific(name, hw, k, s, p, ceil, cip, div):
    rng = np.random.default_rng(51)
    x = rng.standard_normal((2, 2, *hw))
    args = (k, s, p, ceil, cip, div)
    out, tout, dx, tdx, g = _avg_both(x, None, *args)
    assert_close(out, tout, what=f"{name} forward")
    assert_close(dx, tdx, what=f"{name} dx")
    assert_close(out, npl.avg_pool2d(x, *args), what=f"{name} naive")
    assert_close(dx, npl.avg_pool2d_backward(x, g, *args), what=f"{name} naive dx")


def test_avg_pool_lecture_example():
    x = ck.tensor(LECTURE.reshape(1, 1, 4, 4))
    out = F.avg_pool2d(x, 2, 2)
    np.testing.assert_allclose(out.numpy()[0, 0], [[3.25, 5.25], [2, 2]])


def test_avg_pool_count_include_pad_corner_value():
    x = np.ones((1, 1, 3, 3))
    with_pad = F.avg_pool2d(ck.tensor(x), 2, 2, 1, count_include_pad=True).numpy()
    without = F.avg_pool2d(ck.tensor(x), 2, 2, 1, count_include_pad=False).numpy()
    assert with_pad[0, 0, 0, 0] == 0.25  # one real element, four counted
    assert without[0, 0, 0, 0] == 1.0


def test_avg_pool_divisor_override():
    x = np.ones((1, 1, 4, 4))
    out = F.avg_pool2d(ck.tensor(x), 2, divisor_override=1).numpy()
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), 4.0))


# ---------------------------------------------------------------- adaptive avg pool


@pytest.mark.parametrize(
    ("hw", "size"),
    [((7, 5), 3), ((6, 6), (4, 2)), ((5, 9), 1), ((4, 4), 4), ((8, 8), 2), ((3, 5), (5, 7))],
)
def test_adaptive_avg_pool(hw, size):
    rng = np.random.default_rng(61)
    x = rng.standard_normal((2, 3, *hw))
    cx, tx = _ck(x), _t(x)
    out = F.adaptive_avg_pool2d(cx, size)
    tout = tF.adaptive_avg_pool2d(tx, size)
    assert_close(out, tout, what="forward")
    g = rng.standard_normal(tuple(tout.shape))
    out.backward(ck.tensor(g))
    tout.backward(torch.tensor(g))
    assert_close(cx.grad, tx.grad, what="dx")
    assert_close(out, npl.adaptive_avg_pool2d(x, size), what="naive")
    assert_close(cx.grad, npl.adaptive_avg_pool2d_backward(x, g, size), what="naive dx")


def test_adaptive_avg_pool_global_is_mean():
    rng = np.random.default_rng(62)
    x = rng.standard_normal((2, 3, 5, 4))
    out = F.adaptive_avg_pool2d(ck.tensor(x), 1).numpy()
    np.testing.assert_allclose(out, x.mean(axis=(2, 3), keepdims=True), rtol=1e-12)


# ---------------------------------------------------------------- errors


def test_pool_error_stride_zero():
    x = ck.tensor(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"(?i)stride"):
        F.max_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match=r"(?i)stride"):
        F.avg_pool2d(x, 2, stride=(0, 1))


def test_pool_error_kernel_larger_than_input():
    x = ck.tensor(np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"(?i)kernel"):
        F.max_pool2d(x, 5)
    with pytest.raises(ValueError, match=r"(?i)kernel"):
        F.avg_pool2d(x, 5)


def test_pool_error_wrong_rank():
    x = ck.tensor(np.zeros((5, 5)))
    for fn in (F.max_pool2d, F.avg_pool2d):
        with pytest.raises(ValueError, match=r"(?i)expected"):
            fn(x, 2)


def test_pools_accept_unbatched_input_like_torch():
    rng = np.random.default_rng(71)
    x = rng.integers(0, 3, (2, 5, 6)).astype(np.float64)
    g = rng.standard_normal((2, 3, 3))
    for fn, tfn in ((F.max_pool2d, tF.max_pool2d), (F.avg_pool2d, tF.avg_pool2d)):
        cx, tx = _ck(x), _t(x)
        out = fn(cx, 3, 2, 1)
        tout = tfn(tx, 3, 2, 1)
        assert_close(out, tout)
        out.backward(ck.tensor(g))
        tout.backward(torch.tensor(g))
        assert_close(cx.grad, tx.grad)


# ------------------------------------------- channels-last inputs (after a wide convolution)

WIDE = 24  # output channels from which a convolution returns channels-last activations


def _channels_last_copy(cx):
    """``cx`` passed through a 1x1 identity convolution wide enough to return its output
    channels-last (a ``(N, C, H, W)`` view of ``(N, H, W, C)`` memory)."""
    eye = ck.tensor(np.eye(cx.shape[1]).reshape(cx.shape[1], cx.shape[1], 1, 1))
    saved = conv_mod.FAST_DTYPES  # float64 takes the fast (channels-last) path here
    conv_mod.FAST_DTYPES = frozenset({np.dtype(np.float64)})
    try:
        h = F.conv2d(cx, eye)
    finally:
        conv_mod.FAST_DTYPES = saved
    assert h.numpy().transpose(0, 2, 3, 1).flags.c_contiguous
    assert not h.numpy().flags.c_contiguous
    return h


@pytest.mark.parametrize(
    ("name", "hw", "k", "s", "p", "d", "ceil"), MAX_SPECIFIC, ids=[c[0] for c in MAX_SPECIFIC]
)
def test_max_pool_on_channels_last_input_matches_torch(name, hw, k, s, p, d, ceil):
    rng = np.random.default_rng(61)
    x = _input(rng, (2, WIDE, *hw), ties=True)
    cx, tx = _ck(x), _t(x)
    out = F.max_pool2d(_channels_last_copy(cx), k, s, p, d, ceil)
    tout = tF.max_pool2d(tx, k, s, p, d, ceil_mode=ceil)
    g = rng.standard_normal(tuple(tout.shape))
    out.backward(ck.tensor(g))
    tout.backward(torch.tensor(g))
    assert_close(out, tout, what=f"{name} forward")
    assert_close(cx.grad, tx.grad, what=f"{name} dx")


@pytest.mark.parametrize(
    ("name", "hw", "k", "s", "p", "ceil"), AVG_SPECIFIC, ids=[c[0] for c in AVG_SPECIFIC]
)
def test_avg_pool_on_channels_last_input_matches_torch(name, hw, k, s, p, ceil):
    rng = np.random.default_rng(62)
    x = rng.standard_normal((2, WIDE, *hw))
    cx, tx = _ck(x), _t(x)
    out = F.avg_pool2d(_channels_last_copy(cx), k, s, p, ceil, False)
    tout = tF.avg_pool2d(tx, k, s, p, ceil_mode=ceil, count_include_pad=False)
    g = rng.standard_normal(tuple(tout.shape))
    out.backward(ck.tensor(g))
    tout.backward(torch.tensor(g))
    assert_close(out, tout, what=f"{name} forward")
    assert_close(cx.grad, tx.grad, what=f"{name} dx")


def test_relu_between_channels_last_conv_and_flatten_matches_torch():
    # the gradient arrives C-ordered from Flatten while the activation is channels-last
    rng = np.random.default_rng(63)
    x = rng.standard_normal((3, WIDE, 5, 4))
    cx, tx = _ck(x), _t(x)
    y = F.relu(_channels_last_copy(cx)).reshape(3, -1)
    ty = tF.relu(tx).reshape(3, -1)
    g = rng.standard_normal(tuple(ty.shape))
    y.backward(ck.tensor(g))
    ty.backward(torch.tensor(g))
    assert_close(y, ty, what="forward")
    assert_close(cx.grad, tx.grad, what="dx")


def test_pools_accept_list_arguments_like_tuples():
    # lists are unhashable: the geometry is worked out without the cache
    x = np.random.default_rng(64).standard_normal((2, 3, 7, 8))
    for ck_fn, t_fn in ((F.max_pool2d, tF.max_pool2d), (F.avg_pool2d, tF.avg_pool2d)):
        got = ck_fn(_ck(x), [3, 2], [2, 1], [1, 0])
        assert_close(got, t_fn(_t(x), [3, 2], [2, 1], [1, 0]), what=ck_fn.__name__)
        assert_close(got, ck_fn(_ck(x), (3, 2), (2, 1), (1, 0)), what="same as tuples")


@pytest.mark.parametrize("name", ["max", "avg_tiling", "avg_overlapping", "avg_padded"])
def test_pools_split_over_two_workers_match_torch(name):
    """Inputs large enough that the images are split between two worker threads."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(63)
    x = rng.standard_normal((8, 16, 36, 34))
    cx, tx = _ck(x), _t(x)
    with threadpool_limits(2), _parallel.min_work_fixed(elements=0):  # split whatever the CPU
        if name == "max":
            out, tout = F.max_pool2d(cx, 2), tF.max_pool2d(tx, 2)
        elif name == "avg_tiling":
            out, tout = F.avg_pool2d(cx, 2), tF.avg_pool2d(tx, 2)
        elif name == "avg_overlapping":
            out, tout = F.avg_pool2d(cx, 3, 2), tF.avg_pool2d(tx, 3, 2)
        else:
            out = F.avg_pool2d(cx, 3, 2, 1, True, False)
            tout = tF.avg_pool2d(tx, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        g = rng.standard_normal(tuple(tout.shape))
        out.backward(ck.tensor(g))
    tout.backward(torch.tensor(g))
    assert_close(out, tout, what=f"{name} forward")
    assert_close(cx.grad, tx.grad, what=f"{name} dx")
