"""Saliency: the gradient of a class score with respect to the input image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import nn
from cnnkit.tensor import Tensor
from cnnkit.viz._mpl import pyplot, save_figure
from cnnkit.viz.filters import _batch, _display
from cnnkit.viz.layers import frozen, model_dtype


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
    src = _batch(image).array
    x = Tensor(src.astype(model_dtype(model)), requires_grad=True)
    with frozen(model):
        scores = model(x)
        if scores.ndim != 2:
            raise ValueError(f"saliency: expected class scores (1, classes); got {scores.shape}")
        k = int(scores.array[0].argmax()) if target is None else int(target)
        if not 0 <= k < scores.shape[1]:
            raise ValueError(f"saliency: target {k} out of range for {scores.shape[1]} classes")
        scores[0, k].backward()
    return x.grad.array[0].astype(src.dtype, copy=False)


def saliency_map(grad: np.ndarray) -> np.ndarray:
    """Per-pixel saliency ``max_c |grad|``, scaled to [0, 1]."""
    m = np.abs(grad).max(axis=0)
    return m / m.max() if m.max() > 0 else m


def plot_saliency(
    model: nn.Module,
    image: Any,
    path: str | Path,
    target: int | None = None,
    class_name: str | None = None,
) -> np.ndarray:
    """Write image, saliency map and overlay side by side; return the saliency map.

    The title names the differentiated class (``class_name`` if given) and the model's
    prediction with its softmax probability.

    Returns
    -------
    np.ndarray, shape (h, w)
        :func:`saliency_map` of the input gradient, in [0, 1].
    """
    from cnnkit.autograd import no_grad

    img = _batch(image).array[0]
    with frozen(model), no_grad():
        scores = np.asarray(model(_batch(image, model_dtype(model))).array[0], np.float64)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    pred = int(scores.argmax())
    k = pred if target is None else int(target)
    smap = saliency_map(saliency(model, image, k))
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), layout="constrained")
    show, cmap = _display(img)
    axes[0].imshow(show, cmap=cmap)
    axes[0].set_title("input")
    im = axes[1].imshow(smap, cmap="hot", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title("saliency max$_c$ |d score / d pixel|", fontsize=10)
    fig.colorbar(im, ax=axes[1], shrink=0.85, label="relative to the maximum")
    axes[2].imshow(show, cmap=cmap)
    axes[2].imshow(smap, cmap="hot", vmin=0, vmax=1, alpha=0.75 * smap, interpolation="nearest")
    axes[2].set_title("overlay (opacity = saliency)", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    name = class_name if class_name is not None else str(k)
    which = "the predicted class" if target is None else "class"
    fig.suptitle(
        f"Saliency of {which} {name} (score {scores[k]:.3g}); "
        f"model predicts {pred} with p = {probs[pred]:.2f}"
    )
    save_figure(fig, path)
    return smap
