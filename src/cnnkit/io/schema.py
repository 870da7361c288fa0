"""Validate JSON read from files against what cnnkit writes, before it is used.

Each check names the file and the field (``config.json: field 'epochs'``), what was
expected and what was found, and raises the error type the caller chose (a
:class:`~cnnkit.io.checkpoint.CheckpointError` for checkpoints, ``ValueError`` for run
directories), so no ``KeyError``/``TypeError``/``AttributeError`` from a malformed file
reaches a user.
"""

from __future__ import annotations

import math
from typing import Any

_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_NAMES.get(type(value), type(value).__name__)} ({text})"


class Schema:
    """Checks of the fields of one file; ``error`` is the exception type raised."""

    def __init__(self, file: Any, error: type[Exception] = ValueError) -> None:
        self.file = str(file)
        self.error = error

    def fail(self, field: str, expected: str, value: Any = ..., found: str | None = None) -> None:
        got = found if found is not None else ("missing" if value is ... else _describe(value))
        raise self.error(f"{self.file}: field {field!r}: expected {expected}; got {got}")

    def obj(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field, "an object", value)
        return value

    def get(
        self,
        d: dict[str, Any],
        key: str,
        kind: str,
        field: str | None = None,
        required: bool = True,
        default: Any = None,
        **bounds: Any,
    ) -> Any:
        """``d[key]`` checked to be of ``kind`` (bool, int, number, str, list, object,
        str|null, object|null, ...) and within ``min``/``max``/``choices``."""
        field = field or key
        if key not in d:
            if required:
                self.fail(field, _kind_text(kind))
            return default
        return self.value(d[key], kind, field, **bounds)

    def value(self, v: Any, kind: str, field: str, **bounds: Any) -> Any:
        kinds = kind.split("|")
        if not any(_is(v, k) for k in kinds):
            self.fail(field, _kind_text(kind), v)
        if v is None:
            return v
        lo, hi, choices = bounds.get("min"), bounds.get("max"), bounds.get("choices")
        if lo is not None and v < lo:
            self.fail(field, f"{_kind_text(kind)} >= {lo}", v)
        if hi is not None and v > hi:
            self.fail(field, f"{_kind_text(kind)} <= {hi}", v)
        if choices is not None and v not in choices:
            self.fail(field, "one of " + ", ".join(map(repr, choices)), v)
        return v


def _is(v: Any, kind: str) -> bool:
    if kind == "null":
        return v is None
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if kind == "str":
        return isinstance(v, str)
    if kind == "list":
        return isinstance(v, list)
    if kind == "object":
        return isinstance(v, dict)
    if kind == "any":
        return True
    raise AssertionError(kind)


def _kind_text(kind: str) -> str:
    words = {
        "null": "null",
        "bool": "a boolean",
        "int": "an integer",
        "number": "a finite number",
        "str": "a string",
        "list": "a list",
        "object": "an object",
        "any": "a value",
    }
    return " or ".join(words[k] for k in kind.split("|"))
