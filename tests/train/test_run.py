"""Run directories: complete runs, bad data, NaN losses and exact resumption."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnkit.train.callbacks import Callback
from cnnkit.train.history import History
from cnnkit.train.loop import TrainingError
from cnnkit.train.run import load_run, train_run

RUN_FILES = (
    "config.json",
    "model.safetensors",
    "history.csv",
    "curves.png",
    "diagnosis.txt",
    "report.txt",
)


# ---------------------------------------------------------------- tiny fake data sets


def write_idx(path: Path, arr: np.ndarray, magic: int) -> Path:
    """An IDX file of uint8 ``arr`` with the given magic number."""
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(head + arr.astype(np.uint8).tobytes())
    return path


def make_mnist(root: Path, n: int = 30) -> Path:
    """A tiny MNIST folder (train and t10k, 28x28, labels 0..9)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        write_idx(
            root / f"{prefix}-images-idx3-ubyte",
            rng.integers(0, 256, (n, 28, 28)),
            0x803,
        )
        write_idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 0x801)
    return root


def make_cifar(root: Path, n: int = 4, evil: Any = None) -> Path:
    """A tiny ``cifar-10-batches-py`` folder; ``evil`` replaces data_batch_3's payload."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {b"label_names": [f"c{k}".encode() for k in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        batch: Any = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
        }
        if name == "data_batch_3" and evil is not None:
            batch = evil
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def make_png(path: Path, size: tuple[int, int] = (12, 12), mode: str = "RGB", seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def make_folder(root: Path, per_class: int = 6) -> Path:
    """An ImageFolder tree: two classes of 12x12 RGB PNGs."""
    for c in ("cat", "dog"):
        for k in range(per_class):
            make_png(root / c / f"{k}.png", seed=k + (100 if c == "dog" else 0))
    return root


class Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"echo pwned > {self.target}",))


class InterruptAfter(Callback):
    """Raise KeyboardInterrupt at the end of epoch ``epoch`` (after the checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state: Any, record: dict[str, Any]) -> None:
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


class SetLR(Callback):
    """Set the learning rate after epoch ``epoch`` (to make the next epoch diverge)."""

    def __init__(self, epoch: int, lr: float) -> None:
        self.epoch, self.lr = epoch, lr

    def on_epoch_end(self, state: Any, record: dict[str, Any]) -> None:
        if state.epoch == self.epoch:
            for g in state.optimizer.param_groups:
                g["lr"] = self.lr


def history_values(run: Path) -> dict[str, list[float]]:
    """Every history column but the wall-clock time."""
    h = History.from_csv(run / "history.csv")
    rows = list(h)
    keys = [k for k in rows[0] if k != "time"]
    return {k: [r[k] for r in rows] for k in keys}


def assert_not_complete(out: Path) -> None:
    """Nothing, or a run directory that says it failed; never one looking finished."""
    if out.exists():
        assert not (out / "config.json").exists()
        assert not (out / "model.safetensors").exists()
        if any(out.iterdir()):
            assert (out / "FAILED.txt").exists()


# ---------------------------------------------------------------- complete runs


def test_train_run_writes_complete_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "digits"
    s = train_run(out, data="digits", epochs=1, batch_size=64, verbose=False)
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert not (out / "FAILED.txt").exists()
    assert not (out / "config.json.running").exists()
    assert (out / "checkpoints" / "last.safetensors").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["epochs"] == 1 and cfg["model"] == "lenet5" and cfg["data"] == "digits"
    assert cfg["scheduler"] == "none" and cfg["augment"] is False
    assert (cfg["in_channels"], cfg["input_size"], cfg["num_classes"]) == (1, 8, 10)
    assert 0.0 <= cfg["test_accuracy"] <= 1.0
    assert s["test_accuracy"] == cfg["test_accuracy"]
    report = (out / "report.txt").read_text()
    assert "test accuracy" in report and "confusion matrix" in report
    assert len(History.from_csv(out / "history.csv")) == 1
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded_cfg, model = load_run(out)
    assert loaded_cfg["test_loss"] == cfg["test_loss"]
    assert sum(p.numel() for p in model.parameters()) == cfg["parameters"]


