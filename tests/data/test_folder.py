"""ImageFolder over PNG files written with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data import DataLoader, ImageFolder


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _make(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    imgs = {
        "class_a/1.png": rng.integers(0, 256, (4, 5, 3), dtype=np.uint8),
        "class_a/2.PNG": rng.integers(0, 256, (4, 5, 3), dtype=np.uint8),
        "class_b/x.png": rng.integers(0, 256, (4, 5, 3), dtype=np.uint8),
    }
    for rel, a in imgs.items():
        _png(root / rel, a)
    (root / "class_b" / "notes.txt").write_text("not an image")
    return imgs


def test_classes_targets_and_pixels(tmp_path):
    imgs = _make(tmp_path)
    ds = ImageFolder(tmp_path)
    assert ds.classes == ["class_a", "class_b"]
    assert ds.targets.tolist() == [0, 0, 1]
    assert [Path(p).name for p, _ in ds.samples] == ["1.png", "2.PNG", "x.png"]
    assert ds.data.shape == (3, 3, 4, 5) and ds.data.dtype == np.float32
    x, y = ds[2]
    assert int(y) == 1
    np.testing.assert_allclose(x, imgs["class_b/x.png"].transpose(2, 0, 1) / np.float32(255))
    ((xb, yb),) = list(DataLoader(ds, batch_size=3))
    assert xb.shape == (3, 3, 4, 5) and yb.data.tolist() == [0, 0, 1]


def test_grayscale_and_resize(tmp_path):
    _make(tmp_path)
    _png(tmp_path / "class_b" / "big.png", np.zeros((8, 10, 3), np.uint8))
    ds = ImageFolder(tmp_path, size=(6, 7), grayscale=True)
    assert ds.data.shape == (4, 1, 6, 7)
    np.testing.assert_allclose(ds.data[2], 0.0)  # big.png sorts before x.png
    gray = ImageFolder(tmp_path, size=3, grayscale=True)
    assert gray.data.shape == (4, 1, 3, 3)


def test_mixed_sizes_error_names_file(tmp_path):
    _make(tmp_path)
    _png(tmp_path / "class_b" / "y.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"y\.png: image size \(8, 8\) differs from \(4, 5\)"):
        ImageFolder(tmp_path)


def test_corrupt_image_error_names_file(tmp_path):
    _make(tmp_path)
    bad = tmp_path / "class_a" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        ImageFolder(tmp_path)


def test_empty_and_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolder(tmp_path)
