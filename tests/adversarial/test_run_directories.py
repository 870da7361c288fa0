"""Run directories: one owner per directory, validated config files, resume, CLI errors
for malformed files, empty loaders, NaN messages, grids where every run fails."""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnkit import io, nn, optim
from cnnkit.cli import main
from cnnkit.data import DataLoader, TensorDataset
from cnnkit.models import get_model
from cnnkit.train.callbacks import Callback
from cnnkit.train.claim import LOCK, RunDirectoryBusy, claim
from cnnkit.train.history import History
from cnnkit.train.loop import TrainingError, fit
from cnnkit.train.run import load_run, train_run

QUICK = {"model": "mlp", "batch_size": 512, "verbose": False}


def _stale_lock(folder: Path, pid: int = 999_999) -> Path:
    """The claim file a SIGKILLed run leaves: content, but no process holds its lock."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    lock.write_text(json.dumps({"pid": pid, "host": "h", "started": "2026-11-28 09:00:00"}))
    os.utime(lock, (time.time() - 60, time.time() - 60))
    return lock


# ----------------------------------------------------------------- claims


def test_second_run_on_a_claimed_directory_stops_before_loading_data(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with claim(out):
        with pytest.raises(RunDirectoryBusy, match="in use by another cnnkit run") as info:
            train_run(out, data="mnist:/nonexistent", epochs=1, **QUICK)
        assert f"pid {os.getpid()}" in str(info.value)
        assert sorted(p.name for p in out.iterdir()) == [LOCK]
    assert not out.exists() or not any(out.iterdir())


def test_claim_is_exclusive_and_released() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        c = claim(Path(d) / "r")
        with pytest.raises(RunDirectoryBusy):
            claim(Path(d) / "r")
        with pytest.raises(RunDirectoryBusy):
            claim(Path(d) / "r", takeover=True)  # a live claim is never taken over
        c.release()
        claim(Path(d) / "r").release()


def test_stale_claim_is_reported_and_nothing_touched(tmp_path: Path) -> None:
    out = tmp_path / "run"
    lock = _stale_lock(out)
    (out / "config.json.running").write_text("{}")
    (out / "keep.txt").write_text("winner's")
    with pytest.raises(RunDirectoryBusy, match="stale claim") as info:
        train_run(out, epochs=1, **QUICK)
    msg = str(info.value)
    assert "pid 999999" in msg and "--resume" in msg
    assert (out / "keep.txt").read_text() == "winner's" and lock.exists()


@pytest.mark.parametrize("written", [True, False])
def test_stale_claim_alone_in_its_folder_is_taken_over(tmp_path: Path, written: bool) -> None:
    """A run stopped before it wrote anything (under mpiexec another rank's bad option
    aborts the job while rank 0 holds the claim, maybe before the claim has its
    content): the folder has nothing to lose, so the next run takes it over."""
    out = tmp_path / "run"
    lock = _stale_lock(out)
    if not written:
        lock.write_text("")
        os.utime(lock, (time.time() - 60, time.time() - 60))
    train_run(out, epochs=1, **QUICK)
    assert (out / "config.json").exists() and not lock.exists()


def test_stale_claim_is_taken_over_by_claim_takeover(tmp_path: Path) -> None:
    _stale_lock(tmp_path / "r")
    c = claim(tmp_path / "r", takeover=True)
    info = json.loads((tmp_path / "r" / LOCK).read_text())
    assert info["pid"] == os.getpid()
    c.release()
    assert not (tmp_path / "r" / LOCK).exists()


@pytest.mark.slow
def test_concurrent_cli_trains_one_wins(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "same"
    cmd = [sys.executable, "-m", "cnnkit.cli", "train", "--model", "mlp", "--epochs", "200",
           "--batch-size", "512", "--quiet", "--out", str(out)]  # fmt: skip
    a = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            if (out / "config.json.running").exists():
                break
            time.sleep(0.1)
        assert (out / "config.json.running").exists(), "the first run did not start"
        before = (out / "config.json.running").read_bytes()
        b = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert b.returncode == 2
        assert "in use by another cnnkit run" in b.stderr and "Traceback" not in b.stderr
        assert len(b.stderr.strip().splitlines()) == 1
        assert (out / "config.json.running").read_bytes() == before
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait()
    c = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert c.returncode == 2 and "stale claim" in c.stderr and "--resume" in c.stderr


# ----------------------------------------------------------------- resume


class _StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state: Any, record: dict[str, Any]) -> None:
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cosine-scheduled run of 3 epochs killed after its first (stale claim left)."""
    out = tmp_path_factory.mktemp("runs") / "cut"
    with pytest.raises(KeyboardInterrupt):
        train_run(out, epochs=3, scheduler="cosine", lr=0.01, callbacks=[_StopAfter(1)],
                  **QUICK)  # fmt: skip
    _stale_lock(out)
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
def test_resume_takes_over_a_stale_claim_and_stretches_the_schedule(
    interrupted: Path, tmp_path: Path
) -> None:
    out = _copy(interrupted, tmp_path / "cut")
    s = train_run(out, resume=True, epochs=4, verbose=False)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["epochs"] == 4 and s["epochs"] == 4
    assert cfg["resumed"] == [{"at_epoch": 1, "epochs_before": 3}]
    assert load_run(out)[0]["epochs"] == 4
    lrs = [r["lr"] for r in History.from_csv(out / "history.csv")]
    want = [0.01] + [0.01 * (1 + math.cos(math.pi * e / 4)) / 2 for e in (1, 2, 3)]
    np.testing.assert_allclose(lrs, want, rtol=1e-6)
    assert not (out / LOCK).exists()


