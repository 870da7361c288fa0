"""DistributedSampler against PyTorch's: sizes, padding, sharding, set_epoch."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.data import DataLoader, DistributedSampler, TensorDataset

torch = pytest.importorskip("torch")
from torch.utils.data import DistributedSampler as TorchSampler  # noqa: E402

CASES = [(n, p, drop) for n in (1, 2, 5, 7, 10, 11, 12) for p in (1, 2, 3, 4, 8)
         for drop in (False, True) if not (drop and n < p)]  # fmt: skip


class Sized:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


@pytest.mark.parametrize("n, p, drop", CASES)
def test_unshuffled_indices_are_pytorchs(n, p, drop):
    for r in range(p):
        ours = DistributedSampler(Sized(n), p, r, shuffle=False, drop_last=drop)
        theirs = TorchSampler(Sized(n), p, r, shuffle=False, drop_last=drop)
        assert list(ours) == list(theirs), (n, p, r, drop)
        assert len(ours) == len(theirs)


@pytest.mark.parametrize("n, p, drop", [(10, 3, False), (11, 4, True), (5, 8, False)])
def test_shuffled_indices_are_the_permutation_padded_and_sharded_as_pytorch(n, p, drop):
    for epoch in (0, 3):
        perm = np.random.default_rng(7 + epoch).permutation(n)
        for r in range(p):
            ours = DistributedSampler(Sized(n), p, r, shuffle=True, seed=7, drop_last=drop)
            ours.set_epoch(epoch)
            theirs = TorchSampler(Sized(n), p, r, shuffle=False, drop_last=drop)
            assert list(ours) == perm[list(theirs)].tolist()


def test_shards_are_disjoint_cover_the_set_and_change_with_the_epoch():
    n, p = 103, 4
    samplers = [DistributedSampler(Sized(n), p, r, seed=1) for r in range(p)]
    shards = [list(s) for s in samplers]
    assert all(len(s) == 26 for s in shards)  # ceil(103 / 4), 1 sample repeated
    flat = [i for s in shards for i in s]
    assert sorted(set(flat)) == list(range(n)) and len(flat) == 104
    for s in samplers:
        s.set_epoch(1)
    assert [list(s) for s in samplers] != shards
    dropped = [list(DistributedSampler(Sized(n), p, r, drop_last=True)) for r in range(p)]
    assert len({i for s in dropped for i in s}) == 100  # 3 dropped, none repeated


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"invalid rank 2, rank should be in the interval \[0, 1"):
        DistributedSampler(Sized(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be a positive integer; got 0"):
        DistributedSampler(Sized(4), num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="empty"):
        DistributedSampler(Sized(0), num_replicas=1, rank=0)


def test_world_of_one_without_a_process_group():
    s = DistributedSampler(Sized(5), shuffle=False)
    assert (s.num_replicas, s.rank, list(s)) == (1, 0, [0, 1, 2, 3, 4])


def test_dataloader_batches_follow_the_sampler():
    x = np.arange(11, dtype=np.float64).reshape(11, 1)
    ds = TensorDataset(x, np.arange(11))
    sampler = DistributedSampler(ds, num_replicas=3, rank=1, shuffle=True, seed=2)
    loader = DataLoader(ds, batch_size=2, sampler=sampler)
    assert len(loader) == 2
    got = np.concatenate([yb.numpy() for _, yb in loader]).tolist()
    assert got == list(sampler)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(ds, batch_size=2, sampler=sampler, shuffle=True)
