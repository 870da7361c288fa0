"""``F.conv2d`` and ``F.locally_connected2d`` against PyTorch and the plain-loop oracle."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_close
from tests.naive import conv as nc

torch = pytest.importorskip("torch")
tF = torch.nn.functional

import cnnkit as ck  # noqa: E402
import cnnkit.nn.functional as F  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def _ck(a):
    return ck.tensor(a, requires_grad=True)


def _t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def _random_conv_config(rng: np.random.Generator) -> dict:
    """One awkward conv2d configuration; every shape is valid for PyTorch."""
    kind = rng.choice(["plain", "grouped", "depthwise", "depthwise2", "pointwise"])
    if kind == "plain":
        groups, cg, ocg = 1, int(rng.integers(1, 4)), int(rng.integers(1, 5))
    elif kind == "grouped":
        groups, cg, ocg = int(rng.integers(2, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    else:
        groups, cg = int(rng.integers(2, 5)), 1
        ocg = 2 if kind == "depthwise2" else 1
    if kind == "pointwise":
        kh = kw = 1
    else:
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    dh, dw = (int(v) for v in rng.integers(1, 3, size=2))
    padding_kind = rng.choice(["int", "pair", "same", "valid"])
    if padding_kind == "same":
        stride = 1
    elif rng.random() < 0.5:
        stride = int(rng.integers(1, 4))
    else:
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    if padding_kind == "int":
        padding = int(rng.integers(0, 3))
        ph = pw = padding
    elif padding_kind == "pair":
        padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        ph, pw = padding
    else:
        padding = str(padding_kind)
        ph = pw = 0
    dilation = (dh, dw) if rng.random() < 0.6 else dh
    dh_, dw_ = nc.pair(dilation)
    eff_h, eff_w = dh_ * (kh - 1) + 1, dw_ * (kw - 1) + 1
    h = max(1, eff_h - 2 * ph + int(rng.integers(0, 5)))
    w = max(1, eff_w - 2 * pw + int(rng.integers(0, 5)))
    return {
        "n": int(rng.integers(1, 3)),
        "c": groups * cg,
        "oc": groups * ocg,
        "h": h,
        "w": w,
        "kh": kh,
        "kw": kw,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "bias": bool(rng.random() < 0.7),
    }


def _run_conv_both(cfg: dict, rng: np.random.Generator):
    """Forward and backward through cnnkit and torch; returns arrays and tensors of both."""
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    w = rng.standard_normal((cfg["oc"], cfg["c"] // cfg["groups"], cfg["kh"], cfg["kw"]))
    b = rng.standard_normal(cfg["oc"]) if cfg["bias"] else None
    kwargs = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}

    cx, cw = _ck(x), _ck(w)
    cb = _ck(b) if b is not None else None
    out = F.conv2d(cx, cw, cb, **kwargs)

    tx, tw = _t(x), _t(w)
    tb = _t(b) if b is not None else None
    tout = tF.conv2d(tx, tw, tb, **kwargs)

    assert tuple(out.shape) == tuple(tout.shape), f"{cfg}: shape {out.shape} vs {tout.shape}"
    g = rng.standard_normal(tuple(tout.shape))
    out.backward(ck.tensor(g))
    tout.backward(torch.tensor(g))
    return (x, w, b, g), (cx, cw, cb, out), (tx, tw, tb, tout)


@pytest.mark.parametrize("seed", range(6))
def test_conv2d_random_configs_match_torch(seed):
    rng = np.random.default_rng(1000 + seed)
    for _ in range(20):
        cfg = _random_conv_config(rng)
        _, (cx, cw, cb, out), (tx, tw, tb, tout) = _run_conv_both(cfg, rng)
        assert_close(out, tout, what=f"forward {cfg}")
        assert_close(cx.grad, tx.grad, what=f"dx {cfg}")
        assert_close(cw.grad, tw.grad, what=f"dw {cfg}")
        if cb is not None:
            assert_close(cb.grad, tb.grad, what=f"db {cfg}")


def _naive_padding(cfg: dict):
    if cfg["padding"] == "same":
        return nc.same_padding((cfg["kh"], cfg["kw"]), cfg["dilation"])
    if cfg["padding"] == "valid":
        return 0
    return cfg["padding"]


@pytest.mark.parametrize("seed", range(3))
def test_conv2d_small_random_configs_match_naive(seed):
    rng = np.random.default_rng(2000 + seed)
    for _ in range(4):
        cfg = _random_conv_config(rng)
        (x, w, b, g), (cx, cw, cb, out), _ = _run_conv_both(cfg, rng)
        pad = _naive_padding(cfg)
        args = (cfg["stride"], pad, cfg["dilation"], cfg["groups"])
        assert_close(out, nc.conv2d(x, w, b, *args), what=f"forward {cfg}")
        dx, dw, db = nc.conv2d_backward(x, w, g, b is not None, *args)
        assert_close(cx.grad, dx, what=f"dx {cfg}")
        assert_close(cw.grad, dw, what=f"dw {cfg}")
        if cb is not None:
            assert_close(cb.grad, db, what=f"db {cfg}")


SPECIFIC = [
    # name, (N, C, H, W), (OC, KH, KW), kwargs
    ("stride2_asym_pad", (2, 3, 9, 8), (4, 3, 3), {"stride": 2, "padding": (1, 0)}),
    ("asym_stride", (1, 2, 10, 7), (3, 2, 3), {"stride": (3, 1), "padding": (0, 2)}),
    ("same_even_kernel", (1, 2, 6, 7), (3, 4, 2), {"padding": "same"}),
    ("same_even_dilated", (2, 2, 7, 6), (2, 2, 4), {"padding": "same", "dilation": (3, 2)}),
    ("valid", (1, 3, 5, 6), (2, 3, 2), {"padding": "valid"}),
    ("dilation", (1, 2, 11, 9), (2, 3, 3), {"dilation": (2, 3), "padding": 1}),
    ("depthwise", (2, 4, 7, 7), (4, 3, 3), {"groups": 4, "padding": 1}),
    ("depthwise_x2", (1, 3, 6, 8), (6, 3, 2), {"groups": 3, "stride": (1, 2)}),
    ("groups2", (1, 4, 6, 5), (6, 2, 3), {"groups": 2, "padding": (1, 1)}),
    ("pointwise", (2, 5, 4, 3), (3, 1, 1), {}),
    ("pointwise_stride", (1, 3, 7, 5), (2, 1, 1), {"stride": 2, "padding": 1}),
    ("kernel_equals_input", (2, 2, 4, 3), (3, 4, 3), {}),
    ("kernel_fits_only_padded", (1, 1, 2, 2), (2, 4, 3), {"padding": 1}),
    ("big_stride", (1, 2, 9, 9), (2, 2, 2), {"stride": 5}),
    ("one_by_n", (1, 2, 1, 9), (2, 1, 4), {"stride": (1, 2)}),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    ("name", "xshape", "wshape", "kwargs"), SPECIFIC, ids=[s[0] for s in SPECIFIC]
)
def test_conv2d_specific_configs(name, xshape, wshape, kwargs, bias):
    n, c, h, w = xshape
    oc, kh, kw = wshape
    cfg = {
        "n": n,
        "c": c,
        "h": h,
        "w": w,
        "oc": oc,
        "kh": kh,
        "kw": kw,
        "stride": kwargs.get("stride", 1),
        "padding": kwargs.get("padding", 0),
        "dilation": kwargs.get("dilation", 1),
        "groups": kwargs.get("groups", 1),
        "bias": bias,
    }
    rng = np.random.default_rng(7)
    (x, wt, b, g), (cx, cw, cb, out), (tx, tw, tb, tout) = _run_conv_both(cfg, rng)
    assert_close(out, tout, what=f"{name} forward")
    assert_close(cx.grad, tx.grad, what=f"{name} dx")
    assert_close(cw.grad, tw.grad, what=f"{name} dw")
    if bias:
        assert_close(cb.grad, tb.grad, what=f"{name} db")
    # and the plain-loop oracle
    args = (cfg["stride"], _naive_padding(cfg), cfg["dilation"], cfg["groups"])
    assert_close(out, nc.conv2d(x, wt, b, *args), what=f"{name} naive forward")
    dx, dw, _ = nc.conv2d_backward(x, wt, g, bias, *args)
    assert_close(cx.grad, dx, what=f"{name} naive dx")
    assert_close(cw.grad, dw, what=f"{name} naive dw")


def test_conv2d_without_grad_inputs_forward_only():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    out = F.conv2d(ck.tensor(x), ck.tensor(w), padding=1)
    assert_close(out, tF.conv2d(torch.tensor(x), torch.tensor(w), padding=1))


def test_conv2d_only_weight_requires_grad():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 2, 5, 4))
    w = rng.standard_normal((3, 2, 2, 3))
    g = rng.standard_normal((2, 3, 4, 2))
    cw = _ck(w)
    F.conv2d(ck.tensor(x), cw).backward(ck.tensor(g))
    tw = _t(w)
    tF.conv2d(torch.tensor(x), tw).backward(torch.tensor(g))
    assert_close(cw.grad, tw.grad)


def test_lecture_shape_example():
    """32x32x3 input, 6 filters 5x5 -> 28x28x6, then 10 filters 5x5 -> 24x24x10."""
    rng = np.random.default_rng(10)
    x = ck.tensor(rng.standard_normal((1, 3, 32, 32)))
    h1 = F.conv2d(x, ck.tensor(rng.standard_normal((6, 3, 5, 5))))
    assert tuple(h1.shape) == (1, 6, 28, 28)
    h2 = F.conv2d(h1, ck.tensor(rng.standard_normal((10, 6, 5, 5))))
    assert tuple(h2.shape) == (1, 10, 24, 24)


def test_conv2d_keeps_float64():
    rng = np.random.default_rng(11)
    out = F.conv2d(ck.tensor(rng.standard_normal((1, 1, 4, 4))), ck.tensor(np.ones((1, 1, 2, 2))))
    assert out.numpy().dtype == np.float64


# ---------------------------------------------------------------- errors


def _xw(xshape, wshape):
    return ck.tensor(np.zeros(xshape)), ck.tensor(np.zeros(wshape))


def test_conv2d_error_stride_zero():
    x, w = _xw((1, 1, 5, 5), (1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"(?i)stride"):
        F.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match=r"(?i)stride"):
        F.conv2d(x, w, stride=(1, 0))


def test_conv2d_error_groups_not_dividing_channels():
    # torch reports this as a channel mismatch: weight (3, 1, ...) with groups=3 wants 3
    x, w = _xw((1, 4, 5, 5), (3, 1, 3, 3))
    with pytest.raises(ValueError, match=r"(?i)expected") as info:
        F.conv2d(x, w, groups=3)
    assert "3" in str(info.value) and "4" in str(info.value)


def test_conv2d_error_groups_not_dividing_out_channels():
    x, w = _xw((1, 6, 5, 5), (4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"(?i)group") as info:
        F.conv2d(x, w, groups=3)
    assert "3" in str(info.value) and "4" in str(info.value)


def test_conv2d_error_kernel_larger_than_input():
    x, w = _xw((1, 1, 3, 3), (1, 1, 5, 5))
    with pytest.raises(ValueError, match=r"(?i)kernel") as info:
        F.conv2d(x, w)
    assert "5" in str(info.value) and "3" in str(info.value)


def test_conv2d_kernel_fits_after_padding_is_fine():
    x, w = _xw((1, 1, 3, 3), (1, 1, 5, 5))
    assert tuple(F.conv2d(x, w, padding=1).shape) == (1, 1, 1, 1)


def test_conv2d_error_wrong_channels():
    x, w = _xw((8, 1, 28, 28), (6, 3, 5, 5))
    with pytest.raises(ValueError, match=r"(?i)expected") as info:
        F.conv2d(x, w)
    msg = str(info.value)
    assert "3" in msg and "(8, 1, 28, 28)" in msg


@pytest.mark.parametrize("xshape", [(28, 28), (1, 1, 1, 28, 28)])
def test_conv2d_error_wrong_rank(xshape):
    x, w = _xw(xshape, (6, 1, 5, 5))
    with pytest.raises(ValueError, match=r"(?i)expected") as info:
        F.conv2d(x, w)
    assert str(xshape) in str(info.value)


def test_conv2d_unbatched_input_like_torch():
    rng = np.random.default_rng(13)
    x, w, b = rng.standard_normal((2, 6, 5)), rng.standard_normal((3, 2, 3, 2)), np.ones(3)
    g = rng.standard_normal((3, 4, 2))
    cx, cw = _ck(x), _ck(w)
    out = F.conv2d(cx, cw, ck.tensor(b), stride=(1, 2))
    tx, tw = _t(x), _t(w)
    tout = tF.conv2d(tx, tw, torch.tensor(b), stride=(1, 2))
    assert_close(out, tout)
    out.backward(ck.tensor(g))
    tout.backward(torch.tensor(g))
    assert_close(cx.grad, tx.grad)
    assert_close(cw.grad, tw.grad)


def test_conv2d_error_same_with_stride():
    x, w = _xw((1, 1, 6, 6), (1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"(?i)same"):
        F.conv2d(x, w, stride=2, padding="same")


# ---------------------------------------------------------------- locally connected


def _torch_locally_connected(x, w, b, stride, padding):
    """No such op in torch: unfold the patches, then one einsum with per-location filters."""
    oh, ow, oc, c, kh, kw = w.shape
    cols = tF.unfold(x, (kh, kw), padding=padding, stride=stride)
    cols = cols.reshape(x.shape[0], c * kh * kw, oh, ow)
    out = torch.einsum("nkij,ijok->noij", cols, w.reshape(oh, ow, oc, c * kh * kw))
    return out if b is None else out + b


def _random_lc_config(rng):
    kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
    stride = (
        int(rng.integers(1, 3))
        if rng.random() < 0.5
        else tuple(int(v) for v in rng.integers(1, 3, size=2))
    )
    padding = (
        int(rng.integers(0, 2))
        if rng.random() < 0.5
        else tuple(int(v) for v in rng.integers(0, 2, size=2))
    )
    ph, pw = nc.pair(padding)
    sh, sw = nc.pair(stride)
    h = max(1, kh - 2 * ph + int(rng.integers(0, 4)))
    w = max(1, kw - 2 * pw + int(rng.integers(0, 4)))
    return {
        "n": int(rng.integers(1, 3)),
        "c": int(rng.integers(1, 3)),
        "oc": int(rng.integers(1, 4)),
        "h": h,
        "w": w,
        "kh": kh,
        "kw": kw,
        "oh": (h + 2 * ph - kh) // sh + 1,
        "ow": (w + 2 * pw - kw) // sw + 1,
        "stride": stride,
        "padding": padding,
        "bias": bool(rng.random() < 0.7),
    }


@pytest.mark.parametrize("seed", range(4))
def test_locally_connected_random_configs(seed):
    rng = np.random.default_rng(3000 + seed)
    for trial in range(8):
        cfg = _random_lc_config(rng)
        x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
        w = rng.standard_normal((cfg["oh"], cfg["ow"], cfg["oc"], cfg["c"], cfg["kh"], cfg["kw"]))
        b = rng.standard_normal((cfg["oc"], cfg["oh"], cfg["ow"])) if cfg["bias"] else None
        s, p = cfg["stride"], cfg["padding"]

        cx, cw = _ck(x), _ck(w)
        cb = _ck(b) if b is not None else None
        out = F.locally_connected2d(cx, cw, cb, stride=s, padding=p)
        tx, tw = _t(x), _t(w)
        tb = _t(b) if b is not None else None
        tout = _torch_locally_connected(tx, tw, tb, s, p)
        assert_close(out, tout, what=f"forward {cfg}")

        g = rng.standard_normal(tuple(tout.shape))
        out.backward(ck.tensor(g))
        tout.backward(torch.tensor(g))
        assert_close(cx.grad, tx.grad, what=f"dx {cfg}")
        assert_close(cw.grad, tw.grad, what=f"dw {cfg}")
        if b is not None:
            assert_close(cb.grad, tb.grad, what=f"db {cfg}")

        if trial < 3:  # the plain-loop oracle on the first few
            assert_close(out, nc.locally_connected2d(x, w, b, s, p), what=f"naive {cfg}")
            dx, dw, db = nc.locally_connected2d_backward(x, w, g, b is not None, s, p)
            assert_close(cx.grad, dx, what=f"naive dx {cfg}")
            assert_close(cw.grad, dw, what=f"naive dw {cfg}")
            if b is not None:
                assert_close(cb.grad, db, what=f"naive db {cfg}")


def test_locally_connected_equals_conv_when_filters_are_shared():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 6, 5))
    k = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    oh, ow = (6 + 2 - 3) // 2 + 1, (5 + 2 - 2) // 2 + 1
    w = np.broadcast_to(k, (oh, ow, *k.shape)).copy()
    bl = np.broadcast_to(b[:, None, None], (4, oh, ow)).copy()
    out = F.locally_connected2d(ck.tensor(x), ck.tensor(w), ck.tensor(bl), stride=2, padding=1)
    ref = F.conv2d(ck.tensor(x), ck.tensor(k), ck.tensor(b), stride=2, padding=1)
    assert_close(out, ref.numpy())


def test_locally_connected_error_wrong_channels():
    x = ck.tensor(np.zeros((1, 2, 4, 4)))
    w = ck.tensor(np.zeros((2, 2, 1, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"(?i)expected") as info:
        F.locally_connected2d(x, w)
    assert "3" in str(info.value) and "(1, 2, 4, 4)" in str(info.value)


def test_locally_connected_error_stride_zero():
    x = ck.tensor(np.zeros((1, 1, 4, 4)))
    w = ck.tensor(np.zeros((2, 2, 1, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"(?i)stride"):
        F.locally_connected2d(x, w, stride=0)
