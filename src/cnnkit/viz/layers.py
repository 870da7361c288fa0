"""Finding a layer of a model by index, name or object, and capturing its output."""

from __future__ import annotations

from typing import Any

from cnnkit import nn
from cnnkit.tensor import Tensor


def resolve_layer(model: nn.Module, layer: int | str | nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` for an index into a Sequential, a dotted name, or a module.

    Raises a ValueError listing the available names when the layer does not exist.
    """
    named = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, m in named.items():
            if m is layer:
                return name or type(model).__name__, m
        raise ValueError(f"{type(layer).__name__} is not a layer of {type(model).__name__}")
    if isinstance(layer, int):
        seq = model if isinstance(model, nn.Sequential) else None
        if seq is None:
            raise ValueError(
                f"layer index {layer} needs an nn.Sequential model; use a name for "
                f"{type(model).__name__} (one of {_names(named)})"
            )
        if not -len(seq) <= layer < len(seq):
            raise ValueError(f"layer index {layer} out of range for {len(seq)} layers")
        m = seq[layer]
        return resolve_layer(model, m)
    if isinstance(layer, str):
        if layer in named and layer:
            return layer, named[layer]
        raise ValueError(f"no layer named {layer!r}; available: {_names(named)}")
    raise TypeError(f"layer must be an int, a name or a Module; got {type(layer).__name__}")


def _names(named: dict[str, nn.Module]) -> str:
    """A short list of layer names for error messages."""
    names = [n for n in named if n]
    return ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")


def capture(model: nn.Module, layer: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``model(x)`` and return ``(layer_output, model_output)``."""
    box: dict[str, Any] = {}

    def hook(m: nn.Module, inputs: tuple, output: Tensor) -> None:
        box["out"] = output

    handle = layer.register_forward_hook(hook)
    try:
        out = model(x)
    finally:
        handle.remove()
    if "out" not in box:
        raise ValueError(f"{type(layer).__name__} was not called in the forward pass")
    return box["out"], out
