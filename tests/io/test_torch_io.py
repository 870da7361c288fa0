"""PyTorch state dicts: torch.save files in, safetensors out, hostile pickles refused."""

from __future__ import annotations

import io as _io
import os
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tnn = torch.nn
st_torch = pytest.importorskip("safetensors.torch")

import cnnkit as ck  # noqa: E402
from cnnkit import io  # noqa: E402
from cnnkit.io import CheckpointError, load_torch_state_dict, save_torch_state_dict  # noqa: E402
from cnnkit.models import LeNet5, SmallVGG  # noqa: E402


# ------------------------------------------------------------ torch twins of the zoo
class TorchLeNet5(tnn.Module):
    """LeNet5(input_size=28) with PyTorch layers and the same module names."""

    def __init__(self) -> None:
        super().__init__()
        self.features = tnn.Sequential(
            tnn.Conv2d(1, 6, 5, padding=2),
            tnn.ReLU(),
            tnn.MaxPool2d(2),
            tnn.Conv2d(6, 16, 5),
            tnn.ReLU(),
            tnn.MaxPool2d(2),
        )
        self.classifier = tnn.Sequential(
            tnn.Flatten(),
            tnn.Linear(400, 120),
            tnn.ReLU(),
            tnn.Linear(120, 84),
            tnn.ReLU(),
            tnn.Linear(84, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class TorchSmallVGG(tnn.Module):
    """SmallVGG(widths=(8, 16), input_size=16) with PyTorch layers."""

    def __init__(self) -> None:
        super().__init__()
        layers = []
        c = 3
        for w in (8, 16):
            layers += [
                tnn.Conv2d(c, w, 3, padding=1, bias=False),
                tnn.BatchNorm2d(w),
                tnn.ReLU(),
                tnn.Conv2d(w, w, 3, padding=1, bias=False),
                tnn.BatchNorm2d(w),
                tnn.ReLU(),
                tnn.MaxPool2d(2),
                tnn.Dropout(0.3),
            ]
            c = w
        self.features = tnn.Sequential(*layers)
        self.classifier = tnn.Sequential(
            tnn.Flatten(),
            tnn.Linear(16 * 4 * 4, 256),
            tnn.ReLU(),
            tnn.Dropout(0.3),
            tnn.Linear(256, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


PAIRS = [
    (TorchLeNet5, lambda: LeNet5(input_size=28), (3, 1, 28, 28)),
    (TorchSmallVGG, lambda: SmallVGG(widths=(8, 16), input_size=16), (3, 3, 16, 16)),
]


def _warm_batchnorm(tmodel, shape):
    """Move BatchNorm running statistics and num_batches_tracked away from defaults."""
    tmodel.train()
    with torch.no_grad():
        for _ in range(3):
            tmodel(torch.randn(*shape) * 2 + 0.5)
    tmodel.eval()


@pytest.mark.parametrize("tcls, make, shape", PAIRS)
def test_torch_save_file_loads_into_cnnkit(tmp_path, tcls, make, shape):
    torch.manual_seed(0)
    tmodel = tcls()
    _warm_batchnorm(tmodel, shape)
    path = tmp_path / "m.pt"
    torch.save(tmodel.state_dict(), path)

    sd = load_torch_state_dict(path)
    assert list(sd) == list(tmodel.state_dict())
    for k, v in tmodel.state_dict().items():
        assert sd[k].dtype == v.numpy().dtype, k
        np.testing.assert_array_equal(sd[k], v.numpy())
    model = make()
    model.load_state_dict(sd)
    model.eval()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(ck.tensor(x)).numpy(), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tcls, make, shape", PAIRS)
def test_cnnkit_weights_load_into_torch(tmp_path, tcls, make, shape):
    ck.manual_seed(3)
    model = make()
    model.train()
    for _ in range(2):  # BatchNorm running stats and num_batches_tracked move
        model(ck.randn(*shape))
    model.eval()
    path = save_torch_state_dict(tmp_path / "w.safetensors", model)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp files left

    loaded = st_torch.load_file(str(path))
    tmodel = tcls()
    tmodel.load_state_dict(loaded)  # strict: same keys and shapes
    tmodel.eval()
    for k, v in model.state_dict().items():
        assert loaded[k].numpy().dtype == v.numpy().dtype, k
        np.testing.assert_array_equal(loaded[k].numpy(), v.numpy())
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        got = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, model(ck.tensor(x)).numpy(), atol=1e-5, rtol=1e-5)
    # and back: cnnkit reads its own export as a plain safetensors state dict
    back = load_torch_state_dict(path)
    assert back.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(back[k], v.numpy())


def test_views_offsets_shared_storages_and_dtypes(tmp_path):
    big = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    sd = {
        "a": big[1:, ::2],  # storage offset 8, strides (8, 2)
        "b": big.t(),  # transposed: strides (1, 8)
        "c": big[3],  # offset 24, 1-d
        "d": big[:1].expand(4, 8),  # stride 0
        "e": big[2:5, 3:7],  # offset and non-contiguous rows
        "f64": torch.linspace(-1, 1, 7, dtype=torch.float64),
        "i64": torch.tensor(123456789012, dtype=torch.int64),  # 0-d, like num_batches_tracked
        "i32": torch.tensor([-3, 7], dtype=torch.int32),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "f16": torch.tensor([1.5, -2.25], dtype=torch.float16),
        "bool": torch.tensor([True, False, True]),
        "bf16": torch.tensor([1.0, -0.5, 3.0], dtype=torch.bfloat16),
        "param": tnn.Parameter(torch.ones(2, 3)),
        "empty": torch.zeros(0, 3),
    }
    path = tmp_path / "views.pt"
    torch.save(sd, path)
    got = load_torch_state_dict(path)
    assert list(got) == list(sd)
    for k, v in sd.items():
        want = v.detach().float().numpy() if k == "bf16" else v.detach().numpy()
        assert got[k].dtype == want.dtype, k
        assert got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)
        assert got[k].flags.c_contiguous and got[k].flags.writeable, k
    for a in "abcde":  # one torch storage, five independent arrays
        assert not any(np.shares_memory(got[a], got[b]) for b in "abcde" if b != a)
    got["a"][0, 0] = -1  # copies, not views of one shared buffer
    assert got["b"][0, 1] == 8


def test_float64_and_int64_round_trip_both_ways(tmp_path):
    from cnnkit import nn

    ck.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4)).double()
    model.train()
    model(ck.randn(6, 5).double())
    model(ck.randn(6, 5).double())
    sd = model.state_dict()
    assert sd["0.weight"].dtype == np.float64 and sd["1.num_batches_tracked"].dtype == np.int64
    path = save_torch_state_dict(tmp_path / "d.safetensors", model)
    tsd = st_torch.load_file(str(path))
    assert tsd["0.weight"].dtype == torch.float64
    assert tsd["1.num_batches_tracked"].dtype == torch.int64
    assert tsd["1.num_batches_tracked"].shape == () and int(tsd["1.num_batches_tracked"]) == 2
    tmodel = tnn.Sequential(tnn.Linear(5, 4), tnn.BatchNorm1d(4)).double()
    tmodel.load_state_dict(tsd)
    torch.save(tmodel.state_dict(), tmp_path / "d.pt")
    back = load_torch_state_dict(tmp_path / "d.pt")
    for k, v in sd.items():
        assert back[k].dtype == v.numpy().dtype and back[k].shape == v.shape, k
        np.testing.assert_array_equal(back[k], v.numpy())
    other = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4)).double()
    other.load_state_dict(back)
    assert int(other[1].num_batches_tracked.numpy()) == 2


