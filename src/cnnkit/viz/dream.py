"""DeepDream: gradient ascent on the input to excite a layer (Mordvintsev et al., 2015)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import backend, nn
from cnnkit.autograd import no_grad
from cnnkit.tensor import Tensor
from cnnkit.viz._mpl import pyplot, save_figure
from cnnkit.viz.filters import _batch, activations
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


Clip = tuple[Any, Any]


def data_range(cfg: dict[str, Any] | None = None, channels: int = 1) -> tuple[Any, Any]:
    """The range of the pixels a model was trained on, in the model's input units.

    cnnkit's data sets give pixels in ``[0, 1]``; a run (or a PyTorch model) that
    normalised them with ``Normalize(mean, std)`` saw ``[(0 - mean) / std, (1 - mean) / std]``
    per channel. ``cfg`` is a run's ``config.json`` dict; its optional ``"normalize"``
    entry ``{"mean": [...], "std": [...]}`` is used when present.

    Returns
    -------
    (low, high)
        Floats, or arrays of shape ``(channels,)`` for per-channel normalisation.
    """
    norm = (cfg or {}).get("normalize")
    if not norm:
        return 0.0, 1.0
    mean = np.broadcast_to(np.asarray(norm["mean"], dtype=np.float64), (channels,))
    std = np.broadcast_to(np.asarray(norm["std"], dtype=np.float64), (channels,))
    if np.any(std <= 0):
        raise ValueError(f"data_range: normalize std must be > 0; got {std.tolist()}")
    return (0.0 - mean) / std, (1.0 - mean) / std


def _clip_arrays(clip: Clip, c: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """``clip`` as two ``(c, 1, 1)`` arrays (scalars or per-channel sequences)."""
    lo, hi = (np.asarray(v, dtype=np.float64).reshape(-1) for v in clip)
    if lo.size not in (1, c) or hi.size not in (1, c):
        raise ValueError(
            f"deep_dream: clip bounds need 1 or {c} values (one per channel); got "
            f"{lo.size} and {hi.size}"
        )
    lo, hi = np.broadcast_to(lo, (c,)), np.broadcast_to(hi, (c,))
    if np.any(lo >= hi):
        raise ValueError(f"deep_dream: clip needs low < high; got {lo.tolist()}, {hi.tolist()}")
    return lo.reshape(c, 1, 1).astype(dtype), hi.reshape(c, 1, 1).astype(dtype)


def _target(act: Tensor, channel: int | None) -> Tensor:
    if channel is None:
        return act
    if act.ndim < 2 or not 0 <= channel < act.shape[1]:
        raise ValueError(
            f"deep_dream: channel {channel} out of range for output {tuple(act.shape)}"
        )
    return act[:, channel]


def _objective_grad(
    model: nn.Module, layer: nn.Module, img: np.ndarray, channel: int | None, objective: str
) -> tuple[np.ndarray, float]:
    """Gradient of the objective (squared L2 norm or mean of the activation) w.r.t. the image."""
    x = Tensor(img[None].copy(), requires_grad=True)
    act, _ = capture(model, layer, x, stop=True)
    act = _target(act, channel)
    obj = (act * act).sum() if objective == "norm" else act.mean()
    obj.backward()
    return x.grad.numpy()[0], float(obj.item())


def layer_norm(
    model: nn.Module, image: Any, layer: int | str | nn.Module, channel: int | None = None
) -> float:
    """L2 norm of the output of ``layer`` (or one channel of it) for one image (eval mode)."""
    act = activations(model, image, layer)
    if channel is not None and not (act.ndim >= 1 and 0 <= channel < act.shape[0]):
        raise ValueError(f"channel {channel} out of range for output {(1, *act.shape)}")
    return float(np.linalg.norm((act if channel is None else act[channel]).astype(np.float64)))


def _octave_sizes(
    model: nn.Module, layer: nn.Module, base: np.ndarray, octaves: int, scale: float
) -> list[tuple[int, int]]:
    """Octave sizes from coarse to full, keeping only those the layer can be reached at."""
    h, w = base.shape[1:]
    sizes = []
    for i in range(octaves - 1, -1, -1):
        size = (max(1, round(h / scale**i)), max(1, round(w / scale**i)))
        if i and size not in sizes:
            try:  # a smaller image may not get through the layers before ``layer``
                with no_grad():
                    capture(model, layer, Tensor(resize_bilinear(base, size)[None]), stop=True)
            except ValueError:
                continue
        if size not in sizes:
            sizes.append(size)
    return sizes


def deep_dream(
    model: nn.Module,
    image: Any,
    layer: int | str | nn.Module,
    steps: int = 40,
    lr: float = 0.2,
    octaves: int = 3,
    octave_scale: float = 1.4,
    jitter: int | None = None,
    channel: int | None = None,
    clip: Clip | None = (0.0, 1.0),
    objective: str = "norm",
    keep: float | None = 0.5,
) -> np.ndarray:
    """DeepDream (Mordvintsev et al., 2015): change the image to excite ``layer``.

    Gradient ascent on the image, for the squared L2 norm of the layer's output
    (``objective="norm"``, the original DeepDream's) or its mean (``"mean"``), of one
    ``channel`` or of all. Each step

    1. shifts the image by a random ``(dy, dx)`` of at most ``jitter`` pixels (a roll,
       undone after the step), so that the dream does not lock onto the pixel grid;
    2. moves it along the gradient normalised by its mean magnitude,
       ``x += rate * (high - low) * g / mean|g|`` (steps of the same size whatever the
       layer's scale), with ``rate`` decaying from ``lr`` to ``lr / 10`` over the
       octave's steps (a cosine): long strides to climb, short ones to settle;
    3. clips it to ``clip``, the range of the data the model was trained on (see
       :func:`data_range`; pixels outside it are inputs the model never saw);
    4. keeps the original's structure (the dream elaborates the image; it does not
       replace it): where the step took the dream's Pearson correlation with the
       original below ``keep``, the dream is projected back onto that constraint,
       shrinking only the part of the change that is unlike the original (the
       nearest image in the cone ``corr >= keep``), keeping at least ``keep`` of the
       original's own contrast (a correlation alone accepts a faint copy of the digit
       on a white square), then clipped again; should the clip undo it, the change
       is scaled back until both hold. The ascent goes on along the constraint's
       boundary instead of stopping there.

    The ascent runs at ``octaves`` scales, from ``1 / octave_scale**(octaves - 1)`` of
    the size up to the full one; the detail added at one scale is resized up and kept
    at the next, so large structures grow at the coarse scales and fine ones at the
    full scale. Octaves too small for the layers before ``layer`` are skipped (their
    steps go to the full size: a fully connected head fixes the input size). At a
    coarse octave the correlation is kept with the shrunken original; the returned
    image keeps it with the original itself. The forward pass stops at ``layer``.
    Random shifts use cnnkit's global generator (seed it with
    :func:`cnnkit.manual_seed`). The model's parameters, their gradients and its
    train/eval mode are left as they were.

    Pixels held at a bound of ``clip`` are left out of the step (projected ascent), so
    the step is spent on pixels that can still move.

    What the defaults reach depends on the model, the layer and the training run
    (README, "The lecture's tools"; ``benchmarks/dream_reach.py``). Every pixel stays in
    the data range and every correlation >= ``keep``; over every layer output of
    LeNet-5, 10 test images and 2 seeds, the norm grows x2.2 at the median (smallest
    x1.3, at conv1) on the demo model, x1.6-x1.9 on LeNet-5s trained in PyTorch and x1.9
    on a ResNet-20 trained in PyTorch on MNIST: the data range and the guard cap the
    growth, since real digits already drive these small networks close to what any
    image can.

    Parameters
    ----------
    model : Module
    image : array or Tensor, shape (c, h, w) or (1, c, h, w)
    layer : int, str or Module
        Index into a Sequential, a dotted layer name, or the layer itself.
    steps : int
        Ascent steps per octave.
    lr : float
        First step size along the normalised gradient, as a fraction of the data
        range's width (``high - low`` per channel; 1 without ``clip``): pixels move by
        ``lr * (high - low)`` on average in the first step of an octave before
        clipping, whatever the normalisation of the inputs; it decays to ``lr / 10``.
    octaves : int
        Number of scales (1: the full size only).
    octave_scale : float
        Size ratio between successive octaves (> 1).
    jitter : int, optional
        Largest random shift in pixels; default ``min(h, w) // 16`` (1 pixel for
        28x28 MNIST, 2 for 32x32 CIFAR, none for the 8x8 digits, where one pixel is
        an eighth of the image).
    channel : int, optional
        Excite only this output channel of ``layer`` (default: all of it).
    clip : (low, high) or None
        Pixel range kept after every step: floats or one value per channel. ``None``
        turns clipping off (the image may leave the data range).
    objective : {"norm", "mean"}
    keep : float or None
        Keep the original's structure: the dream's Pearson correlation with the
        original stays >= ``keep`` (default 0.5) and the original's pattern keeps
        >= ``keep`` of its contrast, by projection after every step; ``None`` leaves
        both free.

    Returns
    -------
    np.ndarray
        The dreamed image, same shape and dtype as ``image`` (float32 for an integer
        image). The ascent itself runs in the model's dtype.
    """
    if steps < 0 or lr <= 0 or octaves < 1 or octave_scale <= 1 or (jitter or 0) < 0:
        raise ValueError(
            f"deep_dream: need steps >= 0, lr > 0, octaves >= 1, octave_scale > 1, "
            f"jitter >= 0; got steps={steps}, lr={lr}, octaves={octaves}, "
            f"octave_scale={octave_scale}, jitter={jitter}"
        )
    if keep is not None and not -1 <= keep <= 1:
        raise ValueError(f"deep_dream: keep must be a correlation in [-1, 1]; got {keep}")
    if objective not in ("norm", "mean"):
        raise ValueError(f"deep_dream: objective must be 'norm' or 'mean'; got {objective!r}")
    src = image.numpy() if isinstance(image, Tensor) else np.asarray(image)
    out_dtype = src.dtype if src.dtype.kind == "f" else np.dtype(np.float32)
    dtype = np.dtype(model_dtype(model))
    base = _batch(src).numpy()[0].astype(dtype)
    c, h, w = base.shape
    lo, hi = _clip_arrays(clip, c, dtype) if clip is not None else (None, None)
    width = (hi - lo) if lo is not None else np.ones((c, 1, 1), dtype)
    if lo is not None:
        base = np.clip(base, lo, hi)
    if jitter is None:
        jitter = min(h, w) // 16
    _, mod = resolve_layer(model, layer)
    rng = backend.default_rng()
    img = base

    def at_full_size(img: np.ndarray, shrunk: np.ndarray) -> np.ndarray:
        """The image the next octave would start from: the original plus the detail."""
        if img.shape == base.shape:
            return img
        full = base + resize_bilinear(img - shrunk, (h, w))
        return np.clip(full, lo, hi) if lo is not None else full

    img = shrunk = base
    with frozen(model):
        sizes = _octave_sizes(model, mod, base, octaves, octave_scale)
        detail = np.zeros((c, *sizes[0]), dtype=dtype)
        for size in sizes:
            shrunk = resize_bilinear(base, size)
            detail = resize_bilinear(detail, size)
            img = shrunk + detail
            if lo is not None:
                img = np.clip(img, lo, hi)
            # octaves the layer cannot be reached at give their steps to the full size
            n = steps * (octaves - len(sizes) + 1) if size == (h, w) else steps
            for k in range(n):
                dy, dx = (
                    (int(v) for v in rng.integers(-jitter, jitter + 1, 2)) if jitter else (0, 0)
                )
                shifted = np.roll(img, (dy, dx), axis=(1, 2))
                g, _ = _objective_grad(model, mod, shifted, channel, objective)
                g = np.roll(g, (-dy, -dx), axis=(1, 2))
                if lo is not None:  # projected ascent: pixels held at a bound cannot move
                    g = np.where(((img <= lo) & (g < 0)) | ((img >= hi) & (g > 0)), 0, g)
                scale = np.abs(g).mean()
                if not scale > 0:  # a dead layer (all-zero gradient): nothing to climb
                    break
                # cosine decay to lr / 10: long strides to climb, short ones to settle
                rate = lr * (0.1 + 0.45 * (1 + np.cos(np.pi * k / max(n - 1, 1))))
                img = (img + (rate / scale) * width * g).astype(dtype)
                if lo is not None:
                    img = np.clip(img, lo, hi)
                if keep is not None:
                    img = _keep_structure(img, shrunk, keep, lo, hi)
            detail = img - shrunk
    out = at_full_size(img, shrunk)
    if keep is not None:
        out = _keep_structure(out, base, keep, lo, hi)
    return out.astype(out_dtype).reshape(src.shape)


def _keep_structure(
    img: np.ndarray, ref: np.ndarray, keep: float, lo: np.ndarray | None, hi: np.ndarray | None
) -> np.ndarray:
    """``img`` brought back to keep ``ref``'s structure: Pearson correlation with ``ref``
    >= ``keep``, and ``ref``'s own pattern (its centred image) kept at >= ``keep`` of its
    contrast (a correlation alone would accept a faint copy of ``ref`` on a flat image).

    The change unlike ``ref`` is shrunk to the cone ``corr >= keep`` (the nearest point
    of it), ``ref``'s pattern is raised back to its floor, the pixels are clipped to
    ``[lo, hi]``; if clipping undid it, the whole change is scaled back (bisection)."""
    rc = (ref - ref.mean()).astype(np.float64)
    nr = float(np.sqrt((rc * rc).sum()))
    if nr == 0:  # a flat reference has no structure to keep
        return img
    u = rc / nr
    floor = keep * nr

    def kept(d: np.ndarray) -> bool:
        along = float(((d - d.mean()) * u).sum())
        return _pearson(d, ref) >= keep and along >= floor * (1 - 1e-6)

    if kept(img):
        return img
    t = np.sqrt(1 - keep * keep) / keep if 0 < keep < 1 else None
    d = img.astype(np.float64)
    for _ in range(4):
        m = d.mean()
        dc = d - m
        a = float((dc * u).sum())
        y = dc - a * u
        ny = float(np.sqrt((y * y).sum()))
        if t is not None and ny > t * a:  # nearest point of the cone |y| <= t a
            a = max((a + t * ny) / (1 + t * t), 0.0)
            y = y * (a * t / ny) * (1 - 1e-4)
        d = m + max(a, floor) * u + y
        if lo is not None:
            d = np.clip(d, lo, hi)
        if kept(d):
            return d.astype(img.dtype)
    s_lo, s_hi = 0.0, 1.0
    for _ in range(30):
        s = 0.5 * (s_lo + s_hi)
        if kept(ref + s * (d - ref)):
            s_lo = s
        else:
            s_hi = s
    return (ref + s_lo * (d - ref)).astype(img.dtype)


def _pearson(img: np.ndarray, ref: np.ndarray) -> float:
    """Pearson correlation of an image with a reference (1 for a constant reference, which
    has no structure to keep; 0 for a constant image and a structured reference)."""
    a = img.astype(np.float64).ravel()
    b = ref.astype(np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    nb = float((b * b).sum())
    if nb == 0:
        return 1.0
    den = float(np.sqrt((a * a).sum() * nb))
    return float((a * b).sum() / den) if den > 0 else 0.0


def layer_activation(
    model: nn.Module, image: Any, layer: int | str | nn.Module, channel: int | None = None
) -> float:
    """Mean activation of ``layer`` (or one channel) for one image (eval mode)."""
    act = activations(model, image, layer)
    if channel is not None and not (act.ndim >= 1 and 0 <= channel < act.shape[0]):
        raise ValueError(f"channel {channel} out of range for output {(1, *act.shape)}")
    return float((act if channel is None else act[channel]).mean())


def plot_dream(
    original: Any,
    dreamed: Any,
    path: str | Path,
    title: str = "",
    value_range: Clip | None = None,
) -> Path:
    """Write the original, the dreamed image and their difference side by side.

    Both images are shown on one scale: ``value_range`` (the data range, e.g. from
    :func:`data_range`; per-channel bounds use their overall minimum and maximum) or
    else the two images' common minimum and maximum, with a colour bar for grayscale.
    The difference uses a diverging map centred on zero.
    """
    a = _batch(original).array[0].astype(np.float64)
    b = _batch(dreamed).array[0].astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"plot_dream: image shapes differ: {a.shape} and {b.shape}")
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.7), layout="constrained")
    if value_range is not None:
        lo, hi = float(np.min(value_range[0])), float(np.max(value_range[1]))
    else:
        lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    im = None
    for ax, img, name in ((axes[0], a, "original"), (axes[1], b, "DeepDream")):
        if img.shape[0] == 3:
            rgb = np.clip((img - lo) / ((hi - lo) or 1.0), 0, 1)
            ax.imshow(rgb.transpose(1, 2, 0))
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
