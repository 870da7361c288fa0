"""Looking inside models: layer summaries and gradient checks."""

from __future__ import annotations

import importlib
from typing import Any

from cnnkit.inspect.gradcheck import GradcheckError, gradcheck, gradcheck_module

__all__ = ["GradcheckError", "Summary", "gradcheck", "gradcheck_module", "summary"]


def __getattr__(name: str) -> Any:
    # summary needs cnnkit.nn; import it on first use
    if name in ("summary", "Summary"):
        value = getattr(importlib.import_module("cnnkit.inspect.summary"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnkit.inspect' has no attribute {name!r}")
