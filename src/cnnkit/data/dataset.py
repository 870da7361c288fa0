"""Map-style datasets: the base class, in-memory arrays, subsets, concatenation, splits."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ConcatDataset",
    "Dataset",
    "LabeledArrays",
    "Subset",
    "TensorDataset",
    "random_split",
]


class Dataset:
    """A map-style dataset: ``len(ds)`` samples, ``ds[i]`` returns the ``i``-th sample.

    Subclasses implement :meth:`__getitem__` and :meth:`__len__`. A sample is usually a
    tuple ``(input, target)`` of NumPy arrays / scalars.
    """

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


def _as_array(a: Any) -> np.ndarray:
    """The ndarray behind ``a``: an ndarray, a Tensor's ``.array``, or an object's ``.data``."""
    if isinstance(a, np.ndarray):
        return a
    data = getattr(a, "array", None)
    if not isinstance(data, np.ndarray):
        data = getattr(a, "data", None)
    if isinstance(data, np.ndarray):
        return data
    return np.asarray(a)


def _check_index(index: int, n: int, name: str) -> int:
    """A valid non-negative index into ``n`` items (negative indices count from the end)."""
    i = int(index)
    if i < -n or i >= n:
        raise IndexError(f"{name}: index {index} out of range for {n} samples")
    return i + n if i < 0 else i


class TensorDataset(Dataset):
    """A dataset of arrays sharing their first dimension.

    Parameters
    ----------
    *arrays : np.ndarray or Tensor
        Arrays of shape ``(N, ...)``; Tensors and objects with a ``.data`` ndarray
        are unwrapped.
    transform : callable, optional
        Applied to the first array's sample (the input) in ``__getitem__``.

    Attributes
    ----------
    arrays : tuple of np.ndarray
        The arrays, each of shape ``(N, ...)``.

    Notes
    -----
    ``ds[i]`` returns ``tuple(a[i] for a in arrays)``.
    """

    def __init__(self, *arrays: Any, transform: Callable[[np.ndarray], np.ndarray] | None = None):
        if not arrays:
            raise ValueError("TensorDataset: needs at least one array")
        arrs = tuple(_as_array(a) for a in arrays)
        for k, a in enumerate(arrs):
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: array {k} is a scalar; expected shape (N, ...)")
        n = arrs[0].shape[0]
        for k, a in enumerate(arrs[1:], start=1):
            if a.shape[0] != n:
                raise ValueError(
                    f"TensorDataset: size mismatch, array 0 has {n} samples "
                    f"but array {k} has {a.shape[0]}"
                )
        self.arrays: tuple[np.ndarray, ...] = arrs
        self.transform = transform

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        i = _check_index(index, len(self), type(self).__name__)
        items = [a[i] for a in self.arrays]
        if self.transform is not None:
            items[0] = self.transform(items[0])
        return tuple(items)

    def __len__(self) -> int:
        return int(self.arrays[0].shape[0])


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order.

    Parameters
    ----------
    dataset : Dataset
        The dataset to draw from.
    indices : sequence of int
        Indices into ``dataset``, shape ``(M,)``.
    """

    def __init__(self, dataset: Any, indices: Sequence[int] | np.ndarray) -> None:
        self.dataset = dataset
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(dataset)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = idx[(idx < -n) | (idx >= n)][0]
            raise IndexError(f"Subset: index {int(bad)} out of range for {n} samples")
        self.indices: list[int] = [int(i) for i in idx]

    def __getitem__(self, index: int) -> Any:
        i = _check_index(index, len(self), "Subset")
        return self.dataset[self.indices[i]]

    def __len__(self) -> int:
        return len(self.indices)


