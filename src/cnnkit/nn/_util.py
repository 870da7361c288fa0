"""Helpers shared by the layer modules: dtype/device arguments, input checks."""

from __future__ import annotations

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
    return Parameter(np.zeros(shape, dtype=dt))


def check_input(x: Any, layer: Any, ndims: tuple[int, ...], expected: str) -> None:
    """Raise a TypeError/ValueError naming the layer (its repr, built only on error) unless
    ``x`` is a Tensor of an accepted rank."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer!r} expects a cnnkit Tensor; got {type(x).__name__}")
    if x.ndim not in ndims:
        raise ValueError(f"{layer!r} expects input {expected}; got {tuple(x.shape)}")
