"""`make demo`: train a LeNet-5-style CNN on the embedded 8x8 digits and write a run directory.

No download needed: the digits (1,797 images) ship with scikit-learn.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path

from cnnkit.train.run import train_run

# the demo's run; tests/train/test_learning.py checks this very configuration
DEMO_CONFIG = {
    "model": "lenet5",
    "data": "digits",
    "epochs": 30,
    "batch_size": 32,
    "lr": 0.05,
    "optimizer": "sgd",
    "weight_decay": 1e-3,
    "scheduler": "cosine",
    "augment": True,
    "model_kwargs": {"channels": (16, 32)},
    "seed": 0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/demo", help="run directory (replaced if present)")
    parser.add_argument("--epochs", type=int, default=DEMO_CONFIG["epochs"])
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    # TensorBoard logs too when the [dashboard] extra is installed (`make demo` installs it)
    tensorboard = importlib.util.find_spec("tensorboardX") is not None
    s = train_run(out, **{**DEMO_CONFIG, "epochs": args.epochs}, tensorboard=tensorboard)
    print()
    print(f"LeNet-5, 16/32 filters ({s['parameters']:,} parameters) on the 8x8 digits")
    print(f"training time   {s['train_seconds']:.1f} s ({time.perf_counter() - t0:.1f} s in all)")
    print(f"test accuracy   {s['test_accuracy']:.2%} on {s['num_classes']} classes")
    print(f"diagnosis       {s['diagnosis_text']}")
    print(f"run directory   {out}/ (model.safetensors, history.csv, curves.png, ...)")
    if tensorboard:
        serve, board = _command("cnnkit"), _command("tensorboard")
        print(f"look at it      {serve} serve {out.parent}")
        print(f"            or  {board} --logdir {out.parent}")


def _command(name: str) -> str:
    """How to type the venv's ``name`` here: bare when the shell finds this very one
    (the venv is active), else its path (``.venv/bin/cnnkit`` after ``make demo``)."""
    here = Path(sys.executable).parent / name
    found = shutil.which(name)
    if found and Path(found).resolve() == here.resolve():
        return name
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return str(here)


if __name__ == "__main__":
    main()
