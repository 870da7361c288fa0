"""``cnnkit.utils.data``: ``torch.utils.data``'s names over :mod:`cnnkit.data`.

A thin door: datasets, subsets and splits are :mod:`cnnkit.data`'s; the
:class:`DataLoader` is :class:`cnnkit.data.DataLoader` (same batching, shuffling and array
fast path) with PyTorch's signature added on top: ``sampler``, ``num_workers``,
``worker_init_fn``, ``collate_fn`` returning anything, ``pin_memory`` (accepted; nothing
to pin on the CPU), ``persistent_workers`` and a ``Generator``.

With ``num_workers > 0`` each batch is fetched and collated by one of ``num_workers``
worker threads (``worker_mode="process"``: forked worker processes),
``prefetch_factor * num_workers`` batches ahead, and delivered in order. Each batch's
random transforms draw from a generator seeded from the loader's base seed and the batch
index, so a seeded run gives the same batches whatever ``num_workers`` is. Measured on a
2-core Xeon (CIFAR-10 with RandomCrop/Flip/ToTensor/Normalize, 32 per batch, loaded
machine): 255 us/sample in the main thread, 360 with 2 threads (the transforms hold the
GIL), 222-243 with 2 processes. Threads are the default nonetheless: forking a process
that holds other threads (an earlier iterator's pool, BLAS) can deadlock, which a
training script must never risk; pick processes for CPU-heavy Python transforms.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit import backend
from cnnkit.data import dataset as _ds
from cnnkit.data.dataset import ConcatDataset, Dataset, Subset
from cnnkit.data.loader import DataLoader as _BaseLoader
from cnnkit.data.loader import _resolve_fast
from cnnkit.tensor import Tensor

__all__ = [
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "IterableDataset",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "Subset",
    "SubsetRandomSampler",
    "TensorDataset",
    "WeightedRandomSampler",
    "default_collate",
    "get_worker_info",
    "random_split",
    "worker_rng",
]


class IterableDataset(Dataset):
    """A dataset read as a stream: subclasses implement ``__iter__`` (no ``len``/indexing)."""

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def __getitem__(self, index: int) -> Any:
        raise TypeError(f"{type(self).__name__} is an IterableDataset; it cannot be indexed")


class TensorDataset(_ds.TensorDataset):
    """``TensorDataset(*tensors)``: sample ``i`` is the tuple of ``t[i]``, each a Tensor.

    Parameters
    ----------
    *tensors : Tensor or np.ndarray
        Arrays of shape ``(N, ...)``.
    """

    _same_samples = True  # the loader's array fast path still applies

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        sample = super().__getitem__(index)
        return tuple(Tensor(np.asarray(a)) for a in sample)

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return tuple(Tensor(a) for a in self.arrays)


def _np_rng(generator: Any) -> np.random.Generator | None:
    """A NumPy generator from a ``cnnkit.Generator``, a NumPy generator or None."""
    if generator is None or isinstance(generator, np.random.Generator):
        return generator
    rng = getattr(generator, "rng", None)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(
        f"generator must be a cnnkit.Generator or numpy.random.Generator; got "
        f"{type(generator).__name__}"
    )


def random_split(
    dataset: Any, lengths: Sequence[int | float], generator: Any = None
) -> list[Subset]:
    """Split into non-overlapping random subsets (sizes, or fractions summing to 1).

    Parameters
    ----------
    dataset : Dataset
        ``N`` samples.
    lengths : sequence of int or float
        Sizes summing to ``N`` or fractions summing to 1.
    generator : cnnkit.Generator, optional
        Source of the permutation (``Generator().manual_seed(42)``); default: the global one.

    Returns
    -------
    list of Subset
    """
    rng = _np_rng(generator)
    seed = None if rng is None else int(rng.integers(0, 2**63 - 1))
    return _ds.random_split(dataset, lengths, seed=seed)


# ----------------------------------------------------------------------- samplers
class Sampler:
    """Base class: iterating yields dataset indices."""

    def __iter__(self) -> Iterator[int]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source: Any) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random permutation (or ``num_samples`` draws with ``replacement``) each epoch."""

    def __init__(
        self,
        data_source: Any,
        replacement: bool = False,
        num_samples: int | None = None,
        generator: Any = None,
    ) -> None:
        self.data_source = data_source
        self.replacement = bool(replacement)
        self._num_samples = num_samples
        self.generator = generator

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def __iter__(self) -> Iterator[int]:
        rng = _np_rng(self.generator) or backend.default_rng()
        n = len(self.data_source)
        if self.replacement:
            return iter(rng.integers(0, n, self.num_samples).tolist())
        reps = -(-self.num_samples // n)
        perm = np.concatenate([rng.permutation(n) for _ in range(reps)])
        return iter(perm[: self.num_samples].tolist())

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order each epoch."""

    def __init__(self, indices: Sequence[int], generator: Any = None) -> None:
        self.indices = list(indices)
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        rng = _np_rng(self.generator) or backend.default_rng()
        return iter(int(self.indices[i]) for i in rng.permutation(len(self.indices)))

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices in ``[0, len(weights))``, index ``i`` drawn with
    probability ``weights[i] / sum(weights)`` (class balancing: weight each sample by
    the inverse frequency of its class).

    With ``replacement=False`` each index is drawn at most once: every draw picks among
    the indices not drawn yet, in proportion to their weights (PyTorch's
    ``multinomial`` without replacement), so ``num_samples`` may not exceed the number of
    positive weights.

    Parameters
    ----------
    weights : sequence of float, shape (n,)
        Non-negative, finite, not all zero (need not sum to 1).
    num_samples : int
        Indices per epoch (positive).
    replacement : bool
    generator : cnnkit.Generator, optional
    """

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray | Tensor,
        num_samples: int,
        replacement: bool = True,
        generator: Any = None,
    ) -> None:
        where = "WeightedRandomSampler"
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
            raise ValueError(
                f"{where}: num_samples must be a positive integer; got {num_samples!r}"
            )
        if num_samples <= 0:
            raise ValueError(f"{where}: num_samples must be a positive integer; got {num_samples}")
        if not isinstance(replacement, bool):
            raise ValueError(f"{where}: replacement must be a bool; got {replacement!r}")
        w = np.asarray(weights.array if isinstance(weights, Tensor) else weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(
                f"{where}: weights must be a non-empty 1-D sequence; got shape {w.shape}"
            )
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"{where}: weights must be finite, non-negative and not all zero")
        positive = int((w > 0).sum())
        if not replacement and num_samples > positive:
            raise ValueError(
                f"{where}: cannot draw {num_samples} samples without replacement from "
                f"{positive} indices of positive weight"
            )
        self.weights = w
        self.num_samples = int(num_samples)
        self.replacement = replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        rng = _np_rng(self.generator) or backend.default_rng()
        p = self.weights / self.weights.sum()
        drawn = rng.choice(p.size, size=self.num_samples, replace=self.replacement, p=p)
        return iter(drawn.tolist())

    def __len__(self) -> int:
        return self.num_samples


