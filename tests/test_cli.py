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
        "cnnkit summary: error: unknown model 'nope'; choose one of lenet5, mlp, smallvgg, "
        "smallresnet, resnetcifar, miniinception, tinyyolo (also accepted: vgg, resnet, "
        "inception, yolo)"
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


def test_resume_refuses_a_typed_option_even_at_its_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--epochs", "1", "--lr", "0.01", "--seed", "3",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    before = (out / "config.json").read_bytes()
    for typed in (["--lr", "0.001"], ["--lr=1e-3"], ["--see", "0"], ["--data", "digits",
                  "--model", "lenet5"]):  # fmt: skip
        line = assert_one_line_error(
            capsys, main(["train", "--resume", "--epochs", "2", *typed, "--out", str(out)])
        )
        assert "--resume:" in line and "leave the option out" in line, line
    assert "was trained with --lr 0.01" in line or "was trained with --model 'mlp'" in line
    assert (out / "config.json").read_bytes() == before
    # the run's own values, typed or left out, continue it
    assert main(["train", "--resume", "--epochs", "2", "--lr", "0.01", "--model", "mlp",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert json.loads((out / "config.json").read_text())["epochs"] == 2


# ---------------------------------------------------------------- evaluate, predict, summary


def test_evaluate(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    cfg = json.loads((run_dir / "config.json").read_text())
    assert out.startswith(f"loss {cfg['test_loss']:.4f}, accuracy {cfg['test_accuracy']:.2%}")
    assert "precision" in out and "confusion matrix" in out
    assert out.strip().splitlines()[-1] == (
        "evaluated on the 360 test images of digits: 1,293 training, 144 validation and 360 "
        "test images"
    )
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
    assert len(lines) == 4 and lines[0].startswith(f"{a}: ") and lines[2].startswith(f"{b}: ")
    assert lines[0].count("%") == 3
    assert lines[1].startswith("  preprocessing: ") and "8x8" in lines[1]
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
        # an unknown option is the command's error, named first, with the closest one
        (
            ["train", "--modle", "lenet5"],
            "cnnkit train: error: unrecognized option --modle; "
            "did you mean --model? (see cnnkit train --help)",
        ),
        (
            ["dream", "{run}", "--layr", "conv1"],
            "unrecognized option --layr; did you mean --layer?",
        ),
        (
            ["train", "--epochs", "1", "stray", "--out", "{tmp}/x"],
            "cnnkit train: error: unrecognized arguments: stray",
        ),
        (
            ["dream", "{run}", "--layer", "conv1", "--out", "{tmp}/d.png"],
            "give an image file or --test-image INDEX to start from",
        ),
        (
            [
                "dream",
                "{run}",
                "{tmp}/a.png",
                "--test-image",
                "0",
                "--layer",
                "conv1",
                "--out",
                "{tmp}/d.png",
            ],
            "give an image file or --test-image INDEX, not both",
        ),
        (
            ["visualize", "{run}", "--out", "{tmp}/v", "--top-patches", "conv9"],
            "--top-patches conv9: the model has 2 Conv2d layers",
        ),
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


# ---------------------------------------------------------------- recovery hints, --help


def test_ctrl_c_prints_the_exact_resume_command_and_it_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shlex

    import cnnkit.train.run as R

    real = R.train_run
    out = tmp_path / "my runs" / "cut"  # a space: the command must quote it

    def interrupted(*args: object, **kwargs: object) -> object:
        return real(*args, **{**kwargs, "callbacks": [InterruptAfter(1)]})

    monkeypatch.setattr(R, "train_run", interrupted)
    assert main(["train", "--epochs", "2", "--out", str(out), "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    prefix = "cnnkit train: interrupted; continue with: "
    assert err.startswith(prefix), err
    argv = shlex.split(err[len(prefix) :])
    assert argv == ["cnnkit", "train", "--resume", "--out", str(out)]
    monkeypatch.setattr(R, "train_run", real)
    assert main([*argv[1:], "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["epochs"] == 2


def test_resume_before_the_first_epoch_ended_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "early"
    (out / "checkpoints").mkdir(parents=True)
    cfg = {"model": "lenet5", "data": "digits", "epochs": 1, "batch_size": 64, "lr": 1e-3,
           "optimizer": "adam", "weight_decay": 0.0, "seed": 0}  # fmt: skip
    (out / "config.json.running").write_text(json.dumps(cfg))
    assert main(["train", "--resume", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["epochs"] == 1


def test_out_at_an_existing_run_suggests_resume_or_another_name(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = assert_one_line_error(capsys, main(["train", "--out", str(run_dir), "--quiet"]))
    further = f"train it further with `cnnkit train --resume --out {run_dir} --epochs N`"
    assert f"holds a finished run; {further}" in line
    assert f"or choose another --out (e.g. {run_dir}-2)" in line
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train_run(cut, epochs=2, verbose=False, callbacks=[InterruptAfter(1)])
    (tmp_path / "cut-2").mkdir()  # taken: the suggestion moves on
    line = assert_one_line_error(capsys, main(["train", "--out", str(cut), "--quiet"]))
    assert f"continue it with `cnnkit train --resume --out {cut}`" in line
    assert f"or choose another --out (e.g. {tmp_path / 'cut-3'})" in line


def test_help_shows_every_options_default(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from cnnkit.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, p in sub.choices.items():
        formatter = p._get_formatter()
        for action in p._actions:
            if not action.option_strings or isinstance(action.const, bool) or action.nargs == 0:
                continue  # positionals, --help and on/off flags
            shown = " ".join(formatter._format_action(action).split())
            assert "default" in shown or "(required)" in shown, (name, shown)
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("default 64 (tinyyolo: 32)", "default 1e-3 (tinyyolo: 2e-3)", "(default: adam)"):
        assert shown in text


def test_data_split_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "m"
    make_mnist(root, n=50)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (root / name).unlink()  # only the t10k files, as in ../shared/data/mnist
    out = tmp_path / "r"
    assert main(["train", "--data", f"mnist:{root}", "--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        f"data: mnist:{root}: only the 50 t10k images are in {root}: the first 40 split into "
        "36 training and 4 validation images, the last 10 for testing"
    ) in printed


def test_missing_mnist_names_the_download_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for root in (tmp_path / "absent", tmp_path):
        rc = main(["train", "--data", f"mnist:{root}", "--out", str(tmp_path / "x"), "--quiet"])
        assert f"`cnnkit download mnist --root {root}`" in assert_one_line_error(capsys, rc)
    rc = main(["train", "--data", f"fashion:{tmp_path}", "--out", str(tmp_path / "y"), "--quiet"])
    assert f"`cnnkit download fashion --root {tmp_path}`" in assert_one_line_error(capsys, rc)


def test_predict_prepares_the_example_digit_and_says_how(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digit = Path(__file__).resolve().parents[1] / "examples" / "digit.png"
    assert main(["predict", str(run_dir), str(digit), "--json"]) == 0
    (res,) = json.loads(capsys.readouterr().out)
    steps = res["preprocessing"]
    assert steps[0] == "colour -> greyscale (ITU-R 601 luma)"
    assert steps[1].startswith("inverted")
    assert steps[-1].endswith("to 8x8 (scikit-learn's digits)")  # the run is on 8x8 digits
    assert main(["predict", str(run_dir), str(digit), "--preprocess", "plain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[1] == "  preprocessing: colour -> greyscale (ITU-R 601 luma); resized 200x240 -> 8x8"
    )
    rc = main(["predict", str(run_dir), str(digit), "--preprocess", "mnist"])
    assert "style 'mnist' does not fit a 8x8 input" in assert_one_line_error(capsys, rc)


@pytest.mark.slow
def test_a_real_ctrl_c_prints_the_resume_command(tmp_path: Path) -> None:
    import signal
    import time

    exe = Path(sys.executable).parent / "cnnkit"
    if not exe.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [exe, "train", "--epochs", "200", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "last.safetensors").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last == f"cnnkit train: interrupted; continue with: cnnkit train --resume --out {out}"
    assert (out / "config.json.running").exists() and not (out / "config.json").exists()


def test_a_newcomers_typos_get_a_suggestion_before_any_data_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    rc = main(["train", "--model", "lenet", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""  # no "data: ..." line: the model is checked first
    assert captured.err.strip() == (
        "cnnkit train: error: unknown model 'lenet'; did you mean 'lenet5'? choose one of "
        "lenet5, mlp, smallvgg, smallresnet, resnetcifar, miniinception, tinyyolo "
        "(also accepted: vgg, resnet, inception, yolo)"
    )
    assert not out.exists()
    line = assert_one_line_error(capsys, main(["train", "--data", "mnsit:data/mnist",
                                               "--out", str(out), "--quiet"]))  # fmt: skip
    assert "unknown data 'mnsit:data/mnist'; did you mean 'mnist:data/mnist'?" in line
    assert "digit-scenes:PATH" in line
    assert not out.exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from cnnkit import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cnnkit {__version__}"


def test_an_unreadable_picture_is_named_once(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("notes, renamed")
    line = assert_one_line_error(capsys, main(["predict", str(run_dir), str(bad)]))
    assert line == (
        f"cnnkit predict: error: {bad}: cannot read image: not an image file (Pillow cannot "
        "identify its format)"
    )