def test_resume_with_another_optimizer_names_both(interrupted: Path, tmp_path: Path) -> None:
    out = _copy(interrupted, tmp_path / "cut")
    with pytest.raises(ValueError, match=r"trained with the Adam optimizer \(adam\).*SGD \(sgd\)"):
        train_run(out, resume=True, optimizer="sgd", verbose=False)
    before = (interrupted / "checkpoints" / "last.safetensors").read_bytes()
    assert (out / "checkpoints" / "last.safetensors").read_bytes() == before
    assert not (out / "config.json").exists()


def test_resume_with_fewer_epochs_than_done(interrupted: Path, tmp_path: Path) -> None:
    out = _copy(interrupted, tmp_path / "cut")
    with pytest.raises(ValueError, match="--epochs 0 is fewer than the 1 epochs"):
        train_run(out, resume=True, epochs=0, verbose=False)


def test_fit_resume_with_another_optimizer_class(interrupted: Path) -> None:
    ck_path = interrupted / "checkpoints" / "last.safetensors"
    model = io.load(ck_path).model
    with pytest.raises(io.CheckpointError, match="saved optimizer is Adam; got SGD"):
        fit(model, TensorDataset(np.zeros((4, 1, 8, 8), np.float32), np.zeros(4, np.int64)),
            optimizer=optim.SGD(model.parameters(), lr=0.1), epochs=2, resume=ck_path,
            verbose=False)  # fmt: skip


BAD_RESUME_STATE = {
    "train-list": (lambda h: h["meta"].update(train=[1]), "'meta.train'"),
    "epoch-str": (lambda h: h["meta"]["train"].update(epoch="1"), "'meta.train.epoch'"),
    "epoch-negative": (lambda h: h["meta"]["train"].update(epoch=-4), "'meta.train.epoch'"),
    "rng-list": (lambda h: h["meta"]["train"].update(rng=[1]), "'meta.train.rng'"),
    "rng-garbage": (lambda h: h["meta"]["train"].update(rng={"x": 1}), "'meta.train.rng'"),
    "scheduler-empty": (lambda h: h["meta"]["train"].update(scheduler={}),
                        "'meta.train.scheduler'"),
    "scheduler-str": (lambda h: h["meta"]["train"].update(scheduler="s"),
                      "'meta.train.scheduler'"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_RESUME_STATE))
def test_malformed_resume_state_in_the_checkpoint(
    interrupted: Path, tmp_path: Path, case: str
) -> None:
    from tests.adversarial.test_checkpoint_files import _rewrite

    out = _copy(interrupted, tmp_path / "cut")
    last = out / "checkpoints" / "last.safetensors"
    mutate, field = BAD_RESUME_STATE[case]
    _rewrite(last, mutate)
    with pytest.raises(io.CheckpointError) as info:
        train_run(out, resume=True, verbose=False)
    assert str(last) in str(info.value) and field in str(info.value)


RUNNING = {"model": "mlp", "model_kwargs": {}, "data": "digits", "epochs": 3, "batch_size": 64,
           "lr": 0.001, "optimizer": "adam", "weight_decay": 0.0, "scheduler": "none",
           "augment": False, "seed": 0}  # fmt: skip