# ----------------------------------------------------------------------- collate
def default_collate(batch: list[Any]) -> Any:
    """Stack a list of samples as ``torch.utils.data.default_collate`` does.

    Tensors and arrays are stacked into a ``(B, ...)`` Tensor, Python ints become an
    int64 Tensor, floats a float64 Tensor, bools a bool Tensor, strings stay a list;
    tuples/lists are collated field by field (returned as a list) and dicts key by key.
    """
    if not batch:
        raise ValueError("default_collate: empty batch")
    elem = batch[0]
    if isinstance(elem, Tensor):
        return Tensor(np.stack([b.array for b in batch]))
    if isinstance(elem, np.ndarray):
        return Tensor(np.stack(batch))
    if isinstance(elem, (bool, np.bool_)):
        return Tensor(np.asarray(batch, dtype=bool))
    if isinstance(elem, (int, np.integer)):
        return Tensor(np.asarray(batch, dtype=np.int64))
    if isinstance(elem, (float, np.floating)):
        dt = elem.dtype if isinstance(elem, np.floating) else np.float64
        return Tensor(np.asarray(batch, dtype=dt))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, Mapping):
        return {k: default_collate([b[k] for b in batch]) for k in elem}
    if isinstance(elem, Sequence):
        n = len(elem)
        if any(len(b) != n for b in batch):
            raise ValueError("default_collate: each sample in the batch must have equal size")
        return [default_collate(list(field)) for field in zip(*batch, strict=True)]
    raise TypeError(
        f"default_collate: samples must be tensors, arrays, numbers, strings, dicts or "
        f"sequences; got {type(elem).__name__}"
    )


# ----------------------------------------------------------------------- workers
@dataclass(frozen=True)
class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker: its id, the count, the seed."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_local = threading.local()


