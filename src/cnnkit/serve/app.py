"""``cnnkit serve``: a small Starlette app showing the runs of a folder, live.

Pages (one HTML shell; the page's script asks the JSON API below and draws everything
itself -- every asset is in ``cnnkit/serve/static``, nothing comes from the internet):

- ``/``: the list of runs and groups of runs (grid searches), refreshed every 2 s;
- ``/run/NAME``: one run (curves updating while it trains, diagnosis, layer table,
  filters, activation maps, the draw-a-digit canvas, detections) or one group (all
  validation curves overlaid, the results table sortable).

JSON API: ``/api/runs``, ``/api/run/NAME`` (with ``/history``, ``/summary``,
``/filters``, ``/activations?index=I``, and ``POST /predict`` for a drawing) and
``/file/NAME/PICTURE.png``.

The app only reads the runs folder. A name that leaves it (``..``, an absolute path, a
symbolic link pointing out) is answered 404 like a missing run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cnnkit.serve import inference, runs

STATIC = Path(__file__).parent / "static"
PICTURES = (".png",)
MAX_DRAWING_BYTES = 2_000_000


class NotFound(Exception):
    """Answered with 404."""


def _json(data: Any, status: int = 200) -> JSONResponse:
    """A JSON response that is never cached (the runs change under the page)."""
    body = runs.json_safe(data)
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def create_app(runs_dir: str | Path) -> Starlette:
    """The dashboard app for the runs under ``runs_dir``.

    Raises
    ------
    FileNotFoundError
        ``runs_dir`` is not a folder.
    """
    root = Path(runs_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"cnnkit serve: {runs_dir} is not a folder of runs")
    shell = (STATIC / "app.html").read_text()

    def locate(name: str, kind: str | None = None) -> Path:
        p = runs.safe_path(root, name)
        if p is None or not p.is_dir():
            raise NotFound(name)
        if kind == "run" and not runs.is_run(p):
            raise NotFound(name)
        return p

    async def page(request: Request) -> Response:
        name = request.path_params.get("name")
        if name is not None:
            await run_in_threadpool(locate, name)
        return HTMLResponse(shell, headers={"Cache-Control": "no-store"})

    def api_runs(request: Request) -> JSONResponse:
        items = [runs.run_info(root, d, kind) for d, kind in runs.find_runs(root)]
        return _json({"root": str(runs_dir), "runs": items})

    def api_run(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        d = locate(name)
        kind = "run" if runs.is_run(d) else "group"
        info = runs.run_info(root, d, kind)
        if kind == "group":
            info.update(_group(root, d))
            return _json(info)
        cfg = runs.run_config(d)
        geo = inference.input_geometry(d)
        info.update(
            config=cfg,
            drawable=geo in ((1, 28), (1, 8)) and not info.get("detection"),
            input=list(geo) if geo else None,
            pictures=[f.name for f in sorted(d.glob("*.png"))],
            failed=_read_text(d / "FAILED.txt", 2000),
            report=_read_text(d / "report.txt", 20000),
        )
        return _json(info)

    def api_history(request: Request) -> JSONResponse:
        d = locate(request.path_params["name"], "run")
        records = runs.read_history(d / "history.csv")
        cfg = runs.run_config(d)
        return _json({"records": records, "diagnosis": _diagnosis(records),
                      "status": runs.run_status(d), "total_epochs": cfg.get("epochs")})  # fmt: skip

    def api_summary(request: Request) -> JSONResponse:
        d = locate(request.path_params["name"], "run")
        table = _try(inference.summary_table, d)
        if table is None:
            return _json({"available": False, "reason": "no weights yet"})
        return _json({"available": True, **table})

    def api_filters(request: Request) -> JSONResponse:
        d = locate(request.path_params["name"], "run")
        f = _try(inference.filters, d)
        if f is None:
            return _json({"available": False, "reason": "no weights or no convolution yet"})
        return _json({"available": True, **f})

    def api_activations(request: Request) -> JSONResponse:
        d = locate(request.path_params["name"], "run")
        try:
            index = int(request.query_params.get("index", "0"))
        except ValueError:
            return _json({"error": "index must be an integer"}, 400)
        sample = _try(inference.test_image, d, index)
        if sample is None:
            reason = "the run's test data cannot be read from here"
            return _json({"available": False, "reason": reason})
        image, label = sample
        acts = _try(inference.activations, d, image)
        if acts is None:
            return _json({"available": False, "reason": "no weights yet"})
        classes = runs.run_config(d).get("classes") or []

        def name(k: int) -> str:
            return str(classes[k]) if 0 <= k < len(classes) else str(k)

        if isinstance(label, dict):  # a detection run: the scene, its digits and the boxes
            truth = [{"box": [float(v) for v in b], "label": name(int(k))}
                     for b, k in zip(label["boxes"], label["labels"], strict=True)]  # fmt: skip
            boxes = _try(inference.detections, d, image) or []
            shown = f"{len(truth)} digits: " + ", ".join(t["label"] for t in truth)
            return _json({"available": True, "index": index, "label": shown,
                          "truth": truth, "boxes": boxes, **acts})  # fmt: skip
        return _json({"available": True, "index": index, "label": name(label), **acts})

    async def api_predict(request: Request) -> JSONResponse:
        d = await run_in_threadpool(locate, request.path_params["name"], "run")
        body = await request.body()
        if len(body) > MAX_DRAWING_BYTES:
            return _json({"error": "drawing too large"}, 413)
        try:
            data_url = json.loads(body)["image"]
            if not isinstance(data_url, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _json({"error": 'expected JSON {"image": "data:image/png;base64,..."}'}, 400)
        try:
            x = await run_in_threadpool(inference.prepare_drawing, d, data_url)
        except ValueError as e:
            return _json({"error": str(e)}, 400)
        if x is None:
            return _json({"available": False, "reason": "the canvas is empty"})
        acts = await run_in_threadpool(_try, inference.activations, d, x)
        if acts is None:
            return _json({"available": False, "reason": "no weights yet"})
        return _json({"available": True, **acts})

    def file(request: Request) -> Response:
        name = request.path_params["name"]
        p = runs.safe_path(root, name)
        if p is None or not p.is_file() or p.suffix.lower() not in PICTURES:
            raise NotFound(name)
        return FileResponse(p, headers={"Cache-Control": "no-cache"})

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(("/api/", "/file/")):
            return _json({"error": "not found"}, 404)
        return HTMLResponse("<!doctype html><title>not found</title><p>not found</p>", 404)

    routes = [
        Route("/", page),
        Route("/run/{name:path}", page),
        Route("/api/runs", api_runs),
        Route("/api/run/{name:path}/history", api_history),
        Route("/api/run/{name:path}/summary", api_summary),
        Route("/api/run/{name:path}/filters", api_filters),
        Route("/api/run/{name:path}/activations", api_activations),
        Route("/api/run/{name:path}/predict", api_predict, methods=["POST"]),
        Route("/api/run/{name:path}", api_run),
        Route("/file/{name:path}", file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={NotFound: not_found, 404: not_found})


def _try(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or None when a run being written makes it fail for now."""
    try:
        return fn(*args)
    except (OSError, ValueError, KeyError, IndexError, RuntimeError):
        return None


