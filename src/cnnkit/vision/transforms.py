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
    "Compose",
    "Grayscale",
    "InterpolationMode",
    "Lambda",
    "Normalize",
    "PILToTensor",
    "Pad",
    "RandomCrop",
    "RandomHorizontalFlip",
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
