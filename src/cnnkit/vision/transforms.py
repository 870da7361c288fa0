"""``cnnkit.vision.transforms``: torchvision's transforms on PIL images and tensors.

As in torchvision, the geometric transforms work on PIL images (and on ``(C, H, W)``
tensors), :class:`ToTensor` turns a PIL image or an ``(H, W, C)`` array into a float
``(C, H, W)`` :class:`~cnnkit.tensor.Tensor` in ``[0, 1]``, and :class:`Normalize` works on
that tensor. Random transforms draw from :func:`cnnkit.utils.data.worker_rng` (the
global generator seeded by ``ck.manual_seed``, or the batch's own inside a DataLoader).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cnnkit.tensor import Tensor

__all__ = [
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "GaussianBlur",
    "Grayscale",
    "InterpolationMode",
    "Lambda",
    "Normalize",
    "PILToTensor",
    "Pad",
    "RandomApply",
    "RandomCrop",
    "RandomErasing",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomRotation",
    "RandomVerticalFlip",
    "Resize",
    "ToPILImage",
    "ToTensor",
]


class InterpolationMode:
    """torchvision's interpolation names (strings, as torchvision's enum values)."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _pil() -> Any:
    from PIL import Image

    return Image


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.")


def _resample(mode: Any) -> Any:
    Image = _pil()
    names = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        0: Image.Resampling.NEAREST,
        2: Image.Resampling.BILINEAR,
        3: Image.Resampling.BICUBIC,
    }
    if mode not in names:
        raise ValueError(f"interpolation must be nearest, bilinear or bicubic; got {mode!r}")
    return names[mode]


def _rand() -> float:
    from cnnkit.utils.data import worker_rng

    return float(worker_rng().random())


def _randint(lo: int, hi: int) -> int:
    """An integer in ``[lo, hi)``."""
    from cnnkit.utils.data import worker_rng

    return int(worker_rng().integers(lo, hi))


def _pair(size: Any, where: str) -> tuple[int, int]:
    if isinstance(size, numbers.Number):
        return int(size), int(size)  # type: ignore[call-overload]
    if len(size) == 1:
        return int(size[0]), int(size[0])
    if len(size) != 2:
        raise ValueError(f"{where}: size must be an int or (h, w); got {size!r}")
    return int(size[0]), int(size[1])


def _hw(img: Any) -> tuple[int, int]:
    if _is_pil(img):
        return img.height, img.width
    return int(img.shape[-2]), int(img.shape[-1])


def _on_channels(img: Tensor, fn: Callable[[Any], Any]) -> Tensor:
    """Apply a PIL operation to each channel of a ``(C, H, W)`` tensor (as mode ``F``)."""
    Image = _pil()
    arr = np.asarray(img.array if isinstance(img, Tensor) else img)
    out = [
        np.asarray(fn(Image.fromarray(np.ascontiguousarray(c, dtype=np.float32), "F"))) for c in arr
    ]
    return Tensor(np.stack(out).astype(arr.dtype if arr.dtype.kind == "f" else np.float32))


