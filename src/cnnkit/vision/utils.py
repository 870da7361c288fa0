"""``cnnkit.vision.utils``: torchvision's ``make_grid`` and ``save_image``."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from cnnkit.tensor import Tensor

__all__ = ["make_grid", "save_image"]


def make_grid(
    tensor: Any,
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> Tensor:
    """Tile a batch ``(B, C, H, W)`` (or a list of ``(C, H, W)``) into one ``(3, H', W')`` image.

    As torchvision: ``nrow`` images per row, ``padding`` pixels of ``pad_value`` around
    each, one-channel images repeated to three channels, ``normalize`` min-max scales
    to ``[0, 1]`` (over ``value_range`` if given, per image with ``scale_each``).
    """
    if isinstance(tensor, (list, tuple)):
        arr = np.stack([np.asarray(t) for t in tensor])
    else:
        arr = np.array(np.asarray(tensor), copy=True)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 3:
        arr = np.concatenate([arr] * 3) if arr.shape[0] == 1 else arr
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"make_grid: expected (B, C, H, W) images; got shape {arr.shape}")
    if arr.shape[1] == 1:
        arr = np.concatenate([arr] * 3, axis=1)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    if normalize:

        def scale(a: np.ndarray) -> np.ndarray:
            lo, hi = value_range if value_range is not None else (float(a.min()), float(a.max()))
            a = np.clip(a, lo, hi)
            return (a - lo) / max(hi - lo, 1e-5)

        arr = np.stack([scale(a) for a in arr]) if scale_each else scale(arr)
    b, c, h, w = arr.shape
    if b == 1:
        return Tensor(arr[0])
    xmaps = min(nrow, b)
    ymaps = math.ceil(b / xmaps)
    hh, ww = h + padding, w + padding
    grid = np.full((c, hh * ymaps + padding, ww * xmaps + padding), pad_value, dtype=arr.dtype)
    for k in range(b):
        y, x = divmod(k, xmaps)
        grid[
            :, y * hh + padding : y * hh + padding + h, x * ww + padding : x * ww + padding + w
        ] = arr[k]
    return Tensor(grid)


def save_image(
    tensor: Any, fp: str | os.PathLike | Any, format: str | None = None, **kwargs: Any
) -> None:
    """Write images as one PNG/JPEG grid (``make_grid(**kwargs)``; values in ``[0, 1]``)."""
    from PIL import Image

    grid = np.asarray(make_grid(tensor, **kwargs))
    img = np.clip(grid * 255 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if img.shape[2] == 1:
        img = img[:, :, 0]
    Image.fromarray(np.ascontiguousarray(img)).save(fp, format=format)
