"""The scikit-learn digits dataset."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.data import DataLoader, Digits, Normalize, TensorDataset


def test_sizes_add_up_and_split_is_stratified():
    full = Digits("all")
    train, test = Digits("train"), Digits("test")
    assert len(full) == 1797
    assert len(train) + len(test) == 1797
    assert len(test) == 360
    counts = np.bincount(test.targets, minlength=10)
    assert counts.sum() == 360
    assert (counts >= 35).all()  # each class holds ~20 % of its ~180 images
    assert (
        np.bincount(full.targets).tolist()
        == (np.bincount(train.targets) + np.bincount(test.targets)).tolist()
    )
    assert isinstance(train, TensorDataset)


def test_arrays_shapes_and_values():
    ds = Digits("all")
    assert ds.data.shape == (1797, 1, 8, 8)
    assert ds.data.dtype == np.float32
    assert ds.targets.dtype == np.int64
    assert float(ds.data.min()) == 0.0 and float(ds.data.max()) == 1.0
    assert ds.classes == [str(d) for d in range(10)]
    # values are multiples of 1/16
    np.testing.assert_allclose(ds.data * 16, np.round(ds.data * 16), atol=1e-5)
    x, y = ds[0]
    assert x.shape == (1, 8, 8) and int(y) == 0


def test_split_is_deterministic_and_transform_is_used():
    a, b = Digits("test"), Digits("test")
    np.testing.assert_array_equal(a.data, b.data)
    ds = Digits("test", transform=Normalize(0.5, 0.5))
    np.testing.assert_allclose(ds[0][0], (a.data[0] - 0.5) / 0.5)
    (xb, yb), *_ = list(DataLoader(ds, batch_size=8))
    np.testing.assert_allclose(xb.data, (a.data[:8] - 0.5) / 0.5)
    np.testing.assert_array_equal(yb.data, a.targets[:8])
    with pytest.raises(ValueError, match="split"):
        Digits("val")