class ConcatDataset(Dataset):
    """Datasets one after the other.

    Parameters
    ----------
    datasets : sequence of Dataset
        The datasets; sample ``i`` comes from the dataset whose range holds ``i``.
    """

    def __init__(self, datasets: Sequence[Any]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: needs at least one dataset")
        self.cumulative_sizes: list[int] = []
        total = 0
        for d in self.datasets:
            total += len(d)
            self.cumulative_sizes.append(total)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> Any:
        i = _check_index(index, len(self), "ConcatDataset")
        k = bisect.bisect_right(self.cumulative_sizes, i)
        start = self.cumulative_sizes[k - 1] if k > 0 else 0
        return self.datasets[k][i - start]


def random_split(
    dataset: Any, lengths: Sequence[int | float], seed: int | None = None
) -> list[Subset]:
    """Split a dataset into non-overlapping random subsets.

    Parameters
    ----------
    dataset : Dataset
        The dataset of ``N`` samples to split.
    lengths : sequence of int or float
        Subset sizes summing to ``N``, or fractions summing to 1 (sizes are then
        ``floor(N * f)`` with the remainder handed out one by one, round-robin).
    seed : int, optional
        Seed for ``np.random.default_rng(seed).permutation(N)``; ``None`` draws from
        :func:`cnnkit.backend.default_rng`.

    Returns
    -------
    list of Subset
        One subset per entry of ``lengths``.
    """
    n = len(dataset)
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths is empty")
    if all(isinstance(x, (int, np.integer)) for x in lengths):
        sizes = [int(x) for x in lengths]
        if any(s < 0 for s in sizes):
            raise ValueError(f"random_split: negative length in {sizes}")
        if sum(sizes) != n:
            raise ValueError(
                f"random_split: lengths sum to {sum(sizes)} but the dataset has {n} samples"
            )
    else:
        fr = [float(x) for x in lengths]
        if any(f < 0 or f > 1 for f in fr) or not np.isclose(sum(fr), 1.0):
            raise ValueError(
                f"random_split: fractions must lie in [0, 1] and sum to 1; got {lengths} "
                f"(sum {sum(fr):g})"
            )
        sizes = [int(np.floor(n * f)) for f in fr]
        for k in range(n - sum(sizes)):
            sizes[k % len(sizes)] += 1
    if seed is None:
        from cnnkit.backend import default_rng

        perm = default_rng().permutation(n)
    else:
        perm = np.random.default_rng(seed).permutation(n)
    out: list[Subset] = []
    start = 0
    for s in sizes:
        out.append(Subset(dataset, perm[start : start + s]))
        start += s
    return out


class LabeledArrays(TensorDataset):
    """An in-memory ``(inputs, targets)`` dataset with ``.data``, ``.targets``, ``.classes``.

    Base of the built-in datasets; being a :class:`TensorDataset`, it takes the
    :class:`~cnnkit.data.DataLoader` fast path.

    Parameters
    ----------
    data : np.ndarray
        Inputs, shape ``(N, C, H, W)``.
    targets : np.ndarray
        Integer class indices, shape ``(N,)``.
    classes : list of str
        Class names, ``classes[k]`` for index ``k``.
    transform : callable, optional
        Applied to each ``(C, H, W)`` input in ``__getitem__``.
    """

    def __init__(
        self,
        data: np.ndarray,
        targets: np.ndarray,
        classes: Sequence[str],
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        super().__init__(data, np.asarray(targets, dtype=np.int64), transform=transform)
        self.classes: list[str] = [str(c) for c in classes]

    @property
    def data(self) -> np.ndarray:
        """The inputs, shape ``(N, C, H, W)``."""
        return self.arrays[0]

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self.arrays = (np.asarray(value), *self.arrays[1:])

    @property
    def targets(self) -> np.ndarray:
        """The class indices, shape ``(N,)`` int64."""
        return self.arrays[1]

    @targets.setter
    def targets(self, value: np.ndarray) -> None:
        self.arrays = (self.arrays[0], np.asarray(value, dtype=np.int64), *self.arrays[2:])

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name to index."""
        return {c: i for i, c in enumerate(self.classes)}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, shape={tuple(self.data.shape[1:])}, "
            f"classes={len(self.classes)})"
        )
