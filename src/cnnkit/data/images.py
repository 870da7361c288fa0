"""Image files -> arrays: the one place cnnkit decodes an image file.

:func:`decode_image` converts as PIL/torchvision's ``ImageFolder`` do (``convert("RGB")``
or ``convert("L")``: a palette is looked up, alpha is dropped, grayscale is replicated
to three channels), except that 16-bit and 32-bit integer pixels are scaled by their
real range (``/ 65535``), not saturated at 255 as ``convert`` would. Before any pixel
is decoded, the header's width x height is checked against
:data:`cnnkit.limits.MAX_IMAGE_PIXELS` (a decompression bomb is refused as a
:class:`~cnnkit.limits.LimitError`); a file Pillow cannot identify, a truncated one or
one with no pixels is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from cnnkit import limits

__all__ = ["decode_image", "open_image"]


@contextlib.contextmanager
def open_image(path: str | os.PathLike) -> Iterator[Any]:
    """Open an image with Pillow, header only, after checking its size against the limit.

    Yields the (lazy) ``PIL.Image.Image``; errors name the file.
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        what = "is not a regular file" if os.path.exists(path) else "no such image file"
        raise FileNotFoundError(f"{path}: {what}")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        # cnnkit's own limit (below, from the header) replaces Pillow's fixed one
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except UnidentifiedImageError:
        raise ValueError(
            f"{path}: cannot read image: not an image file (Pillow cannot identify its format)"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    with im:
        w, h = im.size
        if w < 1 or h < 1:
            raise ValueError(f"{path}: the image has no pixels ({w}x{h})")
        limits.check(f"{path} ({w}x{h} image)", w * h, "MAX_IMAGE_PIXELS", "pixels")
        yield im


def _resize_float(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of float32 ``(H, W)`` or ``(H, W, C)`` to ``size = (H, W)``."""
    from PIL import Image

    chans = [arr] if arr.ndim == 2 else [arr[..., c] for c in range(arr.shape[-1])]
    out = [
        np.asarray(
            Image.fromarray(c, mode="F").resize((size[1], size[0]), Image.Resampling.BILINEAR)
        )
        for c in chans
    ]
    res = out[0] if arr.ndim == 2 else np.stack(out, axis=-1)
    return np.clip(res, 0.0, 1.0).astype(np.float32)


def _to_float(im: Any, grayscale: bool, size: tuple[int, int] | None) -> np.ndarray:
    """A Pillow image as float32 ``(H, W)`` (grayscale) or ``(H, W, 3)`` in [0, 1],
    resized to ``size`` (bilinear: by Pillow on 8-bit pixels, on floats otherwise)."""
    from PIL import Image

    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode != "F":
            arr = arr / 65535.0  # 16-bit range (Pillow gives 16-bit PNGs mode I or I;16)
        arr = np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0).astype(np.float32)
        if arr.ndim == 3:  # multi-channel high-depth images are rare: keep the first
            arr = arr[..., 0]
        if size is not None and arr.shape != tuple(size):
            arr = _resize_float(arr, size)
        return arr if grayscale else np.repeat(arr[..., None], 3, axis=-1)
    im = im.convert("L" if grayscale else "RGB")
    if size is not None and (im.height, im.width) != tuple(size):
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8).astype(np.float32) / np.float32(255.0)


def decode_image(
    path: str | os.PathLike, size: tuple[int, int] | None = None, grayscale: bool = False
) -> np.ndarray:
    """Decode one image file as float32 ``(C, H, W)`` in ``[0, 1]``.

    Parameters
    ----------
    path : path-like
        Any format Pillow reads (PNG 8/16-bit, JPEG, BMP, GIF (first frame), TIFF, ...).
    size : (int, int), optional
        Resize to ``(H, W)`` (bilinear, on the float values).
    grayscale : bool
        One channel (ITU-R 601-2 luma, as ``convert("L")``) instead of three (RGB).

    Returns
    -------
    np.ndarray
        Shape ``(1, H, W)`` or ``(3, H, W)``, float32.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not an image, truncated or corrupt, or no pixels; the message names the file.
    cnnkit.limits.LimitError
        More pixels than :data:`cnnkit.limits.MAX_IMAGE_PIXELS` (from the header).
    """
    with open_image(path) as im:
        try:
            im.load()
            arr = _to_float(im, grayscale, None if size is None else tuple(size))
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ValueError(f"{path}: cannot read image ({e})") from None
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
