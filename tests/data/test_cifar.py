"""CIFAR-10 python batches, read with the restricted unpickler."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import CIFAR10, safe_load_pickle

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_cifar(root: Path, n: int = 3, protocol: int = 2, seed: int = 0) -> dict[str, tuple]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    out = {}
    for name in [*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        batch = {b"batch_label": name.encode(), b"data": data, b"labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        out[name] = (data, labels)
    meta = {b"label_names": [s.encode() for s in NAMES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return out


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_load_train_and_test(tmp_path, protocol):
    batches = make_cifar(tmp_path, n=3, protocol=protocol)
    train = CIFAR10(tmp_path, train=True)
    assert len(train) == 15
    assert train.data.shape == (15, 3, 32, 32) and train.data.dtype == np.float32
    assert train.targets.dtype == np.int64
    assert train.classes == NAMES
    data1, labels1 = batches["data_batch_1"]
    np.testing.assert_allclose(train.data[0], data1[0].reshape(3, 32, 32) / np.float32(255))
    np.testing.assert_array_equal(train.targets[:3], labels1)
    _, labels5 = batches["data_batch_5"]
    np.testing.assert_array_equal(train.targets[-3:], labels5)
    test = CIFAR10(tmp_path / "cifar-10-batches-py", train=False)
    data_t, labels_t = batches["test_batch"]
    assert len(test) == 3
    np.testing.assert_allclose(test.data.reshape(3, -1), data_t / np.float32(255))
    assert float(test.data.min()) >= 0.0 and float(test.data.max()) <= 1.0
    x, y = test[2]
    assert x.shape == (3, 32, 32) and int(y) == labels_t[2]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_not_run(tmp_path):
    make_cifar(tmp_path)
    marker = tmp_path / "pwned"
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": []}))
    with pytest.raises(pickle.UnpicklingError, match=r"test_batch.*system"):
        CIFAR10(tmp_path, train=False)
    assert not marker.exists()
    # the unpickler itself, and other globals too
    evil2 = tmp_path / "evil2"
    evil2.write_bytes(pickle.dumps(Path("x")))
    with pytest.raises(pickle.UnpicklingError, match="evil2"):
        safe_load_pickle(evil2)


def test_validation_errors_name_the_file(tmp_path):
    make_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    p = folder / "data_batch_3"
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"data_batch_3.*\(N, 3072\), got \(2, 100\)"):
        CIFAR10(tmp_path)
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}))
    with pytest.raises(ValueError, match=r"data_batch_3.*expected 2 labels.*got 1"):
        CIFAR10(tmp_path)
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}))
    with pytest.raises(ValueError, match=r"data_batch_3.*expected 0\.\.9, got 10"):
        CIFAR10(tmp_path)
    p.write_bytes(pickle.dumps({b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"data_batch_3.*missing key 'data'"):
        CIFAR10(tmp_path)
    p.write_bytes(b"not a pickle at all")
    with pytest.raises(pickle.UnpicklingError, match="data_batch_3"):
        CIFAR10(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"batches\.meta"):
        CIFAR10(tmp_path / "elsewhere")
