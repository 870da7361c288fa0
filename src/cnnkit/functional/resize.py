"""``interpolate``: nearest and bilinear resizing of ``(N, C, H, W)`` images.

Both modes are linear maps that act on rows and columns separately, so the op is
``out = M_h x M_w^T`` with two small interpolation matrices and its gradient is
``M_h^T g M_w`` — one Function for both modes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnkit.autograd import Function
from cnnkit.tensor import Tensor

__all__ = ["interpolate"]


def _matrix(
    n_in: int, n_out: int, mode: str, align_corners: bool, scale: float | None
) -> np.ndarray:
    """``(n_out, n_in)`` matrix mapping one axis; ``scale`` is PyTorch's in/out ratio."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    ratio = (n_in / n_out) if scale is None else scale
    dst = np.arange(n_out)
    if mode == "nearest":
        src = np.minimum(np.floor(dst * ratio).astype(np.int64), n_in - 1)
        m[dst, src] = 1.0
        return m
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        src = np.maximum((dst + 0.5) * ratio - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    np.add.at(m, (dst, i0), 1.0 - lam)
    np.add.at(m, (dst, i1), lam)
    return m


class Resample2d(Function):
    """``out = M_h x M_w^T`` over the last two axes; ``dx = M_h^T g M_w``."""

    def forward(self, x: np.ndarray, mh: np.ndarray, mw: np.ndarray) -> np.ndarray:
        self.mats = (mh.astype(x.dtype), mw.astype(x.dtype))
        return np.matmul(np.matmul(self.mats[0], x), self.mats[1].T)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        mh, mw = self.mats
        return np.matmul(np.matmul(mh.T, grad), mw)


def interpolate(
    input: Tensor,
    size: int | tuple[int, int] | None = None,
    scale_factor: float | tuple[float, float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Tensor:
    """Resize ``(N, C, H, W)`` to ``size`` or by ``scale_factor`` (PyTorch's index rules).

    Parameters
    ----------
    input : Tensor, shape (N, C, H, W)
    size : int or (int, int), optional
        Output ``(OH, OW)``.
    scale_factor : float or (float, float), optional
        ``OH = floor(H * s)``; the source index uses ``1 / s`` unless
        ``recompute_scale_factor``.
    mode : {'nearest', 'bilinear'}
    align_corners : bool, optional
        Bilinear only: map corner pixel centres onto each other.

    Returns
    -------
    Tensor, shape (N, C, OH, OW)
    """
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"interpolate: mode must be 'nearest' or 'bilinear'; got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("interpolate: align_corners can only be set with mode='bilinear'")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    if input.ndim != 4:
        raise ValueError(f"interpolate: expected input (N, C, H, W); got {tuple(input.shape)}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    h, w = input.shape[-2:]
    scales: tuple[Any, Any] = (None, None)
    if size is not None:
        oh, ow = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    else:
        sh, sw = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2  # type: ignore[misc]
        oh, ow = math.floor(h * float(sh)), math.floor(w * float(sw))
        if not recompute_scale_factor:
            scales = (1.0 / float(sh), 1.0 / float(sw))
    if oh < 1 or ow < 1:
        raise ValueError(f"interpolate: output size must be positive; got {(oh, ow)}")
    ac = bool(align_corners)
    mh = _matrix(h, oh, mode, ac, scales[0])
    mw = _matrix(w, ow, mode, ac, scales[1])
    return Resample2d.apply(input, mh, mw)
