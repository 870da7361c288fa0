"""Detection scenes made of real MNIST digits (the data of the lecture's YOLO example).

Each scene is a black square canvas with one to ``max_digits`` MNIST digits, each
resized by a random factor (bilinear) and pasted with ``max`` where its tight box does
not overlap the boxes already placed. Scenes are built on the fly and are a pure
function of ``(seed, split, index)``, so a dataset of any size costs no memory and
every run sees the same scenes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.data.dataset import Dataset

__all__ = ["DigitScenes", "detection_collate"]

_SPLITS = {"train": 1, "test": 2}
# a digit that cannot be placed without overlap after this many random positions is left out
_PLACEMENT_TRIES = 50


def _load_mnist_arrays(root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 images ``(N, 28, 28)`` and labels ``(N,)`` of an MNIST folder: the
    ``t10k-*`` files when present (as in ``../shared/data/mnist``), else ``train-*``."""
    from cnnkit.data.mnist import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"DigitScenes: no such folder {root}")
    for prefix in ("t10k", "train"):
        found = []
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            name = f"{prefix}-{kind}"
            hits = [p for p in (root / name, root / f"{name}.gz") if p.is_file()]
            found.append(hits[0] if hits else None)
        if all(found):
            images = read_idx(found[0], IDX_IMAGES_MAGIC)
            labels = read_idx(found[1], IDX_LABELS_MAGIC)
            if images.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"{found[1]}: label count does not match {found[0].name}: expected "
                    f"{images.shape[0]}, got {labels.shape[0]}"
                )
            return images, labels
    raise FileNotFoundError(
        f"DigitScenes: no MNIST IDX files in {root}: expected t10k-images-idx3-ubyte[.gz] and "
        "t10k-labels-idx1-ubyte[.gz] (or the train-* pair)"
    )


