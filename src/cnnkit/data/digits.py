"""scikit-learn's 8x8 handwritten digits as a ready-made dataset."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from cnnkit.data.dataset import LabeledArrays

__all__ = ["Digits"]

_SPLITS = ("train", "test", "all")


@functools.cache
def _load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All images ``(1797, 1, 8, 8)``, labels, and the sorted train / test indices (cached)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.2, random_state=0, stratify=y
    )
    for a in (x, y):
        a.flags.writeable = False
    return x, y, np.sort(train_idx), np.sort(test_idx)


class Digits(LabeledArrays):
    """The 1,797 8x8 digit images of :func:`sklearn.datasets.load_digits`.

    Parameters
    ----------
    split : {'train', 'test', 'all'}
        ``'test'`` is a fixed stratified 20 % (``train_test_split(..., test_size=0.2,
        random_state=0, stratify=y)``), ``'train'`` the other 80 %, ``'all'`` everything.
    transform : callable, optional
        Applied to each ``(1, 8, 8)`` image in ``__getitem__``.

    Attributes
    ----------
    data : np.ndarray
        float32 images in ``[0, 1]`` (pixel values divided by 16), shape ``(N, 1, 8, 8)``.
    targets : np.ndarray
        int64 labels, shape ``(N,)``.
    classes : list of str
        ``['0', ..., '9']``.
    """

    def __init__(
        self, split: str = "train", transform: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"Digits: split must be one of {_SPLITS}; got {split!r}")
        x, y, train_idx, test_idx = _load()
        if split == "all":
            x, y = x.copy(), y.copy()
        else:
            keep = train_idx if split == "train" else test_idx
            x, y = x[keep], y[keep]
        self.split = split
        super().__init__(
            np.ascontiguousarray(x), y, [str(d) for d in range(10)], transform=transform
        )
