"""matplotlib with the file-only Agg backend (no screen needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """Import pyplot on the Agg backend (lazily: matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure_format(fig: Any, path: str | Path) -> str:
    """The file format a picture's name asks for: its suffix (``.png``, ``.jpg``,
    ``.pdf``, ``.svg``, ...; PNG without one). A suffix matplotlib cannot write is a
    ValueError naming the formats it can."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if not suffix:
        return "png"
    known = fig.canvas.get_supported_filetypes()
    if suffix not in known:
        pyplot().close(fig)
        raise ValueError(
            f"{path}: cannot write a picture as .{suffix}; use one of "
            f"{', '.join('.' + k for k in sorted(known))}"
        )
    return suffix


def save_figure(
    fig: Any, path: str | Path, dpi: int = 120, bbox_inches: str | None = "tight"
) -> Path:
    """Save a figure atomically, in the format its suffix names (see
    :func:`figure_format`), and close it."""
    from cnnkit.io.atomic import atomic_write

    path = Path(path)
    fmt = figure_format(fig, path)
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format=fmt, dpi=dpi, bbox_inches=bbox_inches)
    finally:
        pyplot().close(fig)
    return path
