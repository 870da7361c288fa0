"""Grid search over hyper-parameters: one run directory per configuration.

Runs in parallel worker processes, each with its BLAS threads limited so that
``jobs`` workers do not oversubscribe the cores; finished runs (those with a
``config.json``) are skipped, so an interrupted search resumes where it stopped.
A run that fails is reported in the table (status ``failed``) and retried by the
next call.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.io.atomic import atomic_write, atomic_write_text

RUN_ARGS = (
    "lr",
    "batch_size",
    "weight_decay",
    "optimizer",
    "epochs",
    "model",
    "seed",
    "scheduler",
    "augment",
    "data",
    "tensorboard",
)
BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class GridResult:
    """All runs of a search, sorted best first by ``metric``.

    ``rows`` hold the grid point, the final-epoch metrics, the test accuracy and a
    ``status``: ``trained`` (now), ``skipped`` (finished by an earlier call) or
    ``failed: reason``. ``blas_threads`` maps each run trained now to the BLAS thread
    limit its worker ran with.
    """

    rows: list[dict[str, Any]]
    metric: str
    best: dict[str, Any]
    table_path: Path
    plot_path: Path
    skipped: int
    blas_threads: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_table(self.rows, self.metric)


def run_name(params: Mapping[str, Any]) -> str:
    """A readable, file-system-safe folder name for one configuration."""
    parts = []
    for k, v in params.items():
        v = f"{v:g}" if isinstance(v, float) else str(v)
        parts.append(f"{k.removeprefix('model.')}={v}")
    name = "_".join(sorted(parts)) or "default"
    return "".join(c if c.isalnum() or c in "=._-" else "-" for c in name)


def _split(params: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """``train_run`` keyword arguments from base settings plus one grid point."""
    kwargs = {k: v for k, v in base.items() if k != "model_kwargs"}
    model_kwargs = dict(base.get("model_kwargs") or {})
    for k, v in params.items():
        if k in RUN_ARGS:
            kwargs[k] = v
        elif k == "dropout":
            model_kwargs["dropout"] = v
        elif k.startswith("model.") and len(k) > len("model."):
            model_kwargs[k[len("model.") :]] = v
        else:
            raise ValueError(
                f"grid_search: unknown hyper-parameter {k!r}; use one of {list(RUN_ARGS)}, "
                "'dropout' or 'model.<constructor argument>'"
            )
    kwargs["model_kwargs"] = model_kwargs
    return kwargs


def _check_point(kwargs: Mapping[str, Any]) -> None:
    """The settings of one run that can be checked before any training: the model's
    name, the optimizer, the scheduler and the data spec's kind (a ValueError naming the
    bad value, as ``cnnkit train`` gives)."""
    from cnnkit.models import model_key
    from cnnkit.train.run import _DATA_KINDS, _OPT_CLASSES, _SCHEDULERS, _unknown_data

    model_key(str(kwargs.get("model", "lenet5")))
    optimizer = kwargs.get("optimizer") or "adam"
    if optimizer not in _OPT_CLASSES:
        raise ValueError(f"unknown optimizer {optimizer!r}; use {', '.join(_OPT_CLASSES)}")
    scheduler = kwargs.get("scheduler", "none")
    if scheduler not in _SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; use {', '.join(_SCHEDULERS)}")
    data = str(kwargs.get("data", "digits"))
    if data.partition(":")[0].lower() not in (*_DATA_KINDS, "fashionmnist"):
        raise ValueError(_unknown_data(data))


def _other_grid(out: Path, names: Sequence[str]) -> str | None:
    """The error for an ``out`` whose ``results.csv`` holds runs this grid does not have:
    running would replace that table (and ``best.json``) with this grid's."""
    table = out / "results.csv"
    if not table.is_file():
        return None
    try:
        with table.open(newline="") as f:
            earlier = [row.get("run", "") for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        return f"{table} exists and cannot be read ({e}); give another out folder"
    if set(earlier) <= set(names):
        return None  # the same grid (or a larger one): finished runs are kept, the rest run

    def listed(runs: Sequence[str]) -> str:
        more = f" and {len(runs) - 3} more" if len(runs) > 3 else ""
        return ", ".join(runs[:3]) + more

    return (
        f"{out} holds the results of another grid ({len(earlier)} runs: {listed(earlier)}); "
        f"this one names its runs {listed(list(names))}, so running here would replace "
        "results.csv and best.json: give another out folder (the same grid again, or one "
        "adding values, finishes and adds runs)"
    )


def _worker_init(blas_threads: int) -> None:
    """Limit BLAS/OpenMP threads in a worker process.

    The environment variables cover libraries loaded later; threadpoolctl (after NumPy
    is imported, so that its BLAS is loaded) covers those already loaded. threadpoolctl
    only sees libraries that are loaded when it is called, hence the import first.
    """
    for var in BLAS_ENV:
        os.environ[var] = str(blas_threads)
    import numpy  # noqa: F401  (loads the BLAS library so that threadpoolctl can limit it)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=blas_threads)


def _blas_threads_now() -> int:
    """The largest thread count of the BLAS/OpenMP pools loaded in this process."""
    from threadpoolctl import threadpool_info

    return max((int(i.get("num_threads", 1)) for i in threadpool_info()), default=1)


def _one_run(out: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration (in a worker process); never raises.

    Returns ``{"ok": bool, "error": str, "blas_threads": int}``.
    """
    import numpy as np

    from cnnkit.train.run import train_run

    threads = _blas_threads_now()
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            train_run(out, verbose=False, overwrite=True, **kwargs)
    except Exception as e:  # reported in the table; the run is retried by the next call
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "blas_threads": threads}
    return {"ok": True, "error": "", "blas_threads": threads}


def grid_search(
    param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]],
    out: str | Path,
    base: Mapping[str, Any] | None = None,
    jobs: int = 1,
    metric: str = "val_acc",
    verbose: bool = True,
) -> GridResult:
    """Train every configuration of ``param_grid`` and rank them.

    Parameters
    ----------
    param_grid : dict of lists (or a list of such dicts)
        scikit-learn ``ParameterGrid`` syntax over ``lr``, ``batch_size``, ``dropout``,
        ``weight_decay``, ``optimizer``, ``epochs``, ``model``, ``seed``, ``scheduler``,
        ``augment``, ``data`` and ``model.<constructor argument>`` (e.g.
        ``{"lr": [1e-3, 3e-3], "model.channels": [(6, 16), (12, 32)]}``).
    out : str or Path
        Folder receiving one run directory per configuration, ``results.csv``,
        ``val_curves.png`` and ``best.json``.
    base : dict, optional
        Settings shared by all runs (``model``, ``data``, ``epochs``, ``model_kwargs``,
        ...; see :func:`cnnkit.train.run.train_run`).
    jobs : int
        Worker processes; BLAS threads per worker are ``cores // jobs`` (at least 1).
        ``jobs=1`` trains in this process (BLAS threads unchanged).
    metric : str
        Column to rank by: a final-epoch history column (``val_acc``, ``val_loss``,
        ``train_acc``, ``train_loss``) or ``test_accuracy``. Names ending in ``loss`` are
        better lower, others higher; failed runs come last.

    Returns
    -------
    GridResult

    Raises
    ------
    ValueError
        An empty grid, an unknown hyper-parameter, ``jobs < 1``, an unknown metric, or a
        model, optimizer, scheduler or kind of data no run could use (before any run).
    FileExistsError
        ``out`` holds the ``results.csv`` of another grid (runs this grid does not have).
    GridError
        Every run failed: a one-line summary of the reasons, grouped (``results.csv``
        is written, and ``FAILED.txt`` by each run that started training); a
        RuntimeError and ValueError.
    """
    from sklearn.model_selection import ParameterGrid

    if jobs < 1:
        raise ValueError(f"grid_search: jobs must be >= 1; got {jobs}")
    if metric not in _METRICS:
        raise ValueError(f"grid_search: metric must be one of {list(_METRICS)}; got {metric!r}")
    grid = list(ParameterGrid(param_grid))
    if not grid:
        raise ValueError("grid_search: the parameter grid is empty")
    base = dict(base or {})
    points = [(params, _split(params, base), Path(out) / run_name(params)) for params in grid]
    names = [d.name for _, _, d in points]
    if len(set(names)) != len(names):
        raise ValueError("grid_search: two grid points give the same run name; check the values")
    for _, kwargs, _ in points:  # bad names fail now, in one line, before any training
        _check_point(kwargs)
    out = Path(out)
    occupied = _other_grid(out, names)
    if occupied:
        raise FileExistsError(occupied)
    out.mkdir(parents=True, exist_ok=True)
    todo = [(kw, d) for _, kw, d in points if not (d / "config.json").exists()]
    skipped = len(points) - len(todo)
    if verbose and skipped:
        print(f"grid: {skipped} of {len(points)} runs already finished; skipping them")
    outcome: dict[str, dict[str, Any]] = {}
    if todo:
        jobs = min(jobs, len(todo))
        blas = max(1, (os.cpu_count() or 1) // jobs)
        if jobs == 1:
            for kwargs, run_dir in todo:
                outcome[run_dir.name] = _one_run(str(run_dir), kwargs)
                _report(verbose, run_dir.name, outcome[run_dir.name])
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(jobs, ctx, _worker_init, (blas,)) as pool:
                futs = {pool.submit(_one_run, str(d), kw): d for kw, d in todo}
                for fut in as_completed(futs):
                    name = futs[fut].name
                    outcome[name] = fut.result()
                    _report(verbose, name, outcome[name])
    rows, curves, configs = _collect(points, outcome)
    lower = metric.endswith("loss")
    rows.sort(key=lambda r: (r["status"].startswith("failed"), _key(r.get(metric), lower)))
    table = out / "results.csv"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_write(table, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    if all(r["status"].startswith("failed") for r in rows):
        raise GridError(_failure_summary(rows, out))
    best = rows[0]
    plot = _plot_curves(curves, out / "val_curves.png", metric, best["run"])
    best_info = {
        "run": best["run"],
        "metric": metric,
        "value": best.get(metric),
        "params": {k: v for k, v in best.items() if k in _keys(grid)},
        "train_run_kwargs": dict(next(kw for _, kw, d in points if d.name == best["run"])),
        "config": configs[best["run"]],
        "weights": str(out / best["run"] / "model.safetensors"),
    }
    atomic_write_text(out / "best.json", json.dumps(best_info, indent=2, default=str) + "\n")
    threads = {k: v["blas_threads"] for k, v in outcome.items()}
    result = GridResult(rows, metric, best, table, plot, skipped, threads)
    if verbose:
        print(result)
        print(f"best: {best['run']} ({metric} {_fmt(best.get(metric), metric)}); "
              f"its weights: {best_info['weights']}")  # fmt: skip
        print(f"wrote {table}, {plot} and {out / 'best.json'}")
    return result


class GridError(RuntimeError, ValueError):
    """Every run of a grid failed; the message sums up the reasons."""


def _failure_summary(rows: Sequence[Mapping[str, Any]], out: Path) -> str:
    """'all N runs failed: REASON (runs a, b); REASON (run c)' on one line."""
    by_reason: dict[str, list[str]] = {}
    for r in rows:
        reason = " ".join(str(r["status"]).removeprefix("failed: ").split())
        if len(reason) > 200:
            reason = reason[:197] + "..."
        by_reason.setdefault(reason, []).append(str(r["run"]))
    parts = []
    for reason, runs in by_reason.items():
        shown = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        parts.append(f"{reason} ({'runs' if len(runs) > 1 else 'run'} {shown})")
    # a run that failed before training (bad data, say) has no FAILED.txt
    with_file = [str(r["run"]) for r in rows if (out / str(r["run"]) / "FAILED.txt").exists()]
    where = f"details in {out / 'results.csv'}"
    if with_file:
        where += " and in the FAILED.txt of " + (
            "each run" if len(with_file) == len(rows) else f"run(s) {', '.join(with_file[:3])}"
        )
    return (
        f"grid_search: every run failed ({len(rows)} of {len(rows)}): {'; '.join(parts)}; {where}"
    )


_METRICS = ("val_acc", "val_loss", "train_acc", "train_loss", "test_accuracy", "test_loss")


def _keys(grid: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every hyper-parameter name of the grid."""
    return {k for params in grid for k in params}


def _report(verbose: bool, name: str, outcome: Mapping[str, Any]) -> None:
    """One progress line per finished run."""
    if verbose:
        what = "finished" if outcome["ok"] else f"FAILED ({outcome['error']})"
        print(f"grid: {what} {name}", flush=True)


def _collect(
    points: Sequence[tuple[dict[str, Any], dict[str, Any], Path]],
    outcome: Mapping[str, Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Table rows, validation histories and configs of every grid point."""
    from cnnkit.train.history import History
    from cnnkit.train.run import read_config

    rows, curves, configs = [], {}, {}
    for params, _, run_dir in points:
        row: dict[str, Any] = {"run": run_dir.name, **params}
        done = (run_dir / "config.json").exists()
        if done:
            try:
                cfg = read_config(run_dir / "config.json")
                hist = History.from_csv(run_dir / "history.csv")
                if not hist.records:
                    raise ValueError(f"{run_dir / 'history.csv'}: no epochs")
            except (OSError, ValueError, KeyError) as e:
                done = False
                outcome = {**outcome, run_dir.name: {"error": f"unreadable results: {e}"}}
        if done:
            final = hist.records[-1]
            for col in ("train_loss", "train_acc", "val_loss", "val_acc"):
                row[col] = final.get(col, math.nan)
            row["test_loss"] = cfg.get("test_loss", math.nan)
            row["test_accuracy"] = cfg.get("test_accuracy", math.nan)
            row["epochs_run"] = len(hist)
            row["diagnosis"] = cfg.get("diagnosis", "")
            row["status"] = "trained" if run_dir.name in outcome else "skipped"
            curves[run_dir.name] = hist
            configs[run_dir.name] = cfg
        else:
            for col in _METRICS:
                row[col] = math.nan
            error = outcome.get(run_dir.name, {}).get("error") or "no config.json"
            row["status"] = f"failed: {error}"
        rows.append(row)
    return rows, curves, configs


def _key(v: Any, lower: bool) -> float:
    """Sort key putting NaN (and missing values) last."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.inf
    if math.isnan(v):
        return math.inf
    return v if lower else -v


def format_table(rows: Sequence[Mapping[str, Any]], metric: str) -> str:
    """The results as an aligned text table (the ranking metric first after the run)."""
    if not rows:
        return "(no runs)"
    cols = list(dict.fromkeys(["rank", "run", metric, *(k for r in rows for k in r)]))
    cells = [
        [str(i + 1) if c == "rank" else _fmt(r.get(c, ""), c) for c in cols]
        for i, r in enumerate(rows)
    ]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    better = "lower" if metric.endswith("loss") else "higher"
    out = [f"grid search: {len(rows)} runs ranked by {metric} ({better} is better)", line]
    out.append("-" * len(line))
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def _fmt(v: Any, column: str = "") -> str:
    """A table cell: accuracies as percentages (``54.86%``, as ``cnnkit train`` prints
    them), losses with four decimals, other numbers with four significant digits."""
    if not isinstance(v, float):
        return str(v)
    if column.endswith(("acc", "accuracy")):
        return f"{100 * v:.2f}%"
    if column.endswith("loss"):
        return f"{v:.4f}"
    return f"{v:.4g}"


def _plot_curves(curves: Mapping[str, Any], path: Path, metric: str, best: str) -> Path:
    """Overlay every run's validation curve in one PNG (the best run thick and on top)."""
    from cnnkit.viz._mpl import pyplot, save_figure

    plt = pyplot()
    col = metric if metric.startswith("val_") else "val_acc"
    if col.endswith("loss"):
        label = "validation loss"
    else:
        label = "validation accuracy (%)"
    cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(10, 5), layout="constrained")
    for i, (name, hist) in enumerate(curves.items()):
        if col not in hist:
            continue
        ys = [100 * y for y in hist[col]] if col.endswith("acc") else list(hist[col])
        xs = [r.get("epoch", k + 1) for k, r in enumerate(hist.records)]
        is_best = name == best
        ax.plot(
            xs, ys, "-o", ms=4 if is_best else 3, lw=3 if is_best else 1.3,
            color=cmap(i % cmap.N), zorder=3 if is_best else 2,
            label=f"{name} (best)" if is_best else name,
        )  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"Grid search: validation curves of {len(curves)} runs (best: thick line)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return save_figure(fig, path)
