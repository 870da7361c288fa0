"""The plain-loop oracles in ``tests/naive`` agree with PyTorch, so they can be trusted."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_close
from tests.naive import conv as nc
from tests.naive import pool as npl

torch = pytest.importorskip("torch")
tF = torch.nn.functional


def _t(a, grad=True):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def _torch_pad(x, padding):
    """Apply a (top, bottom, left, right) zero padding the way conv2d would."""
    top, bottom, left, right = nc.quad(padding)
    return tF.pad(x, (left, right, top, bottom))


CONV_CASES = [
    # (N, C, H, W, OC, KH, KW, stride, padding, dilation, groups, bias)
    (2, 3, 7, 6, 4, 3, 3, 1, 0, 1, 1, True),
    (1, 4, 9, 8, 6, 3, 2, (2, 1), (1, 2), 1, 2, True),
    (2, 2, 8, 9, 4, 2, 3, 1, (0, 1), (2, 1), 2, False),
    (1, 3, 6, 7, 6, 3, 3, 2, 1, 1, 3, True),
    (1, 2, 5, 6, 3, 2, 2, 1, (0, 1, 1, 0), 1, 1, True),
    (2, 1, 5, 5, 2, 1, 1, 3, 2, 1, 1, False),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_naive_conv2d_matches_torch(case):
    n, c, h, w, oc, kh, kw, stride, padding, dilation, groups, bias = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((oc, c // groups, kh, kw))
    b = rng.standard_normal(oc) if bias else None

    out = nc.conv2d(x, wt, b, stride, padding, dilation, groups)
    tx, tw = _t(x), _t(wt)
    tb = _t(b) if bias else None
    tout = tF.conv2d(_torch_pad(tx, padding), tw, tb, stride, 0, dilation, groups)
    assert_close(out, tout, what="forward")

    g = rng.standard_normal(out.shape)
    tout.backward(torch.tensor(g))
    dx, dw, db = nc.conv2d_backward(x, wt, g, bias, stride, padding, dilation, groups)
    assert_close(dx, tx.grad, what="dx")
    assert_close(dw, tw.grad, what="dw")
    if bias:
        assert_close(db, tb.grad, what="db")
    else:
        assert db is None


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
def test_naive_same_padding_matches_torch():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 6, 5))
    wt = rng.standard_normal((3, 2, 4, 3))
    pads = nc.same_padding((4, 3), (1, 2))
    out = nc.conv2d(x, wt, None, 1, pads, (1, 2))
    tout = tF.conv2d(_t(x), _t(wt), None, 1, "same", (1, 2))
    assert out.shape == (1, 3, 6, 5)
    assert_close(out, tout)


def _torch_locally_connected(x, w, b, stride, padding):
    """Unshared conv in torch: unfold the patches, one einsum with per-location filters."""
    oh, ow, oc, c, kh, kw = w.shape
    cols = tF.unfold(x, (kh, kw), padding=padding, stride=stride)  # (N, C*KH*KW, OH*OW)
    cols = cols.reshape(x.shape[0], c * kh * kw, oh, ow)
    out = torch.einsum("nkij,ijok->noij", cols, w.reshape(oh, ow, oc, c * kh * kw))
    if b is not None:
        out = out + b
    return out


@pytest.mark.parametrize(
    ("n", "c", "h", "w", "oc", "k", "stride", "padding", "bias"),
    [(2, 2, 5, 6, 3, (3, 2), 1, 0, True), (1, 3, 7, 6, 2, 3, 2, (1, 0), False)],
)
def test_naive_locally_connected_matches_torch(n, c, h, w, oc, k, stride, padding, bias):
    rng = np.random.default_rng(3)
    kh, kw = nc.pair(k)
    sh, sw = nc.pair(stride)
    ph, pw = nc.pair(padding)
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((oh, ow, oc, c, kh, kw))
    b = rng.standard_normal((oc, oh, ow)) if bias else None

    out = nc.locally_connected2d(x, wt, b, stride, padding)
    tx, tw = _t(x), _t(wt)
    tb = _t(b) if bias else None
    tout = _torch_locally_connected(tx, tw, tb, stride, padding)
    assert_close(out, tout, what="forward")

    g = rng.standard_normal(out.shape)
    tout.backward(torch.tensor(g))
    dx, dw, db = nc.locally_connected2d_backward(x, wt, g, bias, stride, padding)
    assert_close(dx, tx.grad, what="dx")
    assert_close(dw, tw.grad, what="dw")
    if bias:
        assert_close(db, tb.grad, what="db")


MAX_CASES = [
    # (H, W, kernel, stride, padding, dilation, ceil_mode)
    (6, 7, 2, None, 0, 1, False),
    (7, 7, 3, 2, 1, 1, True),
    (8, 6, (3, 2), (2, 1), (1, 0), (1, 2), False),
    (9, 8, 3, 2, 1, 2, True),
    (5, 5, 2, 2, 1, 1, True),
]


@pytest.mark.parametrize("case", MAX_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_naive_max_pool_matches_torch(case, ties):
    h, w, k, s, p, d, ceil = case
    rng = np.random.default_rng(4)
    shape = (2, 2, h, w)
    x = rng.integers(0, 3, shape).astype(np.float64) if ties else rng.standard_normal(shape)
    out = npl.max_pool2d(x, k, s, p, d, ceil)
    tx = _t(x)
    tout = tF.max_pool2d(tx, k, s, p, d, ceil_mode=ceil)
    assert_close(out, tout, what="forward")
    g = rng.standard_normal(out.shape)
    tout.backward(torch.tensor(g))
    assert_close(npl.max_pool2d_backward(x, g, k, s, p, d, ceil), tx.grad, what="dx")


AVG_CASES = [
    # (H, W, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    (6, 7, 2, None, 0, False, True, None),
    (7, 7, 3, 2, 1, True, True, None),
    (7, 7, 3, 2, 1, True, False, None),
    (8, 6, (3, 2), (2, 1), (1, 0), False, False, None),
    (5, 6, 3, 2, 1, True, True, 5),
    (6, 5, 4, 3, 2, True, True, None),
    (6, 5, 4, 3, 2, True, False, None),
]


@pytest.mark.parametrize("case", AVG_CASES)
def test_naive_avg_pool_matches_torch(case):
    h, w, k, s, p, ceil, cip, div = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, h, w))
    out = npl.avg_pool2d(x, k, s, p, ceil, cip, div)
    tx = _t(x)
    tout = tF.avg_pool2d(tx, k, s, p, ceil, cip, div)
    assert_close(out, tout, what="forward")
    g = rng.standard_normal(out.shape)
    tout.backward(torch.tensor(g))
    assert_close(npl.avg_pool2d_backward(x, g, k, s, p, ceil, cip, div), tx.grad, what="dx")


@pytest.mark.parametrize(("h", "w", "size"), [(7, 5, 3), (6, 6, (4, 2)), (5, 9, 1), (4, 4, 4)])
def test_naive_adaptive_avg_pool_matches_torch(h, w, size):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, h, w))
    out = npl.adaptive_avg_pool2d(x, size)
    tx = _t(x)
    tout = tF.adaptive_avg_pool2d(tx, size)
    assert_close(out, tout, what="forward")
    g = rng.standard_normal(out.shape)
    tout.backward(torch.tensor(g))
    assert_close(npl.adaptive_avg_pool2d_backward(x, g, size), tx.grad, what="dx")


def test_pool_out_size_ceil_drops_window_in_padding():
    # 5 + 2*1 - 2 = 5, ceil(5/2) + 1 = 4, but window 3 would start at 6 >= 5 + 1
    assert npl.pool_out_size(5, 2, 2, 1, 1, ceil=True) == 3
    assert tF.max_pool2d(torch.zeros(1, 1, 5, 5), 2, 2, 1, ceil_mode=True).shape[-1] == 3
