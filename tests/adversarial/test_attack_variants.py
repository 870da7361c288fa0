"""Variants found by a second, driver-based attack on the hardened readers: special files
where files are expected, architecture/config/history/optimizer fields of every wrong
kind, resume options that disagree with the run, corrupt zip records, odd data sets.
Each case asserts the exact outcome (error type, file, field) and that nothing changed."""

from __future__ import annotations

import hashlib
import io as stdio
import json
import os
import shutil
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from cnnkit import io, optim
from cnnkit.cli import main
from cnnkit.io.checkpoint import CheckpointError
from cnnkit.io.reading import NotAFileError, read_regular_bytes, read_regular_text
from cnnkit.limits import LimitError
from cnnkit.train.claim import LOCK, RunDirectoryBusy, claim
from cnnkit.train.run import load_data, train_run

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run (MLP on the embedded digits, 2 epochs: about a second)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    train_run(out, model="mlp", data="digits", epochs=2, batch_size=256, verbose=False)
    return out


def _copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    return dst


def _interrupted(run: Path, dst: Path, epochs: int = 3) -> Path:
    """``run`` as if killed after its 2 epochs, of ``epochs`` planned."""
    _copy(run, dst)
    cfg = json.loads((dst / "config.json").read_text())
    keep = ["model", "model_kwargs", "data", "epochs", "batch_size", "lr", "optimizer",
            "weight_decay", "scheduler", "augment", "seed", "in_channels", "input_size",
            "num_classes", "classes"]  # fmt: skip
    running = {k: cfg[k] for k in keep}
    running["epochs"] = epochs
    (dst / "config.json").unlink()
    (dst / "model.safetensors").unlink()
    (dst / "config.json.running").write_text(json.dumps(running))
    return dst


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK
    }


def _cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err


