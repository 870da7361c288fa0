"""The live dashboard of ``cnnkit serve`` (a Starlette app; needs the ``[dashboard]`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install 'cnnkit[dashboard]' (starlette and uvicorn)"


def create_app(runs_dir: str | Path) -> Any:
    """The dashboard app (an ASGI application) for the runs under ``runs_dir``."""
    from cnnkit.serve.app import create_app as _create

    return _create(runs_dir)


def serve(runs_dir: str | Path = "runs", host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the dashboard until interrupted (binds 127.0.0.1 unless told otherwise)."""
    import uvicorn

    app = create_app(runs_dir)
    print(f"cnnkit serve: {Path(runs_dir)} on http://{host}:{port}/  (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=1)


__all__ = ["INSTALL_HINT", "create_app", "serve"]
