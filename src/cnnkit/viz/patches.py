"""The input patches that excite each channel most (Zeiler & Fergus, 2014, fig. 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import nn
from cnnkit.autograd import no_grad
from cnnkit.tensor import Tensor
from cnnkit.viz._mpl import pyplot, save_figure
from cnnkit.viz.layers import capture, model_dtype, resolve_layer


@dataclass
class TopPatches:
    """What :func:`top_patches` found.

    Attributes
    ----------
    layer : str
        The layer's dotted name.
    patches : np.ndarray, shape (channels, k, c, rf_h, rf_w)
        The input patches (the receptive field of the maximising position), zero where
        the field hangs over the image's border.
    scores : np.ndarray, shape (channels, k)
        The activations, best first.
    index : np.ndarray, shape (channels, k)
        Dataset index of each patch's image.
    boxes : np.ndarray, shape (channels, k, 4)
        ``(top, left, bottom, right)`` of each patch in its image (may reach outside).
    """

    layer: str
    patches: np.ndarray
    scores: np.ndarray
    index: np.ndarray
    boxes: np.ndarray


def _field(model: nn.Module, name: str, mod: nn.Module, shape: tuple[int, ...]) -> tuple:
    """Receptive field size, jump and start of ``mod``'s output positions (from summary)."""
    from cnnkit.inspect.summary import summary

    rows = [r for r in summary(model, (1, *shape)).rows if r.name == name]
    if not rows or rows[0].receptive_field is None:
        return (shape[1], shape[2]), (1, 1), (0.0, 0.0), True
    r = rows[0]
    return r.receptive_field, r.jump, r.start, False


def top_patches(
    model: nn.Module,
    dataset: Any,
    layer: int | str | nn.Module,
    k: int = 9,
    max_images: int | None = 2000,
    batch_size: int = 128,
) -> TopPatches:
    """For each channel of ``layer``, the ``k`` input patches that excite it most.

    Every image of ``dataset`` (up to ``max_images``) goes through the model (eval mode,
    stopping at ``layer``); for each channel the ``k`` largest activations over all
    images and positions are kept (at most one per image, so that one image does not
    fill the row), and the input patch each position sees - its receptive field, from
    :func:`cnnkit.summary` - is cut out. For a layer without spatial positions (a
    Linear layer) the patch is the whole image.

    Parameters
    ----------
    dataset : Dataset
        Items ``(image, label)`` with images ``(c, h, w)``.
    layer : int, str or Module
    k : int
        Patches per channel.
    max_images : int or None
        Look at the first this many images (None: all).

    Returns
    -------
    TopPatches
    """
    if k < 1:
        raise ValueError(f"top_patches: k must be >= 1; got {k}")
    name, mod = resolve_layer(model, layer)
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    if n == 0:
        raise ValueError("top_patches: the dataset is empty")
    dtype = model_dtype(model)

    def image(i: int) -> np.ndarray:
        x = dataset[i][0]
        return np.asarray(x.numpy() if isinstance(x, Tensor) else x, dtype=dtype)

    first = image(0)
    if first.ndim != 3:
        raise ValueError(f"top_patches: expected images (c, h, w); got {first.shape}")
    acts = []
    was = model.training
    model.eval()
    try:
        with no_grad():
            for s in range(0, n, batch_size):
                batch = np.stack([image(i) for i in range(s, min(n, s + batch_size))])
                act, _ = capture(model, mod, Tensor(batch), stop=True)
                acts.append(act.numpy())
    finally:
        model.train(was)
    a = np.concatenate(acts)
    if a.ndim not in (2, 4):
        raise ValueError(f"top_patches: {name} gives {a.shape[1:]}; need (channels[, h, w])")
    if a.ndim == 2:  # a fully connected layer sees the whole image
        a = a[:, :, None, None]
        (rh, rw), (jh, jw), (sh, sw), whole = first.shape[1:], (1, 1), (0.0, 0.0), True
    else:
        (rh, rw), (jh, jw), (sh, sw), whole = _field(model, name, mod, first.shape)
    nimg, ch, _, ow = a.shape
    best_pos = a.reshape(nimg, ch, -1).argmax(axis=2)  # best position per image and channel
    best_val = a.reshape(nimg, ch, -1).max(axis=2)
    kk = min(k, nimg)
    order = np.argsort(-best_val, axis=0, kind="stable")[:kk].T  # (ch, kk) image indices
    c, h, w = first.shape
    patches = np.zeros((ch, kk, c, rh, rw), dtype=first.dtype)
    boxes = np.zeros((ch, kk, 4), dtype=np.int64)
    scores = np.take_along_axis(best_val.T, order, axis=1)
    for j in range(ch):
        for t, i in enumerate(order[j]):
            y, x = divmod(int(best_pos[i, j]), ow)
            top = 0 if whole else round(sh + y * jh - rh / 2)  # start: centre, pixel i at i+0.5
            left = 0 if whole else round(sw + x * jw - rw / 2)
            boxes[j, t] = (top, left, top + rh, left + rw)
            img = image(int(i))
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + rh, h), min(left + rw, w)
            if y1 > y0 and x1 > x0:
                patches[j, t, :, y0 - top : y1 - top, x0 - left : x1 - left] = img[:, y0:y1, x0:x1]
    return TopPatches(name, patches, scores, order.astype(np.int64), boxes)


def plot_top_patches(
    result: TopPatches, path: str | Path, channels: int | None = 16, title: str | None = None
) -> Path:
    """Write a grid: one row per channel (best first from the left), one column per patch.

    All patches share one gray scale (their common minimum and maximum), so rows compare.
    """
    p = result.patches if channels is None else result.patches[:channels]
    ch, k = p.shape[:2]
    lo, hi = float(p.min()), float(p.max())
    plt = pyplot()
    fig, axes = plt.subplots(
        ch, k, figsize=(0.9 * k + 0.8, 0.9 * ch + 0.6), squeeze=False, layout="constrained"
    )
    for j in range(ch):
        for t in range(k):
            ax = axes[j, t]
            tile = p[j, t]
            if tile.shape[0] == 3:
                ax.imshow(((tile - lo) / ((hi - lo) or 1.0)).transpose(1, 2, 0))
            else:
                ax.imshow(tile[0], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[j, 0].set_ylabel(f"ch {j}", rotation=0, ha="right", va="center", fontsize=8)
    rf = p.shape[-2:]
    fig.suptitle(
        title
        or f"{result.layer}: top {k} input patches per channel ({rf[0]}x{rf[1]} receptive field)"
    )
    return save_figure(fig, path)
