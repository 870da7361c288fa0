"""DeepDream: gradient ascent on the input to excite a layer (Mordvintsev et al., 2015)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import backend, nn
from cnnkit.tensor import Tensor
from cnnkit.viz._mpl import pyplot, save_figure
from cnnkit.viz.filters import _batch
from cnnkit.viz.layers import capture, resolve_layer


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
    act, _ = capture(model, layer, x)
    if channel is not None:
        if act.ndim < 2 or not 0 <= channel < act.shape[1]:
            raise ValueError(f"deep_dream: channel {channel} out of range for output {act.shape}")
        act = act[:, channel]
    obj = act.mean()
    obj.backward()
    return x.grad.data[0], float(obj.item())


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
    pixels. With ``octaves > 1`` the ascent runs from a coarse scale to the full one,
    carrying the added detail up each time.

    Parameters
    ----------
    image : array or Tensor, shape (c, h, w) or (1, c, h, w)
    layer : int, str or Module
        Index into a Sequential, a dotted layer name, or the layer itself.
    clip : (low, high), optional
        Keep pixel values in this range after each step.

    Returns
    -------
    np.ndarray
        The dreamed image, same shape and dtype as ``image``.
    """
    if steps < 0 or lr <= 0 or octaves < 1 or octave_scale <= 1 or jitter < 0:
        raise ValueError(
            f"deep_dream: need steps >= 0, lr > 0, octaves >= 1, octave_scale > 1, "
            f"jitter >= 0; got steps={steps}, lr={lr}, octaves={octaves}, "
            f"octave_scale={octave_scale}, jitter={jitter}"
        )
    src = image.data if isinstance(image, Tensor) else np.asarray(image)
    base = _batch(src).data[0]
    dtype = base.dtype if base.dtype.kind == "f" else np.dtype(np.float32)
    base = base.astype(dtype)
    _, mod = resolve_layer(model, layer)
    rng = backend.default_rng()
    h, w = base.shape[1:]
    sizes = [
        (max(1, round(h / octave_scale**i)), max(1, round(w / octave_scale**i)))
        for i in range(octaves - 1, -1, -1)
    ]
    was = model.training
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad = False
    detail = np.zeros((base.shape[0], *sizes[0]), dtype=dtype)
    try:
        img = base
        for size in sizes:
            shrunk = resize_bilinear(base, size)
            detail = resize_bilinear(detail, size)
            img = shrunk + detail
            for _ in range(steps):
                dy, dx = rng.integers(-jitter, jitter + 1, 2) if jitter else (0, 0)
                shifted = np.roll(img, (int(dy), int(dx)), axis=(1, 2))
                g, _ = _objective_grad(model, mod, shifted, channel)
                g = np.roll(g, (-int(dy), -int(dx)), axis=(1, 2))
                img = img + (lr / (np.abs(g).mean() + 1e-8)) * g
                if clip is not None:
                    img = np.clip(img, *clip)
            detail = img - shrunk
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad = f
        model.train(was)
    out = img.astype(dtype)
    return out.reshape(src.shape).astype(src.dtype if src.dtype.kind == "f" else dtype)


def layer_activation(model: nn.Module, image: Any, layer: Any, channel: int | None = None):
    """Mean activation of ``layer`` (or one channel) for one image (eval mode)."""
    from cnnkit.autograd import no_grad

    _, mod = resolve_layer(model, layer)
    was = model.training
    model.eval()
    try:
        with no_grad():
            act, _ = capture(model, mod, _batch(image))
    finally:
        model.train(was)
    a = act.data if channel is None else act.data[:, channel]
    return float(a.mean())


def plot_dream(original: np.ndarray, dreamed: np.ndarray, path: str | Path, title: str = ""):
    """Write the original and dreamed images side by side."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
    for ax, img, name in ((axes[0], original, "original"), (axes[1], dreamed, "DeepDream")):
        a = np.asarray(img).reshape(-1, *np.asarray(img).shape[-2:])
        show = a.transpose(1, 2, 0) if a.shape[0] == 3 else a[0]
        lo, hi = show.min(), show.max()
        show = (show - lo) / (hi - lo) if hi > lo else show
        ax.imshow(show, cmap=None if show.ndim == 3 else "gray")
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
