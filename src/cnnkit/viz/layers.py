"""Finding a layer of a model by index, name or object, and capturing its output."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


class _Stop(Exception):
    """Raised by the capture hook to end the forward pass at the captured layer."""


def capture(
    model: nn.Module, layer: nn.Module, x: Tensor, stop: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Run ``model(x)`` and return ``(layer_output, model_output)``.

    With ``stop=True`` the forward pass ends right after ``layer`` (the model output is
    then None): the later layers cost nothing and need not fit the input size (a
    fully connected head on a smaller image, as in DeepDream's octaves).
    """
    box: dict[str, Any] = {}

    def hook(m: nn.Module, inputs: tuple, output: Tensor) -> None:
        box["out"] = output
        if stop:
            raise _Stop

    handle = layer.register_forward_hook(hook)
    out = None
    try:
        out = model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if "out" not in box:
        raise ValueError(f"{type(layer).__name__} was not called in the forward pass")
    return box["out"], out


def model_dtype(model: nn.Module) -> Any:
    """The dtype of a model's first floating parameter (the default dtype if none)."""
    from cnnkit import backend

    for p in model.parameters():
        if p.dtype.kind == "f":
            return p.dtype
    return backend.get_default_dtype()


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with every parameter's ``requires_grad`` off (gradients reach the input
    only; the parameters' own ``.grad`` are left alone); both restored on exit."""
    was = model.training
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    model.eval()
    for p in params:
        p.requires_grad = False
    try:
        yield model
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad = f
        model.train(was)