def detection_collate(
    samples: Sequence[tuple[Any, dict[str, Any]]],
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Stack the images of detection samples and keep their targets as a list.

    Parameters
    ----------
    samples : sequence of (image, target)
        ``B`` samples, images ``(C, H, W)`` of one shape, targets dicts of arrays.

    Returns
    -------
    images : np.ndarray, shape (B, C, H, W)
    targets : list of dict
        The ``B`` targets as they are (torchvision's detection convention).
    """
    if not samples:
        raise ValueError("detection_collate: empty batch")
    from cnnkit.tensor import Tensor

    images = [s[0].numpy() if isinstance(s[0], Tensor) else np.asarray(s[0]) for s in samples]
    shapes = {a.shape for a in images}
    if len(shapes) != 1:
        raise ValueError(f"detection_collate: images of different shapes {sorted(shapes)}")
    return np.ascontiguousarray(np.stack(images)), [s[1] for s in samples]


class DigitScenes(Dataset):
    """Scenes of 1 to ``max_digits`` MNIST digits on a black canvas, with their boxes.

    Parameters
    ----------
    root : path-like, optional
        Folder with MNIST IDX files (``t10k-*`` preferred, else ``train-*``); or pass
        ``images`` and ``labels`` instead.
    split : {"train", "test"}
        ``train`` draws digits from the first 80% of the images (0-7,999 of the 10,000
        test-set images), ``test`` from the last 20% (8,000-9,999): digits never seen
        in training.
    n : int, optional
        Number of scenes (default 8,000 for ``train``, 1,000 for ``test``).
    size : int
        Side of the square canvas in pixels.
    max_digits : int
        Each scene holds between 1 and ``max_digits`` digits (uniformly; fewer when no
        free place is found).
    scale : (float, float)
        Range of the resize factor of the 28x28 digits (bilinear).
    seed : int
        Scenes are a function of ``(seed, split, index)``.
    images, labels : array-like, optional
        ``(N, 28, 28)`` (or ``(N, 1, 28, 28)``) digit images, uint8 in 0..255 or float
        in [0, 1], and their ``(N,)`` labels in ``0..num_classes - 1``.
    num_classes : int
        Number of classes (10 digits).

    Notes
    -----
    ``ds[i]`` is ``(image, target)``: ``image`` float32 ``(1, size, size)`` in [0, 1];
    ``target`` a dict with ``"boxes"`` float32 ``(K, 4)`` (pixel ``x1, y1, x2, y2``,
    ``x2``/``y2`` exclusive: the tight box of the digit's non-zero pixels after
    resizing) and ``"labels"`` int64 ``(K,)``. Boxes never overlap. Batch with
    :func:`detection_collate` (``DataLoader(ds, collate_fn=DigitScenes.collate)``).
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        n: int | None = None,
        size: int = 96,
        max_digits: int = 4,
        scale: Sequence[float] = (0.7, 1.5),
        seed: int = 0,
        images: Any = None,
        labels: Any = None,
        num_classes: int = 10,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"DigitScenes: split must be 'train' or 'test'; got {split!r}")
        if (root is None) == (images is None):
            raise ValueError("DigitScenes: pass either root or images= and labels=")
        if images is None:
            imgs, labs = _load_mnist_arrays(root)  # type: ignore[arg-type]
        else:
            if labels is None:
                raise ValueError("DigitScenes: images= needs labels=")
            imgs, labs = np.asarray(images), np.asarray(labels)
        if imgs.ndim == 4 and imgs.shape[1] == 1:
            imgs = imgs[:, 0]
        if imgs.ndim != 3 or imgs.shape[0] < 2:
            raise ValueError(f"DigitScenes: images must be shaped (N >= 2, H, W); got {imgs.shape}")
        if labs.shape != (imgs.shape[0],):
            raise ValueError(
                f"DigitScenes: labels must be shaped ({imgs.shape[0]},); got {labs.shape}"
            )
        if labs.size and (labs.min() < 0 or labs.max() >= num_classes):
            raise ValueError(
                f"DigitScenes: labels must be in 0..{num_classes - 1}; got "
                f"{int(labs.min())}..{int(labs.max())}"
            )
        if np.issubdtype(imgs.dtype, np.integer):
            digits = imgs.astype(np.float32) / np.float32(255.0)
        else:
            digits = np.clip(imgs.astype(np.float32), 0.0, 1.0)
        lo, hi = (float(s) for s in scale)
        if not 0 < lo <= hi:
            raise ValueError(
                f"DigitScenes: scale must be (low, high) with 0 < low <= high; got {tuple(scale)}"
            )
        side = round(max(digits.shape[1:]) * hi)
        if int(size) < side:
            raise ValueError(
                f"DigitScenes: size {size} is smaller than the largest digit ({side} pixels at "
                f"scale {hi})"
            )
        if int(max_digits) < 1:
            raise ValueError(f"DigitScenes: max_digits must be >= 1; got {max_digits}")
        cut = round(0.8 * len(digits))
        pool = np.arange(cut) if split == "train" else np.arange(cut, len(digits))
        self.digits = digits
        self.digit_labels = labs.astype(np.int64)
        self.pool = pool
        self.split = split
        self.n = int(n) if n is not None else (8000 if split == "train" else 1000)
        if self.n < 1:
            raise ValueError(f"DigitScenes: n must be >= 1; got {n}")
        self.size = int(size)
        self.max_digits = int(max_digits)
        self.scale = (lo, hi)
        self.seed = int(seed)
        self.num_classes = int(num_classes)
        self.classes = [str(c) for c in range(self.num_classes)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        i = int(index)
        if i < -self.n or i >= self.n:
            raise IndexError(f"DigitScenes: index {index} out of range for {self.n} scenes")
        i %= self.n
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], i])
        canvas = np.zeros((self.size, self.size), dtype=np.float32)
        boxes: list[tuple[int, int, int, int]] = []
        labels: list[int] = []
        for _ in range(int(rng.integers(1, self.max_digits + 1))):
            k = int(self.pool[rng.integers(len(self.pool))])
            patch = _resize(self.digits[k], float(rng.uniform(*self.scale)))
            ys, xs = np.nonzero(patch > 0)
            if ys.size == 0:
                continue
            patch = patch[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            h, w = patch.shape
            for _ in range(_PLACEMENT_TRIES):
                x1 = int(rng.integers(0, self.size - w + 1))
                y1 = int(rng.integers(0, self.size - h + 1))
                box = (x1, y1, x1 + w, y1 + h)
                if all(not _overlap(box, b) for b in boxes):
                    np.maximum(
                        canvas[y1 : y1 + h, x1 : x1 + w],
                        patch,
                        out=canvas[y1 : y1 + h, x1 : x1 + w],
                    )
                    boxes.append(box)
                    labels.append(int(self.digit_labels[k]))
                    break
        target = {
            "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, dtype=np.int64),
        }
        return canvas[None], target

    collate = staticmethod(detection_collate)

    def __repr__(self) -> str:
        return (
            f"DigitScenes(split={self.split!r}, n={self.n}, size={self.size}, "
            f"max_digits={self.max_digits}, scale={self.scale}, seed={self.seed})"
        )


def _resize(img: np.ndarray, factor: float) -> np.ndarray:
    """``img`` (h, w) float32 resized by ``factor`` with bilinear interpolation (Pillow)."""
    from PIL import Image

    h, w = img.shape
    new = (max(1, round(w * factor)), max(1, round(h * factor)))
    out = np.asarray(Image.fromarray(img, mode="F").resize(new, Image.BILINEAR), np.float32)
    return np.clip(out, 0.0, 1.0)


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether two boxes with exclusive ends share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