class Compose:
    """Apply ``transforms`` one after the other."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: Any) -> Any:
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"Compose({body}\n)"


class ToTensor:
    """PIL image or ``(H, W, C)`` array -> float32 ``(C, H, W)`` Tensor (uint8 scaled by 1/255)."""

    def __call__(self, pic: Any) -> Tensor:
        if _is_pil(pic):
            mode = pic.mode
            arr = np.asarray(pic)
            if mode == "1":
                arr = arr.astype(np.uint8) * 255
        elif isinstance(pic, np.ndarray):
            arr = pic
        else:
            raise TypeError(
                f"ToTensor: expected a PIL image or np.ndarray; got {type(pic).__name__}"
            )
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise ValueError(
                f"ToTensor: expected an (H, W) or (H, W, C) image; got shape {arr.shape}"
            )
        chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if chw.dtype == np.uint8:
            return Tensor(chw.astype(np.float32) / np.float32(255.0))
        return Tensor(chw.astype(np.float32) if chw.dtype.kind != "f" else chw)

    def __repr__(self) -> str:
        return "ToTensor()"


class PILToTensor:
    """PIL image -> uint8 ``(C, H, W)`` Tensor, values unchanged."""

    def __call__(self, pic: Any) -> Tensor:
        arr = np.asarray(pic)
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return Tensor(np.ascontiguousarray(arr.transpose(2, 0, 1)))


class ToPILImage:
    """``(C, H, W)`` Tensor or ``(H, W, C)`` array -> PIL image (floats are scaled by 255)."""

    def __init__(self, mode: str | None = None) -> None:
        self.mode = mode

    def __call__(self, pic: Any) -> Any:
        Image = _pil()
        if isinstance(pic, Tensor):
            arr = pic.numpy()
            if arr.ndim == 3:
                arr = arr.transpose(1, 2, 0)
            if arr.dtype.kind == "f":
                arr = (arr * 255).astype(np.uint8)  # torchvision truncates (mul(255).byte())
        else:
            arr = np.asarray(pic)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        img = Image.fromarray(np.ascontiguousarray(arr))
        return img if self.mode is None else img.convert(self.mode)


class Normalize:
    """``(x - mean[c]) / std[c]`` on a float ``(C, H, W)`` (or ``(N, C, H, W)``) Tensor."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        self.mean = list(np.atleast_1d(np.asarray(mean, dtype=np.float64)))
        self.std = list(np.atleast_1d(np.asarray(std, dtype=np.float64)))
        if any(s == 0 for s in self.std):
            raise ValueError(f"Normalize: std contains a zero: {self.std}")
        self.inplace = inplace

    def __call__(self, tensor: Any) -> Tensor:
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f"Normalize: expected a Tensor (apply ToTensor first); got {type(tensor).__name__}"
            )
        if tensor.dtype.kind != "f":
            raise TypeError(f"Normalize: expected a float tensor; got {tensor.dtype}")
        c = tensor.shape[-3] if tensor.ndim >= 3 else 1
        if len(self.mean) not in (1, c) or len(self.std) not in (1, c):
            raise ValueError(
                f"Normalize: {len(self.mean)} means / {len(self.std)} stds for an image "
                f"with {c} channels"
            )
        dt = tensor.dtype
        mean = np.asarray(self.mean, dtype=dt).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=dt).reshape(-1, 1, 1)
        return Tensor((tensor.array - mean) / std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Resize:
    """Resize to ``(h, w)``, or the smaller edge to ``size`` keeping the aspect ratio."""

    def __init__(
        self,
        size: Any,
        interpolation: Any = "bilinear",
        max_size: int | None = None,
        antialias: Any = True,
    ) -> None:
        self.size = size
        self.interpolation = interpolation
        self.max_size = max_size

    def _target(self, h: int, w: int) -> tuple[int, int]:
        if isinstance(self.size, numbers.Number) or len(self.size) == 1:
            s = int(self.size if isinstance(self.size, numbers.Number) else self.size[0])  # type: ignore[call-overload]
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = s, int(s * long / short)
            if self.max_size is not None and new_long > self.max_size:
                new_short, new_long = int(self.max_size * new_short / new_long), self.max_size
            return (new_long, new_short) if w <= h else (new_short, new_long)
        return int(self.size[0]), int(self.size[1])

    def __call__(self, img: Any) -> Any:
        h, w = _hw(img)
        th, tw = self._target(h, w)
        rs = _resample(self.interpolation)
        if _is_pil(img):
            return img if (th, tw) == (h, w) else img.resize((tw, th), rs)
        return _on_channels(img, lambda c: c.resize((tw, th), rs))


class CenterCrop:
    """Crop the central ``(h, w)`` region."""

    def __init__(self, size: Any) -> None:
        self.size = _pair(size, "CenterCrop")

    def __call__(self, img: Any) -> Any:
        h, w = _hw(img)
        th, tw = self.size
        if th > h or tw > w:
            img = _pad_to(img, th, tw)
            h, w = _hw(img)
        top, left = round((h - th) / 2.0), round((w - tw) / 2.0)
        return _crop(img, top, left, th, tw)


def _crop(img: Any, top: int, left: int, h: int, w: int) -> Any:
    if _is_pil(img):
        return img.crop((left, top, left + w, top + h))
    return img[..., top : top + h, left : left + w]


def _pad_to(img: Any, th: int, tw: int) -> Any:
    """Zero-pad to at least (th, tw), split evenly, extra on the right/bottom (torchvision)."""
    h, w = _hw(img)
    ph, pw = max(th - h, 0), max(tw - w, 0)
    return Pad((pw // 2, ph // 2, (pw + 1) // 2, (ph + 1) // 2))(img)


class Pad:
    """Pad the borders: ``padding`` as int, ``(lr, tb)`` or ``(left, top, right, bottom)``."""

    def __init__(self, padding: Any, fill: Any = 0, padding_mode: str = "constant") -> None:
        if isinstance(padding, numbers.Number):
            p = (int(padding),) * 4  # type: ignore[call-overload]
        elif len(padding) == 2:
            p = (int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1]))
        elif len(padding) == 4:
            p = tuple(int(v) for v in padding)
        else:
            raise ValueError(f"Pad: padding must have 1, 2 or 4 values; got {padding!r}")
        if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
            raise ValueError(f"Pad: unknown padding_mode {padding_mode!r}")
        self.padding, self.fill, self.padding_mode = p, fill, padding_mode

    def __call__(self, img: Any) -> Any:
        left, top, right, bottom = self.padding
        pil = _is_pil(img)
        arr = np.asarray(img) if pil else np.asarray(img.array if isinstance(img, Tensor) else img)
        if pil:
            spec = ((top, bottom), (left, right)) + (((0, 0),) if arr.ndim == 3 else ())
        else:
            spec = ((0, 0),) * (arr.ndim - 2) + ((top, bottom), (left, right))
        if self.padding_mode == "constant":
            out = np.pad(arr, spec, mode="constant", constant_values=self.fill)
        else:
            out = np.pad(arr, spec, mode=self.padding_mode)
        if pil:
            Image = _pil()
            return Image.fromarray(out, mode=img.mode if img.mode != "P" else None)
        return Tensor(out)


class RandomCrop:
    """Crop a random ``(h, w)`` region, after optional ``padding``."""

    def __init__(
        self,
        size: Any,
        padding: Any = None,
        pad_if_needed: bool = False,
        fill: Any = 0,
        padding_mode: str = "constant",
    ) -> None:
        self.size = _pair(size, "RandomCrop")
        self.padding, self.pad_if_needed = padding, pad_if_needed
        self.fill, self.padding_mode = fill, padding_mode

    def __call__(self, img: Any) -> Any:
        if self.padding is not None:
            img = Pad(self.padding, self.fill, self.padding_mode)(img)
        th, tw = self.size
        h, w = _hw(img)
        if self.pad_if_needed and (h < th or w < tw):
            pw, ph = max(tw - w, 0), max(th - h, 0)
            img = Pad((pw, ph), self.fill, self.padding_mode)(img)
            h, w = _hw(img)
        if h < th or w < tw:
            raise ValueError(f"RandomCrop: crop size {(th, tw)} is larger than the image {(h, w)}")
        top = _randint(0, h - th + 1)
        left = _randint(0, w - tw + 1)
        return _crop(img, top, left, th, tw)


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: Any) -> Any:
        if _rand() < self.p:
            if _is_pil(img):
                return img.transpose(_pil().Transpose.FLIP_LEFT_RIGHT)
            return Tensor(np.ascontiguousarray(np.asarray(img)[..., ::-1]))
        return img


