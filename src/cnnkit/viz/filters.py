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
from cnnkit.viz.layers import capture, model_dtype, resolve_layer


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


def plot_filters(
    conv: nn.Module, path: str | Path, ncols: int | None = None, title: str | None = None
) -> np.ndarray:
    """Write a grid of a convolution's filters (RGB for 3-channel input) and return them.

    Each filter is scaled to its own range (black/dark = its most negative weight,
    white/bright = its most positive). For input channel counts other than 1 and 3
    each tile shows the filter's first input channel in grayscale.

    Returns
    -------
    np.ndarray
        :func:`filter_images` of the weights: ``(c_out, kh, kw, 3)`` for RGB filters,
        else ``(c_out, c_in, kh, kw)``, each filter in [0, 1].
    """
    weight = getattr(conv, "weight", None)
    if weight is None or weight.ndim != 4:
        raise ValueError(
            f"plot_filters: expected a Conv2d-like layer with a (c_out, c_in, kh, kw) weight; "
            f"got {type(conv).__name__}"
        )
    imgs = filter_images(weight.array)
    n = imgs.shape[0]
    rows, cols = _grid(n, ncols)
    plt = pyplot()
    fig, axes = plt.subplots(
        rows, cols, figsize=(max(4.0, 1.1 * cols), 1.1 * rows + 0.9), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            tile = imgs[i] if imgs.shape[-1] == 3 and imgs.ndim == 4 else imgs[i, 0]
            ax.imshow(
                tile, cmap=None if tile.ndim == 3 else "gray", vmin=0, vmax=1,
                interpolation="nearest",
            )  # fmt: skip
            ax.set_title(f"#{i}", fontsize=8)
    c_in, kh, kw = weight.shape[1:]
    kind = "RGB" if c_in == 3 else ("grayscale" if c_in == 1 else f"input channel 0 of {c_in}")
    sub = f"{n} filters of {kh}x{kw} ({kind}); each scaled to its own range, dark = negative"
    fig.suptitle(f"{title}\n{sub}" if title else sub, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return imgs


def _display(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An image ``(c, h, w)`` for imshow: ``(h, w, 3)`` scaled to [0, 1] for RGB (imshow
    clips RGB floats outside [0, 1], e.g. normalised inputs), else ``(h, w)`` in gray."""
    if img.shape[0] == 3:
        lo, hi = float(img.min()), float(img.max())
        rgb = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        return rgb.transpose(1, 2, 0), None
    return img[0], "gray"


def _batch(image: Any, dtype: Any = None) -> Tensor:
    """An image ``(c, h, w)`` or batch ``(1, c, h, w)`` as a tensor batch (cast to ``dtype``,
    the model's, so that a float64 image meets float32 weights without a dtype error)."""
    arr = image.array if isinstance(image, Tensor) else np.asarray(image)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] != 1:
        raise ValueError(f"expected one image (c, h, w) or (1, c, h, w); got {arr.shape}")
    if dtype is None and arr.dtype.kind != "f":
        dtype = np.float32
    return Tensor(np.ascontiguousarray(arr, dtype=dtype))


def activations(model: nn.Module, image: Any, layer: int | str | nn.Module) -> np.ndarray:
    """The output of ``layer`` for one image, ``(channels, h, w)`` (or ``(features,)``)."""
    _, mod = resolve_layer(model, layer)
    was = model.training
    model.eval()
    try:
        with no_grad():
            act, _ = capture(model, mod, _batch(image, model_dtype(model)), stop=True)
    finally:
        model.train(was)
    return act.array[0]


def plot_activations(
    model: nn.Module,
    image: Any,
    layer: int | str | nn.Module,
    path: str | Path,
    max_maps: int = 32,
    title: str | None = None,
) -> np.ndarray:
    """Write the activation maps of ``layer`` for one image (with the image itself) as a PNG.

    All maps share one colour scale (with a colour bar), so that strong and weak channels
    can be told apart; at most ``max_maps`` are drawn.

    Returns
    -------
    np.ndarray
        All the activations ``(channels, h, w)``.
    """
    name, mod = resolve_layer(model, layer)
    act = activations(model, image, layer)
    if act.ndim != 3:
        raise ValueError(
            f"plot_activations: {name} outputs shape {tuple(act.shape)}, not feature maps"
        )
    n = min(max_maps, act.shape[0])
    rows, cols = _grid(n + 1)
    plt = pyplot()
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.6 * cols + 1.2, 1.6 * rows + 0.9), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    show, cmap = _display(_batch(image).array[0])
    lo, hi = float(act[:n].min()), float(act[:n].max())
    if hi <= lo:
        hi = lo + 1.0
    im = None
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            ax.imshow(show, cmap=cmap)
            ax.set_title("input", fontsize=8, fontweight="bold")
        elif i <= n:
            im = ax.imshow(act[i - 1], cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(f"channel {i - 1}", fontsize=8)
        else:
            ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="activation")
    c, h, w = act.shape
    shown = f"{c} maps" if n == c else f"first {n} of {c} maps"
    head = f"Activations of layer {name} ({type(mod).__name__}): {shown} of {h}x{w}"
    fig.suptitle(f"{head}\n{title}" if title else head, fontsize=10)
    save_figure(fig, path)
    return act