BAD_RUNNING = {
    "epochs-str": ({"epochs": "3"}, "'epochs'"),
    "epochs-zero": ({"epochs": 0}, "'epochs'"),
    "lr-negative": ({"lr": -1}, "'lr'"),
    "lr-nan": ({"lr": float("nan")}, "'lr'"),
    "optimizer-unknown": ({"optimizer": "rmsprop"}, "'optimizer'"),
    "batch-float": ({"batch_size": 6.5}, "'batch_size'"),
    "model-int": ({"model": 5}, "'model'"),
    "data-missing": ({"data": None}, "'data'"),
    "seed-missing": ({"seed": None}, "'seed'"),
    "scheduler-bad": ({"scheduler": "warp"}, "'scheduler'"),
    "augment-str": ({"augment": "yes"}, "'augment'"),
    "kwargs-list": ({"model_kwargs": [1]}, "'model_kwargs'"),
    "resumed-bad": ({"resumed": [{"at_epoch": -1, "epochs_before": 3}]}, "'resumed[0].at_epoch'"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_RUNNING))
def test_resume_state_is_validated(tmp_path: Path, case: str) -> None:
    change, field = BAD_RUNNING[case]
    cfg = {**RUNNING, **change}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json.running").write_text(json.dumps(cfg))
    with pytest.raises(ValueError) as info:
        train_run(out, resume=True, verbose=False)
    assert str(out / "config.json.running") in str(info.value) and field in str(info.value)
    assert not (out / LOCK).exists()


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", '"str"', "null", ""])
def test_resume_state_not_an_object(tmp_path: Path, text: str) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json.running").write_text(text)
    with pytest.raises(ValueError, match=str(out / "config.json.running")):
        train_run(out, resume=True, verbose=False)


# ----------------------------------------------------------------- finished runs, CLI


@pytest.fixture
def finished(tmp_path: Path) -> Path:
    """A finished run directory, written by hand (config.json + weights)."""
    run = tmp_path / "run"
    run.mkdir()
    model = get_model("mlp", in_features=64, num_classes=10)
    io.save(run / "model.safetensors", model)
    cfg = {**RUNNING, "in_channels": 1, "input_size": 8, "num_classes": 10,
           "classes": [str(i) for i in range(10)]}  # fmt: skip
    (run / "config.json").write_text(json.dumps(cfg))
    return run


