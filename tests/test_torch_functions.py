"""Free functions PyTorch scripts call (randperm, randint, F.one_hot) against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn.functional as F


def test_randperm_is_a_seeded_int64_permutation() -> None:
    p = ck.randperm(10, generator=ck.Generator().manual_seed(42))
    want = torch.randperm(10)
    assert p.dtype == np.int64 and str(want.dtype) == "torch.int64"
    assert sorted(p.tolist()) == list(range(10))
    assert p.tolist() == ck.randperm(10, generator=ck.Generator().manual_seed(42)).tolist()
    ck.manual_seed(3)
    a = ck.randperm(50)
    ck.manual_seed(3)
    assert a.tolist() == ck.randperm(50).tolist() and a.tolist() != list(range(50))
    assert ck.randperm(0).tolist() == torch.randperm(0).tolist() == []
    items = list("abcdefghij")
    assert sorted(items[i] for i in ck.randperm(10)[:3]) != []  # elements index lists
    with pytest.raises(ValueError, match="non-negative"):
        ck.randperm(-1)


def test_randint_range_shape_and_two_argument_form() -> None:
    ck.manual_seed(0)
    x = ck.randint(3, 7, (200,))
    t = torch.randint(3, 7, (200,))
    assert x.dtype == np.int64 and tuple(x.shape) == tuple(t.shape)
    assert set(x.tolist()) == set(t.tolist()) == {3, 4, 5, 6}
    y = ck.randint(5, (4, 3))
    assert tuple(y.shape) == tuple(torch.randint(5, (4, 3)).shape)
    assert 0 <= int(y.min()) and int(y.max()) < 5
    with pytest.raises(ValueError, match="greater than low"):
        ck.randint(5, 5, (2,))


@pytest.mark.parametrize("num_classes", [-1, 6])
def test_one_hot_matches_pytorch(num_classes: int) -> None:
    idx = np.array([[0, 3], [4, 1], [2, 2]])
    got = F.one_hot(ck.tensor(idx), num_classes=num_classes)
    want = torch.nn.functional.one_hot(torch.tensor(idx), num_classes=num_classes)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(got.sum(dim=0).numpy(), want.sum(dim=0).numpy())


def test_one_hot_bad_input() -> None:
    with pytest.raises(ValueError, match="smaller than num_classes=3"):
        F.one_hot(ck.tensor([0, 3]), num_classes=3)
    with pytest.raises(TypeError, match="integer"):
        F.one_hot(ck.tensor([0.0, 1.0]))