class RandomVerticalFlip:
    """Mirror top-bottom with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: Any) -> Any:
        if _rand() < self.p:
            if _is_pil(img):
                return img.transpose(_pil().Transpose.FLIP_TOP_BOTTOM)
            return Tensor(np.ascontiguousarray(np.asarray(img)[..., ::-1, :]))
        return img


class RandomRotation:
    """Rotate by an angle drawn uniformly from ``degrees`` (``d`` means ``(-d, d)``)."""

    def __init__(
        self,
        degrees: Any,
        interpolation: Any = "nearest",
        expand: bool = False,
        center: Sequence[int] | None = None,
        fill: Any = 0,
    ) -> None:
        if isinstance(degrees, numbers.Number):
            if degrees < 0:
                raise ValueError(f"RandomRotation: degrees must be >= 0; got {degrees}")
            degrees = (-float(degrees), float(degrees))  # type: ignore[arg-type]
        self.degrees = (float(degrees[0]), float(degrees[1]))
        self.interpolation, self.expand, self.center, self.fill = (
            interpolation,
            expand,
            center,
            fill,
        )

    def __call__(self, img: Any) -> Any:
        lo, hi = self.degrees
        angle = lo + (hi - lo) * _rand()
        rs = _resample(self.interpolation)

        def rot(im: Any) -> Any:
            fill = self.fill
            if im.mode == "RGB" and isinstance(fill, numbers.Number):
                fill = (int(fill),) * 3
            return im.rotate(angle, rs, self.expand, self.center, fillcolor=fill)

        return rot(img) if _is_pil(img) else _on_channels(img, rot)


class Grayscale:
    """To gray (ITU-R 601-2 luma), with 1 or 3 identical output channels."""

    def __init__(self, num_output_channels: int = 1) -> None:
        if num_output_channels not in (1, 3):
            raise ValueError(
                f"Grayscale: num_output_channels must be 1 or 3; got {num_output_channels}"
            )
        self.num_output_channels = num_output_channels

    def __call__(self, img: Any) -> Any:
        if _is_pil(img):
            g = img.convert("L")
            return g if self.num_output_channels == 1 else _pil().merge("RGB", (g, g, g))
        arr = np.asarray(img)
        g = 0.299 * arr[..., 0, :, :] + 0.587 * arr[..., 1, :, :] + 0.114 * arr[..., 2, :, :]
        g = np.expand_dims(g.astype(arr.dtype), -3)
        return Tensor(np.repeat(g, self.num_output_channels, axis=-3))


class Lambda:
    """Wrap a user function as a transform."""

    def __init__(self, lambd: Callable[[Any], Any]) -> None:
        if not callable(lambd):
            raise TypeError(f"Lambda: argument should be callable; got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img: Any) -> Any:
        return self.lambd(img)


def _uniform(lo: float, hi: float) -> float:
    """A float in ``[lo, hi)`` from the transforms' generator."""
    from cnnkit.utils.data import worker_rng

    return float(worker_rng().uniform(lo, hi))


