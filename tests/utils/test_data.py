"""cnnkit.utils.data: PyTorch's DataLoader signature, collate rules, samplers, workers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

import cnnkit as ck
from cnnkit.utils import data as ud


class Squares(ud.Dataset):
    def __init__(self, n: int = 10, delay: float = 0.0) -> None:
        self.n, self.delay = n, delay

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if self.delay:
            time.sleep(self.delay)
        return np.full((2,), i, np.float32), i, float(i) / 2, {"id": i, "name": f"s{i}"}


def test_default_collate_matches_torch() -> None:
    ds = Squares(5)
    got = next(iter(ud.DataLoader(ds, batch_size=5)))
    want = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert isinstance(got, list) and len(got) == len(want)
    for g, w in zip(got[:3], want[:3], strict=True):
        assert str(g.dtype) == str(w.dtype).replace("torch.", "")
        np.testing.assert_array_equal(g.numpy(), w.numpy())
    assert got[3]["name"] == want[3]["name"]
    np.testing.assert_array_equal(got[3]["id"].numpy(), want[3]["id"].numpy())


def test_workers_load_in_parallel_and_keep_order() -> None:
    ds = Squares(16, delay=0.02)
    seen: list[int] = []
    lock = threading.Lock()

    def init(wid: int) -> None:
        with lock:
            seen.append(wid)
        assert ud.get_worker_info().id == wid

    t0 = time.perf_counter()
    serial = [b[1].tolist() for b in ud.DataLoader(ds, batch_size=2)]
    t_serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    loader = ud.DataLoader(ds, batch_size=2, num_workers=4, worker_init_fn=init, pin_memory=True)
    par = [b[1].tolist() for b in loader]
    t_par = time.perf_counter() - t0
    assert par == serial == [[2 * k, 2 * k + 1] for k in range(8)]
    assert sorted(seen) == [0, 1, 2, 3]
    assert t_par < t_serial  # sleeping samples overlap in the worker threads
    assert ud.get_worker_info() is None


def test_shuffle_is_seeded_and_independent_of_num_workers() -> None:
    tf = ck.vision.transforms.RandomHorizontalFlip()
    x = np.arange(12, dtype=np.float32).reshape(3, 1, 2, 2)

    class Flip(ud.Dataset):
        def __len__(self) -> int:
            return 3 * 4

        def __getitem__(self, i: int):
            return tf(ck.tensor(x[i % 3])), i

    runs = []
    for workers in (0, 3):
        ck.manual_seed(5)
        loader = ud.DataLoader(Flip(), batch_size=4, shuffle=True, num_workers=workers)
        runs.append([(b[0].numpy().copy(), b[1].tolist()) for b in loader])
    for (xa, ya), (xb, yb) in zip(*runs, strict=True):
        assert ya == yb
        np.testing.assert_array_equal(xa, xb)
    assert sorted(i for _, y in runs[0] for i in y) == list(range(12))


def test_samplers_tensor_dataset_and_random_split() -> None:
    x = ck.arange(10).float().reshape(10, 1)
    y = ck.arange(10)
    ds = ud.TensorDataset(x, y)
    xi, yi = ds[3]
    assert isinstance(xi, ck.Tensor) and yi.item() == 3
    got = [
        b[1].tolist()
        for b in ud.DataLoader(ds, batch_size=3, sampler=ud.SubsetRandomSampler([1, 4, 7]))
    ]
    assert sorted(i for b in got for i in b) == [1, 4, 7]
    with pytest.raises(ValueError, match="mutually exclusive"):
        ud.DataLoader(ds, sampler=[0], shuffle=True)
    a, b = ud.random_split(ds, [7, 3], generator=ck.Generator().manual_seed(42))
    c, _ = ud.random_split(ds, [7, 3], generator=ck.Generator().manual_seed(42))
    assert list(a.indices) == list(c.indices) and len(b) == 3
    assert sorted([*a.indices, *b.indices]) == list(range(10))
    assert len(ud.DataLoader(ds, batch_size=4, drop_last=True)) == 2
    assert len(ud.ConcatDataset([ds, ds])) == 20


def test_iterable_dataset_and_unbatched() -> None:
    class Stream(ud.IterableDataset):
        def __iter__(self):
            return iter(range(7))

    batches = [b.tolist() for b in ud.DataLoader(Stream(), batch_size=3)]
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b for b in ud.DataLoader(Stream(), batch_size=None)][:2] == [0, 1]
