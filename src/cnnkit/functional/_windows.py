"""Sliding windows as strided views (im2col without loops) and their adjoint (col2im).

Convolution and pooling see an input ``(N, C, H, W)`` through a zero-copy view of all
its windows; the adjoint scatters window gradients back with one vectorised add per
kernel position (``KH * KW`` adds, never a loop over pixels or samples).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnkit.functional import _parallel as parallel

Pair = tuple[int, int]


def pair(value: Any, name: str, where: str, minimum: int = 0) -> Pair:
    """``value`` as an ``(h, w)`` pair of ints >= ``minimum``; a clear error otherwise."""
    if type(value) is tuple and len(value) == 2:  # fast path: already a pair of plain ints
        a, b = value
        if type(a) is int and type(b) is int and a >= minimum and b >= minimum:
            return value
    elif type(value) is int and value >= minimum:
        return (value, value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{where}: {name} must be an int or a pair of ints; got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}; got {value!r}")
    return out


def out_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int = 1) -> int:
    """Output length ``floor((size + pad_total - dilation*(kernel-1) - 1) / stride) + 1``.

    With ``pad_total = 2P`` and ``dilation = 1`` this is the course's ``(W - F + 2P)/S + 1``.
    """
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def is_channels_last(x: np.ndarray) -> bool:
    """True when ``(N, C, H, W)`` ``x`` is a view of C-contiguous ``(N, H, W, C)`` memory
    (the layout convolutions produce) and not plain C-contiguous."""
    return x.ndim == 4 and not x.flags.c_contiguous and x.transpose(0, 2, 3, 1).flags.c_contiguous


def empty_like_layout(x: np.ndarray, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
    """An uninitialised ``shape`` array laid out like ``x`` (channels-last or C order), so
    elementwise work between them runs over memory in order."""
    dtype = x.dtype if dtype is None else dtype
    if is_channels_last(x):
        n, c, h, w = shape
        return np.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)
    return np.empty(shape, dtype=dtype)


def channels_last(x: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` as a C-contiguous ``(N, H, W, C)`` array (no copy when ``x`` is a
    channels-last view already, as wide convolutions return)."""
    xl = x.transpose(0, 2, 3, 1)
    return xl if xl.flags.c_contiguous else parallel.contiguous(xl)


def to_layout(a: np.ndarray, cl: bool) -> np.ndarray:
    """``(N, C, H, W)`` ``a`` channels-last (``cl``) or C-contiguous, copied only when it
    is not: elementwise work between arrays of different layouts is several times slower."""
    if not cl:
        return np.ascontiguousarray(a)
    return a if is_channels_last(a) else channels_last(a).transpose(0, 3, 1, 2)


def pad_hw(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    """Pad the last two axes by ``(top, bottom, left, right)`` (in ``x``'s memory layout);
    no copy when all are zero."""
    top, bottom, left, right = pads
    if not (top or bottom or left or right):
        return x
    n, c, h, w = x.shape
    out = empty_like_layout(x, (n, c, h + top + bottom, w + left + right))
    out[...] = value
    out[:, :, top : top + h, left : left + w] = x
    return out


def windows(
    xp: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out: Pair, order: str = "kpos"
) -> np.ndarray:
    """Read-only view of every window of a padded ``(N, C, Hp, Wp)`` array.

    ``order='kpos'`` gives ``(N, C, KH, KW, OH, OW)`` (for convolution GEMMs);
    ``order='poskern'`` gives ``(N, C, OH, OW, KH, KW)``.
    """
    n, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    kh, kw = kernel
    oh, ow = out
    ks = (s2 * dilation[0], s3 * dilation[1])
    ps = (s2 * stride[0], s3 * stride[1])
    if order == "kpos":
        return as_strided(xp, (n, c, kh, kw, oh, ow), (s0, s1, *ks, *ps), writeable=False)
    return as_strided(xp, (n, c, oh, ow, kh, kw), (s0, s1, *ps, *ks), writeable=False)


def kernel_slice(i: int, j: int, stride: Pair, dilation: Pair, out: Pair) -> tuple:
    """Index of the padded-input positions that kernel tap ``(i, j)`` reads, for all outputs."""
    hi = i * dilation[0]
    wj = j * dilation[1]
    return (
        slice(None),
        slice(None),
        slice(hi, hi + stride[0] * (out[0] - 1) + 1, stride[0]),
        slice(wj, wj + stride[1] * (out[1] - 1) + 1, stride[1]),
    )


def col2im(
    dcols: np.ndarray, padded_shape: tuple[int, ...], stride: Pair, dilation: Pair
) -> np.ndarray:
    """Adjoint of :func:`windows` (``'kpos'`` order): sum window gradients into the input.

    ``dcols`` is ``(N, C, KH, KW, OH, OW)`` (any strides); returns ``(N, C, Hp, Wp)``.
    """
    kh, kw, oh, ow = dcols.shape[2:]
    dxp = np.zeros(padded_shape, dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[kernel_slice(i, j, stride, dilation, (oh, ow))] += dcols[:, :, i, j]
    return dxp


def unpad_hw(dxp: np.ndarray, pads: tuple[int, int, int, int], size: Pair) -> np.ndarray:
    """The inverse of :func:`pad_hw` on a gradient: the interior ``(N, C, H, W)``."""
    top, _, left, _ = pads
    if dxp.shape[2:] == size:
        return dxp
    return dxp[:, :, top : top + size[0], left : left + size[1]].copy(order="K")
