"""Grid search over hyper-parameters: one run directory per configuration.

Runs in parallel worker processes, each with its BLAS threads limited so that
``jobs`` workers do not oversubscribe the cores; finished runs (those with a
``config.json``) are skipped, so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.io.atomic import atomic_write, atomic_write_text

RUN_ARGS = ("lr", "batch_size", "weight_decay", "optimizer", "epochs", "model", "seed")


@dataclass
class GridResult:
    """All runs of a search, sorted best first by ``metric``."""

    rows: list[dict[str, Any]]
    metric: str
    best: dict[str, Any]
    table_path: Path
    plot_path: Path
    skipped: int

    def __str__(self) -> str:
        return format_table(self.rows, self.metric)


def run_name(params: Mapping[str, Any]) -> str:
    """A readable, file-system-safe folder name for one configuration."""
    parts = []
    for k in sorted(params):
        v = params[k]
        v = f"{v:g}" if isinstance(v, float) else str(v)
        parts.append(f"{k.replace('model.', '')}={v}")
    name = "_".join(parts) or "default"
    return "".join(c if c.isalnum() or c in "=._-" else "-" for c in name)


def _split(params: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """``train_run`` keyword arguments from base settings plus one grid point."""
    kwargs = {k: v for k, v in base.items() if k != "model_kwargs"}
    model_kwargs = dict(base.get("model_kwargs", {}))
    for k, v in params.items():
        if k in RUN_ARGS:
            kwargs[k] = v
        elif k == "dropout":
            model_kwargs["dropout"] = v
        elif k.startswith("model."):
            model_kwargs[k[len("model.") :]] = v
        else:
            raise ValueError(
                f"grid_search: unknown hyper-parameter {k!r}; use one of {list(RUN_ARGS)}, "
                "'dropout' or 'model.<constructor argument>'"
            )
    kwargs["model_kwargs"] = model_kwargs
    return kwargs


def _worker_init(blas_threads: int) -> None:
    """Limit BLAS threads in a worker process."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=blas_threads)


def _one_run(out: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration (in a worker process)."""
    from cnnkit.train.run import train_run

    summary = train_run(out, verbose=False, overwrite=True, **kwargs)
    return {k: v for k, v in summary.items() if k not in ("report", "diagnosis_text")}


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
        ``weight_decay``, ``optimizer``, ``epochs``, ``model``, ``seed`` and
        ``model.<constructor argument>``.
    out : str or Path
        Folder receiving one run directory per configuration, ``results.csv``,
        ``val_curves.png`` and ``best.json``.
    base : dict, optional
        Settings shared by all runs (``model``, ``data``, ``epochs``, ...; see
        :func:`cnnkit.train.run.train_run`).
    jobs : int
        Worker processes; BLAS threads per worker are ``cores // jobs`` (at least 1).
    metric : str
        Final-epoch history column to rank by (``val_acc`` higher is better; names
        ending in ``loss`` lower is better).

    Returns
    -------
    GridResult
    """
    from sklearn.model_selection import ParameterGrid

    from cnnkit.train.history import History

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = list(ParameterGrid(param_grid))
    if not grid:
        raise ValueError("grid_search: the parameter grid is empty")
    base = dict(base or {})
    todo: list[tuple[dict[str, Any], Path]] = []
    points = []
    for params in grid:
        kwargs = _split(params, base)
        run_dir = out / run_name(params)
        points.append((params, run_dir))
        if not (run_dir / "config.json").exists():
            todo.append((kwargs, run_dir))
    skipped = len(grid) - len(todo)
    if verbose and skipped:
        print(f"grid: {skipped} of {len(grid)} runs already finished; skipping them")
    if todo:
        jobs = max(1, min(jobs, len(todo)))
        blas = max(1, (os.cpu_count() or 1) // jobs)
        if jobs == 1:
            _worker_init(blas)
            for kwargs, run_dir in todo:
                _one_run(str(run_dir), kwargs)
                if verbose:
                    print(f"grid: finished {run_dir.name}")
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(jobs, ctx, _worker_init, (blas,)) as pool:
                futs = {pool.submit(_one_run, str(d), kw): d for kw, d in todo}
                for fut in as_completed(futs):
                    fut.result()
                    if verbose:
                        print(f"grid: finished {futs[fut].name}")
    rows = []
    curves = {}
    for params, run_dir in points:
        cfg = json.loads((run_dir / "config.json").read_text())
        hist = History.from_csv(run_dir / "history.csv")
        final = hist.records[-1]
        row = {"run": run_dir.name, **params}
        for col in ("train_loss", "train_acc", "val_loss", "val_acc"):
            row[col] = final.get(col, math.nan)
        row["test_accuracy"] = cfg.get("test_accuracy", math.nan)
        row["diagnosis"] = cfg.get("diagnosis", "")
        rows.append(row)
        curves[run_dir.name] = hist
    lower = metric.endswith("loss")
    rows.sort(key=lambda r: _key(r.get(metric, math.nan), lower))
    table = out / "results.csv"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_write(table, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    plot = _plot_curves(curves, out / "val_curves.png", metric, rows[0]["run"])
    best = rows[0]
    atomic_write_text(
        out / "best.json",
        json.dumps({"run": best["run"], "metric": metric, "row": best}, indent=2, default=str),
    )
    result = GridResult(rows, metric, best, table, plot, skipped)
    if verbose:
        print(result)
        print(f"best: {best['run']} ({metric} {best.get(metric, math.nan):.4f}); "
              f"its weights: {out / best['run'] / 'model.safetensors'}")  # fmt: skip
    return result


def _key(v: Any, lower: bool) -> float:
    """Sort key putting NaN last."""
    v = float(v)
    if math.isnan(v):
        return math.inf
    return v if lower else -v


def format_table(rows: Sequence[Mapping[str, Any]], metric: str) -> str:
    """The results as an aligned text table."""
    if not rows:
        return "(no runs)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    out = [f"grid search ranked by {metric}", line, "-" * len(line)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def _fmt(v: Any) -> str:
    """A table cell."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _plot_curves(curves: Mapping[str, Any], path: Path, metric: str, best: str) -> Path:
    """Overlay every run's validation curve in one PNG."""
    from cnnkit.viz._mpl import pyplot, save_figure

    plt = pyplot()
    col = metric if metric.startswith("val_") else "val_loss"
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name, hist in curves.items():
        ys = hist[col] if col in hist else hist["train_loss"]
        if col.endswith("acc"):
            ys = [100 * y for y in ys]
        xs = [r.get("epoch", i + 1) for i, r in enumerate(hist.records)]
        ax.plot(xs, ys, "-o", ms=3, lw=2.5 if name == best else 1.2, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(col.replace("val_acc", "validation accuracy (%)").replace("val_loss",
                  "validation loss"))  # fmt: skip
    ax.set_title(f"Grid search: validation curves ({len(curves)} runs, best in bold)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)