BAD_CONFIG = {
    "in-channels-str": ({"in_channels": "1"}, "'in_channels'"),
    "in-channels-missing": ({"in_channels": None}, "'in_channels'"),
    "input-size-zero": ({"input_size": 0}, "'input_size'"),
    "classes-str": ({"classes": "0123"}, "'classes'"),
    "classes-ints": ({"classes": [0, 1]}, "'classes[0]'"),
    "model-list": ({"model": ["mlp"]}, "'model'"),
    "data-int": ({"data": 3}, "'data'"),
    "num-classes-neg": ({"num_classes": -2}, "'num_classes'"),
}


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "summary"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
def test_cli_malformed_config_is_one_line_naming_file_and_field(
    finished: Path, capsys: pytest.CaptureFixture[str], command: str, case: str
) -> None:
    change, field = BAD_CONFIG[case]
    cfg = json.loads((finished / "config.json").read_text())
    cfg.update(change)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    (finished / "config.json").write_text(json.dumps(cfg))
    args = {"evaluate": [str(finished)], "predict": [str(finished), "x.png"],
            "export": [str(finished), "--torch", str(finished / "t.safetensors")],
            "summary": [str(finished)]}[command]  # fmt: skip
    rc = main([command, *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(finished / "config.json") in err and field in err


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_cli_corrupt_weights_name_the_tensor(
    finished: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    p = finished / "model.safetensors"
    data = bytearray(p.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 + n + 5] ^= 0xFF
    p.write_bytes(bytes(data))
    args = {
        "evaluate": [str(finished)],
        "predict": [str(finished), "x.png"],
        "export": [str(finished), "--torch", str(finished / "t.safetensors")],
    }[command]
    rc = main([command, *args])
    err = capsys.readouterr().err
    assert rc == 2 and "checksum mismatch in tensor 'model." in err and str(p) in err
    assert not (finished / "t.safetensors").exists()


def test_cli_predict_bomb_image(finished: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from PIL import Image

    p = tmp_path / "big.png"
    img = Image.new("L", (200, 200))
    img.paste(255, (80, 40, 120, 160))
    img.save(p)
    os.environ["CNNKIT_MAX_IMAGE_PIXELS"] = "100"
    try:
        import importlib

        from cnnkit import limits

        old = limits.MAX_IMAGE_PIXELS
        importlib.reload(limits)
        assert limits.MAX_IMAGE_PIXELS == 100
        rc = main(["predict", str(finished), str(p)])
    finally:
        del os.environ["CNNKIT_MAX_IMAGE_PIXELS"]
        limits.MAX_IMAGE_PIXELS = old
    err = capsys.readouterr().err
    assert rc == 2 and "40,000 pixels exceeds the limit of 100" in err


def test_cli_predict_classes_that_do_not_match_the_model(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    cfg = json.loads((finished / "config.json").read_text())
    (finished / "config.json").write_text(json.dumps({**cfg, "classes": ["a", "b"]}))
    img = Image.new("L", (28, 28))
    img.paste(255, (12, 6, 16, 22))
    img.save(tmp_path / "x.png")
    rc = main(["predict", str(finished), str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "field 'classes': expected 10 names" in err and "got 2" in err


@pytest.mark.parametrize(
    "text",
    [
        "epoch,train_loss\n1,abc\n",
        "epoch,train_loss\nx,1\n",
        "epoch,train_loss\n1,2,3\n",
        "epoch,train_loss\n1\n",
    ],
)
def test_cli_visualize_malformed_history(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    (finished / "history.csv").write_text(text)
    rc = main(["visualize", str(finished), "--out", str(tmp_path / "v"), "--images", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and str(finished / "history.csv") in err and "line 2" in err


# ----------------------------------------------------------------- fit


def test_fit_with_a_loader_yielding_no_batch() -> None:
    ds = TensorDataset(np.zeros((5, 3), np.float32), np.zeros(5, np.int64))
    loader = DataLoader(ds, batch_size=10, drop_last=True)
    with pytest.raises(ValueError, match="yielded no batch") as info:
        fit(nn.Linear(3, 2), loader, epochs=1, verbose=False)
    assert "5 samples" in str(info.value) and "drop_last=True" in str(info.value)


@pytest.mark.parametrize("where,bad,words", [
    ("inputs", np.nan, "the inputs hold NaN"),
    ("inputs", np.inf, "the inputs hold inf"),
    ("targets", np.nan, "the targets hold NaN"),
    ("targets", -np.inf, "the targets hold inf"),
])  # fmt: skip
def test_nan_loss_names_bad_data_not_the_learning_rate(where: str, bad: float,
                                                       words: str) -> None:  # fmt: skip
    x = np.ones((8, 3), np.float32)
    y = np.ones((8, 2), np.float32)
    (x if where == "inputs" else y)[3, 1] = bad
    with pytest.raises(TrainingError) as info:
        fit(nn.Linear(3, 2), TensorDataset(x, y), loss=nn.MSELoss(), epochs=1, batch_size=8,
            verbose=False)  # fmt: skip
    assert words in str(info.value) and "learning rate" not in str(info.value)


def test_nan_loss_with_clean_data_blames_the_learning_rate() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32) * 100
    y = rng.normal(size=(64, 2)).astype(np.float32)
    m = nn.Linear(3, 2)
    with np.errstate(all="ignore"), pytest.raises(TrainingError) as info:
        fit(m, TensorDataset(x, y), loss=nn.MSELoss(), epochs=20, batch_size=8,
            optimizer=optim.SGD(m.parameters(), lr=1.0), verbose=False)  # fmt: skip
    msg = str(info.value)
    assert "inputs and targets are finite" in msg and "lower the learning rate (lr=1)" in msg


# ----------------------------------------------------------------- grid


def test_cli_grid_where_every_run_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["grid", "--param", "model.bogus=1,2", "--epochs", "1", "--out",
               str(tmp_path / "g")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1
    assert "every run failed (2 of 2)" in err and "unexpected keyword argument 'bogus'" in err
    assert (tmp_path / "g" / "results.csv").is_file()


def test_cli_grid_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["grid", "--data", f"mnist:{tmp_path / 'none'}", "--lr", "0.1,0.01", "--out",
               str(tmp_path / "g")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "every run failed (2 of 2)" in err and "no such folder" in err
