"""``cnnkit serve [RUNS_DIR] [--port 8000] [--host 127.0.0.1]``."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``cnnkit serve``."""
    p.add_argument("runs_dir", nargs="?", default="runs", help="folder of runs (default runs)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only)",
    )


def run(args: argparse.Namespace) -> int:
    """Check the arguments, then serve until interrupted."""
    from cnnkit.serve import INSTALL_HINT, serve

    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"cnnkit serve needs {', '.join(missing)}: {INSTALL_HINT}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0..65535; got {args.port}")
    from cnnkit.serve.runs import is_run

    folder = Path(args.runs_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{args.runs_dir}: no such folder of runs")
    if is_run(folder):
        parent = folder.resolve().parent
        raise ValueError(
            f"{args.runs_dir} is one run directory; give the folder that holds the runs: "
            f"cnnkit serve {parent}"
        )
    serve(args.runs_dir, host=args.host, port=args.port)
    return 0
