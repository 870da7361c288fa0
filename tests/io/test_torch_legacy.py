"""Every torch.save format since 0.4: legacy streams written here with the standard library
(there is no old PyTorch to make them), torch 2.13's own writers, checkpoint dicts,
GPU storages and DataParallel prefixes."""

from __future__ import annotations

import argparse
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from cnnkit.io import CheckpointError, load_torch_object, load_torch_state_dict
from tests.io import torch_files as tf

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)


def _state(prefix: str = "", location: str = "cpu") -> tuple[OrderedDict, dict]:
    """A state dict of stand-in tensors (as 0.4 saved them) and the arrays it holds."""
    arrays = {
        f"{prefix}conv1.weight": RNG.standard_normal((4, 1, 3, 3)).astype(np.float32),
        f"{prefix}bn1.running_mean": RNG.standard_normal(4),  # float64
        f"{prefix}bn1.num_batches_tracked": np.array(7, dtype=np.int64),
        f"{prefix}linear.weight": RNG.standard_normal((3, 4)).astype(np.float16),
        f"{prefix}mask": np.array([[1, 0], [0, 1]], dtype=np.uint8),
        f"{prefix}flags": np.array([True, False]),
    }
    sd = OrderedDict(
        (k, tf.tensor(v, key=str(9000 + i), location=location))
        for i, (k, v) in enumerate(arrays.items())
    )
    return sd, arrays


@pytest.mark.parametrize("location", ["cpu", "cuda:0", "cuda:3"])
def test_legacy_stream_written_with_the_standard_library(tmp_path, location):
    sd, arrays = _state(location=location)
    path = tf.write_legacy(tmp_path / "old.pth", sd)
    got = load_torch_state_dict(path)
    assert list(got) == list(arrays)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    # the hand-written file is what torch itself reads as a legacy file
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    for k, v in arrays.items():
        np.testing.assert_array_equal(theirs[k].numpy(), v, err_msg=k)


def test_legacy_views_shared_storages_and_view_metadata(tmp_path):
    base = np.arange(24, dtype=np.float32)
    s = tf.Storage(base, "1")
    obj = {
        "rows": tf.T(s, 4, (2, 3), (6, 1)),
        "t": tf.T(s, 0, (4, 6), (1, 4)),  # transposed strides
        "bcast": tf.T(s, 2, (3, 4), (0, 1)),  # zero stride (expand)
        "view": tf.T(s, 1, (3,), (2,), view=("2", 10, 8)),  # 0.4 storage view: elements 10..17
    }
    path = tf.write_legacy(tmp_path / "views.pt", obj)
    got = load_torch_object(path)
    theirs = torch.load(path, weights_only=True)
    for k in obj:
        np.testing.assert_array_equal(got[k], theirs[k].numpy(), err_msg=k)
    np.testing.assert_array_equal(got["view"], [11, 13, 15])
    assert not np.shares_memory(got["rows"], got["t"])


def test_checkpoint_dict_with_dataparallel_prefix(tmp_path):
    sd, arrays = _state(prefix="module.", location="cuda:0")
    ckpt = {
        "epoch": 182,
        "arch": "resnet20",
        "state_dict": sd,
        "best_prec1": np.float64(91.73),  # numpy scalars appear in published checkpoints
        "args": argparse.Namespace(lr=0.1, arch="resnet20"),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0]}]},
    }
    for write in (tf.write_legacy, tf.write_zip):
        path = write(tmp_path / f"ckpt_{write.__name__}.th", ckpt)
        got = load_torch_state_dict(path, strip_prefix="module.")
        assert list(got) == [k[len("module.") :] for k in arrays]
        for k, v in arrays.items():
            np.testing.assert_array_equal(got[k[len("module.") :]], v)
        assert list(load_torch_state_dict(path)) == list(arrays)  # prefix kept unless asked
        full = load_torch_object(path)
        assert full["epoch"] == 182 and full["arch"] == "resnet20"
        assert full["best_prec1"] == np.float64(91.73)
        assert full["args"].lr == 0.1 and full["args"].arch == "resnet20"
        assert full["optimizer"]["param_groups"][0]["momentum"] == 0.9


def test_nested_state_dict_rule(tmp_path):
    w = np.ones((2, 2), np.float32)
    cases = [
        ({"model_state_dict": {"w": tf.tensor(w, "0")}, "epoch": 1}, "model_state_dict"),
        ({"net": {"state_dict": {"w": tf.tensor(w, "0")}}}, "net/state_dict"),
        ({"ema": {"w": tf.tensor(w, "0")}, "step": 5}, "the only dict of tensors"),
    ]
    for i, (obj, _why) in enumerate(cases):
        path = tf.write_zip(tmp_path / f"n{i}.pt", obj)
        np.testing.assert_array_equal(load_torch_state_dict(path)["w"], w)
    # two candidate dicts and none under a known key: ambiguous, the error lists them
    obj = {"a": {"w": tf.tensor(w, "0")}, "b": {"w": tf.tensor(w, "1")}, "epoch": 3}
    path = tf.write_zip(tmp_path / "two.pt", obj)
    with pytest.raises(CheckpointError, match=r"two\.pt: no state dict found in .*'a': dict.*key="):
        load_torch_state_dict(path)
    np.testing.assert_array_equal(load_torch_state_dict(path, key="b")["w"], w)
    with pytest.raises(CheckpointError, match=r"two\.pt: no entry 'c' at the top level"):
        load_torch_state_dict(path, key="c")


@pytest.mark.parametrize("zipped", [False, True])
def test_torch_213_writers(tmp_path, zipped):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    model(torch.randn(2, 1, 5, 5))
    path = tmp_path / "m.pt"
    obj = {"state_dict": model.state_dict(), "epoch": 4, "size": torch.Size([2, 3])}
    torch.save(obj, path, _use_new_zipfile_serialization=zipped)
    got = load_torch_state_dict(path)
    assert list(got) == list(model.state_dict())
    for k, v in model.state_dict().items():
        assert got[k].dtype == v.numpy().dtype
        np.testing.assert_array_equal(got[k], v.numpy())
    full = load_torch_object(path)
    assert full["epoch"] == 4 and full["size"] == (2, 3)
    # containers of tensors as torch.save writes them (for cnnkit.load of such files)
    torch.save(
        [torch.arange(3), (torch.ones(2), {"x": torch.zeros(1)})],
        path,
        _use_new_zipfile_serialization=zipped,
    )
    lst = load_torch_object(path)
    np.testing.assert_array_equal(lst[0], [0, 1, 2])
    np.testing.assert_array_equal(lst[1][1]["x"], [0.0])


def test_whole_pickled_module_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path, _use_new_zipfile_serialization=False)
    with pytest.raises(pickle.UnpicklingError, match=r"model\.pt: refused to load global torch"):
        load_torch_state_dict(path)
    with pytest.raises(CheckpointError, match=r"model\.pt: refused"):
        load_torch_state_dict(path)