def _read_text(path: Path, limit: int) -> str | None:
    """The first ``limit`` characters of a text file, or None."""
    from cnnkit.io.reading import open_regular

    try:
        with open_regular(path) as f:  # a FIFO or device here must not hang the server
            return f.read(4 * limit).decode("utf-8", errors="replace")[:limit]
    except (OSError, ValueError):
        return None


def _diagnosis(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """:func:`cnnkit.train.diagnose` of the history so far, as verdict and sentence."""
    if not records:
        return None
    from cnnkit.train import History, diagnose

    try:
        d = diagnose(History(records))
    except Exception as e:  # a history the diagnosis cannot read yet: say so, do not fail
        return {"verdict": "", "text": f"no diagnosis yet ({type(e).__name__})"}
    return {"verdict": str(getattr(d, "verdict", "")), "text": str(d),
            "explanation": str(getattr(d, "explanation", ""))}  # fmt: skip


def _group(root: Path, d: Path) -> dict[str, Any]:
    """A group's runs: validation curves to overlay, and the results table (``results.csv``
    of a grid search, else one row per run from its history)."""
    curves = []
    rows = []
    for c, kind in runs.find_runs(d, max_depth=1):
        if kind != "run":
            continue
        hist = runs.read_history(c / "history.csv")
        name = c.name
        curves.append({
            "run": name,
            "path": c.relative_to(root).as_posix(),
            "epoch": [r.get("epoch") for r in hist],
            "val_acc": [r.get("val_acc") for r in hist],
            "val_loss": [r.get("val_loss") for r in hist],
        })  # fmt: skip
        cfg = runs.run_config(c)
        last = hist[-1] if hist else {}
        rows.append({"run": name, "status": runs.run_status(c), "epochs": len(hist),
                     "lr": cfg.get("lr"), "batch_size": cfg.get("batch_size"),
                     "val_acc": last.get("val_acc"), "val_loss": last.get("val_loss"),
                     "test_accuracy": cfg.get("test_accuracy")})  # fmt: skip
    table = runs.read_table(d / "results.csv")
    return {"curves": curves, "results": table or rows, "results_file": bool(table)}