def get_worker_info() -> WorkerInfo | None:
    """The current worker's :class:`WorkerInfo`; None in the main thread."""
    return getattr(_local, "info", None)


def worker_rng() -> np.random.Generator:
    """The generator random transforms draw from: the batch's own in a loader, else the
    global one."""
    rng = getattr(_local, "rng", None)
    return rng if rng is not None else backend.default_rng()


class DataLoader(_BaseLoader):
    """``torch.utils.data.DataLoader``: mini-batches of Tensors from a dataset.

    Parameters
    ----------
    dataset : Dataset or IterableDataset
        Samples ``dataset[i]`` (or iterated for an IterableDataset).
    batch_size : int or None
        Samples per batch ``B``; None yields the collated single samples.
    shuffle : bool
        New random order each epoch (not with ``sampler``).
    sampler : Sampler or iterable of int, optional
        The order of indices.
    num_workers : int
        0 loads in the calling thread; ``k > 0`` uses ``k`` workers (threads by default).
    collate_fn : callable, optional
        List of samples -> batch; default :func:`default_collate`.
    pin_memory : bool
        Accepted; there is no device memory to pin on the CPU.
    drop_last : bool
        Drop the last incomplete batch.
    worker_init_fn : callable, optional
        Called with the worker id at the start of each worker.
    generator : cnnkit.Generator or numpy.random.Generator, optional
        Source of shuffling and of the workers' base seed.
    persistent_workers : bool
        Keep the worker threads between epochs (processes restart each epoch).
    multiprocessing_context : str or context, optional
        Start method of the worker processes (default ``fork`` where available).
    worker_mode : {'thread', 'process'}
        cnnkit's addition: threads (safe, best when loading waits on files or releases
        the GIL) or forked processes (faster for Python-heavy transforms).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Iterable[int] | None = None,
        batch_sampler: Iterable[Sequence[int]] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: Any = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        worker_mode: str = "thread",
    ) -> None:
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if isinstance(num_workers, bool) or int(num_workers) != num_workers or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be an integer >= 0; got {num_workers}")
        self._unbatched = batch_size is None
        super().__init__(
            dataset,
            batch_size=1 if batch_size is None else batch_size,
            shuffle=bool(shuffle),
            drop_last=drop_last,
            collate_fn=collate_fn,
            generator=_np_rng(generator),
        )
        # as PyTorch: without a generator, each epoch's order and worker seeds come from
        # the global generator when the epoch starts (after the script's manual_seed)
        self._from_global = generator is None
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.worker_init_fn = worker_init_fn
        self.persistent_workers = bool(persistent_workers)
        self.prefetch_factor = 2 if prefetch_factor is None else int(prefetch_factor)
        self.multiprocessing_context = multiprocessing_context
        if worker_mode not in ("process", "thread"):
            raise ValueError(
                f"DataLoader: worker_mode must be 'process' or 'thread'; got {worker_mode!r}"
            )
        self.worker_mode = worker_mode
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)  # type: ignore[arg-type]
        if isinstance(self.dataset, IterableDataset):
            raise TypeError("DataLoader over an IterableDataset has no len()")
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)  # type: ignore[arg-type]
        if self._unbatched:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> np.ndarray:
        if self.sampler is not None:
            return np.fromiter((int(i) for i in self.sampler), dtype=np.int64)
        return super()._order()

    def __iter__(self) -> Iterator[Any]:
        self.epoch += 1
        if self._from_global:
            from cnnkit.backend import default_rng

            self._rng = np.random.default_rng(int(default_rng().integers(0, 2**63 - 1)))
        base_seed = int(self._rng.integers(0, 2**63 - 1))
        if isinstance(self.dataset, IterableDataset):
            return self._stream(base_seed)
        if self.batch_sampler is not None:
            batches: Iterable[Any] = (
                np.asarray(list(b), dtype=np.int64) for b in self.batch_sampler
            )
        else:
            order = self._order()
            n, bs = len(order), self.batch_size
            stop = (n // bs) * bs if self.drop_last else n
            batches = (order[s : s + bs] for s in range(0, stop, bs))
        fast = None
        if self.collate_fn is None and self.transform is None:
            fast = _resolve_fast(self.dataset)
        if fast is not None and not self._unbatched:
            return self._fast(fast, batches)
        return self._run(base_seed, batches)

    def _fast(self, fast: Any, batches: Iterable[np.ndarray]) -> Iterator[Any]:
        base, index_map = fast
        for idx in batches:
            arrays = self._fast_batch(base, idx if index_map is None else index_map[idx])
            yield [Tensor(a) for a in arrays]

    def _load(self, base_seed: int, k: int, idx: np.ndarray) -> Any:
        _local.rng = np.random.default_rng([base_seed, k])
        try:
            samples = [self.dataset[int(i)] for i in idx]
            if self._unbatched:
                return (self.collate_fn or _convert)(samples[0])
            return (self.collate_fn or default_collate)(samples)
        finally:
            _local.rng = None

    def _start_worker(self, base_seed: int, counter: Iterator[int]) -> None:
        wid = next(counter)
        _local.info = WorkerInfo(wid, self.num_workers, base_seed + wid, self.dataset)
        if self.worker_init_fn is not None:
            self.worker_init_fn(wid)

    def _run(self, base_seed: int, batches: Iterable[np.ndarray]) -> Iterator[Any]:
        if self.num_workers == 0:
            for k, idx in enumerate(batches):
                yield self._load(base_seed, k, idx)
            return
        if self.worker_mode == "process":
            yield from self._run_processes(base_seed, batches)
            return
        pool = self._pool
        if pool is None:
            counter = itertools.count()
            pool = ThreadPoolExecutor(
                self.num_workers,
                thread_name_prefix="cnnkit-loader",
                initializer=self._start_worker,
                initargs=(base_seed, counter),
            )
        pending: deque = deque()
        ahead = max(1, self.prefetch_factor * self.num_workers)
        try:
            for k, idx in enumerate(batches):
                pending.append(pool.submit(self._load, base_seed, k, idx))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
            if self.persistent_workers:
                self._pool = pool
            else:
                pool.shutdown(wait=True, cancel_futures=True)

    def _run_processes(self, base_seed: int, batches: Iterable[np.ndarray]) -> Iterator[Any]:
        """Worker processes (forked where the OS allows): each loads whole batches."""
        import multiprocessing as mp

        ctx = self.multiprocessing_context
        if ctx is None or isinstance(ctx, str):
            methods = mp.get_all_start_methods()
            ctx = mp.get_context(ctx or ("fork" if "fork" in methods else "spawn"))
        counter = ctx.Value("i", 0)
        # an iterator left half-way (``next(iter(loader))``) must not keep its pool alive
        # while the next one forks
        old = getattr(self, "_live_pool", None)
        if old is not None:
            old.terminate()
            old.join()
        pool = ctx.Pool(self.num_workers, _process_init, (self, base_seed, counter))
        self._live_pool = pool
        pending: deque = deque()
        ahead = max(1, self.prefetch_factor * self.num_workers)
        try:
            for k, idx in enumerate(batches):
                pending.append(pool.apply_async(_process_load, (k, idx)))
                if len(pending) >= ahead:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()
        finally:
            pool.terminate()
            pool.join()
            if getattr(self, "_live_pool", None) is pool:
                self._live_pool = None

    def _stream(self, base_seed: int) -> Iterator[Any]:
        _local.rng = np.random.default_rng([base_seed, 0])
        try:
            it = iter(self.dataset)
            while True:
                chunk = list(itertools.islice(it, 1 if self._unbatched else self.batch_size))
                if not chunk or (self.drop_last and len(chunk) < self.batch_size):
                    return
                if self._unbatched:
                    yield (self.collate_fn or _convert)(chunk[0])
                else:
                    yield (self.collate_fn or default_collate)(chunk)
        finally:
            _local.rng = None

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


_process_state: dict[str, Any] = {}


def _process_init(loader: DataLoader, base_seed: int, counter: Any) -> None:
    """In a worker process: number it, run ``worker_init_fn``, keep the loader."""
    with counter.get_lock():
        wid = counter.value
        counter.value += 1
    _process_state["loader"], _process_state["seed"] = loader, base_seed
    _local.info = WorkerInfo(wid, loader.num_workers, base_seed + wid, loader.dataset)
    if loader.worker_init_fn is not None:
        loader.worker_init_fn(wid)


def _process_load(k: int, idx: np.ndarray) -> Any:
    return _process_state["loader"]._load(_process_state["seed"], k, idx)


def _convert(sample: Any) -> Any:
    """``batch_size=None``: arrays become tensors, nothing is stacked."""
    if isinstance(sample, np.ndarray):
        return Tensor(sample)
    if isinstance(sample, Mapping):
        return {k: _convert(v) for k, v in sample.items()}
    if isinstance(sample, (list, tuple)):
        return [_convert(v) for v in sample]
    return sample
