"""Describe a model's architecture as JSON and rebuild it.

Works for the zoo models (which keep their constructor arguments in ``config``),
for built-in layers (whose constructor arguments are attributes of the same name,
as in PyTorch) and for ``Sequential`` containers of those. Custom Module subclasses
are not described; pass an instance to :func:`cnnkit.io.load` instead.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from cnnkit import nn
from cnnkit.tensor import Tensor

_SKIP = {"self", "device", "dtype"}


def _layer_classes() -> dict[str, type]:
    """Built-in layer classes by name."""
    out = {}
    for name in dir(nn):
        obj = getattr(nn, name)
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            out[name] = obj
    return out


def _zoo_classes() -> dict[str, type]:
    """Zoo model classes by class name."""
    from cnnkit.models import MODELS

    return {cls.__name__: cls for cls in MODELS.values()}


def _jsonable(v: Any) -> Any:
    """Constructor argument as JSON (tuples become lists), or raise TypeError."""
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    raise TypeError(f"cannot describe a constructor argument of type {type(v).__name__}")


def _dtype_of(module: nn.Module) -> str | None:
    """The dtype of a module's first floating parameter or buffer."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dtype.kind == "f":
            return str(t.dtype)
    return None


def describe(module: nn.Module) -> dict[str, Any] | None:
    """A JSON-able description from which :func:`build` recreates ``module``; None if unknown."""
    cls = type(module)
    zoo = _zoo_classes()
    if cls.__name__ in zoo and zoo[cls.__name__] is cls and hasattr(module, "config"):
        return {"kind": "zoo", "type": cls.__name__, "config": _jsonable(module.config)}
    if cls is nn.Sequential:
        children = []
        for name, child in module.named_children():
            d = describe(child)
            if d is None:
                return None
            children.append([name, d])
        return {"kind": "sequential", "type": "Sequential", "children": children}
    layers = _layer_classes()
    if layers.get(cls.__name__) is not cls:
        return None
    args: dict[str, Any] = {}
    for pname, p in inspect.signature(cls.__init__).parameters.items():
        if pname in _SKIP or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if pname == "bias" and isinstance(p.default, bool):
            args["bias"] = getattr(module, "bias", None) is not None
            continue
        if pname == "affine" and not hasattr(module, "affine"):
            args["affine"] = getattr(module, "weight", None) is not None
            continue
        if hasattr(module, pname):
            value = getattr(module, pname)
            if isinstance(value, (nn.Module, Tensor)):
                return None
            try:
                args[pname] = _jsonable(value)
            except TypeError:
                return None
        elif p.default is inspect.Parameter.empty:
            return None
    desc: dict[str, Any] = {"kind": "layer", "type": cls.__name__, "args": args}
    dtype = _dtype_of(module)
    if dtype is not None:
        desc["dtype"] = dtype
    return desc


def build(desc: dict[str, Any]) -> nn.Module:
    """Recreate a module (with fresh parameters) from :func:`describe`'s output."""
    kind = desc.get("kind")
    if kind == "zoo":
        zoo = _zoo_classes()
        if desc["type"] not in zoo:
            raise ValueError(f"unknown zoo model {desc['type']!r}; known: {sorted(zoo)}")
        return zoo[desc["type"]](**desc.get("config", {}))
    if kind == "sequential":
        from collections import OrderedDict

        return nn.Sequential(OrderedDict((name, build(d)) for name, d in desc["children"]))
    if kind == "layer":
        layers = _layer_classes()
        if desc["type"] not in layers:
            raise ValueError(f"unknown layer {desc['type']!r}")
        cls = layers[desc["type"]]
        kwargs = dict(desc.get("args", {}))
        params = inspect.signature(cls.__init__).parameters
        if "dtype" in params and desc.get("dtype"):
            kwargs["dtype"] = desc["dtype"]
        for k, v in list(kwargs.items()):
            if isinstance(v, list):
                kwargs[k] = tuple(v)
        return cls(**kwargs)
    raise ValueError(f"unknown architecture description kind {kind!r}")
