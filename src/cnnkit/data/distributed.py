"""DistributedSampler: each rank's disjoint shard of a dataset (PyTorch's semantics)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """The indices of one rank's shard of ``dataset``, for ``DataLoader(sampler=...)``.

    Parameters
    ----------
    dataset : Dataset
        Any dataset with ``len()``; ``n = len(dataset)``.
    num_replicas : int, optional
        Number of ranks ``P`` (default: the process group's world size, 1 without one).
    rank : int, optional
        This rank, in ``[0, P)`` (default: the process group's rank, 0 without one).
    shuffle : bool
        Permute the indices every epoch, the same way on every rank (seeded by
        ``seed + epoch``; call :meth:`set_epoch` before each epoch).
    seed : int
        Must be the same on every rank.
    drop_last : bool
        Drop the tail so that every rank gets ``floor(n / P)`` samples, instead of padding.

    Notes
    -----
    As PyTorch's ``DistributedSampler``: each rank gets ``num_samples = ceil(n / P)``
    indices (``ceil((n - P) / P)`` with ``drop_last`` when ``P`` does not divide ``n``).
    Without ``drop_last`` the index list (shuffled or not) is padded to ``P *
    num_samples`` by repeating its beginning, so up to ``P - 1`` samples are seen twice
    per epoch; rank ``r`` takes positions ``r, r + P, r + 2P, ...`` of the padded list.
    Batch ``k`` of every rank therefore holds consecutive positions of that one list:
    ``P`` ranks with batch size ``b`` see exactly the batches of size ``P * b`` that one
    process would see iterating over the padded list in order (with the same last,
    shorter batch). The permutation is NumPy's (``default_rng(seed + epoch)``), so the
    shuffled order differs from PyTorch's (its generator is torch's own); the padding
    and the sharding are the same.
    """

    def __init__(
        self,
        dataset: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        from cnnkit import distributed as dist

        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_initialized() else 0
        if isinstance(num_replicas, bool) or int(num_replicas) != num_replicas or num_replicas < 1:
            raise ValueError(
                f"DistributedSampler: num_replicas must be a positive integer; got {num_replicas}"
            )
        if isinstance(rank, bool) or int(rank) != rank or not 0 <= rank < num_replicas:
            raise ValueError(
                f"DistributedSampler: invalid rank {rank}, rank should be in the interval "
                f"[0, {num_replicas - 1}]"
            )
        n = len(dataset)
        if n == 0:
            raise ValueError("DistributedSampler: the dataset is empty")
        self.dataset = dataset
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.drop_last = bool(drop_last)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        p = self.num_replicas
        if self.drop_last and n % p != 0:
            self.num_samples = math.ceil((n - p) / p)
        else:
            self.num_samples = math.ceil(n / p)
        self.total_size = self.num_samples * p

    def global_order(self) -> np.ndarray:
        """The padded (or cut) index list of this epoch that the ranks share out,
        shape ``(total_size,)``; rank ``r`` iterates over ``global_order()[r::P]``."""
        n = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            indices = np.arange(n)
        if self.drop_last:
            return indices[: self.total_size]
        pad = self.total_size - n
        if pad:
            indices = np.concatenate([indices, np.resize(indices, pad)])
        return indices

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, shape ``(num_samples,)``."""
        return self.global_order()[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` (call it at the start of every epoch, with the
        same value on every rank; otherwise each epoch repeats the same order)."""
        self.epoch = int(epoch)

    def __repr__(self) -> str:
        return (
            f"DistributedSampler(n={len(self.dataset)}, num_replicas={self.num_replicas}, "
            f"rank={self.rank}, shuffle={self.shuffle}, seed={self.seed}, "
            f"drop_last={self.drop_last})"
        )
