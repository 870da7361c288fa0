"""Plain-loop reference pooling: the second oracle next to PyTorch.

Output sizes follow PyTorch: ``floor`` (or ``ceil`` with ``ceil_mode``) of
``(H + 2p - d*(k-1) - 1) / s`` plus one, and in ceil mode a last window that
would start inside the right/bottom padding is dropped.
"""

from __future__ import annotations

import math

import numpy as np

from tests.naive.conv import pair


def pool_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> int:
    """PyTorch's ``pooling_output_shape``."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    if ceil:
        out = math.ceil(span / stride) + 1
        # the last window must start inside the input or the left padding
        if (out - 1) * stride >= size + pad:
            out -= 1
    else:
        out = span // stride + 1
    return out


def _sizes(x, kernel_size, stride, padding, dilation, ceil_mode):
    kh, kw = pair(kernel_size)
    sh, sw = pair(kernel_size if stride is None else stride)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    _, _, h, w = x.shape
    oh = pool_out_size(h, kh, sh, ph, dh, ceil_mode)
    ow = pool_out_size(w, kw, sw, pw, dw, ceil_mode)
    return kh, kw, sh, sw, ph, pw, dh, dw, oh, ow


def max_pool2d_argmax(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling; returns ``(out, where)`` with ``where[n, c, i, j] = (row, col)`` in ``x``.

    Padding counts as ``-inf``. Windows are scanned in row-major order and only a
    strictly larger value replaces the current maximum, so ties go to the first one.
    """
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = _sizes(
        x, kernel_size, stride, padding, dilation, ceil_mode
    )
    n, c, h, w = x.shape
    out = np.zeros((n, c, oh, ow), dtype=np.float64)
    where = np.zeros((n, c, oh, ow, 2), dtype=np.int64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    best = -math.inf
                    best_at = (-1, -1)
                    for p in range(kh):
                        for q in range(kw):
                            r = i * sh - ph + p * dh
                            s = j * sw - pw + q * dw
                            if 0 <= r < h and 0 <= s < w:
                                v = x[a, b, r, s]
                            else:
                                v = -math.inf  # padding
                            if v > best:
                                best = v
                                best_at = (r, s)
                    out[a, b, i, j] = best
                    where[a, b, i, j] = best_at
    return out, where


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    return max_pool2d_argmax(x, kernel_size, stride, padding, dilation, ceil_mode)[0]


def max_pool2d_backward(x, grad, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """``dx``: each output's gradient goes to the (first) maximum of its window."""
    _, where = max_pool2d_argmax(x, kernel_size, stride, padding, dilation, ceil_mode)
    n, c, oh, ow = grad.shape
    dx = np.zeros(x.shape, dtype=np.float64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    r, s = where[a, b, i, j]
                    dx[a, b, r, s] += grad[a, b, i, j]
    return dx


def _avg_window(i, stride, pad, kernel, size):
    """``(start, end, pool_size)`` of one average-pooling window along one axis.

    PyTorch clips the window end to ``size + pad`` first; that length counts for
    ``count_include_pad``. Then it clips to the real input ``[0, size)``.
    """
    start = i * stride - pad
    end = min(start + kernel, size + pad)
    with_pad = end - start
    return max(start, 0), min(end, size), with_pad


def _avg_divisor(hs, he, hpad, ws, we, wpad, count_include_pad, divisor_override):
    if divisor_override is not None:
        return divisor_override
    if count_include_pad:
        return hpad * wpad
    return (he - hs) * (we - ws)


def avg_pool2d(
    x,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    """Average pooling with PyTorch's divisor rule (see :func:`_avg_window`)."""
    kh, kw, sh, sw, ph, pw, _, _, oh, ow = _sizes(x, kernel_size, stride, padding, 1, ceil_mode)
    n, c, h, w = x.shape
    out = np.zeros((n, c, oh, ow), dtype=np.float64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                hs, he, hpad = _avg_window(i, sh, ph, kh, h)
                for j in range(ow):
                    ws, we, wpad = _avg_window(j, sw, pw, kw, w)
                    total = 0.0
                    for r in range(hs, he):
                        for s in range(ws, we):
                            total += x[a, b, r, s]
                    div = _avg_divisor(
                        hs, he, hpad, ws, we, wpad, count_include_pad, divisor_override
                    )
                    out[a, b, i, j] = total / div
    return out


def avg_pool2d_backward(
    x,
    grad,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    """``dx``: each output's gradient, divided by its divisor, to every input in its window."""
    kh, kw, sh, sw, ph, pw, _, _, oh, ow = _sizes(x, kernel_size, stride, padding, 1, ceil_mode)
    n, c, h, w = x.shape
    dx = np.zeros(x.shape, dtype=np.float64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                hs, he, hpad = _avg_window(i, sh, ph, kh, h)
                for j in range(ow):
                    ws, we, wpad = _avg_window(j, sw, pw, kw, w)
                    div = _avg_divisor(
                        hs, he, hpad, ws, we, wpad, count_include_pad, divisor_override
                    )
                    for r in range(hs, he):
                        for s in range(ws, we):
                            dx[a, b, r, s] += grad[a, b, i, j] / div
    return dx


def adaptive_avg_pool2d(x, output_size):
    """Window ``i`` covers ``[floor(i*H/OH), ceil((i+1)*H/OH))``."""
    oh, ow = pair(output_size)
    n, c, h, w = x.shape
    out = np.zeros((n, c, oh, ow), dtype=np.float64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                hs, he = (i * h) // oh, -((-(i + 1) * h) // oh)
                for j in range(ow):
                    ws, we = (j * w) // ow, -((-(j + 1) * w) // ow)
                    total = 0.0
                    for r in range(hs, he):
                        for s in range(ws, we):
                            total += x[a, b, r, s]
                    out[a, b, i, j] = total / ((he - hs) * (we - ws))
    return out


def adaptive_avg_pool2d_backward(x, grad, output_size):
    oh, ow = pair(output_size)
    n, c, h, w = x.shape
    dx = np.zeros(x.shape, dtype=np.float64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                hs, he = (i * h) // oh, -((-(i + 1) * h) // oh)
                for j in range(ow):
                    ws, we = (j * w) // ow, -((-(j + 1) * w) // ow)
                    div = (he - hs) * (we - ws)
                    for r in range(hs, he):
                        for s in range(ws, we):
                            dx[a, b, r, s] += grad[a, b, i, j] / div
    return dx