@pytest.mark.parametrize("kind", ["mnist", "fashion", "cifar10", "folder"])
def test_train_run_on_each_data_kind(tmp_path: Path, kind: str) -> None:
    if kind in ("mnist", "fashion"):
        path, want = make_mnist(tmp_path / "mnist"), (1, 28, 10)
    elif kind == "cifar10":
        path, want = make_cifar(tmp_path / "cifar").parent, (3, 32, 10)
    else:
        path, want = make_folder(tmp_path / "imgs"), (3, 12, 2)
    out = tmp_path / "run"
    s = train_run(out, data=f"{kind}:{path}", epochs=1, batch_size=16, verbose=False)
    assert (s["in_channels"], s["input_size"], s["num_classes"]) == want
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    if kind == "folder":
        assert s["classes"] == ["cat", "dog"]


def test_train_run_scheduler_and_augment_are_recorded(tmp_path: Path) -> None:
    s = train_run(
        tmp_path / "r", epochs=2, scheduler="step", augment=True, optimizer="sgd", lr=0.05,
        weight_decay=1e-4, verbose=False,
    )  # fmt: skip
    assert (s["scheduler"], s["augment"], s["weight_decay"]) == ("step", True, 1e-4)
    assert history_values(tmp_path / "r")["lr"] == pytest.approx([0.05, 0.005])


def test_train_run_rejects_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown scheduler"):
        train_run(tmp_path / "a", epochs=1, scheduler="linear", verbose=False)
    with pytest.raises(ValueError, match="unknown model"):
        train_run(tmp_path / "b", model="nope", epochs=1, verbose=False)
    with pytest.raises(ValueError, match="epochs"):
        train_run(tmp_path / "c", epochs=0, verbose=False)
    for name in "abc":
        assert_not_complete(tmp_path / name)


def test_train_run_refuses_a_non_empty_out(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        train_run(out, epochs=1, verbose=False)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# ---------------------------------------------------------------- bad data


def _bad_magic(tmp_path: Path) -> tuple[str, str]:
    root = make_mnist(tmp_path / "m")
    bad = root / "train-images-idx3-ubyte"
    raw = bytearray(bad.read_bytes())
    raw[:4] = (0x0802).to_bytes(4, "big")
    bad.write_bytes(bytes(raw))
    return f"mnist:{root}", str(bad)


def _truncated(tmp_path: Path) -> tuple[str, str]:
    root = make_mnist(tmp_path / "m")
    bad = root / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])
    return f"fashion:{root}", str(bad)


def _not_an_image(tmp_path: Path) -> tuple[str, str]:
    root = make_folder(tmp_path / "imgs")
    bad = root / "dog" / "notes.png"
    bad.write_text("meeting notes, not a picture\n")
    return f"folder:{root}", str(bad)


def _missing(kind: str) -> Any:
    def spec(tmp_path: Path) -> tuple[str, str]:
        path = tmp_path / "nowhere"
        return f"{kind}:{path}", str(path)

    return spec


