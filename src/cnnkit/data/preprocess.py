"""Images as people have them, made into what a model was trained on.

A trained digit classifier expects its data set's conventions, and a photo or drawing of a
digit follows none of them. :func:`prepare_digit` applies the data sets' own
preprocessing to any greyscale picture of one digit:

* **MNIST** (28x28): light digit on a dark background; the digit's bounding box scaled
  (aspect ratio kept, anti-aliased) to fit a 20x20 box, then placed in the 28x28 frame so
  that its centre of mass is at the centre (LeCun et al.'s description of the data set);
* **scikit-learn's 8x8 digits** (UCI optdigits): the digit scaled to fill a 32x32 frame
  (aspect ratio kept) and centred, then the 4x4 blocks averaged (optdigits counts the
  "on" pixels per block; :class:`cnnkit.data.Digits` divides the count by 16).

Before that, a dark digit on a light background (ink on paper) is inverted, the
background level is removed and the contrast stretched so that the strokes reach 1, as
in both data sets. :func:`read_image` turns any file Pillow reads into floats in
``[0, 1]`` without losing range: palette images through their palette, 16-bit images
divided by 65,535 (not clipped at 255), transparency composited onto a background that
contrasts with the strokes, and EXIF rotation applied. :func:`prepare_image` ties it
together for a model: digit preprocessing for digit models, a plain resize otherwise.

Every function returns the steps it took as short sentences, so callers (``cnnkit
predict``, the dashboard's drawing canvas) can say what was done to the picture.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Prepared", "prepare_digit", "prepare_image", "read_image", "to_grayscale"]

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as Pillow's "L"
STYLES = ("auto", "mnist", "digits8", "fashion", "plain")


@dataclass
class Prepared:
    """A picture made ready for a model.

    Attributes
    ----------
    image : np.ndarray
        float32 ``(C, size, size)`` in ``[0, 1]``.
    steps : list of str
        What was done, in order, one short phrase each.
    """

    image: np.ndarray
    steps: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """The steps as one line (``"as it was"`` when nothing was done)."""
        return "; ".join(self.steps) if self.steps else "used as it was"


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read an image file as float32 ``(H, W, C)`` in ``[0, 1]`` with C = 1 or 3.

    Parameters
    ----------
    path : path-like
        Any file Pillow reads (PNG, JPEG, BMP, GIF, TIFF, ...).

    Returns
    -------
    image : np.ndarray
        ``(H, W, 1)`` for greyscale files, ``(H, W, 3)`` for colour ones; a transparent
        background is composited away (see :func:`flatten_alpha`).
    steps : list of str
        Conversions that changed the values (16-bit scaling, transparency, rotation).

    Raises
    ------
    ValueError
        Pillow cannot read the file, or it is empty; the message names the file.
    """
    from PIL import ImageOps, UnidentifiedImageError

    from cnnkit.data.images import open_image

    steps: list[str] = []
    try:
        with open_image(path) as im:  # the pixel limit is checked from the header first
            im.load()
            if im.getexif().get(0x0112, 1) not in (1, None):  # EXIF orientation
                im = ImageOps.exif_transpose(im)
                steps.append("rotated as its EXIF orientation says")
            arr, alpha, note = _pil_to_float(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if str(e).startswith(f"{path}: "):
            raise  # open_image's own message names the file and the reason
        raise ValueError(f"{path}: cannot read image ({e})") from e
    if arr.size == 0:
        raise ValueError(f"{path}: the image is empty ({arr.shape[1]}x{arr.shape[0]} pixels)")
    if note:
        steps.append(note)
    if alpha is not None:
        arr, note = flatten_alpha(arr, alpha)
        if note:
            steps.append(note)
    return arr, steps


def _pil_to_float(im: Any) -> tuple[np.ndarray, np.ndarray | None, str]:
    """A Pillow image as (float32 (H, W, C) in [0, 1], alpha (H, W) or None, note)."""
    mode = im.mode
    note = ""
    if mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.float32) / np.float32(65535.0)
        return arr[..., None], None, "16-bit greyscale divided by 65,535"
    if mode == "I":
        raw = np.asarray(im).astype(np.float64)
        lo, hi = float(raw.min(initial=0)), float(raw.max(initial=0))
        if lo >= 0 and hi <= 255:
            return (raw / 255.0).astype(np.float32)[..., None], None, ""
        if lo >= 0 and hi <= 65535:
            return (
                (raw / 65535.0).astype(np.float32)[..., None],
                None,
                ("16-bit greyscale divided by 65,535"),
            )
        scaled = (raw - lo) / max(hi - lo, 1e-12)
        return (
            scaled.astype(np.float32)[..., None],
            None,
            (f"32-bit integer pixels scaled from their range {lo:g}..{hi:g}"),
        )
    if mode == "F":
        raw = np.asarray(im).astype(np.float64)
        raw = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(raw.min(initial=0)), float(raw.max(initial=0))
        if lo >= 0 and hi <= 1:
            return raw.astype(np.float32)[..., None], None, ""
        scaled = (raw - lo) / max(hi - lo, 1e-12)
        return (
            scaled.astype(np.float32)[..., None],
            None,
            (f"floating-point pixels scaled from their range {lo:.4g}..{hi:.4g}"),
        )
    if mode == "1":
        im = im.convert("L")
    elif mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("La", "RGBa"):  # premultiplied alpha
        im = im.convert("LA" if mode == "La" else "RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, LAB, HSV, ...
        im = im.convert("RGB")
    arr = np.asarray(im).astype(np.float32) / np.float32(255.0)
    if arr.ndim == 2:
        arr = arr[..., None]
    alpha = None
    if im.mode in ("LA", "RGBA"):
        alpha, arr = arr[..., -1], arr[..., :-1]
    if (
        arr.shape[-1] == 3
        and np.array_equal(arr[..., 0], arr[..., 1])
        and np.array_equal(arr[..., 0], arr[..., 2])
    ):
        arr = arr[..., :1]  # a grey picture stored as RGB
    return arr, alpha, note


def flatten_alpha(image: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, str]:
    """Composite a picture with transparency onto a plain background.

    The background is white when the visible strokes are dark and black when they are
    light, so a digit drawn on a transparent canvas stays visible whatever its colour.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W, C)`` float in ``[0, 1]`` (not premultiplied).
    alpha : np.ndarray
        ``(H, W)`` opacity in ``[0, 1]``.

    Returns
    -------
    image : np.ndarray
        ``(H, W, C)`` float32, opaque.
    step : str
        What was done (empty when the image was fully opaque).
    """
    a = np.clip(alpha.astype(np.float32), 0, 1)[..., None]
    if np.all(a >= 1):
        return image.astype(np.float32), ""
    lum = to_grayscale(image)
    weight = a[..., 0]
    ink = float((lum * weight).sum() / weight.sum()) if weight.sum() > 0 else 0.0
    bg = np.float32(1.0 if ink < 0.5 else 0.0)
    out = image * a + bg * (1 - a)
    where = "white (the strokes are dark)" if bg else "black (the strokes are light)"
    return out.astype(np.float32), f"transparent background filled with {where}"


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` or ``(H, W)`` in ``[0, 1]`` -> ``(H, W)`` luma (ITU-R 601-2 weights)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image
    if image.shape[-1] == 1:
        return image[..., 0]
    return image[..., :3] @ LUMA


def _resize(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Anti-aliased resize of a float (H, W) array (Pillow's Lanczos on 32-bit floats)."""
    from PIL import Image

    if x.shape == (h, w):
        return x.astype(np.float32)
    im = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32))
    out = np.asarray(im.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32)
    return np.clip(out, 0, 1)


def _border(x: np.ndarray) -> np.ndarray:
    """The pixels of a frame 5 % wide (at least one pixel) around the picture."""
    h, w = x.shape
    bh, bw = max(1, h // 20), max(1, w // 20)
    return np.concatenate([x[:bh].ravel(), x[-bh:].ravel(), x[:, :bw].ravel(), x[:, -bw:].ravel()])


def _background(x: np.ndarray) -> np.ndarray | None:
    """The paper's level under a photographed digit, or None where it is even.

    A quadratic surface in the pixel coordinates is fitted by least squares to the
    border frame (:func:`_border`); border pixels more than 3 robust standard deviations
    off the fit (a stroke that touches the edge) are dropped and the fit repeated.
    Lighting that falls off across a photo (a shadow, a lamp on one side) then leaves
    no band of "ink" along the darker edge. Returns ``(H, W)`` float32, clipped to the
    range of the border pixels kept, or None when that range is below 0.05 (an even
    background: one level, the border's median, is removed as before).
    """
    h, w = x.shape
    if min(h, w) < 16:
        return None
    bh, bw = max(1, h // 20), max(1, w // 20)
    frame = np.zeros((h, w), dtype=bool)
    frame[:bh] = frame[-bh:] = frame[:, :bw] = frame[:, -bw:] = True
    ys, xs = np.nonzero(frame)
    v = x[ys, xs].astype(np.float64)

    def design(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        u, t = xx / (w - 1) * 2 - 1, yy / (h - 1) * 2 - 1
        return np.stack([np.ones_like(u), u, t, u * u, t * t, u * t], axis=-1)

    a = design(ys.astype(np.float64), xs.astype(np.float64))
    keep = np.ones(v.shape, dtype=bool)
    for _ in range(3):
        coef = np.linalg.lstsq(a[keep], v[keep], rcond=None)[0]
        r = np.abs(v - a @ coef)
        spread = 1.4826 * float(np.median(r[keep]))
        keep = r <= max(3 * spread, 0.02)
    lo, hi = float(v[keep].min()), float(v[keep].max())
    if hi - lo < 0.05:
        return None
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.clip(design(yy, xx) @ coef, lo, hi).astype(np.float32)


def prepare_digit(gray: np.ndarray, size: int = 28, noise_floor: float = 0.15) -> Prepared:
    """Make a picture of one digit look like the digit data sets' images.

    Parameters
    ----------
    gray : np.ndarray
        ``(H, W)`` float in ``[0, 1]`` (or uint8, read as ``/255``); either polarity.
    size : int
        The model's input side: 8 follows scikit-learn's digits (fill the frame, centre,
        4x4 block averages); any other size follows MNIST (a box of ``20/28 * size``,
        centred by mass; 28 gives MNIST exactly).
    noise_floor : float
        After the contrast stretch, values below this are background (paper texture,
        JPEG noise) and set to 0 before the digit is cropped.

    Returns
    -------
    Prepared
        ``image`` of shape ``(1, size, size)``, light digit on black, strokes reaching 1.

    Raises
    ------
    ValueError
        Not a 2-D picture, or no digit in it (a blank or uniform image).
    """
    x = np.asarray(gray)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255.0)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or min(x.shape) < 1:
        raise ValueError(f"prepare_digit: expected a 2-D (H, W) picture; got shape {x.shape}")
    if size < 4:
        raise ValueError(f"prepare_digit: size must be >= 4; got {size}")
    steps: list[str] = []
    h0, w0 = x.shape
    bg = float(np.median(_border(x)))
    if bg > 0.5:
        x = 1 - x
        bg = 1 - bg
        steps.append(
            "inverted (a dark digit on a light background -> light on dark, as the training digits)"
        )
    hi = float(np.percentile(x, 99.9)) if x.size > 1000 else float(x.max())
    if hi - bg < 0.1:
        raise ValueError(
            f"prepare_digit: no digit found: the picture is nearly uniform (background "
            f"{bg:.2f}, brightest strokes {hi:.2f})"
        )
    if x.shape == (size, size) and bg < 0.02 and hi > 0.9 and not steps:
        return Prepared(np.clip(x, 0, 1)[None].astype(np.float32), [
            f"already {size}x{size} light-on-dark: used as it is"
        ])  # fmt: skip
    field = _background(x)
    if field is None:
        x = np.clip((x - bg) / (hi - bg), 0, 1)
        if bg > 0.02 or hi < 0.98:
            steps.append(f"background level {bg:.2f} removed and contrast stretched")
    else:
        x = x - field
        top = float(np.percentile(x, 99.9)) if x.size > 1000 else float(x.max())
        if top < 0.1:
            raise ValueError(
                f"prepare_digit: no digit found: nothing stands out of the uneven "
                f"background ({float(field.min()):.2f}-{float(field.max()):.2f})"
            )
        x = np.clip(x / top, 0, 1)
        steps.append(
            f"uneven background ({float(field.min()):.2f}-{float(field.max()):.2f}, "
            "fitted to the picture's border) removed and contrast stretched"
        )
    x[x < noise_floor] = 0
    rows, cols = np.nonzero(x.any(axis=1))[0], np.nonzero(x.any(axis=0))[0]
    x = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = x.shape
    if (h, w) != (h0, w0):
        steps.append(f"cropped to the digit ({w}x{h} of {w0}x{h0} pixels)")
    if size == 8:
        return Prepared(_digits8(x, steps), steps)
    box = max(1, round(size * 20 / 28))
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = _resize(x, nh, nw)
    small /= max(float(small.max()), 1e-6)
    ys, xs = np.mgrid[0:nh, 0:nw]
    mass = float(small.sum())
    cy, cx = float((small * ys).sum() / mass), float((small * xs).sum() / mass)
    centre = size / 2  # MNIST's centres of mass average (14.0, 14.0) in 28x28
    top = int(np.clip(round(centre - cy), 0, size - nh))
    left = int(np.clip(round(centre - cx), 0, size - nw))
    out = np.zeros((size, size), dtype=np.float32)
    out[top : top + nh, left : left + nw] = small
    steps.append(
        f"scaled into a {box}x{box} box ({nw}x{nh}) and centred by its centre of mass in "
        f"{size}x{size}"
    )
    return Prepared(out[None], steps)


def _digits8(x: np.ndarray, steps: list[str]) -> np.ndarray:
    """scikit-learn's digits: fill a 32x32 frame (aspect kept), centre, 4x4 block means."""
    h, w = x.shape
    scale = 32 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    big = np.zeros((32, 32), dtype=np.float32)
    top, left = (32 - nh) // 2, (32 - nw) // 2
    big[top : top + nh, left : left + nw] = _resize(x, nh, nw)
    out = big.reshape(8, 4, 8, 4).mean(axis=(1, 3))
    out /= max(float(out.max()), 1e-6)
    steps.append(
        f"scaled to fill a 32x32 frame ({nw}x{nh}), centred and averaged over 4x4 blocks "
        "to 8x8 (scikit-learn's digits)"
    )
    return out[None].astype(np.float32)


def _prepare_fashion(gray: np.ndarray, size: int) -> Prepared:
    """Fashion-MNIST's conversion: light object on black, longest side = ``size``, centred."""
    x = gray.astype(np.float32)
    steps: list[str] = []
    if float(np.median(_border(x))) > 0.5:
        x = 1 - x
        steps.append("inverted (a dark background is what Fashion-MNIST has)")
    bg = float(np.median(_border(x)))
    mask = x > bg + 0.05
    if mask.any():
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        h0, w0 = x.shape
        x = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        if x.shape != (h0, w0):
            steps.append(f"trimmed to the object ({x.shape[1]}x{x.shape[0]} of {w0}x{h0})")
    h, w = x.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = _resize(x, nh, nw)
    steps.append(f"longest side scaled to {size} and centred in {size}x{size}")
    return Prepared(out[None], steps)


def style_for(data: str, size: int) -> str:
    """The preprocessing style for a run's data spec: ``digits8`` for the 8x8 digits,
    ``mnist`` for MNIST, ``fashion`` for Fashion-MNIST, ``plain`` for anything else."""
    kind = data.partition(":")[0].lower()
    if kind == "digits":
        return "digits8" if size == 8 else "mnist"
    if kind == "mnist":
        return "mnist"
    if kind in ("fashion", "fashionmnist"):
        return "fashion"
    return "plain"


def prepare_image(
    image: str | os.PathLike | np.ndarray,
    channels: int,
    size: int,
    style: str = "plain",
) -> Prepared:
    """A picture (file or ``(H, W[, C])`` array in ``[0, 1]``) as a model input.

    Parameters
    ----------
    image : path-like or np.ndarray
        An image file, or an ``(H, W)`` / ``(H, W, C)`` float array in ``[0, 1]`` with
        C = 1, 2 (grey + alpha), 3 or 4 (RGBA, e.g. a drawing canvas); uint8 arrays are
        divided by 255.
    channels : int
        The model's input channels (1 or 3).
    size : int
        The model's input side.
    style : str
        ``mnist`` or ``digits8`` (:func:`prepare_digit`), ``fashion`` (Fashion-MNIST's
        trim, scale and centre), ``plain`` (a bilinear resize, as
        :class:`cnnkit.data.ImageFolder` does for training); use :func:`style_for` to
        pick the one of a run's data.

    Returns
    -------
    Prepared
        ``image`` of shape ``(channels, size, size)`` and the steps taken.

    Raises
    ------
    ValueError
        Unreadable file, unknown style or channel count, or no digit in the picture.
    """
    if style not in STYLES[1:]:
        raise ValueError(f"prepare_image: unknown style {style!r}; use one of {STYLES[1:]}")
    if channels not in (1, 3):
        raise ValueError(f"prepare_image: channels must be 1 or 3; got {channels}")
    if isinstance(image, np.ndarray):
        arr = image.astype(np.float32) / 255 if image.dtype == np.uint8 else image
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
            raise ValueError(
                f"prepare_image: expected (H, W) or (H, W, C) with C = 1, 2 (grey + alpha), "
                f"3 or 4 (RGBA); got {arr.shape}"
            )
        steps: list[str] = []
        if arr.shape[-1] in (2, 4):  # a drawing canvas: transparent where nothing is drawn
            arr, note = flatten_alpha(arr[..., :-1], arr[..., -1])
            steps += [note] if note else []
    else:
        arr, steps = read_image(image)
    h0, w0 = arr.shape[:2]
    if style != "plain" or channels == 1:
        if arr.shape[-1] == 3:
            steps.append("colour -> greyscale (ITU-R 601 luma)")
        gray = to_grayscale(arr)
    if style in ("mnist", "digits8"):
        if (style == "digits8") != (size == 8):
            raise ValueError(f"prepare_image: style {style!r} does not fit a {size}x{size} input")
        done = prepare_digit(gray, size)
        out = done.image
        steps += done.steps
    elif style == "fashion":
        done = _prepare_fashion(gray, size)
        out = done.image
        steps += done.steps
    else:
        if channels == 1:
            planes = [gray]
        else:
            planes = [arr[..., c] for c in range(3)] if arr.shape[-1] == 3 else [arr[..., 0]] * 3
        out = np.stack([_resize_bilinear(p, size) for p in planes])
        if (h0, w0) != (size, size):
            steps.append(f"resized {w0}x{h0} -> {size}x{size}")
        return Prepared(out.astype(np.float32), steps)
    if channels == 3:
        out = np.repeat(out, 3, axis=0)
        steps.append("grey copied to 3 channels")
    return Prepared(out.astype(np.float32), steps)


def _resize_bilinear(x: np.ndarray, size: int) -> np.ndarray:
    """A plain bilinear resize to ``size`` x ``size`` on 8-bit values, exactly what
    :func:`cnnkit.data.folder.load_image` does to training images."""
    from PIL import Image

    q = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    if q.shape != (size, size):
        q = np.asarray(Image.fromarray(q).resize((size, size), Image.Resampling.BILINEAR))
    return q.astype(np.float32) / np.float32(255.0)
