"""First-layer filters as an image grid, and activation maps of any layer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import nn
from cnnkit.autograd import no_grad
from cnnkit.tensor import Tensor
from cnnkit.viz._mpl import pyplot, save_figure
from cnnkit.viz.layers import capture, resolve_layer


def _grid(n: int, ncols: int | None = None) -> tuple[int, int]:
    """Rows and columns for ``n`` tiles."""
    cols = ncols or math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def filter_images(weight: np.ndarray) -> np.ndarray:
    """Conv weights ``(c_out, c_in, kh, kw)`` as images normalised to [0, 1] per filter.

    Returns ``(c_out, kh, kw, 3)`` for 3 input channels (RGB), else ``(c_out, c_in, kh, kw)``.
    """
    w = np.asarray(weight, dtype=np.float64)
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    hi = w.max(axis=(1, 2, 3), keepdims=True)
    w = (w - lo) / np.where(hi > lo, hi - lo, 1.0)
    return w.transpose(0, 2, 3, 1) if w.shape[1] == 3 else w


def plot_filters(conv: nn.Module, path: str | Path, ncols: int | None = None) -> np.ndarray:
    """Write a grid of a convolution's filters (RGB for 3-channel input) and return them.

    For other channel counts each filter shows its first input channel in grayscale.
    """
    weight = getattr(conv, "weight", None)
    if weight is None or weight.ndim != 4:
        raise ValueError(
            f"plot_filters: expected a Conv2d-like layer with a (c_out, c_in, kh, kw) weight; "
            f"got {type(conv).__name__}"
        )
    imgs = filter_images(weight.data)
    n = imgs.shape[0]
    rows, cols = _grid(n, ncols)
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            tile = imgs[i] if imgs.ndim == 4 and imgs.shape[-1] == 3 else imgs[i, 0]
            ax.imshow(tile, cmap=None if tile.ndim == 3 else "gray", interpolation="nearest")
            ax.set_title(str(i), fontsize=7)
    c_in, kh, kw = weight.shape[1:]
    kind = "RGB" if c_in == 3 else ("grayscale" if c_in == 1 else f"channel 0 of {c_in}")
    fig.suptitle(f"{n} filters {kh}x{kw} ({kind}, each scaled to its own range)")
    fig.tight_layout()
    save_figure(fig, path)
    return imgs


def _batch(image: Any) -> Tensor:
    """An image ``(c, h, w)`` or batch ``(1, c, h, w)`` as a float tensor batch."""
    arr = image.data if isinstance(image, Tensor) else np.asarray(image)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] != 1:
        raise ValueError(f"expected one image (c, h, w) or (1, c, h, w); got {arr.shape}")
    return Tensor(np.ascontiguousarray(arr))


def activations(model: nn.Module, image: Any, layer: int | str | nn.Module) -> np.ndarray:
    """The output of ``layer`` for one image, ``(channels, h, w)`` (or ``(features,)``)."""
    _, mod = resolve_layer(model, layer)
    was = model.training
    model.eval()
    try:
        with no_grad():
            act, _ = capture(model, mod, _batch(image))
    finally:
        model.train(was)
    return act.data[0]


def plot_activations(
    model: nn.Module,
    image: Any,
    layer: int | str | nn.Module,
    path: str | Path,
    max_maps: int = 32,
) -> np.ndarray:
    """Write the activation maps of ``layer`` for one image (with the image itself) as a PNG.

    Returns the activations ``(channels, h, w)``.
    """
    name, _ = resolve_layer(model, layer)
    act = activations(model, image, layer)
    if act.ndim != 3:
        raise ValueError(f"plot_activations: {name} outputs shape {act.shape}, not feature maps")
    n = min(max_maps, act.shape[0])
    rows, cols = _grid(n + 1)
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.5 * rows + 0.6), squeeze=False)
    img = _batch(image).data[0]
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i == 0:
            show = img.transpose(1, 2, 0) if img.shape[0] == 3 else img[0]
            ax.imshow(show, cmap=None if show.ndim == 3 else "gray")
            ax.set_title("input", fontsize=7)
        elif i <= n:
            ax.imshow(act[i - 1], cmap="viridis", interpolation="nearest")
            ax.set_title(f"ch {i - 1}", fontsize=7)
    fig.suptitle(f"Activations of {name}: {act.shape[0]} maps of {act.shape[1]}x{act.shape[2]}")
    fig.tight_layout()
    save_figure(fig, path)
    return act
