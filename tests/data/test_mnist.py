"""MNIST / Fashion-MNIST IDX reading: the real test set and corrupt variants."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import MNIST, FashionMNIST, read_idx


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> Path:
    """Write ``array`` (uint8) as an IDX file (gzip when the name ends in .gz)."""
    a = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | a.ndim
    payload = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in a.shape)
    payload += a.tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def make_mnist(root: Path, n: int = 5, prefix: str = "t10k", gz: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    ext = ".gz" if gz else ""
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return images, labels


def test_real_mnist_test_set(mnist_dir):
    ds = MNIST(mnist_dir, train=False)
    assert len(ds) == 10000
    assert ds.data.shape == (10000, 1, 28, 28)
    assert ds.data.dtype == np.float32 and ds.targets.dtype == np.int64
    assert float(ds.data.min()) == 0.0 and float(ds.data.max()) == 1.0
    hist = np.bincount(ds.targets, minlength=10)
    assert hist.shape == (10,) and hist.sum() == 10000
    assert (hist > 800).all()
    assert ds.targets[:3].tolist() == [7, 2, 1]
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and int(y) == 7
    assert ds.classes == [str(d) for d in range(10)]


def test_synthetic_values_plain_and_raw_subfolder(tmp_path):
    images, labels = make_mnist(tmp_path / "FashionMNIST" / "raw", n=4, prefix="train", gz=False)
    ds = FashionMNIST(tmp_path, train=True)
    np.testing.assert_allclose(ds.data[:, 0], images / np.float32(255))
    np.testing.assert_array_equal(ds.targets, labels)
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    images2, _ = make_mnist(tmp_path / "raw", n=3, prefix="t10k")
    assert len(MNIST(tmp_path, train=False)) == 3
    np.testing.assert_array_equal(
        read_idx(tmp_path / "raw" / "t10k-images-idx3-ubyte.gz", 0x803), images2
    )


def test_missing_file_mentions_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*download=True"):
        MNIST(tmp_path, train=True)


def test_truncated_file_names_file_and_sizes(tmp_path):
    make_mnist(tmp_path, n=4, gz=False)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    expected = 16 + 4 * 28 * 28
    with pytest.raises(ValueError) as e:
        MNIST(tmp_path, train=False)
    msg = str(e.value)
    assert str(p) in msg and "truncated" in msg
    assert str(expected) in msg and str(expected - 10) in msg


def test_bad_magic_names_file_and_values(tmp_path):
    make_mnist(tmp_path, n=2)
    p = write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2), magic=0x00000803)
    with pytest.raises(ValueError) as e:
        MNIST(tmp_path, train=False)
    msg = str(e.value)
    assert str(p) in msg and "0x00000801" in msg and "0x00000803" in msg


def test_count_mismatch_and_bad_label(tmp_path):
    make_mnist(tmp_path, n=5)
    p = write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz.*expected 5 labels, got 4"):
        MNIST(tmp_path, train=False)
    write_idx(p, np.array([0, 1, 12, 3, 4]))
    with pytest.raises(ValueError, match=r"t10k-labels.*expected 0\.\.9, got 12"):
        MNIST(tmp_path, train=False)


def test_not_gzip(tmp_path):
    make_mnist(tmp_path, n=2)
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz"):
        MNIST(tmp_path, train=False)
