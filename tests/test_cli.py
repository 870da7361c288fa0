"""The ``cnnkit`` command line, called in-process through ``cnnkit.cli.main``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnkit.cli import COMMANDS, load_image, main
from cnnkit.train.run import train_run
from tests.train.test_run import (
    RUN_FILES,
    Evil,
    InterruptAfter,
    assert_not_complete,
    history_values,
    make_cifar,
    make_folder,
    make_mnist,
    make_png,
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch LeNet-5 run on digits (8x8 grey images, classes 0..9)."""
    out = tmp_path_factory.mktemp("cli") / "runs" / "digits"
    assert main(["train", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    return out


def assert_one_line_error(capsys: pytest.CaptureFixture[str], rc: int) -> str:
    """The single stderr line of a failed command (exit status 2, no traceback)."""
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("cnnkit")
    assert "error:" in lines[0]
    return lines[0]


# ---------------------------------------------------------------- help and entry point


def test_help_on_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    for name in ("train", "evaluate", "predict", "summary"):
        assert name in top
        assert name in COMMANDS
    for name in COMMANDS:
        assert main([name, "--help"]) == 0, name
        out = capsys.readouterr().out
        assert out.startswith(f"usage: cnnkit {name}"), out
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--scheduler", "--augment", "--weight-decay", "--seed", "--resume", "--quiet"):
        assert flag in text


def test_console_script() -> None:
    exe = Path(sys.executable).parent / "cnnkit"
    if not exe.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    ok = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0 and "train" in ok.stdout
    bad = subprocess.run(
        [exe, "summary", "--model", "nope"], capture_output=True, text=True, env=env, timeout=60
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "cnnkit summary: error: unknown model 'nope'; choose one of "
        "['lenet5', 'mlp', 'resnet', 'smallresnet', 'smallvgg', 'tinyyolo', 'vgg', 'yolo']"
    ]


def test_no_command_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(capsys, main([]))


# ---------------------------------------------------------------- train


def test_train_writes_a_run_directory(run_dir: Path) -> None:
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    cfg = json.loads((run_dir / "config.json").read_text())
    assert (cfg["model"], cfg["data"], cfg["epochs"], cfg["optimizer"]) == (
        "lenet5",
        "digits",
        1,
        "adam",
    )


def test_train_options_reach_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    rc = main(
        ["train", "--model", "lenet5", "--data", "digits", "--epochs", "2", "--batch-size", "32",
         "--lr", "0.05", "--optimizer", "sgd", "--weight-decay", "1e-4", "--scheduler", "cosine",
         "--augment", "--seed", "3", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and f"run directory: {out}" in printed
    cfg = json.loads((out / "config.json").read_text())
    want = {"epochs": 2, "batch_size": 32, "lr": 0.05, "optimizer": "sgd", "seed": 3,
            "weight_decay": 1e-4, "scheduler": "cosine", "augment": True}  # fmt: skip
    assert {k: cfg[k] for k in want} == want
    assert history_values(out)["lr"] == pytest.approx([0.05, 0.025])


@pytest.mark.parametrize("kind", ["mnist", "folder"])
def test_train_on_a_data_path(tmp_path: Path, kind: str) -> None:
    path = make_mnist(tmp_path / "m") if kind == "mnist" else make_folder(tmp_path / "f")
    out = tmp_path / "r"
    rc = main(["train", "--data", f"{kind}:{path}", "--epochs", "1", "--out", str(out), "--quiet"])
    assert rc == 0
    assert (out / "config.json").is_file()


def test_train_progress_is_printed_unless_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    assert "epoch 1/1" in capsys.readouterr().out


def test_train_nan_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    rc = main(["train", "--lr", "1e6", "--optimizer", "sgd", "--epochs", "2", "--out", str(out),
               "--quiet"])  # fmt: skip
    line = assert_one_line_error(capsys, rc)
    assert "the loss became nan at epoch 1, batch" in line
    assert_not_complete(out)
    assert "epoch 1, batch" in (out / "FAILED.txt").read_text()


def test_train_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", "--epochs", "3", "--scheduler", "step", "--out", str(full),
                 "--quiet"]) == 0  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        train_run(cut, epochs=3, scheduler="step", verbose=False, callbacks=[InterruptAfter(1)])
    assert_one_line_error(capsys, main(["evaluate", str(cut)]))  # unfinished: not a run yet
    assert main(["train", "--resume", "--out", str(cut), "--quiet"]) == 0
    assert history_values(cut) == history_values(full)
    assert json.loads((cut / "config.json").read_text())["epochs"] == 3
    # a finished run cannot be resumed; a missing one neither
    assert "finished run" in assert_one_line_error(
        capsys, main(["train", "--resume", "--out", str(cut), "--quiet"])
    )
    assert "no run to resume" in assert_one_line_error(
        capsys, main(["train", "--resume", "--out", str(tmp_path / "nothing"), "--quiet"])
    )


# ---------------------------------------------------------------- evaluate, predict, summary


def test_evaluate(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    cfg = json.loads((run_dir / "config.json").read_text())
    assert out.startswith(f"loss {cfg['test_loss']:.4f}, accuracy {cfg['test_accuracy']:.2%}")
    assert "precision" in out and "confusion matrix" in out
    assert main(["evaluate", str(run_dir), "--data", "digits"]) == 0


def test_evaluate_on_data_of_another_shape(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["evaluate", str(run_dir), "--data", f"mnist:{make_mnist(tmp_path / 'm')}"])
    assert "trained on 1x8x8 images" in assert_one_line_error(capsys, rc)


def test_predict(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_png(tmp_path / "a.png", size=(20, 16), mode="RGB")  # converted to 1x8x8
    b = make_png(tmp_path / "b.png", size=(8, 8), mode="L", seed=1)
    assert load_image(a, 1, 8).shape == (1, 8, 8)
    assert load_image(a, 3, 12).shape == (3, 12, 12)
    assert main(["predict", str(run_dir), str(a), str(b)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{a}: ") and lines[1].startswith(f"{b}: ")
    assert lines[0].count("%") == 3
    assert main(["predict", str(run_dir), str(a), "--top-k", "10", "--json"]) == 0
    (res,) = json.loads(capsys.readouterr().out)
    probs = [p for _, p in res["top"]]
    assert res["image"] == str(a)
    assert sorted(c for c, _ in res["top"]) == [str(k) for k in range(10)]
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)


def test_summary_of_a_zoo_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--model", "lenet5", "--input", "1,1,28,28"]) == 0
    out = capsys.readouterr().out
    assert "LeNet5 on input (1, 1, 28, 28)" in out
    assert "Total params:          61,706" in out
    assert main(["summary", "--model", "mlp", "--input", "1,1,28,28"]) == 0
    assert "MLP" in capsys.readouterr().out


def test_summary_of_a_run(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(run_dir)]) == 0
    out = capsys.readouterr().out
    cfg = json.loads((run_dir / "config.json").read_text())
    assert "LeNet5 on input (1, 1, 8, 8)" in out
    assert f"Total params:          {cfg['parameters']:,}" in out


# ---------------------------------------------------------------- one-line errors


def _idx_bad_magic(tmp_path: Path) -> str:
    root = make_mnist(tmp_path / "m")
    f = root / "train-labels-idx1-ubyte"
    f.write_bytes(b"\x00\x00\x09\x99" + f.read_bytes()[4:])
    return str(f)


def _idx_truncated(tmp_path: Path) -> str:
    root = make_mnist(tmp_path / "m")
    f = root / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:1000])
    return str(f)


def _non_image(tmp_path: Path) -> str:
    root = make_folder(tmp_path / "f")
    f = root / "cat" / "notes.png"
    f.write_text("not an image")
    return str(f)


@pytest.mark.parametrize(
    ("case", "args", "expect"),
    [
        ("unknown model", ["train", "--model", "alexnet"], "unknown model 'alexnet'"),
        ("wrong data path", ["train", "--data", "mnist:{tmp}/nope"], "no such folder"),
        ("wrong folder path", ["train", "--data", "folder:{tmp}/nope"], "no such folder"),
        ("unknown data", ["train", "--data", "imagenet"], "unknown data 'imagenet'"),
        ("bad optimizer", ["train", "--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
        ("bad scheduler", ["train", "--scheduler", "linear"], "invalid choice: 'linear'"),
        ("non-int epochs", ["train", "--epochs", "two"], "invalid int value: 'two'"),
        ("zero epochs", ["train", "--epochs", "0"], "--epochs must be >= 1"),
        ("zero batch", ["train", "--batch-size", "0"], "--batch-size must be >= 1"),
        ("negative lr", ["train", "--lr", "-1"], "--lr must be > 0"),
        ("idx bad magic", ["train", "--data", "mnist:{tmp}/m"], "bad IDX magic number"),
        ("idx truncated", ["train", "--data", "fashion:{tmp}/m"], "truncated IDX file"),
        ("non-image", ["train", "--data", "folder:{tmp}/f"], "cannot read image"),
        ("missing out", ["train", "--epochs", "1"], "--out"),
    ],
)
def test_train_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, args: list[str], expect: str
) -> None:
    culprit = {"idx bad magic": _idx_bad_magic, "idx truncated": _idx_truncated,
               "non-image": _non_image}.get(case)  # fmt: skip
    named = culprit(tmp_path) if culprit else None
    out = tmp_path / "run"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if case != "missing out":
        argv += ["--out", str(out), "--quiet"]
    line = assert_one_line_error(capsys, main(argv))
    assert expect in line
    if named:
        assert named in line
    assert_not_complete(out)


def test_train_refuses_a_cifar_batch_with_a_pickled_callable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "PWNED"
    folder = make_cifar(tmp_path / "c", evil=Evil(target))
    out = tmp_path / "run"
    rc = main(["train", "--data", f"cifar10:{folder}", "--epochs", "1", "--out", str(out)])
    line = assert_one_line_error(capsys, rc)
    assert str(folder / "data_batch_3") in line and "refused to load global" in line
    assert not target.exists()
    assert_not_complete(out)


def test_train_refuses_a_non_empty_out(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in run_dir.iterdir())
    rc = main(["train", "--epochs", "1", "--out", str(run_dir), "--quiet"])
    assert "already exists and is not empty" in assert_one_line_error(capsys, rc)
    assert sorted(p.name for p in run_dir.iterdir()) == before


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["evaluate", "{tmp}/missing"], "no such run directory"),
        (["evaluate", "{tmp}"], "not a finished run directory"),
        (["evaluate", "{run}", "--data", "mnist:{tmp}/nope"], "no such folder"),
        (["predict", "{tmp}/missing", "{tmp}/a.png"], "no such run directory"),
        (["predict", "{run}", "{tmp}/nothing.png"], "no such image file"),
        (["predict", "{run}", "{tmp}/notes.png"], "notes.png: cannot read image"),
        (["predict", "{run}", "{tmp}"], "no such image file"),
        (["predict", "{run}", "{tmp}/a.png", "--top-k", "0"], "--top-k must be >= 1"),
        (["predict", "{run}"], "the following arguments are required: images"),
        (["summary", "{tmp}/missing"], "no such run directory"),
        (["summary", "--model", "lenet6"], "unknown model 'lenet6'"),
        (["summary", "--model", "lenet5", "--input", "1,1,x,28"], "comma-separated integers"),
        (["summary", "--model", "lenet5", "--input", "1,1,28"], "--input must be N,C,H,W"),
        (["summary", "--model", "lenet5", "--input", "1,0,28,28"], "must be positive"),
        (["summary", "{run}", "--input", "1,1,28,28"], "cannot summarise LeNet5"),
        (["summary"], "give a run directory or --model NAME"),
        (["summary", "{run}", "--model", "lenet5"], "not both"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_other_errors_are_one_line(
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    expect: str,
) -> None:
    make_png(tmp_path / "a.png")
    (tmp_path / "notes.png").write_text("notes, renamed")
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(run_dir)) for a in args]
    assert expect in assert_one_line_error(capsys, main(argv))


def test_summary_failure_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cnnkit.inspect.summary as S

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(S, "summary", broken)
    line = assert_one_line_error(capsys, main(["summary", "--model", "lenet5"]))
    assert line.endswith("boom second line")


def test_interrupt_exit_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cnnkit.train.run as R

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(R, "train_run", interrupted)
    assert main(["train", "--out", "x"]) == 130
    assert capsys.readouterr().err.strip() == "cnnkit train: interrupted"


def test_loaded_image_matches_training_conversion(tmp_path: Path) -> None:
    from cnnkit.data.folder import load_image as folder_load

    p = make_png(tmp_path / "x.png", size=(30, 30))
    np.testing.assert_array_equal(load_image(p, 3, 12), folder_load(p, (12, 12)))
