"""The chunked, multi-threaded convolution path (forced for float64) equals PyTorch too.

`make test` runs with one BLAS thread (serial chunks); here BLAS is allowed two threads,
so the batch is split over two worker threads, and tiny chunk sizes force many chunks
with a ragged last one.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import cnnkit as ck
import cnnkit.functional.conv as conv_mod
import cnnkit.nn.functional as F
from cnnkit.functional import _parallel
from cnnkit.functional._fast import conv as fast_conv
from tests.conftest import assert_close, torch

CASES = [
    # n, c, hw, oc, k, stride, padding, dilation, groups
    (7, 4, 9, 6, 3, 1, 1, 1, 1),
    (5, 4, 10, 4, 3, 2, (1, 2), 1, 2),
    (6, 3, 11, 6, (2, 3), 1, "same", 2, 3),
    (9, 2, 8, 5, 1, 1, 0, 1, 1),
    (3, 4, 7, 8, 3, 3, 2, 1, 4),
    # wide layers (>= 24 output channels): one chunk at a time, im2col copied by 2 threads
    (4, 16, 20, 32, 3, 1, 1, 1, 1),
    (8, 16, 21, 32, 3, 2, 1, 1, 1),
    # >= 16 input channels per group: the stride-1 input gradient is a convolution
    (3, 32, 9, 8, (2, 4), 1, "same", 2, 2),
    (2, 16, 6, 4, 3, 1, 3, 1, 1),  # padding beyond the kernel extent
    # wide layers keep activations channels-last: groups, dilation, strides, 1x1, and the
    # input gradient both by col2im (few input channels per group) and as a convolution
    (3, 8, 9, 48, 3, 1, 1, 2, 2),
    (2, 32, 7, 64, (2, 3), 2, (0, 1), 1, 2),
    (2, 32, 6, 24, 3, 1, 3, 1, 1),
    (3, 4, 8, 24, 1, 1, 0, 1, 1),
    (2, 2, 6, 48, 3, 1, 1, 1, 2),
    (2, 40, 7, 32, (3, 5), 1, "same", (2, 1), 1),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("chunk", [1, 64, 1 << 20])
def test_parallel_chunks_equal_torch(case, chunk, monkeypatch):
    n, c, hw, oc, k, s, p, d, g = case
    monkeypatch.setattr(fast_conv, "_CHUNK_ELEMENTS", chunk)
    # float64 runs the reference maths; here the fast NumPy paths are checked in float64
    monkeypatch.setattr(conv_mod, "FAST_DTYPES", frozenset({np.dtype(np.float64)}))
    rng = np.random.default_rng([CASES.index(case), chunk])
    x = rng.standard_normal((n, c, hw, hw))
    kk = (k, k) if isinstance(k, int) else k
    w = rng.standard_normal((oc, c // g, *kk))
    b = rng.standard_normal(oc)
    X, W, B = (ck.tensor(a, requires_grad=True) for a in (x, w, b))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    # split whatever this CPU measured (the cases are far below the measured threshold)
    with threadpool_limits(2, user_api="blas"), _parallel.min_work_fixed(macs=0):
        assert _parallel.workers() == 2 or _parallel.workers() == 1  # 1 only without threadpoolctl
        out = F.conv2d(X, W, B, s, p, d, g)
        gout = rng.standard_normal(out.shape)
        out.backward(ck.tensor(gout))
    ref = torch.nn.functional.conv2d(tx, tw, tb, s, p, d, g)
    ref.backward(torch.tensor(gout))
    assert_close(out, ref, what="out")
    assert_close(X.grad, tx.grad, what="dx")
    assert_close(W.grad, tw.grad, what="dw")
    assert_close(B.grad, tb.grad, what="db")


def test_split_gives_equal_shares():
    assert _parallel.split(10, 3, 2) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    chunks = _parallel.split(128, 46, 2)
    assert len(chunks) % 2 == 0 and chunks[-1][1] == 128
    assert _parallel.split(1, 8, 2) == [(0, 1)]
    assert _parallel.split(0, 8, 2) == []


# Every op that splits its work over worker threads, at sizes where it does (the suite
# otherwise runs with one BLAS thread, hence one worker): values and gradients equal torch.
def _parallel_case(name, rng):
    if name == "maxpool":  # channels-last input, ties from the ReLU, overlapping windows
        x = rng.standard_normal((6, 32, 24, 24))
        ck_fn = lambda t: F.max_pool2d(F.relu(F.conv2d(t, eye)), 3, 2, 1)  # noqa: E731
        th_fn = lambda t: torch.nn.functional.max_pool2d(t.relu(), 3, 2, 1)  # noqa: E731
        eye = ck.tensor(np.eye(32).reshape(32, 32, 1, 1))
        return x, ck_fn, th_fn
    if name == "maxpool_nchw":
        x = rng.integers(0, 3, (5, 8, 64, 66)).astype(np.float64)
        return x, (lambda t: F.max_pool2d(t, 2)), (lambda t: torch.nn.functional.max_pool2d(t, 2))
    if name == "relu":
        x = rng.standard_normal((5, 7, 61, 67))
        return x, F.relu, torch.relu
    raise ValueError(name)


@pytest.mark.parametrize("name", ["maxpool", "maxpool_nchw", "relu"])
def test_parallel_ops_equal_torch(name):
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    x, ck_fn, th_fn = _parallel_case(name, rng)
    X = ck.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    with threadpool_limits(2, user_api="blas"):
        out = ck_fn(X)
        gout = rng.standard_normal(out.shape)
        out.backward(ck.tensor(gout))
    ref = th_fn(tx)
    ref.backward(torch.tensor(gout))
    assert_close(out, ref, what=f"{name} out")
    assert_close(X.grad, tx.grad, what=f"{name} dx")


@pytest.mark.parametrize("lead", [(37,), (3, 13)])
def test_parallel_linear_equals_torch(lead):
    rng = np.random.default_rng(len(lead))
    x = rng.standard_normal((*lead, 700))
    w, b = rng.standard_normal((300, 700)), rng.standard_normal(300)
    X, W, B = (ck.tensor(a, requires_grad=True) for a in (x, w, b))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    with threadpool_limits(2, user_api="blas"):
        out = F.linear(X, W, B)
        gout = rng.standard_normal(out.shape)
        out.backward(ck.tensor(gout))
    ref = torch.nn.functional.linear(tx, tw, tb)
    ref.backward(torch.tensor(gout))
    for got, want, what in ((out, ref, "out"), (X.grad, tx.grad, "dx"), (W.grad, tw.grad, "dw"),
                            (B.grad, tb.grad, "db")):  # fmt: skip
        assert_close(got, want, what=what)


def test_computing_restores_the_blas_setting():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    with threadpool_limits(2, user_api="blas"):
        with _parallel.computing():
            assert blas_threads() == 1
            assert _parallel.workers() == 2
            with _parallel.computing():  # nested: still one BLAS thread
                assert blas_threads() == 1
            assert blas_threads() == 1
        assert blas_threads() == 2