def test_safetensors_input_and_nested_key(tmp_path):
    torch.manual_seed(0)
    tmodel = TorchLeNet5()
    st_torch.save_file(tmodel.state_dict(), str(tmp_path / "m.safetensors"))
    sd = load_torch_state_dict(tmp_path / "m.safetensors")
    for k, v in tmodel.state_dict().items():
        np.testing.assert_array_equal(sd[k], v.numpy())

    torch.save({"model": tmodel.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    assert load_torch_state_dict(tmp_path / "ckpt.pth").keys() == sd.keys()  # found by rule
    sd2 = load_torch_state_dict(tmp_path / "ckpt.pth", key="model")
    assert sd2.keys() == sd.keys()
    with pytest.raises(CheckpointError, match=r"ckpt\.pth: entry 'epoch' is a int"):
        load_torch_state_dict(tmp_path / "ckpt.pth", key="epoch")


def test_bad_files_are_clear_errors(tmp_path):
    txt = tmp_path / "notes.pt"
    txt.write_text("not a model")
    with pytest.raises(CheckpointError, match=r"notes\.pt: neither"):
        load_torch_state_dict(txt)
    with pytest.raises(CheckpointError, match="no such file"):
        load_torch_state_dict(tmp_path / "missing.pt")
    z = tmp_path / "other.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match=r"other\.zip: a zip file but not a torch\.save"):
        load_torch_state_dict(z)
    full = tmp_path / "full.pt"
    torch.save(TorchLeNet5().state_dict(), full)
    with zipfile.ZipFile(full) as src, zipfile.ZipFile(tmp_path / "cut.pt", "w") as dst:
        for n in src.namelist():
            if not n.endswith("/data/3"):
                dst.writestr(n, src.read(n))
    with pytest.raises(CheckpointError, match=r"cut\.pt: missing storage .*data/3"):
        load_torch_state_dict(tmp_path / "cut.pt")


# --------------------------------------------------------------- hostile files
def _write_archive(path: Path, pkl: bytes, storages=None, byteorder="little") -> Path:
    """A zip with torch.save's layout around an arbitrary data.pkl."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", byteorder)
        z.writestr("archive/version", "3\n")
        for key, raw in (storages or {}).items():
            z.writestr(f"archive/data/{key}", raw)
    return path


class _Evil:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('exit 0')",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "MARKER"
    payload = {"w": _Evil(f"touch {marker}")}
    path = _write_archive(tmp_path / "evil.pt", pickle.dumps(payload, protocol=protocol))
    with pytest.raises(pickle.UnpicklingError, match=r"evil\.pt.*refused.*(posix|os)\.system"):
        load_torch_state_dict(path)
    assert not marker.exists()
    # the file is a real attack: an unrestricted unpickler (torch.load without
    # weights_only) would run the command; checked in a child process
    check = (
        "import zipfile, pickle, sys; "
        "pickle.loads(zipfile.ZipFile(sys.argv[1]).read('archive/data.pkl'))"
    )
    subprocess.run([sys.executable, "-c", check, str(path)], check=True)
    assert marker.exists()
    marker.unlink()

    path2 = _write_archive(tmp_path / "eval.pt", pickle.dumps({"w": _Eval()}, protocol=protocol))
    with pytest.raises(pickle.UnpicklingError, match=r"eval\.pt.*(__builtin__|builtins)\.eval"):
        load_torch_state_dict(path2)


class _FakeStorage:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _FakeTensor:
    def __init__(self, storage, offset, size, stride) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _StoragePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def _tensor_pickle(obj) -> bytes:
    buf = _io.BytesIO()
    _StoragePickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def test_handmade_archive_big_endian_and_bounds(tmp_path):
    values = np.arange(12, dtype=np.float32)
    s = _FakeStorage("0", 12)
    obj = {"w": _FakeTensor(s, 2, (2, 3), (1, 2))}
    # our own writer of the layout, read back: little- and big-endian storages
    for order, raw in (("little", values.astype("<f4")), ("big", values.astype(">f4"))):
        path = _write_archive(
            tmp_path / f"{order}.pt", _tensor_pickle(obj), {"0": raw.tobytes()}, order
        )
        got = load_torch_state_dict(path)["w"]
        np.testing.assert_array_equal(got, [[2, 4, 6], [3, 5, 7]])
        assert got.dtype == np.float32 and got.dtype.isnative
    # torch itself agrees on the little-endian file
    t = torch.load(tmp_path / "little.pt", weights_only=True)["w"]
    np.testing.assert_array_equal(t.numpy(), [[2, 4, 6], [3, 5, 7]])

    # a view reaching past its storage would read foreign memory: refused
    bad = {"w": _FakeTensor(s, 5, (3, 4), (4, 1))}
    path = _write_archive(tmp_path / "oob.pt", _tensor_pickle(bad), {"0": values.tobytes()})
    with pytest.raises(pickle.UnpicklingError, match=r"oob\.pt.*reaches element 16"):
        load_torch_state_dict(path)
    neg = {"w": _FakeTensor(s, 11, (3,), (-1,))}
    path = _write_archive(tmp_path / "neg.pt", _tensor_pickle(neg), {"0": values.tobytes()})
    with pytest.raises(pickle.UnpicklingError, match="bad geometry"):
        load_torch_state_dict(path)
    # a storage shorter than its declared element count
    path = _write_archive(tmp_path / "short.pt", _tensor_pickle(obj), {"0": values[:5].tobytes()})
    with pytest.raises(CheckpointError, match=r"short\.pt: storage .* 20 bytes; expected 12"):
        load_torch_state_dict(path)


# ------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from cnnkit.cli import main

    out = tmp_path_factory.mktemp("run") / "r"
    assert main(["train", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    return out


def test_cli_export_torch(digits_run, tmp_path, capsys):
    from cnnkit.cli import main
    from cnnkit.train.run import load_run

    dest = tmp_path / "weights.safetensors"
    assert main(["export", str(digits_run), "--torch", str(dest)]) == 0
    assert "weights.safetensors" in capsys.readouterr().out
    cfg, model = load_run(digits_run)
    loaded = st_torch.load_file(str(dest))
    assert loaded.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded[k].numpy(), v.numpy())
    # the exported weights drive an equivalent PyTorch network to the same outputs
    if cfg["model"] == "lenet5" and cfg["input_size"] == 8:
        tmodel = _torch_twin(model)
        tmodel.load_state_dict(loaded)
        tmodel.eval()
        model.eval()
        x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
        with torch.no_grad():
            got = tmodel(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, model(ck.tensor(x)).numpy(), atol=1e-5, rtol=1e-5)


def _torch_twin(module):
    """A PyTorch copy of a cnnkit module tree of built-in layers (weights not copied)."""
    from cnnkit import nn

    name = type(module).__name__
    if isinstance(module, nn.Sequential) or not hasattr(tnn, name):
        twin = tnn.Sequential() if isinstance(module, nn.Sequential) else _Holder(module)
        for child_name, child in module.named_children():
            twin.add_module(child_name, _torch_twin(child))
        return twin
    if name == "Conv2d":
        return tnn.Conv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            bias=module.bias is not None,
        )
    if name == "Linear":
        return tnn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if name == "MaxPool2d":
        return tnn.MaxPool2d(module.kernel_size, module.stride)
    if name == "Dropout":
        return tnn.Dropout(module.p)
    return getattr(tnn, name)()


class _Holder(tnn.Module):
    def __init__(self, module) -> None:
        super().__init__()
        self._order = [n for n, _ in module.named_children()]

    def forward(self, x):
        for n in self._order:
            x = getattr(self, n)(x)
        return x


def test_cli_export_errors(digits_run, tmp_path, capsys):
    from cnnkit.cli import main

    assert main(["export", str(digits_run)]) == 2
    assert "nothing to export" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), "--torch", str(tmp_path / "w")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_cli_export_onnx(digits_run, tmp_path):
    pytest.importorskip("cnnkit.io.onnx_export")
    ort = pytest.importorskip("onnxruntime")
    from cnnkit.cli import main
    from cnnkit.train.run import load_run

    dest = tmp_path / "model.onnx"
    assert main(["export", str(digits_run), "--onnx", str(dest)]) == 0
    cfg, model = load_run(digits_run)
    model.eval()
    size = cfg["input_size"]
    x = np.random.default_rng(0).standard_normal((2, cfg["in_channels"], size, size))
    x = x.astype(np.float32)
    sess = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(got, model(ck.tensor(x)).numpy(), atol=1e-4, rtol=1e-4)


def test_io_exports_and_no_torch_import(tmp_path):
    assert io.load_torch_state_dict is load_torch_state_dict
    assert io.save_torch_state_dict is save_torch_state_dict
    torch.save({"w": torch.ones(2, 3)}, tmp_path / "w.pt")
    script = (
        "import sys; from cnnkit.io import load_torch_state_dict, save_torch_state_dict; "
        "sd = load_torch_state_dict(sys.argv[1]); save_torch_state_dict(sys.argv[2], sd); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    args = [str(tmp_path / "w.pt"), str(tmp_path / "w.safetensors")]
    subprocess.run([sys.executable, "-c", script, *args], check=True)
    np.testing.assert_array_equal(st_torch.load_file(args[1])["w"].numpy(), np.ones((2, 3)))
