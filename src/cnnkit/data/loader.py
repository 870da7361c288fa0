"""Mini-batch iteration over a dataset, with reproducible and resumable shuffling."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from cnnkit.data.dataset import Subset, TensorDataset
from cnnkit.tensor import Tensor

__all__ = ["DataLoader", "default_collate"]


def _to_batch_array(items: list[Any]) -> np.ndarray:
    """Stack one field of a list of samples; integer fields become int64."""
    arrs = [np.asarray(v) for v in items]
    out = np.stack(arrs)
    return _fix_dtype(out)


def _fix_dtype(a: np.ndarray) -> np.ndarray:
    """Integer batches as int64; everything else as is (contiguous)."""
    if np.issubdtype(a.dtype, np.integer) and a.dtype != np.int64:
        return a.astype(np.int64)
    return np.ascontiguousarray(a)


def default_collate(samples: list[Any]) -> tuple[np.ndarray, ...]:
    """Stack a list of samples field by field.

    Parameters
    ----------
    samples : list
        ``B`` samples, each a tuple ``(x, y, ...)`` (or a single array).

    Returns
    -------
    tuple of np.ndarray
        One array per field, each of shape ``(B, ...)``; integer fields as int64.
    """
    if not samples:
        raise ValueError("default_collate: empty batch")
    first = samples[0]
    if isinstance(first, (tuple, list)):
        n = len(first)
        for s in samples:
            if len(s) != n:
                raise ValueError(
                    f"default_collate: samples have different lengths ({n} and {len(s)})"
                )
        return tuple(_to_batch_array([s[k] for s in samples]) for k in range(n))
    return (_to_batch_array(samples),)


def _resolve_fast(dataset: Any) -> tuple[TensorDataset, np.ndarray | None] | None:
    """The TensorDataset under (nested) Subsets and the index map into it, if any.

    Returns ``None`` when the dataset is not a TensorDataset or a Subset chain of one.
    The map is ``None`` for the identity.
    """
    index_map: np.ndarray | None = None
    ds = dataset
    while isinstance(ds, Subset):
        idx = np.asarray(ds.indices, dtype=np.int64)
        index_map = idx if index_map is None else idx[index_map]
        ds = ds.dataset
    # a subclass may override __getitem__ only to wrap the same samples (``_same_samples``)
    same = type(ds).__getitem__ is _TD_GETITEM or getattr(type(ds), "_same_samples", False)
    if not isinstance(ds, TensorDataset) or not same:
        return None
    if index_map is not None:
        n = len(ds)
        index_map = np.where(index_map < 0, index_map + n, index_map)
    return ds, index_map


_TD_GETITEM = TensorDataset.__getitem__


class DataLoader:
    """Iterate over a dataset in mini-batches of :class:`~cnnkit.tensor.Tensor`.

    Parameters
    ----------
    dataset : Dataset
        A map-style dataset whose samples are tuples ``(x, y, ...)`` of arrays / scalars.
    batch_size : int
        Samples per batch ``B``.
    shuffle : bool
        Draw a new random permutation of the samples at the start of every epoch.
    drop_last : bool
        Drop the last batch when it holds fewer than ``batch_size`` samples.
    seed : int, optional
        Seed for the loader's own generator; ``None`` seeds it from
        :func:`cnnkit.backend.default_rng` (so :func:`cnnkit.backend.manual_seed` makes it
        reproducible).
    transform : callable, optional
        Applied to each sample's input (``(C, H, W)`` array) after the dataset's own
        transform.
    collate_fn : callable, optional
        Turns a list of samples into a tuple of arrays; defaults to
        :func:`default_collate`. Setting it disables the array fast path.
    generator : numpy.random.Generator, optional
        Use this generator for shuffling instead of one seeded from ``seed``.
    sampler : iterable of int, optional
        Gives the sample indices of an epoch in order (for example a
        :class:`~cnnkit.data.DistributedSampler`); excludes ``shuffle``.

    Notes
    -----
    Iterating yields tuples of tensors, one per sample field, each of shape
    ``(B, ...)``; floating fields keep their dtype and integer fields become int64.
    When the dataset is a :class:`TensorDataset` (or nested :class:`Subset` of one), the
    batch is taken by indexing the arrays with the batch's index array at once.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        generator: np.random.Generator | None = None,
        sampler: Any = None,
    ) -> None:
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if generator is not None and seed is not None:
            raise ValueError("DataLoader: pass either seed or generator, not both")
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(
                f"DataLoader: generator must be a numpy.random.Generator; got "
                f"{type(generator).__name__}"
            )
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer; got {batch_size}")
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.collate_fn = collate_fn
        self.seed = seed
        if generator is not None:
            self._rng = generator  # used (and advanced) as given, like PyTorch's generator=
        else:
            if seed is None:
                from cnnkit.backend import default_rng

                seed = int(default_rng().integers(0, 2**63 - 1))
            self._rng = np.random.default_rng(seed)
        self.epoch = 0

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        if self.drop_last:
            return n // self.batch_size
        return -(-n // self.batch_size)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The shuffling state as a JSON-able dict.

        Returns
        -------
        dict
            ``{"rng": bit_generator.state, "epoch": int}``; restoring it with
            :meth:`load_state_dict` reproduces the following epochs' permutations.
        """
        state = {"rng": _jsonable(self._rng.bit_generator.state), "epoch": int(self.epoch)}
        tf_states = [_jsonable(g.bit_generator.state) for g in self._transform_rngs()]
        if tf_states:
            state["transform_rngs"] = tf_states
        return state

    def _transform_rngs(self) -> list[np.random.Generator]:
        """Generators of the random transforms (own and the dataset's), in a fixed order,
        so a resumed run also repeats the same augmentation."""
        found: list[np.random.Generator] = []
        todo = [self.transform, getattr(self.dataset, "transform", None)]
        while todo:
            t = todo.pop(0)
            if t is None:
                continue
            if isinstance(getattr(t, "rng", None), np.random.Generator):
                found.append(t.rng)
            todo.extend(getattr(t, "transforms", []) or [])
        return found

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the shuffling state saved by :meth:`state_dict`.

        Parameters
        ----------
        state : dict
            A dict from :meth:`state_dict`.
        """
        if "rng" not in state:
            raise KeyError("DataLoader.load_state_dict: missing key 'rng'")
        rng_state = dict(state["rng"])
        name = rng_state.get("bit_generator", "PCG64")
        bit_gen_cls = getattr(np.random, name, None)
        if bit_gen_cls is None:
            raise ValueError(f"DataLoader.load_state_dict: unknown bit generator {name!r}")
        bg = bit_gen_cls()
        bg.state = rng_state
        self._rng = np.random.Generator(bg)
        self.epoch = int(state.get("epoch", 0))
        saved = state.get("transform_rngs", [])
        gens = self._transform_rngs()
        if len(saved) != len(gens):
            raise ValueError(
                f"DataLoader.load_state_dict: the state has {len(saved)} random-transform "
                f"generators; this loader has {len(gens)}"
            )
        for g, st in zip(gens, saved, strict=True):
            g.bit_generator.state = dict(st)

    # ------------------------------------------------------------------ iteration
    def _order(self) -> np.ndarray:
        if self.sampler is not None:
            return np.fromiter(iter(self.sampler), dtype=np.int64)
        n = len(self.dataset)
        if self.shuffle:
            return self._rng.permutation(n)
        return np.arange(n)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        order = self._order()
        self.epoch += 1
        return self._batches(order)

    def _batches(self, order: np.ndarray) -> Iterator[tuple[Tensor, ...]]:
        fast = None if self.collate_fn is not None else _resolve_fast(self.dataset)
        base: TensorDataset | None = None
        if fast is not None:
            base, index_map = fast
            if index_map is not None:
                order = index_map[order]
        n = len(order)
        bs = self.batch_size
        stop = (n // bs) * bs if self.drop_last else n
        for start in range(0, stop, bs):
            idx = order[start : start + bs]
            if base is not None:
                arrays = self._fast_batch(base, idx)
            else:
                arrays = self._slow_batch(idx)
            # a collate_fn may keep a field as a list (detection targets: one dict per image)
            yield tuple(Tensor(a) if isinstance(a, np.ndarray) else a for a in arrays)

    def _fast_batch(self, base: TensorDataset, idx: np.ndarray) -> list[np.ndarray]:
        out = [a[idx] for a in base.arrays]
        tfs = [t for t in (base.transform, self.transform) if t is not None]
        if tfs:
            xs = []
            for x in out[0]:
                for t in tfs:
                    x = t(x)
                xs.append(np.asarray(x))
            out[0] = np.stack(xs)
        return [_fix_dtype(a) for a in out]

    def _slow_batch(self, idx: np.ndarray) -> list[np.ndarray]:
        samples = []
        for i in idx:
            s = self.dataset[int(i)]
            if self.transform is not None:
                if isinstance(s, (tuple, list)):
                    s = (self.transform(np.asarray(s[0])), *s[1:])
                else:
                    s = self.transform(np.asarray(s))
            samples.append(s)
        collate = self.collate_fn or default_collate
        return list(collate(samples))

    def __repr__(self) -> str:
        return (
            f"DataLoader(dataset={type(self.dataset).__name__}(n={len(self.dataset)}), "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}, drop_last={self.drop_last})"
        )


def _jsonable(obj: Any) -> Any:
    """Nested dicts/lists with NumPy scalars turned into Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj
