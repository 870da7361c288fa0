"""TensorDataset, Subset, ConcatDataset, random_split and DataLoader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnkit import backend
from cnnkit.data import (
    ConcatDataset,
    DataLoader,
    Dataset,
    Subset,
    TensorDataset,
    random_split,
)
from cnnkit.tensor import Tensor


def _xy(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n * 6, dtype=np.float32).reshape(n, 1, 2, 3)
    y = np.arange(n, dtype=np.int32) % 3
    return x, y


def _epoch_order(loader: DataLoader) -> np.ndarray:
    """The sample ids seen in one epoch (x[i, 0, 0, 0] == 6 * i)."""
    return np.concatenate([(xb.array[:, 0, 0, 0] // 6).astype(int) for xb, _ in loader])


class _ListDataset(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return np.full((2,), i, dtype=np.float64), i


def test_tensor_dataset_items_and_tensor_unwrap():
    x, y = _xy()
    ds = TensorDataset(Tensor(x), y)
    assert len(ds) == 10
    xi, yi = ds[3]
    np.testing.assert_array_equal(xi, x[3])
    assert yi == y[3]
    assert ds.arrays[0] is x
    xi, yi = ds[-1]
    np.testing.assert_array_equal(xi, x[9])
    with pytest.raises(IndexError, match="out of range"):
        ds[10]


def test_tensor_dataset_length_mismatch_names_both_lengths():
    with pytest.raises(ValueError, match=r"array 0 has 5 samples but array 1 has 4"):
        TensorDataset(np.zeros((5, 2)), np.zeros(4))


def test_subset_and_concat():
    x, y = _xy()
    ds = TensorDataset(x, y)
    sub = Subset(ds, [7, 2, 5])
    assert sub.dataset is ds
    assert sub.indices == [7, 2, 5]
    assert len(sub) == 3
    np.testing.assert_array_equal(sub[1][0], x[2])
    nested = Subset(sub, [2, 0])
    np.testing.assert_array_equal(nested[0][0], x[5])
    cat = ConcatDataset([sub, ds])
    assert len(cat) == 13
    np.testing.assert_array_equal(cat[3][0], x[0])
    np.testing.assert_array_equal(cat[2][0], x[5])
    with pytest.raises(IndexError):
        Subset(ds, [10])


def test_random_split_ints_fractions_and_determinism():
    ds = TensorDataset(*_xy(10))
    a, b = random_split(ds, [7, 3], seed=0)
    assert (len(a), len(b)) == (7, 3)
    perm = np.random.default_rng(0).permutation(10)
    assert a.indices == perm[:7].tolist()
    assert b.indices == perm[7:].tolist()
    assert sorted(a.indices + b.indices) == list(range(10))
    a2, _ = random_split(ds, [7, 3], seed=0)
    assert a2.indices == a.indices
    parts = random_split(ds, [0.5, 0.3, 0.2], seed=1)
    assert [len(p) for p in parts] == [5, 3, 2]
    parts = random_split(TensorDataset(*_xy(11)), [0.5, 0.5], seed=1)
    assert sum(len(p) for p in parts) == 11
    with pytest.raises(ValueError, match="sum to 9 but the dataset has 10"):
        random_split(ds, [5, 4])
    with pytest.raises(ValueError, match="sum to 1"):
        random_split(ds, [0.5, 0.2])


def test_loader_batches_shapes_dtypes_and_partial_last():
    x, y = _xy(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    assert len(loader) == 3
    assert loader.batch_size == 4
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 1, 2, 3), (4, 1, 2, 3), (2, 1, 2, 3)]
    xb, yb = batches[-1]
    assert isinstance(xb, Tensor) and isinstance(yb, Tensor)
    assert xb.array.dtype == np.float32
    assert yb.array.dtype == np.int64
    np.testing.assert_array_equal(xb.array, x[8:])
    np.testing.assert_array_equal(yb.array, y[8:])


def test_loader_drop_last():
    loader = DataLoader(TensorDataset(*_xy(10)), batch_size=4, drop_last=True, shuffle=True, seed=0)
    assert len(loader) == 2
    sizes = [xb.shape[0] for xb, _ in loader]
    assert sizes == [4, 4]


def test_shuffle_covers_every_index_once_and_changes_each_epoch():
    loader = DataLoader(TensorDataset(*_xy(50)), batch_size=8, shuffle=True, seed=3)
    e1, e2 = _epoch_order(loader), _epoch_order(loader)
    assert sorted(e1.tolist()) == list(range(50))
    assert sorted(e2.tolist()) == list(range(50))
    assert not np.array_equal(e1, e2)
    assert not np.array_equal(e1, np.arange(50))


def test_same_seed_same_order_and_global_seed():
    ds = TensorDataset(*_xy(30))
    a = DataLoader(ds, batch_size=7, shuffle=True, seed=11)
    b = DataLoader(ds, batch_size=7, shuffle=True, seed=11)
    for _ in range(2):
        np.testing.assert_array_equal(_epoch_order(a), _epoch_order(b))
    backend.manual_seed(5)
    c = DataLoader(ds, batch_size=7, shuffle=True)
    backend.manual_seed(5)
    d = DataLoader(ds, batch_size=7, shuffle=True)
    np.testing.assert_array_equal(_epoch_order(c), _epoch_order(d))


def test_state_dict_resumption_reproduces_next_epochs():
    ds = TensorDataset(*_xy(40))
    ref = DataLoader(ds, batch_size=6, shuffle=True, seed=7)
    _epoch_order(ref)
    state = json.loads(json.dumps(ref.state_dict()))
    assert state["epoch"] == 1
    expected = [_epoch_order(ref) for _ in range(2)]
    resumed = DataLoader(ds, batch_size=6, shuffle=True, seed=999)
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    got = [_epoch_order(resumed) for _ in range(2)]
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e, g)
    assert resumed.epoch == 3


def test_fast_path_through_nested_subsets_matches_getitem():
    x, y = _xy(20)
    ds = TensorDataset(x, y)
    sub = Subset(Subset(ds, list(range(19, -1, -1))), [0, 5, 3, 10])
    ((xb, yb),) = list(DataLoader(sub, batch_size=4))
    np.testing.assert_array_equal(xb.array, x[[19, 14, 16, 9]])
    np.testing.assert_array_equal(yb.array, y[[19, 14, 16, 9]])


def test_fast_path_applies_dataset_and_loader_transforms():
    x, y = _xy(6)
    seen = []

    def tf(a: np.ndarray) -> np.ndarray:
        assert a.shape == (1, 2, 3)
        seen.append(1)
        return a * 2

    ds = TensorDataset(x, y, transform=tf)
    np.testing.assert_array_equal(ds[1][0], 2 * x[1])
    seen.clear()
    loader = DataLoader(ds, batch_size=6, transform=lambda a: a + 1)
    ((xb, _),) = list(loader)
    assert len(seen) == 6
    np.testing.assert_array_equal(xb.array, 2 * x + 1)


def test_generic_dataset_slow_path():
    loader = DataLoader(_ListDataset(5), batch_size=2, shuffle=True, seed=0)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(2, 2), (2, 2), (1, 2)]
    ids = np.concatenate([b[1].array for b in batches])
    assert batches[0][1].array.dtype == np.int64
    assert sorted(ids.tolist()) == [0, 1, 2, 3, 4]
    for xb, yb in batches:
        np.testing.assert_array_equal(xb.array[:, 0], yb.array.astype(np.float64))


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(TensorDataset(*_xy()), batch_size=0)


def test_generator_argument_drives_the_order():
    ds = TensorDataset(np.arange(20, dtype=np.float32).reshape(20, 1), np.arange(20))
    a = DataLoader(ds, batch_size=5, shuffle=True, generator=np.random.default_rng(4))
    b = DataLoader(ds, batch_size=5, shuffle=True, generator=np.random.default_rng(4))
    order_a = np.concatenate([y.numpy() for _, y in a])
    order_b = np.concatenate([y.numpy() for _, y in b])
    np.testing.assert_array_equal(order_a, order_b)
    assert sorted(order_a.tolist()) == list(range(20)) and order_a.tolist() != list(range(20))
    with pytest.raises(ValueError, match="either seed or generator"):
        DataLoader(ds, seed=1, generator=np.random.default_rng(1))
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        DataLoader(ds, generator=1)
