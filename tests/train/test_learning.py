"""Learning tests: real training runs that must reach a known accuracy.

Each test trains a model end to end (a few seconds to ~20 s with one BLAS thread) and
checks what a user would check: the accuracy on held-out data, the files of a run
directory, that saved weights reload to the same predictions, and that cnnkit learns
exactly like PyTorch from the same start.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from cnnkit import backend
from cnnkit.data import Digits
from cnnkit.models import LeNet5
from cnnkit.train import fit
from cnnkit.train.loop import evaluate
from cnnkit.train.run import load_data, load_run, make_optimizer, make_scheduler, train_run

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _demo_config() -> dict:
    """The `make demo` configuration, read from examples/demo.py (one source of truth)."""
    path = Path(__file__).resolve().parents[2] / "examples" / "demo.py"
    spec = importlib.util.spec_from_file_location("cnnkit_demo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {**module.DEMO_CONFIG, "verbose": False}


DEMO = _demo_config()
RUN_FILES = (
    "config.json",
    "model.safetensors",
    "history.csv",
    "curves.png",
    "diagnosis.txt",
    "report.txt",
)


def test_demo_lenet5_on_digits_reaches_97_percent(tmp_path: Path) -> None:
    run = tmp_path / "r"
    summary = train_run(run, **DEMO)
    assert summary["test_accuracy"] >= 0.97, summary["diagnosis_text"]
    for name in RUN_FILES:
        assert (run / name).is_file(), f"{name} missing from the run directory"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert f"test accuracy {summary['test_accuracy']:.4f}" in (run / "report.txt").read_text()
    assert (run / "diagnosis.txt").read_text().startswith(summary["diagnosis"])
    # the demo's curves are noisy from epoch to epoch (360 validation images), but the
    # gap is small: the slide's ideal, not over-fitting
    assert summary["diagnosis"] == "good fit", summary["diagnosis_text"]

    # the saved weights, rebuilt from the stored architecture, give the same accuracy
    cfg, model = load_run(run)
    reloaded = evaluate(model, Digits(split="test"), report=False)
    assert reloaded.accuracy == pytest.approx(summary["test_accuracy"], abs=1e-12)
    assert reloaded.loss == pytest.approx(summary["test_loss"], rel=1e-5)


def test_lenet5_on_real_mnist_reaches_98_percent(mnist_dir: Path) -> None:
    # t10k split: first 8,000 images train (10 % of them validation), last 2,000 test
    backend.manual_seed(0)
    splits = load_data("mnist:" + str(mnist_dir), seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (7200, 800, 2000)
    assert "the first 8,000 split into 7,200 training and 800 validation images, the last " \
        "2,000 for testing" in splits.note  # fmt: skip
    model = LeNet5(num_classes=10, in_channels=1, input_size=28)  # classic 6/16 channels
    epochs = 8
    opt = make_optimizer("sgd", model.parameters(), lr=0.05)  # momentum 0.9
    history = fit(
        model,
        splits.train,
        splits.val,
        optimizer=opt,
        scheduler=make_scheduler("cosine", opt, epochs),
        epochs=epochs,
        batch_size=32,
        seed=0,
        verbose=False,
    )
    result = evaluate(model, splits.test, report=False)
    assert result.accuracy >= 0.98, f"test accuracy {result.accuracy:.2%}; {history.records}"
    assert history["val_acc"][-1] >= 0.97


def _parity_module():
    spec = importlib.util.spec_from_file_location("parity_torch", BENCHMARKS / "parity_torch.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("parity_torch", mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lenet5_learns_like_torch_on_digits(dtype: str) -> None:
    # the fast version of benchmarks/parity_torch.py: same start, same batches; batch 32
    # keeps 3 epochs on the 1,437 digits in a regime where float32 rounding stays tiny
    parity = _parity_module()
    data = parity.load_arrays("digits")
    result = parity.compare(
        data, epochs=3, batch_size=32, lr=0.05, momentum=0.9, seed=0, dtype=dtype
    )
    table = parity.format_table(result)
    assert result.loss_ok, table  # every epoch within 2 % relative
    assert result.acc_ok, table  # test accuracy within 1 percentage point
    if dtype == "float64":  # the same arithmetic up to summation order
        for row in result.epochs:
            assert row.rel_diff < 1e-9, table
        assert result.cnnkit_acc == result.torch_acc, table
    # the runs actually learnt something (not two identical failures)
    assert result.epochs[-1].cnnkit_loss < 0.75 * result.epochs[0].cnnkit_loss, table
    assert result.cnnkit_acc >= 0.5, table
