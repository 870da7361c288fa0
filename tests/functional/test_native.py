"""The compiled channels-last convolution kernel (``cnnkit/functional/_native_conv.c``).

It is compared with the naive loop of ``tests/naive`` when called directly, on output
channel counts around its 16/32/64-channel tiles and row widths around its 8/16/32
position tiles. Through ``conv2d`` it is compared with PyTorch and with cnnkit's NumPy
path, forward and backward (the stride-1 input gradient is a convolution too).
"""

import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import cnnkit as ck
import cnnkit.nn.functional as F
from cnnkit.functional import _native as native
from cnnkit.functional import _parallel
from cnnkit.functional._fast.conv import _gemm_weight
from tests.conftest import assert_close, torch
from tests.functional.test_pool import MAX_SPECIFIC
from tests.naive import conv as naive

tF = torch.nn.functional


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return {w for line in f if line.startswith("flags") for w in line.split()}
    except OSError:
        return set()


needs_kernel = pytest.mark.skipif(
    not native.available(), reason="compiled kernels not built, or a CPU without AVX2/FMA"
)


@pytest.fixture(autouse=True, params=native.supported() or ["none"])
def kernel_set(request):
    """Every test once per kernel set this CPU runs (AVX-512 and AVX2 here)."""
    if request.param == "none":
        yield None
        return
    before = native.isa()
    native.select(request.param)
    yield request.param
    native.select(before)


def test_kernel_is_built_and_used_where_it_can_be():
    """With a C compiler at install time, the extension exists, and the widest kernel set
    the CPU runs is in use (a silently failed build would otherwise go unnoticed)."""
    if os.environ.get("CNNKIT_NATIVE") == "0":
        pytest.skip("CNNKIT_NATIVE=0 turns the kernel off")
    if platform.machine() not in ("x86_64", "AMD64") or not (
        shutil.which("cc") or shutil.which("gcc")
    ):
        pytest.skip("no C compiler for x86-64 here: the NumPy path is the one in use")
    import cnnkit.functional._native_conv  # noqa: F401  (built by pip install)

    flags = _cpu_flags()
    want = [
        k for k, f in (("avx2", "avx2"), ("avx512", "avx512f")) if f in flags and "fma" in flags
    ]
    assert native.supported() == want


