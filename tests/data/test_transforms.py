"""Per-sample transforms."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.data import Compose, Normalize, RandomCrop, RandomHorizontalFlip, ToFloat


def test_normalize_per_channel():
    x = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 3.0)]).astype(np.float32)
    out = Normalize([0.5, 1.0], [0.5, 2.0])(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1], 1.0)
    with pytest.raises(ValueError, match="3 values but the image has 2 channels"):
        Normalize([0, 0, 0], [1, 1, 1])(x)


def test_flip_always_and_never():
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0)(x), x[:, :, ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0)(x), x)
    a = RandomHorizontalFlip(seed=0)
    b = RandomHorizontalFlip(seed=0)
    assert [a(x)[0, 0, 0] for _ in range(10)] == [b(x)[0, 0, 0] for _ in range(10)]


def test_random_crop_padding_and_shape():
    x = np.ones((3, 4, 4), dtype=np.float32)
    crop = RandomCrop(4, padding=2, seed=0)
    outs = [crop(x) for _ in range(20)]
    assert all(o.shape == (3, 4, 4) for o in outs)
    sums = {float(o.sum()) for o in outs}
    assert len(sums) > 1  # different offsets keep different amounts of padding
    assert max(sums) <= 48.0
    np.testing.assert_array_equal(RandomCrop(4)(x), x)
    with pytest.raises(ValueError, match="larger than"):
        RandomCrop(5)(x)


def test_compose_and_tofloat():
    x = np.full((1, 2, 2), 255, dtype=np.uint8)
    out = Compose([ToFloat(), Normalize(0.5, 0.5)])(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 1.0)
