"""What the dashboard knows about a folder of runs: which directories are runs or groups of
runs (grid searches), their state, and their histories, read so that a run being written
(a half-written CSV line, a missing file, a file replaced mid-read) never raises.

Nothing here writes to the runs folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any

from cnnkit.io.reading import read_regular_text

RUN_MARKERS = ("history.csv", "config.json", "config.json.running", "model.safetensors",
               "FAILED.txt")  # fmt: skip
SKIP_DIRS = {"checkpoints", "tensorboard", "__pycache__"}
MAX_DEPTH = 3
RUNNING_FRESH_S = 120.0


def safe_path(root: Path, name: str) -> Path | None:
    """``root / name`` if it exists and lies inside ``root`` (after resolving ``..`` and
    symbolic links), else None. ``name`` is a path relative to the runs folder; an
    absolute path, or one leaving the folder, gives None."""
    if "\x00" in name or name.startswith(("/", "\\")) or Path(name).is_absolute():
        return None
    root = root.resolve()
    try:
        p = (root / name).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if p != root and root not in p.parents:
        return None
    return p if p.exists() else None


def is_run(d: Path) -> bool:
    """Whether a directory is a run directory (written by ``cnnkit train`` or the like)."""
    return any((d / m).exists() for m in RUN_MARKERS)


def _inside(p: Path, root: Path) -> bool:
    """Whether ``p`` (symbolic links followed) lies inside ``root`` (already resolved)."""
    try:
        r = p.resolve()
    except (OSError, RuntimeError):
        return False
    return r == root or root in r.parents


def _children(d: Path, root: Path | None = None) -> list[Path]:
    """Sub-directories worth looking into, sorted by name; with ``root``, only those that
    stay inside it (a symbolic link out of the runs folder is not followed)."""
    try:
        kids = [c for c in d.iterdir() if c.is_dir()]
    except OSError:
        return []
    return sorted(
        (
            c
            for c in kids
            if not c.name.startswith(".")
            and c.name not in SKIP_DIRS
            and (root is None or _inside(c, root))
        ),
        key=lambda c: c.name,
    )


def find_runs(root: Path, max_depth: int = MAX_DEPTH) -> list[tuple[Path, str]]:
    """Every run (``"run"``) and group of runs (``"group"``, e.g. a grid search) under
    ``root``, as ``(path, kind)`` in a depth-first, name-sorted order."""

    def walk(d: Path, depth: int) -> list[tuple[Path, str]]:
        if depth > 0 and is_run(d):
            return [(d, "run")]
        if depth >= max_depth:
            return []
        inside = [x for c in _children(d, top) for x in walk(c, depth + 1)]
        if not inside or depth == 0:
            return inside
        return [(d, "group"), *inside]

    top = root.resolve()
    return walk(top, 0)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file, or None when it is missing, half-written or not an object."""
    try:
        data = json.loads(read_regular_text(path))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _number(text: str) -> float | int | str:
    """A CSV cell as int or float where it is one, else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_history(path: Path) -> list[dict[str, Any]]:
    """The complete rows of a ``history.csv``; a missing file gives ``[]`` and a row cut off
    mid-write (too few cells, or a cell that is no number) is left out."""
    try:
        text = read_regular_text(path)
    except (OSError, ValueError):  # missing, not a regular file, not UTF-8
        return []
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    header = rows[0]
    complete = text.endswith("\n")
    out = []
    for i, row in enumerate(rows[1:], 1):
        if len(row) != len(header) or (i == len(rows) - 1 and not complete):
            continue
        rec: dict[str, Any] = {}
        ok = True
        for k, v in zip(header, row, strict=True):
            if v == "":
                continue
            try:
                rec[k] = int(v) if k == "epoch" else float(v)
            except ValueError:
                ok = False
                break
        if ok and "epoch" in rec:
            out.append(rec)
    return out


def read_table(path: Path) -> list[dict[str, Any]]:
    """The rows of a results table (``results.csv`` of a grid search), numbers as numbers."""
    try:
        text = read_regular_text(path)
    except (OSError, ValueError):  # missing, not a regular file, not UTF-8
        return []
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error:
        return []
    return [{k: _number(v) for k, v in r.items() if k and v is not None} for r in rows]


def json_safe(v: Any) -> Any:
    """NaN and infinities as None (JSON has no NaN), recursively."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


def run_config(d: Path) -> dict[str, Any]:
    """A run's configuration: ``config.json`` when finished, else ``config.json.running``."""
    return read_json(d / "config.json") or read_json(d / "config.json.running") or {}


def run_status(d: Path) -> str:
    """``finished``, ``failed``, ``running`` (written to in the last two minutes),
    ``interrupted`` or ``unknown``."""
    if (d / "config.json").exists():
        return "finished"
    if (d / "FAILED.txt").exists():
        return "failed"
    if (d / "config.json.running").exists():
        latest = 0.0
        for f in ("history.csv", "config.json.running", "checkpoints/last.safetensors"):
            try:
                latest = max(latest, (d / f).stat().st_mtime)
            except OSError:
                pass
        return "running" if time.time() - latest < RUNNING_FRESH_S else "interrupted"
    return "unknown"


def is_detection(d: Path, cfg: dict[str, Any]) -> bool:
    """A detection run (TinyYOLO on digit scenes): ``detections.png``, a detection model or
    scene data in its configuration."""
    model = str(cfg.get("model", "")).lower()
    data = str(cfg.get("data", "")).lower()
    return (d / "detections.png").exists() or "yolo" in model or data.startswith("digit-scenes")


def run_info(root: Path, d: Path, kind: str) -> dict[str, Any]:
    """What the run list shows for one run or group."""
    name = d.relative_to(root.resolve()).as_posix()
    info: dict[str, Any] = {"name": name, "kind": kind}
    try:
        info["mtime"] = d.stat().st_mtime
    except OSError:
        info["mtime"] = 0.0
    if kind == "group":
        info["runs"] = sum(1 for c in _children(d) if is_run(c))
        info["grid"] = (d / "results.csv").exists()
        return info
    cfg = run_config(d)
    hist = read_history(d / "history.csv")
    last = hist[-1] if hist else {}
    info.update(
        status=run_status(d),
        model=cfg.get("model"),
        data=cfg.get("data"),
        epochs=len(hist),
        total_epochs=cfg.get("epochs"),
        val_acc=last.get("val_acc"),
        val_loss=last.get("val_loss"),
        test_accuracy=cfg.get("test_accuracy"),
        diagnosis=cfg.get("diagnosis"),
        detection=is_detection(d, cfg),
    )
    return json_safe(info)