def _direct(x, w, b, stride, pads, dilation, groups):
    """Run the kernel on NCHW ``x``/OIHW ``w`` and return NCHW float32 output."""
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    xp = np.ascontiguousarray(xp.transpose(0, 2, 3, 1))
    kh, kw = w.shape[2:]
    oh = (xp.shape[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (xp.shape[2] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.full((x.shape[0], oh, ow, w.shape[0]), np.nan, dtype=np.float32)
    native.conv_nhwc(xp, _gemm_weight(w, groups), b, out, (kh, kw), stride, dilation)
    return out.transpose(0, 3, 1, 2)


DIRECT = [
    # n, c, h, w, oc, kernel, stride, pads (t, b, l, r), dilation, groups, bias
    (2, 3, 5, 7, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True),  # rows shorter than a tile
    (1, 4, 6, 40, 17, (3, 3), (1, 1), (0, 0, 1, 1), (1, 1), 1, False),  # 16+1 channels
    (2, 5, 4, 33, 33, (2, 5), (2, 1), (1, 0, 2, 1), (1, 1), 1, True),  # 32+1, ragged tile
    (1, 2, 9, 20, 64, (3, 3), (1, 2), (2, 2, 0, 3), (2, 1), 1, True),  # dilation, stride
    (2, 6, 5, 18, 70, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),  # 64+6, 1x1
    (1, 8, 7, 9, 24, (3, 2), (3, 2), (1, 1, 1, 1), (1, 2), 2, True),  # groups
    (2, 6, 6, 12, 48, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 3, False),  # 16 per group
    (1, 1, 3, 70, 16, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),  # long rows: 68 wide
    (1, 4, 4, 3, 64, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True),  # rows of 3: 2+overlap
    (2, 4, 6, 1, 40, (3, 1), (1, 1), (1, 1, 0, 0), (1, 1), 1, True),  # rows of 1
    (1, 8, 6, 13, 32, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, False),  # rows of 13: 8+overlap
]


@needs_kernel
@pytest.mark.parametrize("case", DIRECT)
def test_kernel_equals_naive_loop(case, rng):
    n, c, h, w, oc, kernel, stride, pads, dilation, groups, has_bias = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((oc, c // groups, *kernel)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32) if has_bias else None
    got = _direct(x, wt, b, stride, pads, dilation, groups)
    want = naive.conv2d(
        x.astype(np.float64), wt.astype(np.float64), b, stride, pads, dilation, groups
    )
    assert not np.isnan(got).any(), "an output was left unwritten"
    assert_close(got, want, rtol=1e-5, atol=1e-5, what=str(case))


@needs_kernel
@pytest.mark.parametrize("case", DIRECT)
def test_weight_grad_kernel_equals_naive_loop(case, rng):
    """Channel counts around the 8/16/32-channel tiles (with the one-channel tail), row
    widths below and above the 64-position blocks, groups, strides, dilation."""
    n, c, h, w, oc, kernel, stride, pads, dilation, groups, _ = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((oc, c // groups, *kernel)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    xp = np.ascontiguousarray(xp.transpose(0, 2, 3, 1))
    oh = (xp.shape[1] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (xp.shape[2] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    grad = rng.standard_normal((n, oc, oh, ow)).astype(np.float32)
    start = rng.standard_normal((groups, kernel[0] * kernel[1] * (c // groups), oc // groups))
    dwk = start.astype(np.float32)  # the kernel adds to what is there
    g4 = np.ascontiguousarray(grad.transpose(0, 2, 3, 1))
    native.conv_weight_grad_nhwc(xp, g4, dwk, kernel, stride, dilation)
    _, dw, _ = naive.conv2d_backward(
        x.astype(np.float64), wt.astype(np.float64), grad.astype(np.float64), False,
        stride, pads, dilation, groups,
    )  # fmt: skip
    want = start + _gemm_weight(dw, groups)
    assert_close(dwk, want, rtol=1e-4, atol=1e-4, what=str(case))


NCHW = [
    # n, c, h, w, oc, kernel, pads (t, b, l, r), dilation, groups: stride 1, channel-first
    (2, 1, 28, 28, 6, (5, 5), (2, 2, 2, 2), (1, 1), 1),  # LeNet's first layer
    (3, 6, 14, 14, 16, (5, 5), (0, 0, 0, 0), (1, 1), 1),  # and its second
    (1, 3, 4, 17, 7, (3, 3), (0, 0, 1, 1), (1, 1), 1),  # 4+2+1 channels, 17 = 16+1 columns
    (2, 2, 9, 33, 9, (2, 3), (1, 0, 0, 2), (2, 1), 1),  # 8+1 channels, 33 columns, dilation
    (1, 4, 3, 15, 3, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # rows fewer than a tile
    (2, 4, 8, 16, 10, (3, 2), (1, 1, 1, 1), (1, 2), 2),  # groups of 5 output channels
    (1, 6, 7, 5, 12, (3, 3), (1, 1, 1, 1), (1, 1), 3),  # columns fewer than a vector
]


@needs_kernel
@pytest.mark.parametrize("case", NCHW)
def test_channel_first_kernel_equals_naive_loop(case, rng):
    n, c, h, w, oc, kernel, pads, dilation, groups = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((oc, c // groups, *kernel)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    xp = np.ascontiguousarray(np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3]))))
    oh = xp.shape[2] - dilation[0] * (kernel[0] - 1)
    ow = xp.shape[3] - dilation[1] * (kernel[1] - 1)
    for bias in (b, None):
        out = np.full((n, oc, oh, ow), np.nan, dtype=np.float32)
        native.conv_nchw(xp, native.nchw_weight(wt, groups), bias, out, kernel, dilation)
        want = naive.conv2d(
            x.astype(np.float64), wt.astype(np.float64), bias, 1, pads, dilation, groups
        )
        assert not np.isnan(out).any(), "an output was left unwritten"
        assert_close(out, want, rtol=1e-5, atol=1e-5, what=f"{case} bias={bias is not None}")


@needs_kernel
@pytest.mark.parametrize("case", NCHW)
def test_channel_first_weight_grad_kernel_equals_naive_loop(case, rng):
    """Output channels in blocks of 4, 2, 1; taps in blocks of 6 and one by one; rows
    with a masked last vector; groups."""
    n, c, h, w, oc, kernel, pads, dilation, groups = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((oc, c // groups, *kernel)).astype(np.float32)
    xp = np.ascontiguousarray(np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3]))))
    oh = xp.shape[2] - dilation[0] * (kernel[0] - 1)
    ow = xp.shape[3] - dilation[1] * (kernel[1] - 1)
    grad = rng.standard_normal((n, oc, oh, ow)).astype(np.float32)
    start = rng.standard_normal(wt.shape).astype(np.float32)
    dw = start.copy()  # the kernel adds to what is there
    native.conv_weight_grad_nchw(xp, grad, dw, kernel, dilation, groups)
    _, want, _ = naive.conv2d_backward(
        x.astype(np.float64), wt.astype(np.float64), grad.astype(np.float64), False, 1,
        pads, dilation, groups,
    )  # fmt: skip
    assert_close(dw, start + want, rtol=1e-4, atol=1e-4, what=str(case))


@needs_kernel
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("c, h, w", [(32, 16, 16), (3, 5, 37), (20, 7, 17), (17, 3, 1)])
def test_kernel_pads_its_input_image_by_image(layout, c, h, w, rng):
    """The padded copy made inside the call (16x16 transposes for channel-first input,
    rows for channels-last, element by element otherwise) equals NumPy's padding, and so
    does the output; widths and channel counts around 16."""
    base = rng.standard_normal((3, c, h, w + 2)).astype(np.float32)
    x = {
        "nchw": np.ascontiguousarray(base[..., :w]),
        "channels_last": np.ascontiguousarray(base[..., :w].transpose(0, 2, 3, 1)).transpose(
            0, 3, 1, 2
        ),
        "strided": base[:, ::-1, :, 2:][..., ::-1],  # negative and skipping strides
    }[layout]
    pads = (1, 2, 0, 3)
    wt = rng.standard_normal((40, c, 3, 2)).astype(np.float32)
    xp_want = np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:])).transpose(0, 2, 3, 1)
    oh, ow = xp_want.shape[1] - 2, xp_want.shape[2] - 1
    out_want = np.empty((3, oh, ow, 40), np.float32)
    wk = _gemm_weight(wt, 1)
    native.conv_nhwc(np.ascontiguousarray(xp_want), wk, None, out_want, (3, 2), (1, 1), (1, 1))
    xp = np.full(xp_want.shape, np.nan, np.float32)  # every element must be written
    out = np.empty_like(out_want)
    native.conv_nhwc(xp, wk, None, out, (3, 2), (1, 1), (1, 1), x, pads)
    np.testing.assert_array_equal(xp, xp_want)
    np.testing.assert_array_equal(out, out_want)


@needs_kernel
def test_kernel_checks_shapes_before_touching_memory(rng):
    x = np.zeros((1, 5, 5, 4), np.float32)
    w = np.zeros((1, 9 * 4, 8), np.float32)
    out = np.zeros((1, 3, 3, 8), np.float32)
    native.conv_nhwc(x, w, None, out, (3, 3), (1, 1), (1, 1))  # consistent: fine
    with pytest.raises(ValueError, match="inconsistent shapes"):  # reads past the input
        native.conv_nhwc(x, w, None, np.zeros((1, 4, 3, 8), np.float32), (3, 3), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="inconsistent shapes"):  # weights for 3x2
        native.conv_nhwc(x, w, None, out, (3, 2), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="inconsistent shapes"):  # bias of the wrong size
        native.conv_nhwc(x, w, np.zeros(7, np.float32), out, (3, 3), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="float32"):
        native.conv_nhwc(x.astype(np.float64), w, None, out, (3, 3), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="C-contiguous"):
        xt = np.zeros((1, 5, 4, 5), np.float32).transpose(0, 1, 3, 2)
        native.conv_nhwc(xt, w, None, out, (3, 3), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="inconsistent shapes"):  # channel-first, too wide
        xn, wn = np.zeros((1, 4, 5, 5), np.float32), np.zeros((1, 4, 3, 3, 8), np.float32)
        native.conv_nchw(xn, wn, None, np.zeros((1, 8, 3, 4), np.float32), (3, 3), (1, 1))
    with pytest.raises(ValueError, match="inconsistent shapes"):  # channel-first gradient
        xn, dwn = np.zeros((1, 4, 5, 5), np.float32), np.zeros((8, 4, 3, 3), np.float32)
        gn = np.zeros((1, 8, 4, 3), np.float32)
        native.conv_weight_grad_nchw(xn, gn, dwn, (3, 3), (1, 1), 1)
    with pytest.raises(ValueError, match="does not fill"):  # source too small for xp
        native.conv_nhwc(
            x.copy(), w, None, out, (3, 3), (1, 1), (1, 1), np.zeros((1, 4, 2, 3), np.float32),
            (1, 1, 1, 1),
        )  # fmt: skip
    with pytest.raises(ValueError, match="inconsistent shapes"):  # gradient too large
        g = np.zeros((1, 4, 4, 8), np.float32)
        native.conv_weight_grad_nhwc(x, g, w.copy(), (3, 3), (1, 1), (1, 1))


THROUGH_CONV2D = [
    # n, c, hw, oc, kernel, stride, padding, dilation, groups
    # narrow layers, stride 1: the channel-first kernel, also for the input gradient
    (3, 1, 12, 6, 5, 1, 2, 1, 1),
    (2, 6, 9, 16, 5, 1, 0, 1, 1),
    (2, 4, 10, 6, (3, 2), 1, "same", 2, 2),
    # wide layers (OC/groups >= 24): the channels-last kernels; the input gradient by
    # col2im (3 channels), as a masked 8-channel convolution, as a 16-channel one
    (2, 3, 8, 32, 3, 1, 1, 1, 1),
    (2, 8, 9, 32, 3, 1, 1, 1, 1),
    (3, 16, 11, 32, 3, 1, 1, 1, 1),
    (2, 32, 9, 40, (2, 3), (2, 1), (1, 0), 1, 1),
    (2, 24, 10, 48, 3, 1, "same", 2, 2),
    (4, 3, 13, 24, 5, 2, 2, 1, 1),
    (1, 64, 5, 64, 3, 1, 1, 1, 1),
]


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", THROUGH_CONV2D)
def test_conv2d_with_kernel_equals_torch_and_numpy_path(case, threads, rng, monkeypatch):
    n, c, hw, oc, k, stride, padding, dilation, groups = case
    xn = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    wn = (rng.standard_normal((oc, c // groups, *np.broadcast_to(k, 2))) * 0.2).astype(np.float32)
    bn = rng.standard_normal(oc).astype(np.float32)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def run():
        x, w, b = (ck.tensor(a, requires_grad=True) for a in (xn, wn, bn))
        with threadpool_limits(threads), _parallel.min_work_fixed(macs=0):  # split when 2
            y = F.conv2d(x, w, b, **kw)
            g = ck.tensor(np.random.default_rng(1).standard_normal(y.shape).astype(np.float32))
            y.backward(g)
        return y.numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()

    fast = run()
    monkeypatch.setattr(native, "_conv", None)
    slow = run()
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (xn, wn, bn))
    yt = torch.nn.functional.conv2d(xt, wt, bt, **kw)
    yt.backward(torch.tensor(np.random.default_rng(1).standard_normal(yt.shape)).float())
    for name, a, s, t in zip(
        ("out", "dx", "dw", "db"), fast, slow, (yt, xt.grad, wt.grad, bt.grad), strict=True
    ):
        assert_close(a, t, rtol=2e-4, atol=2e-4, what=f"{name} vs torch {case}")
        assert_close(a, s, rtol=2e-4, atol=2e-4, what=f"{name} vs NumPy path {case}")


@pytest.mark.parametrize("value, want", [("", "best"), ("0", "None"), ("avx2", "avx2")])
def test_chosen_by_environment(value, want, kernel_set):
    """By default the widest kernel set the CPU runs; CNNKIT_NATIVE=0 turns them off."""
    if want == "best":
        want = str((native.supported() or [None])[-1])
    if want != "None" and want not in native.supported():
        pytest.skip(f"this CPU does not run {want}")
    if kernel_set not in (None, native.supported()[-1]):
        pytest.skip("once is enough")
    code = "from cnnkit.functional import _native; print(_native.isa())"
    env = {**os.environ, "CNNKIT_NATIVE": value}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == want


@needs_kernel
@pytest.mark.parametrize("channels", [40, 7])  # 2.5 vectors; less than one
@pytest.mark.parametrize("nan", [False, True])
@pytest.mark.parametrize("case", MAX_SPECIFIC, ids=[c[0] for c in MAX_SPECIFIC])
def test_max_pool_backward_kernel_equals_torch_and_numpy_path(case, nan, channels, monkeypatch):
    """Channels-last float32 max pool: the compiled backward routes each window's gradient
    like the NumPy path (ties to the first maximum, as in torch; a NaN window to its
    first NaN) for overlapping windows, padding, dilation and ceil mode."""
    _, hw, k, s, p, d, ceil = case
    rng = np.random.default_rng(64)
    x = rng.integers(0, 3, (2, channels, *hw)).astype(np.float32)  # many ties
    if nan:
        x[0, 1, 0, :2] = np.nan
        x[1, 3, -1, -1] = np.nan
    g = rng.standard_normal(
        tuple(tF.max_pool2d(torch.tensor(x), k, s, p, d, ceil_mode=ceil).shape)
    ).astype(np.float32)

    def run():
        cx = ck.tensor(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), requires_grad=True)
        view = cx.permute(0, 3, 1, 2)  # (N, C, H, W) over channels-last memory
        out = F.max_pool2d(view, k, s, p, d, ceil)
        out.backward(ck.tensor(g))
        return out.numpy(), cx.grad.numpy().transpose(0, 3, 1, 2)

    fast = run()
    monkeypatch.setattr(native, "_conv", None)
    slow = run()
    np.testing.assert_array_equal(fast[0], slow[0])
    # overlapping windows add their gradients in another order: float32 rounding only
    assert_close(fast[1], slow[1], rtol=1e-6, atol=1e-6, what=f"{case[0]} vs NumPy path")
    if not nan:  # torch sends a NaN window's gradient to its last NaN (a known deviation)
        tx = torch.tensor(x, requires_grad=True)
        tF.max_pool2d(tx, k, s, p, d, ceil_mode=ceil).backward(torch.tensor(g))
        assert_close(fast[1], tx.grad, rtol=1e-6, atol=1e-6, what=case[0])