def _rewrite(path: Path, mutate: Callable[[dict[str, Any]], Any]) -> None:
    """Change a checkpoint's cnnkit header, checksums recomputed (as an attacker can)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8 : 8 + n])["__metadata__"]
    header = json.loads(meta["cnnkit"])
    mutate(header)
    text = json.dumps(header)
    meta["cnnkit"] = text
    meta["cnnkit_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    path.write_bytes(st_save(st_load(data), metadata=meta))


# ----------------------------------------------------------------- special files


def _special(path: Path, kind: str) -> None:
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "loop":
        path.symlink_to(path)
    else:
        raise AssertionError(kind)


EXPECT = {"fifo": "is a FIFO", "dir": "is a directory", "devzero": "is a character device",
          "loop": "symbolic link loop"}  # fmt: skip


@pytest.mark.parametrize("kind", ["fifo", "dir", "devzero", "loop"])
@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_special_file_in_run_is_refused_without_reading(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, name: str,
    command: str,
) -> None:  # fmt: skip
    if kind == "devzero" and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    run = _copy(finished, tmp_path / "run")
    _special(run / name, kind)
    t0 = time.monotonic()
    extra = ["--torch", tmp_path / "x.safetensors"] if command == "export" else []
    code, err = _cli(capsys, command, run, *extra)
    assert time.monotonic() - t0 < 30  # a FIFO or /dev/zero is never read
    assert code == 2 and err.count("\n") == 0, err
    assert f"{run / name}: {EXPECT[kind]}" in err
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("kind", ["fifo", "dir", "devzero"])
def test_reading_helpers_refuse_special_files(tmp_path: Path, kind: str) -> None:
    if kind == "devzero" and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    p = tmp_path / "f"
    _special(p, kind)
    with pytest.raises(NotAFileError, match=EXPECT[kind]):
        read_regular_bytes(p)
    with pytest.raises(CheckpointError, match=EXPECT[kind]):
        io.load(p)


def test_reading_helpers_name_missing_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such config"):
        read_regular_text(tmp_path / "nope", "config")
    (tmp_path / "b").write_bytes(b"\xff\xfe{")
    with pytest.raises(NotAFileError, match="not UTF-8 text"):
        read_regular_text(tmp_path / "b")


@pytest.mark.parametrize("kind", ["fifo", "dir", "symlink"])
def test_claim_file_that_is_not_a_file_is_refused(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "run"
    out.mkdir()
    lock = out / LOCK
    if kind == "symlink":
        lock.symlink_to(tmp_path / "elsewhere")
    else:
        _special(lock, kind)
    want = {"fifo": r"FIFO \(named pipe\)", "dir": "directory", "symlink": "symbolic link"}[kind]
    for takeover in (False, True):
        with pytest.raises(RunDirectoryBusy, match=f"is a {want}, not a cnnkit claim file"):
            claim(out, takeover=takeover)
    assert lock.is_symlink() if kind == "symlink" else lock.exists()


def test_dashboard_reads_no_fifo(tmp_path: Path) -> None:
    from cnnkit.serve.app import _read_text
    from cnnkit.serve.runs import read_history, read_json

    for name in ("FAILED.txt", "config.json", "history.csv"):
        os.mkfifo(tmp_path / name)
    assert _read_text(tmp_path / "FAILED.txt", 100) is None
    assert read_json(tmp_path / "config.json") is None
    assert read_history(tmp_path / "history.csv") == []


# ----------------------------------------------------------------- architecture fields


ARCH_CASES: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "in-inf": (lambda a: a["config"].update(in_features=float("inf")),
               "architecture.config.in_features"),
    "hidden-nan": (lambda a: a["config"]["hidden"].__setitem__(0, float("nan")),
                   "architecture.config.hidden[0]"),
    "classes-neginf": (lambda a: a["config"].update(num_classes=float("-inf")),
                       "architecture.config.num_classes"),
    "kind-null": (lambda a: a.update(kind=None), "architecture.kind"),
    "type-list": (lambda a: a.update(type=["MLP"]), "architecture.type"),
    "config-str": (lambda a: a.update(config="x"), "architecture.config"),
    "sequential-pairs": (lambda a: a.update(kind="sequential", children=[["a"]]),
                         "architecture.children[0]"),
    "sequential-dotted": (lambda a: a.update(kind="sequential", children=[["a.b", {}]]),
                          "architecture.children[0][0]"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ARCH_CASES))
def test_architecture_field_of_wrong_kind_is_named(
    finished: Path, tmp_path: Path, case: str
) -> None:
    p = tmp_path / "m.safetensors"
    shutil.copy(finished / "model.safetensors", p)
    mutate, field = ARCH_CASES[case]
    _rewrite(p, lambda h: mutate(h["architecture"]))
    with pytest.raises(CheckpointError) as info:
        io.load(p)
    assert str(info.value).startswith(f"{p}: field '{field}'"), str(info.value)


def test_deeply_nested_architecture_is_refused(finished: Path, tmp_path: Path) -> None:
    p = tmp_path / "m.safetensors"
    shutil.copy(finished / "model.safetensors", p)
    arch: dict[str, Any] = {"kind": "layer", "type": "ReLU", "args": {}}
    for _ in range(80):
        arch = {"kind": "sequential", "type": "Sequential", "children": [["0", arch]]}
    _rewrite(p, lambda h: h.update(architecture=arch))
    with pytest.raises(CheckpointError, match="at most 64 nested Sequential"):
        io.load(p)


def test_any_constructor_failure_is_a_checkpoint_error(finished: Path, tmp_path: Path) -> None:
    p = tmp_path / "m.safetensors"
    shutil.copy(finished / "model.safetensors", p)
    _rewrite(p, lambda h: h["architecture"]["config"].update(hidden=[10**30]))
    with pytest.raises((CheckpointError, LimitError)) as info:
        io.load(p)
    assert str(p) in str(info.value)


# ----------------------------------------------------------------- history records


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("epoch", "x", "an integer"), ("epoch", 0, "an integer >= 1"), ("epoch", 1.5, "an integer"),
    ("epoch", True, "an integer"), ("train_loss", None, "a number"), ("val_acc", "0.5", "a number"),
    ("lr", [1], "a number"), ("time", False, "a number"),
])  # fmt: skip
def test_history_column_of_wrong_kind_is_named(
    finished: Path, tmp_path: Path, column: str, value: Any, expected: str
) -> None:
    p = tmp_path / "m.safetensors"
    shutil.copy(finished / "model.safetensors", p)
    _rewrite(p, lambda h: h["history"]["records"][1].update({column: value}))
    with pytest.raises(CheckpointError) as info:
        io.load(p)
    msg = str(info.value)
    assert f"field 'history.records[1].{column}': expected {expected};" in msg, msg


def test_history_nan_and_inf_losses_are_kept(finished: Path, tmp_path: Path) -> None:
    p = tmp_path / "m.safetensors"
    shutil.copy(finished / "model.safetensors", p)
    _rewrite(p, lambda h: h["history"]["records"][1].update(val_loss=float("inf")))
    assert io.load(p).history["val_loss"][1] == float("inf")


# ----------------------------------------------------------------- optimizer state


OPT_CASES: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "lr-str": (lambda o: o["param_groups"][0].update(lr="x"), "optimizer.param_groups[0].lr"),
    "lr-neg": (lambda o: o["param_groups"][0].update(lr=-1), "optimizer.param_groups[0].lr"),
    "lr-missing": (lambda o: o["param_groups"][0].pop("lr"), "optimizer.param_groups[0].lr"),
    "eps-bool": (lambda o: o["param_groups"][0].update(eps=True), "optimizer.param_groups[0].eps"),
    "amsgrad-int": (lambda o: o["param_groups"][0].update(amsgrad=1),
                    "optimizer.param_groups[0].amsgrad"),
    "betas-short": (lambda o: o["param_groups"][0].update(betas=[0.9]),
                    "optimizer.param_groups[0].betas"),
    "beta-one": (lambda o: o["param_groups"][0].update(betas=[0.9, 1.0]),
                 "optimizer.param_groups[0].betas[1]"),
    "params-dup": (lambda o: o["param_groups"][0].update(params=[0, 0, 2, 3, 4, 5]),
                   "optimizer.param_groups[*].params"),
    "params-short": (lambda o: o["param_groups"][0].update(params=[0, 1]),
                     "optimizer.param_groups[0].params"),
    "step-missing": (lambda o: o["scalars"]["0"].pop("step"), "optimizer state of parameter 0"),
    "scalars-gone": (lambda o: o.update(scalars={}), "optimizer state of parameter "),
    "step-neg": (lambda o: o["scalars"]["1"].update(step=-1), "optimizer.scalars.1.step"),
    "step-null": (lambda o: o["scalars"]["1"].update(step=None), "optimizer.scalars.1.step"),
    "step-frac": (lambda o: o["scalars"]["1"].update(step=2.5), "optimizer.scalars.1.step"),
    "step-bool": (lambda o: o["scalars"]["1"].update(step=True), "optimizer.scalars.1.step"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(OPT_CASES))
def test_optimizer_state_of_wrong_kind_is_named_on_restore(
    finished: Path, tmp_path: Path, case: str
) -> None:
    p = tmp_path / "m.safetensors"
    shutil.copy(finished / "model.safetensors", p)
    mutate, field = OPT_CASES[case]
    _rewrite(p, lambda h: mutate(h["optimizer"]))
    ck = io.load(p)
    assert ck.model is not None
    opt = optim.Adam(ck.model.parameters(), lr=1e-3)
    before = [p_.array.copy() for p_ in ck.model.parameters()]
    with pytest.raises(CheckpointError) as info:
        ck.restore_optimizer(opt)
    msg = str(info.value)
    assert msg.startswith(f"{p}: field '{field}"), msg
    assert opt.state == {}  # nothing restored
    assert all(
        np.array_equal(a, b.array) for a, b in zip(before, ck.model.parameters(), strict=True)
    )


def test_sound_optimizer_state_restores(finished: Path) -> None:
    ck = io.load(finished / "model.safetensors")
    assert ck.model is not None
    opt = ck.restore_optimizer(optim.Adam(ck.model.parameters(), lr=1e-3))
    assert len(opt.state) == 6 and all(s["step"] == 12 for s in opt.state.values())


# ----------------------------------------------------------------- config.json


CONFIG_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "channels-huge": ({"in_channels": 10**30}, "field 'in_channels': expected an integer <= 4096"),
    "size-huge": ({"input_size": 10**30}, "field 'input_size': 1,000,000,000,000,000,000,000,"),
    "seed-neg": ({"seed": -1}, "field 'seed': expected an integer >= 0"),
    "classes-count": ({"classes": ["a", "b"]}, "field 'classes': expected 10 names"),
    "accuracy-2": ({"test_accuracy": 2},
                   "field 'test_accuracy': expected a finite number or null <= 1"),
    "loss-str": ({"test_loss": "low"}, "field 'test_loss': expected a finite number or null"),
    "parameters-list": ({"parameters": []}, "field 'parameters': expected an integer"),
    "channels-other": ({"in_channels": 3},
                       "fields 'in_channels', 'input_size' (3x8x8 images) do not fit"),
    "size-other": ({"input_size": 28},
                   "fields 'in_channels', 'input_size' (1x28x28 images) do not fit"),
    "num-classes-other": ({"num_classes": 7, "classes": []},
                          "field 'num_classes': expected 10 (the outputs"),
    "epochs-huge": ({"epochs": 10**9}, "field 'epochs': expected an integer <= 1000000"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
@pytest.mark.parametrize("command", ["predict", "export"])
def test_config_field_out_of_range_or_not_fitting_the_model(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, command: str
) -> None:
    from PIL import Image

    run = _copy(finished, tmp_path / "run")
    change, expected = CONFIG_CASES[case]
    cfg = json.loads((run / "config.json").read_text())
    cfg.update(change)
    (run / "config.json").write_text(json.dumps(cfg))
    before = _snapshot(run)
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    args = [img] if command == "predict" else ["--torch", tmp_path / "x.safetensors"]
    code, err = _cli(capsys, command, run, *args)
    assert code == 2 and err.count("\n") == 0, err
    assert f"{run / 'config.json'}: " in err and expected in err, err
    assert _snapshot(run) == before


def test_evaluate_names_the_config_field_of_a_bad_data_spec(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(finished, tmp_path / "run")
    cfg = json.loads((run / "config.json").read_text())
    for spec, why in (("x", "unknown data 'x'"), ("mnist:/nonexistent", "no such folder")):
        cfg["data"] = spec
        (run / "config.json").write_text(json.dumps(cfg))
        code, err = _cli(capsys, "evaluate", run)
        assert code == 2 and f"{run / 'config.json'}: field 'data': " in err and why in err, err


# ----------------------------------------------------------------- resume


@pytest.mark.parametrize(("option", "value", "saved"), [
    ("--lr", "0.5", "0.001"), ("--batch-size", "7", "256"), ("--data", "mnist:/x", "'digits'"),
    ("--scheduler", "cosine", "'none'"), ("--seed", "5", "0"), ("--weight-decay", "0.1", "0.0"),
    ("--augment", None, "False"), ("--model", "smallvgg", "'mlp'"),
])  # fmt: skip
def test_resume_with_another_setting_is_refused_naming_both(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str,
    value: str | None, saved: str,
) -> None:  # fmt: skip
    run = _interrupted(finished, tmp_path / "run")
    before = _snapshot(run)
    extra = [option] if value is None else [option, value]
    code, err = _cli(capsys, "train", "--resume", "--out", run, "--quiet", *extra)
    assert code == 2, err
    given = "True" if value is None else (repr(value) if saved.startswith("'") else value)
    assert f"was trained with {option} {saved} (config.json.running)" in err, err
    assert f"cannot continue with {option} {given}" in err, err
    assert _snapshot(run) == before and not (run / LOCK).exists()


def test_resume_with_the_runs_own_settings_is_accepted(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _interrupted(finished, tmp_path / "run")
    code, err = _cli(capsys, "train", "--resume", "--out", run, "--quiet", "--lr", "0.001",
                     "--batch-size", "256", "--data", "digits", "--optimizer", "adam")  # fmt: skip
    assert code == 0, err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["epochs"] == 3 and "resumed" not in cfg


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("model", "x", "field 'model, model_kwargs': unknown model 'x'"),
    ("model_kwargs", {"depth": 3}, "field 'model, model_kwargs': "),
    ("data", "cifar10:/nonexistent", "field 'data': "),
])  # fmt: skip
def test_resume_names_the_running_config_for_its_settings(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: Any,
    expected: str,
) -> None:  # fmt: skip
    run = _interrupted(finished, tmp_path / "run")
    cfg = json.loads((run / "config.json.running").read_text())
    cfg[field] = value
    (run / "config.json.running").write_text(json.dumps(cfg))
    before = _snapshot(run)
    code, err = _cli(capsys, "train", "--resume", "--out", run, "--quiet")
    assert code == 2 and f"{run / 'config.json.running'}: {expected}" in err, err
    assert {k: v for k, v in _snapshot(run).items() if k != "FAILED.txt"} == before


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda h: h["meta"]["train"]["rng"].update(has_uint32=10**30), "meta.train.rng"),
    (lambda h: h["meta"]["train"]["loader"].update(rng=[]), "meta.train.loader"),
    (lambda h: h["optimizer"]["scalars"]["2"].update(step=-4), "optimizer.scalars.2.step"),
    (lambda h: h["history"]["records"][0].update(epoch="one"), "history.records[0].epoch"),
])  # fmt: skip
def test_resume_from_a_tampered_checkpoint_changes_nothing(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    mutate: Callable[[dict[str, Any]], Any], field: str,
) -> None:  # fmt: skip
    run = _interrupted(finished, tmp_path / "run")
    last = run / "checkpoints" / "last.safetensors"
    _rewrite(last, mutate)
    before = _snapshot(run)
    code, err = _cli(capsys, "train", "--resume", "--out", run, "--quiet")
    assert code == 2 and err.count("\n") == 0, err
    assert f"{last}: field '{field}'" in err, err
    after = _snapshot(run)
    assert {k: v for k, v in after.items() if k != "FAILED.txt"} == before


# ----------------------------------------------------------------- torch files, data sets


def test_zip64_locator_claiming_many_disks_is_a_checkpoint_error(tmp_path: Path) -> None:
    buf = stdio.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    data = bytearray(buf.getvalue())
    eocd = data.rfind(b"PK\x05\x06")
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, 0, 2)  # zip64 locator: 2 disks
    data[eocd:eocd] = locator
    p = tmp_path / "w.pt"
    p.write_bytes(bytes(data))
    from cnnkit.io.torch_io import load_torch_object, load_torch_state_dict

    for fn in (load_torch_object, load_torch_state_dict):
        with pytest.raises(CheckpointError, match=f"{p}: corrupt or truncated zip archive"):
            fn(p)


def _idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir()
    dims = b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    (folder / "t10k-images-idx3-ubyte").write_bytes(
        (0x803).to_bytes(4, "big") + dims + images.astype(np.uint8).tobytes()
    )
    (folder / "t10k-labels-idx1-ubyte").write_bytes(
        (0x801).to_bytes(4, "big")
        + len(labels).to_bytes(4, "big")
        + labels.astype(np.uint8).tobytes()
    )


def test_non_square_images_are_named(tmp_path: Path) -> None:
    _idx(tmp_path / "m", np.zeros((20, 4, 6)), np.arange(20) % 10)
    with pytest.raises(ValueError, match=r"mnist:.*: expected square images .* got 4x6"):
        load_data(f"mnist:{tmp_path / 'm'}")


def test_too_few_images_to_split_is_named(tmp_path: Path) -> None:
    _idx(tmp_path / "m", np.zeros((1, 4, 4)), np.zeros(1))
    with pytest.raises(ValueError, match=r"mnist:.*: too few images to split: 1 for training"):
        load_data(f"mnist:{tmp_path / 'm'}")


# ----------------------------------------------------------------- in-place and autograd


def _graph_tensor() -> tuple[Any, Any]:
    import cnnkit as ck

    x0 = ck.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    return x0, ck.nn.functional.relu(x0 * 2.0)  # inside the graph, not saved by a later op


@pytest.mark.parametrize("how", ["zero_", "copy_", "setitem"])
def test_inplace_write_into_a_graph_tensor_is_refused_not_silently_ignored(how: str) -> None:
    # PyTorch rebases the graph (the gradient of y.sum() after y.zero_() is 0); cnnkit's
    # autograd does not, so it refuses instead of returning the old gradient
    x0, y = _graph_tensor()
    op = "__setitem__" if how == "setitem" else how
    want = rf"{op}: in-place write into a tensor that is part of the autograd graph"
    with pytest.raises(RuntimeError, match=want):
        if how == "zero_":
            y.zero_()
        elif how == "copy_":
            y.copy_(y * 2.0)
        else:
            y[0] = 5.0
    y.sum().backward()  # the graph is intact: the gradient of the unchanged values
    assert np.array_equal(np.asarray(x0.grad), np.where(np.arange(6.0).reshape(2, 3) > 0, 2.0, 0.0))


@pytest.mark.parametrize("how", ["copy_", "setitem"])
def test_inplace_write_of_a_value_that_requires_grad_is_refused(how: str) -> None:
    import cnnkit as ck

    w = ck.tensor(np.ones(3), requires_grad=True)
    buf = ck.zeros(2, 3, dtype=np.float64)
    with pytest.raises(RuntimeError, match="into a tensor that does not require grad, from one"):
        if how == "copy_":
            buf[0].copy_(w)
        else:
            buf[0] = w
    assert not np.asarray(buf).any()


def test_inplace_writes_under_no_grad_stay_allowed() -> None:
    import cnnkit as ck

    w = ck.tensor(np.ones(3), requires_grad=True)
    with ck.no_grad():
        w.copy_(np.full(3, 2.0))
        w[0] = 7.0
        w.zero_()
    assert np.array_equal(np.asarray(w), np.zeros(3))


@pytest.mark.parametrize("view", ["slice", "int", "view", "reshape", "T", "detach", "flatten",
                                  "unsqueeze", "permute", "transpose"])  # fmt: skip
def test_write_through_a_view_of_a_saved_tensor_is_detected(view: str) -> None:
    import cnnkit as ck

    x = ck.tensor(np.arange(6.0).reshape(2, 3))
    w = ck.tensor(np.ones((2, 3)), requires_grad=True)
    y = x * w  # saves x for w's gradient
    views = {"slice": lambda: x[0:1], "int": lambda: x[0], "view": lambda: x.view(6),
             "reshape": lambda: x.reshape(6), "T": lambda: x.T, "detach": lambda: x.detach(),
             "flatten": lambda: x.flatten(), "unsqueeze": lambda: x.unsqueeze(0),
             "permute": lambda: x.permute(1, 0),
             "transpose": lambda: x.transpose(0, 1)}  # fmt: skip
    v = views[view]()
    v.zero_()
    with pytest.raises(RuntimeError, match="zero_"):
        y.sum().backward()


@pytest.mark.parametrize(("change", "expected"), [
    ({"train_scenes": None}, "field 'train_scenes': expected an integer; got null"),
    ({"val_scenes": 0}, "field 'val_scenes': expected an integer >= 1; got an integer (0)"),
    ({"epochs": "5"}, "field 'epochs': expected an integer; got a string ('5')"),
    ({"scheduler": 3}, "field 'scheduler': expected a string; got an integer (3)"),
])  # fmt: skip
def test_detection_resume_validates_its_running_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], expected: str
) -> None:
    out = tmp_path / "yolo"
    out.mkdir()
    cfg = {"task": "detection", "model": "tinyyolo", "model_kwargs": {}, "data": "digit-scenes:x",
           "epochs": 3, "batch_size": 8, "lr": 0.002, "optimizer": "adam", "weight_decay": 0.0,
           "scheduler": "cosine", "augment": False, "seed": 0, "train_scenes": 8,
           "val_scenes": 2, "test_scenes": 2}  # fmt: skip
    cfg.update(change)
    (out / "config.json.running").write_text(json.dumps(cfg))
    before = _snapshot(out)
    code, err = _cli(capsys, "train", "--resume", "--out", out, "--quiet")
    assert code == 2 and err.count("\n") == 0, err
    assert f"{out / 'config.json.running'}: {expected}" in err, err
    assert _snapshot(out) == before