BAD_DATA = {
    "mnist-missing": _missing("mnist"),
    "cifar-missing": _missing("cifar10"),
    "folder-missing": _missing("folder"),
    "idx-bad-magic": _bad_magic,
    "idx-truncated": _truncated,
    "folder-non-image": _not_an_image,
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_fails_cleanly_naming_the_file(tmp_path: Path, case: str) -> None:
    spec, culprit = BAD_DATA[case](tmp_path)
    out = tmp_path / "run"
    with pytest.raises((FileNotFoundError, ValueError)) as info:
        train_run(out, data=spec, epochs=1, verbose=False)
    assert culprit in str(info.value)
    assert "\n" not in str(info.value)
    assert_not_complete(out)


def test_unknown_data_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown data 'imagenet:x'"):
        train_run(tmp_path / "r", data="imagenet:x", epochs=1, verbose=False)
    with pytest.raises(ValueError, match="needs a path"):
        train_run(tmp_path / "r", data="mnist", epochs=1, verbose=False)
    assert_not_complete(tmp_path / "r")


def test_cifar_batch_with_a_pickled_callable_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "PWNED"
    folder = make_cifar(tmp_path / "cifar", evil=Evil(target))
    out = tmp_path / "run"
    with pytest.raises(pickle.UnpicklingError) as info:
        train_run(out, data=f"cifar10:{folder}", epochs=1, verbose=False)
    assert str(folder / "data_batch_3") in str(info.value)
    assert "refused" in str(info.value)
    assert not target.exists()
    assert_not_complete(out)


# ---------------------------------------------------------------- NaN and interruption


def test_nan_loss_leaves_failed_txt(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(TrainingError, match="epoch 1, batch"):
            train_run(out, epochs=2, lr=1e6, optimizer="sgd", verbose=False)
    assert_not_complete(out)
    failed = (out / "FAILED.txt").read_text()
    assert failed.startswith("training did not finish: TrainingError: fit: the loss became nan")
    assert "epoch 1, batch" in failed.splitlines()[0]


def test_nan_loss_keeps_the_checkpoints_it_had(tmp_path: Path) -> None:
    from cnnkit import io

    out = tmp_path / "run"
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(TrainingError, match="epoch 2, batch"):
            train_run(
                out, epochs=3, lr=0.01, optimizer="sgd", verbose=False, callbacks=[SetLR(1, 1e6)]
            )
    assert_not_complete(out)
    assert "epoch 2, batch" in (out / "FAILED.txt").read_text().splitlines()[0]
    assert "--resume" in (out / "FAILED.txt").read_text()
    ckpt = io.load(out / "checkpoints" / "last.safetensors")
    assert len(ckpt.history) == 1 and np.isfinite(ckpt.history["train_loss"][0])
    assert (out / "checkpoints" / "best.safetensors").is_file()
    assert len(History.from_csv(out / "history.csv")) == 1
    with pytest.raises(FileNotFoundError, match=r"FAILED\.txt"):
        load_run(out)


@pytest.mark.parametrize(
    "settings",
    [
        {"scheduler": "cosine", "augment": True},
        {
            "scheduler": "plateau",
            "optimizer": "sgd",
            "lr": 0.05,
            "weight_decay": 1e-3,
            "model": "mlp",
            "model_kwargs": {"dropout": 0.3},
        },
    ],
    ids=["cosine-augment", "plateau-sgd-dropout"],
)
def test_resume_after_interruption_is_exact(tmp_path: Path, settings: dict[str, Any]) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_run(full, epochs=4, verbose=False, **settings)
    with pytest.raises(KeyboardInterrupt):
        train_run(cut, epochs=4, verbose=False, callbacks=[InterruptAfter(2)], **settings)
    assert_not_complete(cut)
    assert "KeyboardInterrupt" in (cut / "FAILED.txt").read_text()
    assert len(History.from_csv(cut / "history.csv")) == 2
    with pytest.raises(FileNotFoundError, match=r"FAILED\.txt"):
        load_run(cut)
    s = train_run(cut, resume=True, verbose=False)  # settings and epochs from the run
    assert s["epochs"] == 4
    assert not (cut / "FAILED.txt").exists()
    for name in RUN_FILES:
        assert (cut / name).is_file(), name
    assert history_values(cut) == history_values(full)  # bit-identical, not approximate
    a, b = load_run(full)[1], load_run(cut)[1]
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert na == nb
        np.testing.assert_array_equal(pa.data, pb.data)
    cfg_a = json.loads((full / "config.json").read_text())
    cfg_b = json.loads((cut / "config.json").read_text())
    assert cfg_a["test_loss"] == cfg_b["test_loss"]


def test_resume_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        train_run(tmp_path / "none", resume=True, verbose=False)
    done = tmp_path / "done"
    train_run(done, epochs=1, verbose=False)
    with pytest.raises(FileExistsError, match="finished run"):
        train_run(done, resume=True, verbose=False)
    # the error says how to train it further; fewer or as many epochs are refused too
    with pytest.raises(FileExistsError, match=r"trained its 1 epochs and --epochs 1 asks"):
        train_run(done, resume=True, epochs=1, verbose=False)
    with pytest.raises(FileExistsError, match=r"`cnnkit train --resume --epochs 2 --out "):
        train_run(done, resume=True, verbose=False)


def test_a_finished_run_continues_to_more_epochs(tmp_path: Path) -> None:
    """``--resume --epochs N`` on a finished run of fewer epochs trains the extra epochs
    from its last checkpoint: the same numbers as a run started with N epochs."""
    full, short = tmp_path / "full", tmp_path / "short"
    train_run(full, model="mlp", epochs=3, verbose=False)
    train_run(short, model="mlp", epochs=2, verbose=False)
    summary = train_run(short, resume=True, epochs=3, verbose=False)
    assert history_values(short) == history_values(full)
    cfg = json.loads((short / "config.json").read_text())
    assert cfg["epochs"] == 3 and cfg["resumed"] == [{"at_epoch": 2, "epochs_before": 2}]
    assert summary["test_loss"] == json.loads((full / "config.json").read_text())["test_loss"]
    assert not (short / "config.json.running").exists()


def test_load_run_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a finished run directory"):
        load_run(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_run(bad)
