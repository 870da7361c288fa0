"""Run folders for the dashboard tests: a finished run, a grid search, a run being written,
a detection run, a broken one."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "serve"


def write_history(path: Path, records: list[dict[str, Any]], cut: int = 0) -> None:
    """A history.csv; ``cut`` characters removed from the end (a write caught half-way)."""
    cols = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time"]
    lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in records]
    text = "\n".join(lines) + "\n"
    path.write_text(text[: len(text) - cut] if cut else text)


def fake_records(n: int, scale: float = 1.0) -> list[dict[str, Any]]:
    """``n`` plausible epochs."""
    return [
        {"epoch": e, "train_loss": 2.0 * scale / e, "train_acc": 1 - 0.5 / e,
         "val_loss": 2.1 * scale / e, "val_acc": 1 - 0.3 * scale / e, "lr": 0.01, "time": 0.5}
        for e in range(1, n + 1)
    ]  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-epoch LeNet-5 run on the 8x8 digits (shared, never modified)."""
    from cnnkit.train.run import train_run

    out = tmp_path_factory.mktemp("trained") / "digits"
    train_run(out, data="digits", epochs=2, lr=3e-3, verbose=False)
    return out


def make_runs(root: Path, trained: Path) -> Path:
    """A runs folder with every kind of directory the dashboard meets."""
    shutil.copytree(trained, root / "digits")
    grid = root / "grid"
    rows = []
    for i, lr in enumerate((0.01, 0.03, 0.1)):
        d = grid / f"lr={lr:g}"
        d.mkdir(parents=True)
        write_history(d / "history.csv", fake_records(4, scale=1 + i))
        cfg = {
            "model": "lenet5",
            "data": "digits",
            "lr": lr,
            "epochs": 4,
            "batch_size": 64,
            "in_channels": 1,
            "input_size": 8,
            "num_classes": 10,
            "test_accuracy": 0.9 - i / 10,
        }
        (d / "config.json").write_text(json.dumps(cfg))  # fmt: skip
        rows.append({"run": d.name, "lr": lr, "val_acc": 0.86 - i / 10, "status": "trained"})
    with open(grid / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    writing = root / "writing"
    writing.mkdir()
    cfg = json.loads((trained / "config.json").read_text())
    (writing / "config.json.running").write_text(json.dumps(cfg)[:-1])  # half-written JSON too
    write_history(writing / "history.csv", fake_records(3), cut=9)
    det = root / "yolo"
    det.mkdir()
    (det / "config.json").write_text(json.dumps({"model": "tinyyolo", "data": "digit-scenes:x"}))
    from PIL import Image

    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(det / "detections.png")
    broken = root / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"\x00" * 20)
    (broken / "history.csv").write_text("epoch,train_loss\n1,abc\n2,")
    return root
