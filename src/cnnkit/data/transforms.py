"""Per-sample transforms acting on one image array of shape ``(C, H, W)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["Compose", "Normalize", "RandomCrop", "RandomHorizontalFlip", "ToFloat"]


def _make_rng(seed: int | None) -> np.random.Generator:
    if seed is not None:
        return np.random.default_rng(seed)
    from cnnkit.backend import default_rng

    return np.random.default_rng(int(default_rng().integers(0, 2**63 - 1)))


def _check_chw(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{where}: expected an image of shape (C, H, W); got shape {x.shape}")
    return x


class Compose:
    """Apply transforms one after the other.

    Parameters
    ----------
    transforms : sequence of callable
        Each maps an array to an array.
    """

    def __init__(self, transforms: Sequence[Callable[[np.ndarray], np.ndarray]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class ToFloat:
    """Convert to a floating array; integer images (uint8) are scaled to ``[0, 1]``.

    Parameters
    ----------
    dtype : dtype
        Output dtype (float32 by default).
    scale : bool
        Divide ``uint8`` input by 255.
    """

    def __init__(self, dtype: Any = np.float32, scale: bool = True) -> None:
        self.dtype = np.dtype(dtype)
        self.scale = scale

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if self.scale and x.dtype == np.uint8:
            return x.astype(self.dtype) / self.dtype.type(255)
        return x.astype(self.dtype, copy=False)

    def __repr__(self) -> str:
        return f"ToFloat(dtype={self.dtype.name})"


class Normalize:
    """Per-channel ``(x - mean[c]) / std[c]``.

    Parameters
    ----------
    mean, std : float or sequence of float
        One value per channel ``C`` (or one value for all channels).
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.std.ndim != 1:
            raise ValueError("Normalize: mean and std must be scalars or 1-D sequences")
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std must be non-zero; got {self.std.tolist()}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _check_chw(x, "Normalize")
        c = x.shape[0]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.size not in (1, c):
                raise ValueError(
                    f"Normalize: {name} has {v.size} values but the image has {c} channels"
                )
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
        m = self.mean.astype(dtype).reshape(-1, 1, 1)
        s = self.std.astype(dtype).reshape(-1, 1, 1)
        return ((x.astype(dtype, copy=False) - m) / s).astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomHorizontalFlip:
    """Flip the image left-right (last axis) with probability ``p``.

    Parameters
    ----------
    p : float
        Flip probability.
    seed : int, optional
        Seed of the transform's own generator; ``None`` draws one from
        :func:`cnnkit.backend.default_rng`.
    """

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1]; got {p}")
        self.p = float(p)
        self.rng = _make_rng(seed)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if self.rng.random() < self.p:
            return np.ascontiguousarray(x[..., ::-1])
        return x

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Zero-pad by ``padding`` on each side, then cut a random ``size`` window.

    Parameters
    ----------
    size : int or (int, int)
        Output ``(H, W)``.
    padding : int
        Zeros added on every side of the spatial dimensions first.
    seed : int, optional
        Seed of the transform's own generator.
    """

    def __init__(self, size: int | Sequence[int], padding: int = 0, seed: int | None = None):
        if isinstance(size, (int, np.integer)):
            size = (int(size), int(size))
        self.size: tuple[int, int] = (int(size[0]), int(size[1]))
        if min(self.size) < 1:
            raise ValueError(f"RandomCrop: size must be positive; got {self.size}")
        if padding < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0; got {padding}")
        self.padding = int(padding)
        self.rng = _make_rng(seed)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _check_chw(x, "RandomCrop")
        p = self.padding
        if p:
            x = np.pad(x, ((0, 0), (p, p), (p, p)))
        h, w = x.shape[1:]
        th, tw = self.size
        if th > h or tw > w:
            raise ValueError(
                f"RandomCrop: crop size {self.size} larger than padded image ({h}, {w})"
            )
        i = int(self.rng.integers(0, h - th + 1))
        j = int(self.rng.integers(0, w - tw + 1))
        return np.ascontiguousarray(x[:, i : i + th, j : j + tw])

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"
