"""Every convolution's activation maps in one forward pass, and image tiles for displays.

Shared by the TensorBoard callback and the ``cnnkit serve`` dashboard, which show the
first layer's filters and the maps of every ``Conv2d`` as pictures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnkit import nn
from cnnkit.autograd import no_grad
from cnnkit.tensor import Tensor
from cnnkit.viz.layers import model_dtype


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(dotted name, module)`` of every ``Conv2d`` of ``model``, in definition order."""
    return [(n, m) for n, m in model.named_modules() if n and isinstance(m, nn.Conv2d)]


def conv_activations(
    model: nn.Module, image: Any
) -> tuple[list[tuple[str, np.ndarray]], np.ndarray]:
    """The output of every ``Conv2d`` for one image, and the model's output.

    Parameters
    ----------
    model : Module
        Any model; it runs in eval mode without a graph (its mode is restored).
    image : array or Tensor
        One image ``(c, h, w)`` or a batch of one ``(1, c, h, w)``.

    Returns
    -------
    maps : list of (str, np.ndarray)
        ``(layer name, activations (c_out, h_out, w_out))`` per convolution, in the
        order the forward pass ran them.
    output : np.ndarray
        The model's output for the image, ``(num_outputs,)``.
    """
    arr = image.numpy() if isinstance(image, Tensor) else np.asarray(image)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] != 1:
        raise ValueError(f"conv_activations: expected one image (c, h, w); got shape {arr.shape}")
    x = Tensor(np.ascontiguousarray(arr, dtype=model_dtype(model)))
    seen: list[tuple[str, np.ndarray]] = []

    def hook_for(name: str) -> Any:
        def hook(m: nn.Module, inputs: tuple, output: Tensor) -> None:
            seen.append((name, np.array(output.numpy()[0], dtype=np.float32)))

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in conv_layers(model)]
    was = model.training
    model.eval()
    try:
        with no_grad():
            out = model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return seen, np.array(out.numpy()[0], dtype=np.float32)


def normalise(a: np.ndarray, per_item: bool = False) -> np.ndarray:
    """Scale to [0, 1]: over the whole array, or per leading item with ``per_item``
    (a constant array or item becomes 0)."""
    a = np.asarray(a, dtype=np.float64)
    axes = tuple(range(1, a.ndim)) if per_item else None
    lo = a.min(axis=axes, keepdims=True)
    hi = a.max(axis=axes, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(hi > lo, (a - lo) / span, 0.0)


def tile(
    images: np.ndarray, ncols: int | None = None, scale: int = 1, pad: int = 1, fill: float = 1.0
) -> np.ndarray:
    """Lay ``n`` images side by side in a grid.

    Parameters
    ----------
    images : np.ndarray
        ``(n, h, w)`` grayscale or ``(n, h, w, 3)`` colour images, values in [0, 1].
    ncols : int, optional
        Columns (default: about a square grid).
    scale : int
        Each pixel becomes a ``scale x scale`` block (nearest neighbour), so that small
        filters and maps are visible.
    pad : int
        Pixels of ``fill`` between and around the tiles.

    Returns
    -------
    np.ndarray
        ``(rows * (h*scale + pad) + pad, cols * (w*scale + pad) + pad[, 3])``.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"tile: expected (n, h, w) or (n, h, w, 3) images; got {images.shape}")
    if scale < 1 or pad < 0:
        raise ValueError(f"tile: scale must be >= 1 and pad >= 0; got {scale}, {pad}")
    n, h, w = images.shape[:3]
    cols = ncols or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = h * scale, w * scale
    shape = (rows * (th + pad) + pad, cols * (tw + pad) + pad, *images.shape[3:])
    out = np.full(shape, fill, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (th + pad), pad + c * (tw + pad)
        out[y : y + th, x : x + tw] = images[i]
    return out


def display_scale(side: int, target: int = 48) -> int:
    """An integer zoom that makes a ``side``-pixel tile about ``target`` pixels wide."""
    return max(1, round(target / max(side, 1)))
