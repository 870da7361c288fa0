"""DigitScenes: tight non-overlapping boxes, determinism, splits, collate, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.data import DataLoader, DigitScenes, detection_collate
from cnnkit.tensor import Tensor


def synthetic_digits(n: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Blocky 28x28 'digits' with a blank border of varying width (uint8)."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 28, 28), np.uint8)
    for k in range(n):
        a, b = rng.integers(2, 8, 2)
        imgs[k, a : 28 - b, b : 28 - a] = rng.integers(1, 256, (28 - a - b, 28 - a - b))
    return imgs, np.arange(n) % 10


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("split", ["train", "test"])
def test_boxes_are_tight_and_disjoint(split: str) -> None:
    imgs, labels = synthetic_digits()
    ds = DigitScenes(images=imgs, labels=labels, split=split, n=40, seed=3)
    counts = []
    for i in range(len(ds)):
        x, t = ds[i]
        assert x.shape == (1, 96, 96) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        boxes, labs = t["boxes"], t["labels"]
        assert boxes.dtype == np.float32 and labs.dtype == np.int64
        assert 1 <= len(boxes) <= 4 and labs.shape == (len(boxes),)
        counts.append(len(boxes))
        covered = np.zeros((96, 96), bool)
        for k, b in enumerate(boxes.astype(int)):
            x1, y1, x2, y2 = b
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96
            # the box is tight: every border row/column holds a lit pixel
            patch = x[0, y1:y2, x1:x2]
            assert patch[0].any() and patch[-1].any() and patch[:, 0].any() and patch[:, -1].any()
            # digits scaled by 0.7..1.5 from a 28x28 source
            assert max(x2 - x1, y2 - y1) <= round(28 * 1.5)
            for other in boxes[k + 1 :]:
                assert not _overlap(b, other)
            covered[y1:y2, x1:x2] = True
        assert not x[0][~covered].any()  # nothing lit outside the boxes
    assert set(counts) == {1, 2, 3, 4}


def test_deterministic_and_splits_use_their_digits() -> None:
    imgs, labels = synthetic_digits(100)
    a = DigitScenes(images=imgs, labels=labels, split="train", n=10, seed=1)
    b = DigitScenes(images=imgs, labels=labels, split="train", n=10, seed=1)
    c = DigitScenes(images=imgs, labels=labels, split="train", n=10, seed=2)
    for i in (0, 7, -1):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1]["boxes"], b[i][1]["boxes"])
    assert any(not np.array_equal(a[i][0], c[i][0]) for i in range(10))
    # train scenes draw from images 0-79, test from 80-99 (labels 0..9 repeat, so use
    # a labelling that tells the halves apart)
    half = np.where(np.arange(100) < 80, 0, 1)
    tr = DigitScenes(images=imgs, labels=half, split="train", n=30)
    te = DigitScenes(images=imgs, labels=half, split="test", n=30)
    assert all((tr[i][1]["labels"] == 0).all() for i in range(30))
    assert all((te[i][1]["labels"] == 1).all() for i in range(30))


def test_real_mnist_split(mnist_dir) -> None:
    tr = DigitScenes(mnist_dir, "train", n=5)
    te = DigitScenes(mnist_dir, "test", n=5)
    assert len(tr.pool) == 8000 and tr.pool[-1] == 7999
    assert len(te.pool) == 2000 and te.pool[0] == 8000
    x, t = te[0]
    assert x.shape == (1, 96, 96) and len(t["boxes"]) >= 1


def test_collate_and_loader() -> None:
    imgs, labels = synthetic_digits()
    ds = DigitScenes(images=imgs, labels=labels, n=10)
    x, targets = detection_collate([ds[0], ds[1], ds[2]])
    assert x.shape == (3, 1, 96, 96) and isinstance(targets, list) and len(targets) == 3
    np.testing.assert_array_equal(targets[1]["boxes"], ds[1][1]["boxes"])
    batches = list(DataLoader(ds, batch_size=4, collate_fn=DigitScenes.collate))
    assert [len(t) for _, t in batches] == [4, 4, 2]
    assert isinstance(batches[0][0], Tensor) and batches[0][0].shape == (4, 1, 96, 96)
    with pytest.raises(ValueError, match="empty batch"):
        detection_collate([])


def test_bad_arguments() -> None:
    imgs, labels = synthetic_digits()
    with pytest.raises(ValueError, match="split"):
        DigitScenes(images=imgs, labels=labels, split="val")
    with pytest.raises(ValueError, match="either root or images"):
        DigitScenes()
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.9"):
        DigitScenes(images=imgs, labels=labels + 5)
    with pytest.raises(ValueError, match="smaller than the largest digit"):
        DigitScenes(images=imgs, labels=labels, size=30)
    with pytest.raises(FileNotFoundError, match="no MNIST IDX files"):
        DigitScenes("/", split="train")
    with pytest.raises(IndexError, match="out of range"):
        DigitScenes(images=imgs, labels=labels, n=3)[3]