def _float_chw(img: Any, where: str) -> np.ndarray:
    """The float ``(..., C, H, W)`` array of a tensor image (values in [0, 1])."""
    arr = np.asarray(img.array if isinstance(img, Tensor) else img)
    if arr.dtype.kind != "f" or arr.ndim < 3:
        raise TypeError(
            f"{where}: expected a PIL image or a float (C, H, W) tensor in [0, 1]; got "
            f"{arr.dtype} of shape {arr.shape}"
        )
    return arr


def _resize_to(img: Any, size: tuple[int, int], interpolation: Any) -> Any:
    th, tw = size
    rs = _resample(interpolation)
    if _is_pil(img):
        return img.resize((tw, th), rs)
    return _on_channels(img, lambda c: c.resize((tw, th), rs))


def _ratio_pair(value: Any, name: str, where: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if lo > hi:
        raise ValueError(f"{where}: {name} should be (min, max); got {value!r}")
    return lo, hi


def _area_aspect_draw(
    area: float, scale: Sequence[float], ratio: Sequence[float]
) -> tuple[int, int]:
    """One draw of a box for the random crop and erasing transforms: an area fraction
    uniform in ``scale``, an aspect ratio log-uniform in ``ratio``; returns the sides
    ``(round(sqrt(A r)), round(sqrt(A / r)))`` (which is the width is the caller's)."""
    target = area * _uniform(scale[0], scale[1])
    aspect = float(np.exp(_uniform(np.log(ratio[0]), np.log(ratio[1]))))
    return round(np.sqrt(target * aspect)), round(np.sqrt(target / aspect))


class RandomResizedCrop:
    """Crop a random region of area ``scale`` (fraction of the image) and aspect ratio
    ``ratio`` (w / h, drawn log-uniformly), then resize it to ``size`` (torchvision's).

    Up to 10 draws are tried; if no region fits, the largest central crop whose aspect
    ratio lies within ``ratio`` is taken.
    """

    def __init__(
        self,
        size: Any,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: Any = "bilinear",
        antialias: Any = True,
    ) -> None:
        self.size = _pair(size, "RandomResizedCrop")
        self.scale = _ratio_pair(scale, "scale", "RandomResizedCrop")
        self.ratio = _ratio_pair(ratio, "ratio", "RandomResizedCrop")
        _resample(interpolation)
        self.interpolation = interpolation

    @staticmethod
    def get_params(
        img: Any, scale: Sequence[float], ratio: Sequence[float]
    ) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` of a random crop (see the class)."""
        height, width = _hw(img)
        area = height * width
        for _ in range(10):
            w, h = _area_aspect_draw(area, scale, ratio)
            if 0 < w <= width and 0 < h <= height:
                return _randint(0, height - h + 1), _randint(0, width - w + 1), h, w
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, round(width / min(ratio))
        elif in_ratio > max(ratio):
            h, w = height, round(height * max(ratio))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img: Any) -> Any:
        top, left, h, w = self.get_params(img, self.scale, self.ratio)
        return _resize_to(_crop(img, top, left, h, w), self.size, self.interpolation)

    def __repr__(self) -> str:
        return (
            f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio}, "
            f"interpolation={self.interpolation})"
        )


def _gray(arr: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of ``(..., 3, H, W)``, keeping the channel axis."""
    g = 0.299 * arr[..., 0, :, :] + 0.587 * arr[..., 1, :, :] + 0.114 * arr[..., 2, :, :]
    return np.expand_dims(g, -3).astype(arr.dtype)


def _blend(a: np.ndarray, b: Any, factor: float) -> np.ndarray:
    """``clip(factor * a + (1 - factor) * b, 0, 1)``."""
    return np.clip(factor * a + (1.0 - factor) * b, 0.0, 1.0).astype(a.dtype)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3, H, W)`` RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = rgb[..., 0, :, :], rgb[..., 1, :, :], rgb[..., 2, :, :]
    maxc, minc = rgb.max(axis=-3), rgb.min(axis=-3)
    span = maxc - minc
    sat = np.where(maxc > 0, span / np.where(maxc > 0, maxc, 1), 0.0)
    safe = np.where(span > 0, span, 1)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = np.where(maxc == r, bc - gc, np.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = np.where(span > 0, (hue / 6.0) % 1.0, 0.0)
    return np.stack([hue, sat, maxc], axis=-3)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv`: the hue's sextant picks which of ``v``,
    ``p = v(1 - s)``, ``q = v(1 - s f)``, ``t = v(1 - s(1 - f))`` each channel takes."""
    h, s, v = hsv[..., 0, :, :], hsv[..., 1, :, :], hsv[..., 2, :, :]
    sextant = np.floor(h * 6.0)
    f = h * 6.0 - sextant
    i = sextant.astype(np.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [np.choose(i, [row[c] for row in table]) for c in range(3)]
    return np.stack(out, axis=-3)


def adjust_brightness(img: Any, factor: float) -> Any:
    """Scale the intensities: ``clip(factor * x, 0, 1)`` (``ImageEnhance.Brightness``)."""
    if _is_pil(img):
        from PIL import ImageEnhance

        return ImageEnhance.Brightness(img).enhance(factor)
    arr = _float_chw(img, "adjust_brightness")
    return Tensor(_blend(arr, 0.0, factor))


def adjust_contrast(img: Any, factor: float) -> Any:
    """Blend with the mean gray level: ``clip(f x + (1 - f) mean(gray(x)), 0, 1)``."""
    if _is_pil(img):
        from PIL import ImageEnhance

        return ImageEnhance.Contrast(img).enhance(factor)
    arr = _float_chw(img, "adjust_contrast")
    gray = _gray(arr) if arr.shape[-3] == 3 else arr
    return Tensor(_blend(arr, gray.mean(axis=(-3, -2, -1), keepdims=True), factor))


def adjust_saturation(img: Any, factor: float) -> Any:
    """Blend with the grayscale image: ``clip(f x + (1 - f) gray(x), 0, 1)``."""
    if _is_pil(img):
        from PIL import ImageEnhance

        return ImageEnhance.Color(img).enhance(factor)
    arr = _float_chw(img, "adjust_saturation")
    if arr.shape[-3] == 1:
        return Tensor(arr)
    return Tensor(_blend(arr, _gray(arr), factor))


def adjust_hue(img: Any, hue_factor: float) -> Any:
    """Rotate the hue by ``hue_factor`` turns (in [-0.5, 0.5]) in HSV space."""
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"adjust_hue: hue_factor must be in [-0.5, 0.5]; got {hue_factor}")
    if _is_pil(img):
        Image = _pil()
        if img.mode in ("L", "1", "I", "F"):
            return img
        mode = img.mode
        h, s, v = img.convert("HSV").split()
        hue = np.asarray(h, dtype=np.uint8)
        shifted = (hue.astype(np.int64) + int(hue_factor * 255)) % 256  # uint8 wrap-around
        h = Image.fromarray(shifted.astype(np.uint8), "L")
        return Image.merge("HSV", (h, s, v)).convert(mode)
    arr = _float_chw(img, "adjust_hue")
    if arr.shape[-3] == 1:
        return Tensor(arr)
    hsv = rgb_to_hsv(arr.astype(np.float64))
    hsv[..., 0, :, :] = (hsv[..., 0, :, :] + hue_factor) % 1.0
    return Tensor(hsv_to_rgb(hsv).astype(arr.dtype))


def _jitter_range(value: Any, name: str, center: float, bound: tuple[float, float],
                  clip_first: bool = True) -> tuple[float, float] | None:  # fmt: skip
    """torchvision's rule: a number ``v`` means ``[center - v, center + v]`` (clipped at
    0 for the factors), a pair is the range itself; ``None`` when it changes nothing."""
    where = "ColorJitter"
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"{where}: {name} must be non-negative; got {value}")
        lo, hi = center - float(value), center + float(value)
        if clip_first:
            lo = max(lo, 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = float(value[0]), float(value[1])
    else:
        raise TypeError(f"{where}: {name} must be a number or a (min, max) pair; got {value!r}")
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(f"{where}: {name} values must lie in {list(bound)}; got {(lo, hi)}")
    return None if lo == hi == center else (lo, hi)


class ColorJitter:
    """Randomly change brightness, contrast, saturation and hue, in a random order.

    Each factor is drawn uniformly from its range: a number ``v`` gives
    ``[max(0, 1 - v), 1 + v]`` (hue: ``[-v, v]`` turns, ``v <= 0.5``), a pair is the range.
    The operations are :func:`adjust_brightness`, :func:`adjust_contrast`,
    :func:`adjust_saturation` and :func:`adjust_hue` (PIL images through
    ``ImageEnhance``, tensors by torchvision's blending formulas).
    """

    def __init__(self, brightness: Any = 0, contrast: Any = 0, saturation: Any = 0,
                 hue: Any = 0) -> None:  # fmt: skip
        inf = float("inf")
        self.brightness = _jitter_range(brightness, "brightness", 1.0, (0.0, inf))
        self.contrast = _jitter_range(contrast, "contrast", 1.0, (0.0, inf))
        self.saturation = _jitter_range(saturation, "saturation", 1.0, (0.0, inf))
        self.hue = _jitter_range(hue, "hue", 0.0, (-0.5, 0.5), clip_first=False)

    @staticmethod
    def get_params(
        brightness: tuple[float, float] | None,
        contrast: tuple[float, float] | None,
        saturation: tuple[float, float] | None,
        hue: tuple[float, float] | None,
    ) -> tuple[list[int], float | None, float | None, float | None, float | None]:
        """The order of the four operations and their factors (None: skipped)."""
        from cnnkit.utils.data import worker_rng

        order = [int(i) for i in worker_rng().permutation(4)]
        factors = [None if r is None else _uniform(r[0], r[1])
                   for r in (brightness, contrast, saturation, hue)]  # fmt: skip
        return order, *factors  # type: ignore[return-value]

    def __call__(self, img: Any) -> Any:
        order, *factors = self.get_params(self.brightness, self.contrast, self.saturation,
                                          self.hue)  # fmt: skip
        ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
        for i in order:
            if factors[i] is not None:
                img = ops[i](img, factors[i])
        return img

    def __repr__(self) -> str:
        return (
            f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue})"
        )


class RandomErasing:
    """With probability ``p``, fill a random rectangle of a ``(C, H, W)`` tensor with
    ``value`` (Zhong et al. 2017): area a ``scale`` fraction of the image, aspect ratio
    (h / w) drawn log-uniformly from ``ratio``; ``value`` a number, one per channel, or
    ``'random'`` (standard normal values). Up to 10 draws; none fitting leaves the image.
    Tensors only (apply after ``ToTensor``), as torchvision.
    """

    def __init__(
        self,
        p: float = 0.5,
        scale: tuple[float, float] = (0.02, 0.33),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: Any = 0,
        inplace: bool = False,
    ) -> None:
        where = "RandomErasing"
        if not 0 <= p <= 1:
            raise ValueError(f"{where}: p must be in [0, 1]; got {p}")
        self.scale = _ratio_pair(scale, "scale", where)
        self.ratio = _ratio_pair(ratio, "ratio", where)
        if self.scale[0] < 0 or self.scale[1] > 1:
            raise ValueError(f"{where}: scale must lie in [0, 1]; got {scale!r}")
        if isinstance(value, str) and value != "random":
            raise ValueError(
                f"{where}: value must be a number, a sequence or 'random'; got {value!r}"
            )
        self.p, self.value, self.inplace = float(p), value, inplace

    @staticmethod
    def get_params(
        img: Any, scale: Sequence[float], ratio: Sequence[float], value: Any = None
    ) -> tuple[int, int, int, int, Any]:
        """``(top, left, h, w, fill)``; the whole image and itself when no draw fits."""
        from cnnkit.utils.data import worker_rng

        arr = np.asarray(img.array if isinstance(img, Tensor) else img)
        c, height, width = arr.shape[-3:]
        area = height * width
        for _ in range(10):
            h, w = _area_aspect_draw(area, scale, ratio)
            if not (h < height and w < width):
                continue
            if value is None:
                fill = worker_rng().standard_normal((c, h, w)).astype(arr.dtype)
            else:
                fill = np.asarray(value, dtype=arr.dtype).reshape(-1, 1, 1)
            return _randint(0, height - h + 1), _randint(0, width - w + 1), h, w, fill
        return 0, 0, height, width, arr

    def __call__(self, img: Any) -> Any:
        if _is_pil(img) or not isinstance(img, (Tensor, np.ndarray)):
            raise TypeError(
                f"RandomErasing: expected a (C, H, W) tensor (apply ToTensor first); got "
                f"{type(img).__name__}"
            )
        arr = np.asarray(img.array if isinstance(img, Tensor) else img)
        if arr.ndim < 3:
            raise ValueError(f"RandomErasing: expected a (C, H, W) tensor; got shape {arr.shape}")
        if _rand() >= self.p:
            return img
        value = None if isinstance(self.value, str) else self.value
        if value is not None and np.size(value) not in (1, arr.shape[-3]):
            raise ValueError(
                f"RandomErasing: value has {np.size(value)} entries for {arr.shape[-3]} channels"
            )
        top, left, h, w, fill = self.get_params(arr, self.scale, self.ratio, value)
        if fill is arr:
            return img
        out = arr.copy()
        out[..., top : top + h, left : left + w] = fill
        return Tensor(out)


class RandomApply(Compose):
    """Apply the list of ``transforms`` (in order, as :class:`Compose`) with probability
    ``p``, or none."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]], p: float = 0.5) -> None:
        super().__init__(transforms)
        self.p = float(p)

    def __call__(self, img: Any) -> Any:
        return img if self.p < _rand() else super().__call__(img)

    def __repr__(self) -> str:
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"RandomApply(\n    p={self.p}{body}\n)"


class RandomGrayscale:
    """Convert to gray with probability ``p``, keeping the number of channels (1 or 3)."""

    def __init__(self, p: float = 0.1) -> None:
        self.p = float(p)

    def __call__(self, img: Any) -> Any:
        if _rand() >= self.p:
            return img
        if _is_pil(img):
            channels = 1 if img.mode == "L" else 3
        else:
            channels = int(np.asarray(img).shape[-3])
            if channels == 1:
                return img
        return Grayscale(channels)(img)


def gaussian_kernel1d(kernel_size: int, sigma: float) -> np.ndarray:
    """``exp(-x^2 / (2 sigma^2))`` at ``x = -(k-1)/2 .. (k-1)/2``, normalised to sum 1."""
    x = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2.0
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(img: Any, kernel_size: tuple[int, int], sigma: tuple[float, float]) -> Any:
    """Separable Gaussian blur (``kernel_size`` ``(kx, ky)``, ``sigma`` ``(sx, sy)``) with
    reflected borders; a PIL image is blurred as floats and rounded back to uint8."""
    kx, ky = kernel_size
    pil = _is_pil(img)
    if pil:
        src = np.asarray(img)
        arr = (src[None] if src.ndim == 2 else src.transpose(2, 0, 1)).astype(np.float64)
    else:
        arr = np.asarray(img.array if isinstance(img, Tensor) else img)
        if arr.dtype.kind != "f" or arr.ndim < 3:
            raise TypeError(
                f"gaussian_blur: expected a PIL image or a float (C, H, W) tensor; got "
                f"{arr.dtype} of shape {arr.shape}"
            )
    h, w = arr.shape[-2:]
    if ky // 2 >= h or kx // 2 >= w:
        raise ValueError(
            f"gaussian_blur: kernel {kernel_size} needs an image larger than half of it "
            f"(reflected borders); got {h}x{w}"
        )
    out = arr
    for axis, k, sg in ((-1, kx, sigma[0]), (-2, ky, sigma[1])):
        weights = gaussian_kernel1d(k, sg).astype(out.dtype)
        r = k // 2
        spec = [(0, 0)] * out.ndim
        spec[axis] = (r, r)
        padded = np.pad(out, spec, mode="reflect")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for i in range(k):  # one shifted slice per tap: k vector ops, not a loop per pixel
            acc += weights[i] * np.take(padded, np.arange(i, i + n), axis=axis)
        out = acc
    if pil:
        res = np.clip(np.round(out), 0, 255).astype(np.uint8)
        res = res[0] if np.asarray(img).ndim == 2 else res.transpose(1, 2, 0)
        return _pil().fromarray(res, mode=img.mode)
    return Tensor(out.astype(arr.dtype))


class GaussianBlur:
    """Blur with a Gaussian kernel of ``kernel_size`` (odd, int or ``(kx, ky)``) and a
    ``sigma`` drawn uniformly from ``(min, max)`` (a number means fixed)."""

    def __init__(self, kernel_size: Any, sigma: Any = (0.1, 2.0)) -> None:
        where = "GaussianBlur"
        kx, ky = _pair(kernel_size, where)  # (kx, ky): width, then height, as torchvision
        self.kernel_size = (kx, ky)
        if any(k <= 0 or k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"{where}: kernel_size must be odd and positive; got {kernel_size!r}")
        if isinstance(sigma, numbers.Number):
            if sigma <= 0:
                raise ValueError(f"{where}: sigma must be positive; got {sigma}")
            self.sigma = (float(sigma), float(sigma))
        elif isinstance(sigma, (tuple, list)) and len(sigma) == 2:
            if not 0 < sigma[0] <= sigma[1]:
                raise ValueError(
                    f"{where}: sigma must be (min, max) with 0 < min <= max; got {sigma!r}"
                )
            self.sigma = (float(sigma[0]), float(sigma[1]))
        else:
            raise ValueError(f"{where}: sigma must be a number or (min, max); got {sigma!r}")

    @staticmethod
    def get_params(sigma_min: float, sigma_max: float) -> float:
        """The blur's standard deviation, uniform in ``[sigma_min, sigma_max]``."""
        return _uniform(sigma_min, sigma_max)

    def __call__(self, img: Any) -> Any:
        sg = self.get_params(*self.sigma)
        return gaussian_blur(img, self.kernel_size, (sg, sg))

    def __repr__(self) -> str:
        return f"GaussianBlur(kernel_size={self.kernel_size}, sigma={self.sigma})"
