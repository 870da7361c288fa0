"""The compiled kernels' register tiles and cache blocks on awkward shapes, per kernel set.

The channels-last forward takes its register tile from the vector register count and
its channel blocks and row bands from the L1/L2 sizes (``_native.cache_sizes``). Every
case runs on each kernel set the CPU has, once with the machine's caches and once with
tiny ones (one input channel per block, one output row per band), through the fast
paths' forward and backward, against the reference maths (``conv2d_reference``) and
PyTorch; and the float32 error against float64 is held to at most 2x PyTorch's.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.functional import _native as native
from cnnkit.functional import conv as conv_mod
from cnnkit.functional._fast import conv as fast
from tests.conftest import assert_close, torch

pytestmark = pytest.mark.skipif(
    not native.available(), reason="compiled kernels not built, or a CPU without AVX2/FMA"
)

tF = torch.nn.functional

CASES = [
    # n, c, hw, oc, kernel, stride, padding, dilation, groups
    (1, 37, (7, 11), 80, 3, 1, 1, 1, 1),  # batch 1, odd sizes, 5 vectors of 16 (2 panels)
    (2, 19, (9, 6), 33, 3, 2, 2, 1, 1),  # stride 2, padding 2, 32+1 channels
    (2, 40, (5, 23), 50, 1, 1, 0, 1, 1),  # 1x1, rows of 23 (uneven row blocks)
    (1, 24, (8, 15), 72, (3, 2), 1, (1, 0), (2, 1), 2),  # dilation, groups of 36 outputs
    (2, 30, (6, 31), 100, 3, 1, 1, 1, 1),  # 7 vectors of 16, 13 of 8; rows of 31
    (1, 64, (4, 4), 24, 3, 2, 1, 1, 1),  # tiny image, stride 2
]


@pytest.fixture(params=native.supported())
def kernel_set(request):
    before = native.isa()
    native.select(request.param)
    yield request.param
    native.select(before)


@pytest.fixture(params=["machine", "tiny"])
def caches(request, monkeypatch):
    """The machine's cache sizes, or tiny ones that force one input channel per block
    and one output row per band (every block boundary exercised)."""
    if request.param == "tiny":
        monkeypatch.setitem(native._CACHES, "L1", 64)
        monkeypatch.setitem(native._CACHES, "L2", 64)
    return request.param


def _geometry(x_shape, w_shape, s, p, d, g):
    st, dl = (s, s) if isinstance(s, int) else s, (d, d) if isinstance(d, int) else d
    pads = conv_mod.resolve_padding(p, w_shape[2:], st, dl, "test")
    out_hw = conv_mod.spatial_output(x_shape, w_shape[2:], st, dl, pads, "test")
    return conv_mod.ConvGeometry(x_shape, w_shape, st, pads, dl, g, out_hw)


@pytest.mark.parametrize("case", CASES, ids=[str(c[:4]) for c in CASES])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw-in", "nhwc-in"])
def test_kernel_tiles_equal_reference_and_torch(case, channels_last, kernel_set, caches):
    n, c, hw, oc, k, s, p, d, g = case
    rng = np.random.default_rng(CASES.index(case))
    kk = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((n, c, *hw)).astype(np.float32)
    if channels_last:  # as a wide layer's output arrives: NCHW view of NHWC memory
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = (rng.standard_normal((oc, c // g, *kk)) / np.sqrt(c * kk[0] * kk[1] / g)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    geom = _geometry(x.shape, w.shape, s, p, d, g)
    ref_out, xp = conv_mod.conv2d_reference(x, w, b, geom)
    out, fxp = fast.forward(x, w, b, geom, wide=True)
    gout = rng.standard_normal(ref_out.shape).astype(np.float32)
    ref = conv_mod.conv2d_reference_backward(gout, xp, w, geom, (True, True, True))
    got = fast.backward(gout, fxp, w, geom, (True, True, True))
    tx, tw, tb = (torch.tensor(np.ascontiguousarray(a), requires_grad=True) for a in (x, w, b))
    tout = tF.conv2d(tx, tw, tb, s, p, d, g)
    tout.backward(torch.tensor(gout))
    tol = {"rtol": 1e-4, "atol": 1e-4}
    assert_close(out, ref_out, what=f"forward vs reference {case}", **tol)
    assert_close(out, tout, what=f"forward vs torch {case}", **tol)
    for name, r, f_, t in zip("x w b".split(), ref, got, (tx, tw, tb), strict=True):
        assert_close(f_, r, what=f"d{name} vs reference {case}", **tol)
        assert_close(f_, t.grad, what=f"d{name} vs torch {case}", **tol)


@pytest.mark.parametrize(("c", "oc", "hw"), [(96, 80, 6), (512, 64, 4)])
def test_float32_error_at_most_twice_torchs_per_kernel_set(c, oc, hw, kernel_set):
    """Forward and both gradients: float32 error against float64 (relative to the
    largest magnitude) at most 2x PyTorch's float32 error on the same inputs."""
    rng = np.random.default_rng(c + oc)
    x = rng.standard_normal((2, c, hw, hw))
    w = rng.standard_normal((oc, c, 3, 3)) / np.sqrt(9 * c)
    gout = rng.standard_normal((2, oc, hw, hw))
    geom = _geometry(x.shape, w.shape, 1, 1, 1, 1)
    exact_out, xp64 = conv_mod.conv2d_reference(x, w, None, geom)
    exact = [exact_out, *conv_mod.conv2d_reference_backward(gout, xp64, w, geom, (1, 1, 0))[:2]]
    x32, w32, g32 = (a.astype(np.float32) for a in (x, w, gout))
    out, xp = fast.forward(x32, w32, None, geom, wide=True)
    ours = [out, *fast.backward(g32, xp, w32, geom, (True, True, False))[:2]]
    tx, tw = (torch.tensor(a, requires_grad=True) for a in (x32, w32))
    tout = tF.conv2d(tx, tw, padding=1)
    tout.backward(torch.tensor(g32))
    theirs = [tout.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()]
    for name, e, o, t in zip(("out", "dx", "dw"), exact, ours, theirs, strict=True):
        scale = np.abs(e).max()
        err_ours = np.abs(np.asarray(o, np.float64) - e).max() / scale
        err_torch = np.abs(np.asarray(t, np.float64) - e).max() / scale
        assert err_ours <= 2 * err_torch + 1e-7, f"{name}: {err_ours:.2e} vs torch {err_torch:.2e}"


