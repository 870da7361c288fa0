"""DeepDream: gradient ascent on the input to excite a layer (Mordvintsev et al., 2015)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import backend, nn
from cnnkit.tensor import Tensor
from cnnkit.viz._mpl import pyplot, save_figure
from cnnkit.viz.filters import _batch, _display, activations
from cnnkit.viz.layers import capture, frozen, model_dtype, resolve_layer


def resize_bilinear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(c, h, w)`` to ``(c, *size)`` (align-corners=False sampling)."""
    h, w = img.shape[1:]
    oh, ow = size
    if (oh, ow) == (h, w):
        return img.copy()

    def coords(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(img.dtype)

    y0, y1, fy = coords(h, oh)
    x0, x1, fx = coords(w, ow)
    top = img[:, y0][:, :, x0] * (1 - fx) + img[:, y0][:, :, x1] * fx
    bot = img[:, y1][:, :, x0] * (1 - fx) + img[:, y1][:, :, x1] * fx
    return (top * (1 - fy)[:, None] + bot * fy[:, None]).astype(img.dtype)


def _objective_grad(
    model: nn.Module, layer: nn.Module, img: np.ndarray, channel: int | None
) -> tuple[np.ndarray, float]:
    """Gradient of the mean activation (of one channel, optionally) w.r.t. the image."""
    x = Tensor(img[None].copy(), requires_grad=True)
    act, _ = capture(model, layer, x, stop=True)
    if channel is not None:
        if act.ndim < 2 or not 0 <= channel < act.shape[1]:
            raise ValueError(
                f"deep_dream: channel {channel} out of range for output {tuple(act.shape)}"
            )
        act = act[:, channel]
    obj = act.mean()
    obj.backward()
    return x.grad.array[0], float(obj.item())


def deep_dream(
    model: nn.Module,
    image: Any,
    layer: int | str | nn.Module,
    steps: int = 20,
    lr: float = 0.05,
    octaves: int = 1,
    octave_scale: float = 1.4,
    jitter: int = 0,
    channel: int | None = None,
    clip: tuple[float, float] | None = None,
) -> np.ndarray:
    """Maximise the mean activation of ``layer`` (or one ``channel``) by gradient ascent.

    Each step moves the image along the gradient normalised by its mean magnitude
    (``x += lr * g / mean|g|``), after an optional random shift of up to ``jitter``
    pixels (cnnkit's global generator: seed it with :func:`cnnkit.manual_seed`). With
    ``octaves > 1`` the ascent runs from a coarse scale (``1 / octave_scale**(octaves-1)``)
    to the full one, carrying the added detail up each time. The forward pass stops at
    ``layer``, so the layers after it need not fit the smaller octaves. The model's
    parameters, their gradients and its train/eval mode are left as they were.

    Parameters
    ----------
    image : array or Tensor, shape (c, h, w) or (1, c, h, w)
    layer : int, str or Module
        Index into a Sequential, a dotted layer name, or the layer itself.
    channel : int, optional
        Excite only this output channel of ``layer`` (default: all of it).
    clip : (low, high), optional
        Keep pixel values in this range after each step.

    Returns
    -------
    np.ndarray
        The dreamed image, same shape and dtype as ``image`` (float32 for an integer
        image). The ascent itself runs in the model's dtype.
    """
    if steps < 0 or lr <= 0 or octaves < 1 or octave_scale <= 1 or jitter < 0:
        raise ValueError(
            f"deep_dream: need steps >= 0, lr > 0, octaves >= 1, octave_scale > 1, "
            f"jitter >= 0; got steps={steps}, lr={lr}, octaves={octaves}, "
            f"octave_scale={octave_scale}, jitter={jitter}"
        )
    src = image.array if isinstance(image, Tensor) else np.asarray(image)
    out_dtype = src.dtype if src.dtype.kind == "f" else np.dtype(np.float32)
    dtype = np.dtype(model_dtype(model))
    base = _batch(src).array[0].astype(dtype)
    _, mod = resolve_layer(model, layer)
    rng = backend.default_rng()
    h, w = base.shape[1:]
    sizes = [
        (max(1, round(h / octave_scale**i)), max(1, round(w / octave_scale**i)))
        for i in range(octaves - 1, -1, -1)
    ]
    detail = np.zeros((base.shape[0], *sizes[0]), dtype=dtype)
    img = base
    with frozen(model):
        for size in sizes:
            shrunk = resize_bilinear(base, size)
            detail = resize_bilinear(detail, size)
            img = shrunk + detail
            for _ in range(steps):
                dy, dx = (
                    (int(v) for v in rng.integers(-jitter, jitter + 1, 2)) if jitter else (0, 0)
                )
                shifted = np.roll(img, (dy, dx), axis=(1, 2))
                g, _ = _objective_grad(model, mod, shifted, channel)
                g = np.roll(g, (-dy, -dx), axis=(1, 2))
                scale = np.abs(g).mean()
                if not scale > 0:  # a dead layer (all-zero gradient): nothing to climb
                    break
                img = (img + (lr / scale) * g).astype(dtype)
                if clip is not None:
                    img = np.clip(img, *clip)
            detail = img - shrunk
    return img.astype(out_dtype).reshape(src.shape)


def layer_activation(
    model: nn.Module, image: Any, layer: int | str | nn.Module, channel: int | None = None
) -> float:
    """Mean activation of ``layer`` (or one channel) for one image (eval mode)."""
    act = activations(model, image, layer)
    if channel is not None and not (act.ndim >= 1 and 0 <= channel < act.shape[0]):
        raise ValueError(f"channel {channel} out of range for output {(1, *act.shape)}")
    return float((act if channel is None else act[channel]).mean())


def plot_dream(original: Any, dreamed: Any, path: str | Path, title: str = "") -> Path:
    """Write the original, the dreamed image and their difference side by side.

    Grayscale images share one colour scale (with a colour bar) so that the change is
    visible; RGB images are each scaled to [0, 1]. The difference uses a diverging map
    centred on zero.
    """
    a = _batch(original).array[0].astype(np.float64)
    b = _batch(dreamed).array[0].astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"plot_dream: image shapes differ: {a.shape} and {b.shape}")
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.7), layout="constrained")
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    im = None
    for ax, img, name in ((axes[0], a, "original"), (axes[1], b, "DeepDream")):
        if img.shape[0] == 3:
            ax.imshow(_display(img)[0])
        else:
            im = ax.imshow(img[0], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
        ax.set_title(name)
    if im is not None:
        fig.colorbar(im, ax=axes[:2].tolist(), shrink=0.85, label="pixel value")
    diff = (b - a).mean(axis=0)
    m = float(np.abs(diff).max()) or 1.0
    dm = axes[2].imshow(diff, cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
    axes[2].set_title("change (dreamed - original)")
    fig.colorbar(
        dm,
        ax=axes[2],
        shrink=0.85,
        label="pixel change" if b.shape[0] != 3 else "change, mean over RGB",
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
