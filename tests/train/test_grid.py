"""Grid search: run directories, ranking, overlay plot, best.json, resumption, failures."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from cnnkit.cli import main
from cnnkit.train.grid import format_table, grid_search, run_name

PNG = b"\x89PNG\r\n\x1a\n"


def mtimes(folder: Path) -> dict[str, int]:
    """Modification times (ns) of every file under ``folder``'s run directories."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.glob("*=*/**/*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def grid_2x2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("grid") / "search"
    result = grid_search(
        {"lr": [1e-3, 3e-3], "batch_size": [32, 64]},
        out,
        base={"model": "lenet5", "data": "digits", "epochs": 2},
        jobs=2,
        verbose=False,
    )
    return out, result


def test_2x2_grid_writes_runs_table_plot_and_best(grid_2x2: tuple[Path, object]) -> None:
    out, result = grid_2x2
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == [
        "batch_size=32_lr=0.001",
        "batch_size=32_lr=0.003",
        "batch_size=64_lr=0.001",
        "batch_size=64_lr=0.003",
    ]
    for r in runs:
        assert (out / r / "config.json").exists() and (out / r / "model.safetensors").exists()
        assert json.loads((out / r / "config.json").read_text())["epochs"] == 2
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == [r["run"] for r in result.rows]
    accs = [float(r["val_acc"]) for r in rows]
    assert accs == sorted(accs, reverse=True) and sorted(r["run"] for r in rows) == runs
    assert all(r["status"] == "trained" for r in rows) and result.skipped == 0
    assert (out / "val_curves.png").read_bytes()[:8] == PNG
    best = json.loads((out / "best.json").read_text())
    assert best["run"] == rows[0]["run"] and best["metric"] == "val_acc"
    assert best["value"] == pytest.approx(accs[0])
    assert set(best["params"]) == {"lr", "batch_size"}
    assert best["train_run_kwargs"]["epochs"] == 2
    assert best["config"]["lr"] == best["params"]["lr"]
    # two workers on this machine's cores: BLAS threads limited to cores // 2 each
    limit = max(1, (os.cpu_count() or 1) // 2)
    assert len(result.blas_threads) == 4
    assert all(1 <= t <= limit for t in result.blas_threads.values()), result.blas_threads


def test_rerun_skips_finished_runs(grid_2x2: tuple[Path, object]) -> None:
    out, first = grid_2x2
    before = mtimes(out)
    again = grid_search(
        {"lr": [1e-3, 3e-3], "batch_size": [32, 64]},
        out,
        base={"model": "lenet5", "data": "digits", "epochs": 2},
        jobs=2,
        verbose=False,
    )
    assert again.skipped == 4 and again.blas_threads == {}
    assert all(r["status"] == "skipped" for r in again.rows)
    assert mtimes(out) == before  # nothing in the run directories was rewritten
    assert [r["run"] for r in again.rows] == [r["run"] for r in first.rows]


def test_an_unfinished_run_is_retrained(tmp_path: Path) -> None:
    grid = {"lr": [1e-3, 2e-3]}
    base = {"epochs": 1, "batch_size": 128}
    grid_search(grid, tmp_path, base=base, verbose=False)
    (tmp_path / "lr=0.002" / "config.json").unlink()  # as if interrupted
    kept = (tmp_path / "lr=0.001" / "model.safetensors").stat().st_mtime_ns
    result = grid_search(grid, tmp_path, base=base, verbose=False)
    status = {r["run"]: r["status"] for r in result.rows}
    assert status == {"lr=0.001": "skipped", "lr=0.002": "trained"}
    assert result.skipped == 1
    assert (tmp_path / "lr=0.001" / "model.safetensors").stat().st_mtime_ns == kept


def test_model_kwargs_dropout_epochs_optimizer_and_loss_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = grid_search(
        {
            "dropout": [0.0, 0.3],
            "model.channels": [(4, 8)],
            "epochs": [1, 2],
            "optimizer": ["sgd"],
            "weight_decay": [1e-4],
        },
        tmp_path,
        base={"batch_size": 128, "lr": 0.05},
        metric="val_loss",
    )
    assert len(result.rows) == 4
    losses = [r["val_loss"] for r in result.rows]
    assert losses == sorted(losses)  # lower is better
    cfg = json.loads((tmp_path / result.rows[0]["run"] / "config.json").read_text())
    assert cfg["model_kwargs"]["channels"] == [4, 8] and cfg["optimizer"] == "sgd"
    assert cfg["weight_decay"] == 1e-4
    assert {r["epochs_run"] for r in result.rows} == {1, 2}
    printed = capsys.readouterr().out
    assert "ranked by val_loss (lower is better)" in printed and "best: " in printed


def test_failed_runs_are_reported_and_ranked_last(tmp_path: Path) -> None:
    result = grid_search(
        {"model.activation": ["relu", "bogus"]},
        tmp_path,
        base={"epochs": 1, "batch_size": 128},
        verbose=False,
    )
    assert result.rows[0]["status"] == "trained"
    assert (
        result.rows[1]["status"].startswith("failed: ValueError")
        and "activation" in (result.rows[1]["status"])
    )
    assert json.loads((tmp_path / "best.json").read_text())["run"] == "activation=relu"
    with pytest.raises(RuntimeError, match="every run failed") as e:
        grid_search({"model.activation": ["bogus"]}, tmp_path / "b", base={"epochs": 1},
                    verbose=False)  # fmt: skip
    # the run failed building its model, before training: no FAILED.txt is promised
    assert str(e.value).endswith(f"details in {tmp_path / 'b' / 'results.csv'}")
    assert not (tmp_path / "b" / "activation=bogus" / "FAILED.txt").exists()


def test_names_no_run_could_use_fail_before_any_run(tmp_path: Path) -> None:
    """A misspelt optimizer, model, scheduler or kind of data is one error up front (as
    `cnnkit train` gives), not a failed run per grid point."""
    cases = [
        ({"optimizer": ["adam", "adm"]}, "unknown optimizer 'adm'; use sgd, adam, adamw"),
        ({"model": ["lenet6"]}, "unknown model 'lenet6'; did you mean 'lenet5'"),
        ({"scheduler": ["cosin"]}, "unknown scheduler 'cosin'; use none, cosine, step"),
        ({"data": ["mnsit:x"]}, "unknown data 'mnsit:x'; did you mean 'mnist:x'"),
    ]
    for grid, message in cases:
        with pytest.raises(ValueError, match=message):
            grid_search(grid, tmp_path / "g", base={"epochs": 1}, verbose=False)
    assert not any(tmp_path.iterdir())


def test_another_grids_results_are_not_replaced(tmp_path: Path) -> None:
    """A second grid into the same folder would replace results.csv and best.json: it is
    refused; the same grid again finishes (here: skips) its runs."""
    base = {"epochs": 1, "batch_size": 256}
    grid_search({"lr": [1e-3, 3e-3]}, tmp_path, base=base, verbose=False)
    table = (tmp_path / "results.csv").read_text()
    refused = (
        r"another grid \(2 runs: lr=0\.00[13], lr=0\.00[13]\); this one names its runs lr=0\.01,"
    )
    with pytest.raises(FileExistsError, match=refused):  # in results.csv's (ranked) order
        grid_search({"lr": [1e-2]}, tmp_path, base=base, verbose=False)
    assert (tmp_path / "results.csv").read_text() == table
    again = grid_search({"lr": [1e-3, 3e-3, 1e-2]}, tmp_path, base=base, verbose=False)
    assert again.skipped == 2 and len(again.rows) == 3


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown hyper-parameter 'momentum'"):
        grid_search({"momentum": [0.9]}, tmp_path)
    with pytest.raises(ValueError, match="metric"):
        grid_search({"lr": [0.1]}, tmp_path, metric="accuracy")
    with pytest.raises(ValueError, match="jobs"):
        grid_search({"lr": [0.1]}, tmp_path, jobs=0)
    with pytest.raises(ValueError, match="empty"):
        grid_search([], tmp_path)
    with pytest.raises(ValueError, match="same run name"):
        grid_search({"lr": [1e-3, 1.0000001e-3]}, tmp_path)
    assert not any(tmp_path.iterdir())


def test_run_name_and_table() -> None:
    assert run_name({"lr": 0.001, "model.channels": (6, 16)}) == "channels=-6--16-_lr=0.001"
    assert run_name({}) == "default"
    rows = [{"run": "a", "val_acc": 0.5, "lr": 0.1}, {"run": "b", "val_acc": float("nan")}]
    text = format_table(rows, "val_acc")
    assert text.splitlines()[1].split() == ["rank", "run", "val_acc", "lr"]
    assert "nan" in text and format_table([], "val_acc") == "(no runs)"


def test_cli_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g"
    argv = ["grid", "--lr", "2e-3,4e-3", "--epochs", "1", "--batch-size", "128",
            "--param", "model.channels=[[4,8]]", "--param", "model.activation=relu,tanh",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "grid search: 4 runs ranked by val_acc" in text
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == [
        f"activation={a}_lr={lr}" for a in ("relu", "tanh") for lr in ("0.002", "0.004")
    ]
    cfg = json.loads((out / runs[0] / "config.json").read_text())
    assert (
        cfg["epochs"] == 1
        and cfg["batch_size"] == 128
        and cfg["model_kwargs"]["channels"] == [4, 8]
    )
    assert main(argv) == 0
    assert "4 of 4 runs already finished" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "momentum=0.9"], "unknown hyper-parameter"),
        (["--param", "nonsense"], "KEY=VALUES"),
        (["--lr", "fast"], "cannot read"),
        (["--jobs", "0"], "--jobs"),
        (["--epochs", "0"], "--epochs"),
    ],
)
def test_cli_grid_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["grid", "--out", str(tmp_path / "g"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_table_cells_read_as_train_prints_them() -> None:
    from cnnkit.train.grid import _fmt

    assert _fmt(0.5486, "val_acc") == "54.86%" and _fmt(0.3694, "test_accuracy") == "36.94%"
    assert _fmt(2.2, "test_loss") == "2.2000" and _fmt(1.632, "train_loss") == "1.6320"
    assert _fmt(0.003, "lr") == "0.003" and _fmt(2, "epochs_run") == "2"