@pytest.mark.parametrize(
    ("oc", "cg", "groups", "k"), [(80, 5, 1, 3), (36, 3, 3, (2, 3)), (7, 4, 1, 1)]
)
def test_packing_from_pytorch_layout_equals_packing_from_gemm_layout(oc, cg, groups, k, kernel_set):
    """The forward packs (OC, Cg, KH, KW) weights directly; the same panels come from the
    (G, KH*KW*Cg, OCg) layout, and bias lanes past the last channel are zero."""
    rng = np.random.default_rng(oc)
    kk = (k, k) if isinstance(k, int) else k
    w = rng.standard_normal((oc, cg, *kk)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    direct = native.pack_weights(w, b, groups)
    via_gemm = native.pack_weights(fast._gemm_weight(w, groups), b, groups)
    np.testing.assert_array_equal(direct.array, via_gemm.array)
    assert direct.key == (groups, kk[0] * kk[1] * cg, oc // groups)
    # weights and biases are all there, the rest is zero padding
    assert np.isclose(direct.array.sum(dtype=np.float64), w.sum(dtype=np.float64) + b.sum())
    assert np.count_nonzero(direct.array) == w.size + b.size


def test_packed_weights_are_tied_to_their_kernel_set(kernel_set):
    """Packed for one vector width, they are refused by the other kernel set."""
    others = [s for s in native.supported() if s != kernel_set]
    if not others:
        pytest.skip("one kernel set on this CPU")
    w = np.ones((16, 4, 3, 3), np.float32)
    packed = native.pack_weights(w, None, 1)
    xp, out = np.zeros((1, 5, 5, 4), np.float32), np.zeros((1, 3, 3, 16), np.float32)
    native.select(others[0])
    with pytest.raises(ValueError, match="another kernel set"):
        native.conv_nhwc(xp, None, None, out, (3, 3), (1, 1), (1, 1), packed=packed)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        native.pack_weights(w, np.zeros(3, np.float32), 1)
