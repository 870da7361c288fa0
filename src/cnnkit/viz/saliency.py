"""Saliency: the gradient of a class score with respect to the input image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import nn
from cnnkit.tensor import Tensor
from cnnkit.viz._mpl import pyplot, save_figure
from cnnkit.viz.filters import _batch


def saliency(model: nn.Module, image: Any, target: int | None = None) -> np.ndarray:
    """d(score of class ``target``)/d(image) for one image, in eval mode.

    Parameters
    ----------
    image : array or Tensor, shape (c, h, w) or (1, c, h, w)
    target : int, optional
        Class whose pre-softmax score is differentiated (default: the predicted class).

    Returns
    -------
    np.ndarray, shape (c, h, w)
        The input gradient (same dtype as the image).
    """
    x = _batch(image)
    x = Tensor(x.data.copy(), requires_grad=True)
    was = model.training
    model.eval()
    try:
        scores = model(x)
        if scores.ndim != 2:
            raise ValueError(f"saliency: expected class scores (1, classes); got {scores.shape}")
        k = int(scores.data[0].argmax()) if target is None else int(target)
        if not 0 <= k < scores.shape[1]:
            raise ValueError(f"saliency: target {k} out of range for {scores.shape[1]} classes")
        scores[0, k].backward()
    finally:
        model.train(was)
        model.zero_grad()
    return x.grad.data[0]


def saliency_map(grad: np.ndarray) -> np.ndarray:
    """Per-pixel saliency ``max_c |grad|``, scaled to [0, 1]."""
    m = np.abs(grad).max(axis=0)
    return m / m.max() if m.max() > 0 else m


def plot_saliency(
    model: nn.Module, image: Any, path: str | Path, target: int | None = None
) -> np.ndarray:
    """Write image, saliency map and overlay side by side; return the saliency map."""
    img = _batch(image).data[0]
    smap = saliency_map(saliency(model, image, target))
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    show = img.transpose(1, 2, 0) if img.shape[0] == 3 else img[0]
    cmap = None if show.ndim == 3 else "gray"
    axes[0].imshow(show, cmap=cmap)
    axes[0].set_title("input")
    im = axes[1].imshow(smap, cmap="hot")
    axes[1].set_title("saliency |d score / d pixel|")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    axes[2].imshow(show, cmap=cmap)
    axes[2].imshow(smap, cmap="hot", alpha=0.55)
    axes[2].set_title("overlay")
    for ax in axes:
        ax.axis("off")
    label = "predicted class" if target is None else f"class {target}"
    fig.suptitle(f"Saliency of the {label}")
    fig.tight_layout()
    save_figure(fig, path)
    return smap
