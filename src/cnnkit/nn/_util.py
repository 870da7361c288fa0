"""Helpers shared by the layer modules: dtype/device arguments, input checks."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from cnnkit import backend
from cnnkit.nn.module import Parameter
from cnnkit.tensor import Tensor


def empty_param(shape: tuple[int, ...], dtype: Any, device: Any, where: str) -> Parameter:
    """A new parameter of the requested float dtype: zeros on 'cpu'; on 'meta' only a
    shape and a dtype (no memory, initialisers skip it)."""
    dev = backend.check_device(device, where)
    dt = backend.resolve_dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"{where}: dtype must be floating point; got {dt}")
    if dev == "meta":
        return Parameter(backend.meta_array(shape, dt))
    budget = getattr(_budget, "left", None)
    if budget is not None:  # a dry run: count, raise past the limit, allocate nothing
        n = math.prod(int(s) for s in shape)
        _budget.left = budget - n
        if n > budget:
            from cnnkit import limits

            limits.check(f"{_budget.where} ({where} asks for shape {tuple(shape)})",
                         _budget.total + n - budget, "MAX_PARAMETERS", "parameters")  # fmt: skip
        return Parameter(backend.meta_array(shape, dt))
    return Parameter(np.zeros(shape, dtype=dt))


_budget = threading.local()  # .left, .total, .where while parameter_budget() is active


@contextlib.contextmanager
def parameter_budget(where: str) -> Iterator[None]:
    """A dry run of model construction: inside, new parameters are 'meta' (no memory)
    and count against :data:`cnnkit.limits.MAX_PARAMETERS`; the layer that would exceed
    it raises :class:`~cnnkit.limits.LimitError`. Build the model inside first (what it
    makes there is to be thrown away), then for real (used when a model is rebuilt from
    an untrusted file)."""
    from cnnkit import limits

    prev = (
        getattr(_budget, "left", None),
        getattr(_budget, "total", 0),
        getattr(_budget, "where", ""),
    )
    _budget.left = _budget.total = int(limits.MAX_PARAMETERS)
    _budget.where = where
    try:
        yield
    finally:
        _budget.left, _budget.total, _budget.where = prev


def check_input(x: Any, layer: Any, ndims: tuple[int, ...], expected: str) -> None:
    """Raise a TypeError/ValueError naming the layer (its repr, built only on error) unless
    ``x`` is a Tensor of an accepted rank."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer!r} expects a cnnkit Tensor; got {type(x).__name__}")
    if x.ndim not in ndims:
        raise ValueError(f"{layer!r} expects input {expected}; got {tuple(x.shape)}")
