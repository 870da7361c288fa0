"""Fast path of batch normalisation: compiled one-pass kernels (``_native_bn.c``) on
float32 ``(N, C, H, W)`` data in either memory layout, the images split over the workers.

:func:`statistics`, :func:`forward` and :func:`backward` take the arguments of the
reference maths in :mod:`cnnkit.functional.norm` and return the same values. The
statistics are sums of ``x - shift`` in double over blocks of float sums (one pass, no
cancellation for a large mean); only ``x`` (and, fused with ReLU, the output) is kept for
backward, whose two per-channel sums and whose ``dx`` are one pass each.
"""

from __future__ import annotations

import numpy as np

from cnnkit.functional import _native as native
from cnnkit.functional import _parallel as parallel
from cnnkit.functional._windows import empty_like_layout, is_channels_last, to_layout


def applies(x: np.ndarray) -> bool:
    """Whether the compiled kernels take this input: float32 ``(N, C, H, W)``, built."""
    return x.ndim == 4 and native.usable(x) and x.size > 0


def _layout(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """``x`` contiguous in its own layout (channels-last kept) and whether it is NHWC."""
    nhwc = is_channels_last(x)
    return to_layout(x, nhwc), nhwc


def _per_share(x: np.ndarray, fn) -> list:
    """``fn(a, z)`` on one share of the images per worker (one call for small inputs)."""
    if x.shape[0] < 2 or parallel.split_workers(x.size) == 1:
        return [fn(0, x.shape[0])]
    bounds = parallel.shares(x.shape[0])
    out: list = [None] * len(bounds)

    def work(t: int, a: int, z: int) -> None:
        out[t] = fn(a, z)

    parallel.run(bounds, work, len(bounds), False)
    return out


def statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batch mean and biased variance per channel, float64."""
    xc, nhwc = _layout(x)
    shift = np.ascontiguousarray(xc[0, :, 0, 0], dtype=np.float32)
    parts = _per_share(xc, lambda a, z: native.bn_stats(xc[a:z], nhwc, shift))
    s = sum(p[0] for p in parts)
    q = sum(p[1] for p in parts)
    m = x.size // x.shape[1]
    dmean = s / m
    var = np.maximum(q / m - dmean * dmean, 0.0)
    return shift.astype(np.float64) + dmean, var


def forward(
    x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None, mean: np.ndarray,
    invstd: np.ndarray, relu: bool,
) -> tuple[np.ndarray, tuple]:  # fmt: skip
    """``y = gamma * (x - mean) * invstd + beta`` (then ReLU) in ``x``'s layout, and what
    backward keeps: ``x`` and, with ``relu``, ``y``."""
    xc, nhwc = _layout(x)
    a = invstd.astype(np.float64) * (1.0 if gamma is None else gamma)
    b = np.zeros_like(a) if beta is None else beta
    y = empty_like_layout(xc, xc.shape)

    def part(lo: int, hi: int) -> None:
        native.bn_apply(xc[lo:hi], y[lo:hi], nhwc, mean, a, b, relu)

    _per_share(xc, part)
    return y, (xc, y if relu else None)


def backward(
    grad: np.ndarray, saved: tuple, gamma: np.ndarray | None, mean: np.ndarray,
    invstd: np.ndarray, batch_stats: bool, needs: tuple[bool, bool, bool],
) -> tuple:  # fmt: skip
    """``(dx, dgamma, dbeta)``; with ``g'`` the gradient through the ReLU (if fused):
    ``dbeta = sum g'``, ``dgamma = invstd * sum g' (x - mean)``, and ``dx = A g'`` with
    ``A = gamma * invstd``, minus ``A (sum g' + xh * dgamma) / M`` for batch statistics."""
    xc, y = saved
    nhwc = is_channels_last(xc)
    g = to_layout(grad, nhwc)
    need_x, need_g, need_b = needs
    parts = _per_share(xc, lambda a, z: native.bn_backward_sums(
        g[a:z], xc[a:z], None if y is None else y[a:z], nhwc, mean))  # fmt: skip
    sg = sum(p[0] for p in parts)
    sgx = sum(p[1] for p in parts)
    inv = invstd.astype(np.float64)
    dgamma = (inv * sgx).astype(grad.dtype)
    dbeta = sg.astype(grad.dtype)
    dx = None
    if need_x:
        big_a = inv * (1.0 if gamma is None else gamma)
        c = xc.shape[1]
        if batch_stats:
            m = xc.size // c
            b = -big_a * inv * inv * sgx / m
            d = -big_a * sg / m
        else:
            b = d = np.zeros(c)
        dx = empty_like_layout(xc, xc.shape)

        def part(lo: int, hi: int) -> None:
            native.bn_backward_apply(g[lo:hi], xc[lo:hi], None if y is None else y[lo:hi],
                                     dx[lo:hi], nhwc, mean, big_a, b, d)  # fmt: skip

        _per_share(xc, part)
    return dx, (dgamma if need_g else None), (dbeta if need_b else None)
