"""The convolution's fast paths (float32) against its reference maths and PyTorch, and
float32 accuracy against float64 compared with PyTorch's own."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_close

torch = pytest.importorskip("torch")

import cnnkit as ck  # noqa: E402
import cnnkit.nn.functional as F  # noqa: E402
from cnnkit.functional import conv as conv_mod  # noqa: E402
from cnnkit.functional._fast import conv as fast  # noqa: E402

CASES = [
    # n, c, hw, oc, k, stride, padding, dilation, groups
    (3, 3, 9, 8, 3, 1, 1, 1, 1),  # narrow, channel-first
    (2, 16, 8, 32, 3, 1, 1, 1, 1),  # wide, channels-last
    (2, 16, 9, 32, 1, 2, 0, 1, 1),  # 1x1 stride-2 shortcut
    (2, 8, 9, 32, 3, 2, 1, 1, 1),  # strided 3x3
    (2, 8, 7, 48, (2, 3), 1, (1, 0), 2, 2),  # groups and dilation
    (2, 4, 6, 4, 3, 1, 2, 1, 4),  # depthwise, padding beyond the kernel
]


def _geometry(x, w, s, p, d, g):
    st, dl = (s, s) if isinstance(s, int) else s, (d, d) if isinstance(d, int) else d
    pads = conv_mod.resolve_padding(p, w.shape[2:], st, dl, "test")
    out_hw = conv_mod.spatial_output(x.shape, w.shape[2:], st, dl, pads, "test")
    return conv_mod.ConvGeometry(x.shape, w.shape, st, pads, dl, g, out_hw)


@pytest.mark.parametrize("case", CASES)
def test_fast_path_equals_reference_and_torch_float32(case):
    n, c, hw, oc, k, s, p, d, g = case
    rng = np.random.default_rng(CASES.index(case))
    kk = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = rng.standard_normal((oc, c // g, *kk)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    geom = _geometry(x, w, s, p, d, g)
    ref_out, xp = conv_mod.conv2d_reference(x, w, b, geom)
    fast_out, fxp = fast.forward(x, w, b, geom)
    gout = rng.standard_normal(ref_out.shape).astype(np.float32)
    ref_grads = conv_mod.conv2d_reference_backward(gout, xp, w, geom, (True, True, True))
    fast_grads = fast.backward(gout, fxp, w, geom, (True, True, True))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tout = torch.nn.functional.conv2d(tx, tw, tb, s, p, d, g)
    tout.backward(torch.tensor(gout))
    tol = {"rtol": 1e-4, "atol": 1e-4}
    assert_close(fast_out, ref_out, what="forward fast vs reference", **tol)
    assert_close(ref_out, tout, what="forward reference vs torch", **tol)
    for name, r, f_, t in zip("x w b".split(), ref_grads, fast_grads, (tx, tw, tb), strict=True):
        assert_close(f_, r, what=f"d{name} fast vs reference", **tol)
        assert_close(r, t.grad, what=f"d{name} reference vs torch", **tol)


def test_float64_runs_the_reference_and_passes_gradcheck():
    rng = np.random.default_rng(5)
    x = ck.tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    w = ck.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    b = ck.tensor(rng.standard_normal(4), requires_grad=True)
    out = F.conv2d(x, w, b, stride=2, padding=1)
    assert out.grad_fn.path is conv_mod._REFERENCE
    assert ck.gradcheck(lambda a, v, c: F.conv2d(a, v, c, stride=2, padding=1), (x, w, b))


@pytest.mark.parametrize(("c", "oc", "hw"), [(64, 64, 8), (3, 32, 16), (256, 256, 6)])
def test_float32_error_at_most_twice_torchs(c, oc, hw):
    """Each output and gradient's float32 error against float64 is at most 2x PyTorch's
    float32 error on the same inputs (max relative to the largest magnitude)."""
    rng = np.random.default_rng(c)
    x = rng.standard_normal((4, c, hw, hw))
    w = rng.standard_normal((oc, c, 3, 3)) / np.sqrt(9 * c)
    gout = rng.standard_normal((4, oc, hw, hw))

    def cnnkit_run(dtype):
        cx, cw = (ck.tensor(a.astype(dtype), requires_grad=True) for a in (x, w))
        out = F.conv2d(cx, cw, padding=1)
        out.backward(ck.tensor(gout.astype(dtype)))
        return [np.asarray(a.numpy(), np.float64) for a in (out, cx.grad, cw.grad)]

    def torch_run(dtype):
        tx, tw = (torch.tensor(a, dtype=dtype, requires_grad=True) for a in (x, w))
        out = torch.nn.functional.conv2d(tx, tw, padding=1)
        out.backward(torch.tensor(gout, dtype=dtype))
        return [a.detach().double().numpy() for a in (out, tx.grad, tw.grad)]

    exact = cnnkit_run(np.float64)
    ours, theirs = cnnkit_run(np.float32), torch_run(torch.float32)
    for name, e, o, t in zip(("out", "dx", "dw"), exact, ours, theirs, strict=True):
        scale = np.abs(e).max()
        err_ours = np.abs(o - e).max() / scale
        err_torch = np.abs(t - e).max() / scale
        assert err_ours <= 2 * err_torch + 1e-7, f"{name}: {err_ours:.2e} vs torch {err_torch:.2e}"
