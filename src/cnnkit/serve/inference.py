"""The dashboard's model side: trained weights of a run (cached by file and modification
time), the layer table, filters and activation maps, and a drawn digit prepared as the
digit data sets prepare theirs.

Drawn digits:

- **28x28 (MNIST):** the digit's bounding box is scaled, keeping its aspect ratio, to fit
  a 20x20 box with anti-aliasing, and placed in a 28x28 field so that its centre of mass
  lies at the field's centre -- what LeCun et al. describe for MNIST.
- **8x8 (scikit-learn's digits, UCI optdigits):** the digit is scaled to fill a 32x32
  bitmap, thresholded to black and white, its strokes thickened by one pixel (the
  optdigits bitmaps have thick strokes: this brings a drawing's mean ink, 0.21, to the
  data set's 0.31), and the on-pixels of each 4x4 block are counted (0..16), divided by
  16 as :class:`cnnkit.data.Digits` does.
"""

from __future__ import annotations

import base64
import functools
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.serve.runs import run_config

_LOCK = threading.RLock()
_MODELS: dict[str, tuple[tuple[int, int], Any]] = {}
MAX_CACHED_MODELS = 32


def weights_file(run: Path) -> Path | None:
    """The newest weights of a run: the final ``model.safetensors``, else the last
    checkpoint of a run still training."""
    for f in (run / "model.safetensors", run / "checkpoints" / "last.safetensors"):
        if f.is_file():
            return f
    return None


def load_model(run: Path) -> Any:
    """A run's model in eval mode, or None while it has no weights (or they cannot be read
    yet). Reloaded when the file changes."""
    from cnnkit import io as ckio

    f = weights_file(run)
    if f is None:
        return None
    try:
        st = f.stat()
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    with _LOCK:
        hit = _MODELS.get(str(f))
        if hit is not None and hit[0] == key:
            return hit[1]
        try:
            model = ckio.load(f).model
        except Exception:  # a file replaced while read, or no architecture stored
            return None
        model.eval()
        if len(_MODELS) >= MAX_CACHED_MODELS:  # forget the oldest (dicts keep insertion order)
            del _MODELS[next(iter(_MODELS))]
        _MODELS[str(f)] = (key, model)
        return model


def input_geometry(run: Path) -> tuple[int, int] | None:
    """``(channels, side)`` of the run's images, from its configuration."""
    cfg = run_config(run)
    try:
        return int(cfg["in_channels"]), int(cfg["input_size"])
    except (KeyError, TypeError, ValueError):
        return None


def summary_table(run: Path) -> dict[str, Any] | None:
    """The layer table of a run's model (shapes, parameters, receptive fields, MACs)."""
    from cnnkit.inspect.summary import summary

    model, geo = load_model(run), input_geometry(run)
    if model is None or geo is None:
        return None
    with _LOCK:
        s = summary(model, (1, geo[0], geo[1], geo[1]))
    rows = [
        {
            "name": r.name,
            "layer": r.layer,
            "output_shape": list(r.output_shape),
            "params": r.params,
            "receptive_field": list(r.receptive_field) if r.receptive_field else None,
            "jump": list(r.jump) if r.jump else None,
            "macs": r.macs,
        }
        for r in s.rows
    ]
    return {
        "rows": rows,
        "total_params": s.total_params,
        "trainable_params": s.trainable_params,
        "total_macs": s.total_macs,
        "input_size": list(s.input_size),
        "text": str(s),
    }


def encode(a: np.ndarray) -> dict[str, Any]:
    """An array scaled to 0..255 (over the whole array) as base64 bytes with its shape and
    the value range, for the page to draw."""
    a = np.asarray(a, dtype=np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    u8 = np.zeros(a.shape, np.uint8) if hi <= lo else np.round((a - lo) / (hi - lo) * 255)
    raw = np.ascontiguousarray(u8, dtype=np.uint8).tobytes()
    return {"shape": list(a.shape), "min": lo, "max": hi, "b64": base64.b64encode(raw).decode()}


def filters(run: Path) -> dict[str, Any] | None:
    """The first convolution's filters, each scaled to its own range."""
    from cnnkit.viz.conv_maps import conv_layers, normalise

    model = load_model(run)
    if model is None:
        return None
    convs = conv_layers(model)
    if not convs:
        return None
    name, conv = convs[0]
    w = normalise(conv.weight.numpy(), per_item=True)
    c_in = w.shape[1]
    shown = w.transpose(0, 2, 3, 1) if c_in == 3 else w[:, 0]
    out = encode(shown)
    out.update(layer=name, rgb=c_in == 3, in_channels=c_in, kernel=list(w.shape[2:]))
    return out


def _top(probs: np.ndarray, classes: list[str], k: int = 3) -> list[list[Any]]:
    """The ``k`` most probable classes as ``[name, probability]``."""
    order = np.argsort(-probs)[:k]
    return [[classes[i] if i < len(classes) else str(i), float(probs[i])] for i in order]


def _softmax(z: np.ndarray) -> np.ndarray:
    """Softmax of a logit vector (float64)."""
    z = np.asarray(z, dtype=np.float64).ravel()
    e = np.exp(z - z.max())
    return e / e.sum()


def activations(run: Path, image: np.ndarray) -> dict[str, Any] | None:
    """Every convolution's maps for one image ``(c, h, w)``, and the top-3 classes."""
    from cnnkit.viz.conv_maps import conv_activations

    model = load_model(run)
    if model is None:
        return None
    with _LOCK:  # forward hooks are per model: one request at a time
        maps, out = conv_activations(model, image)
    cfg = run_config(run)
    classes = [str(c) for c in cfg.get("classes") or []]
    layers = []
    for name, act in maps:
        enc = encode(act[:64])
        enc.update(name=name, channels=int(act.shape[0]))
        layers.append(enc)
    result: dict[str, Any] = {"input": encode(image), "layers": layers}
    if out.ndim == 1 and out.size > 1:
        result["top"] = _top(_softmax(out), classes)
    return result


@functools.lru_cache(maxsize=4)
def _test_split(spec: str, seed: int) -> Any:
    """The test split of a data spec (cached: MNIST takes a moment to read)."""
    from cnnkit.train.run import load_data

    return load_data(spec, seed=seed).test


def test_image(run: Path, index: int) -> tuple[np.ndarray, int] | None:
    """Test image ``index`` of the run's data set and its label, or None when the data
    cannot be read from here (a relative path from another folder, a missing file)."""
    cfg = run_config(run)
    spec = cfg.get("data")
    if not isinstance(spec, str):
        return None
    try:
        test = _test_split(spec, int(cfg.get("seed", 0)))
        x, y = test[index % len(test)]
    except Exception:  # the data is not where the run found it: no test image
        return None
    x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    y = y.numpy() if hasattr(y, "numpy") else np.asarray(y)
    return np.asarray(x, dtype=np.float32), int(np.asarray(y).reshape(-1)[0])


# -- drawn digits -----------------------------------------------------------------------


def decode_drawing(data_url: str, max_side: int = 1024) -> np.ndarray:
    """A canvas picture (``data:image/png;base64,...``) as gray values in [0, 1], ink bright.

    Raises
    ------
    ValueError
        Not a PNG data URL, not an image, or larger than ``max_side`` pixels.
    """
    from PIL import Image

    head, sep, body = data_url.partition(",")
    if not sep or not head.startswith("data:image/png;base64"):
        raise ValueError("expected a data:image/png;base64 URL from the canvas")
    try:
        raw = base64.b64decode(body, validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            if max(im.size) > max_side:
                raise ValueError(f"drawing too large: {im.size}, at most {max_side} pixels")
            rgba = im.convert("RGBA")
            gray = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
            alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"not a readable PNG image ({type(e).__name__})") from None
    return gray * alpha


def _bbox(img: np.ndarray, level: float) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` (exclusive ends) of the pixels above ``level``."""
    ys, xs = np.nonzero(img > level)
    if not len(ys):
        return None
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Anti-aliased resize of a [0, 1] gray image (Pillow's Lanczos filter)."""
    from PIL import Image

    im = Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8))
    return np.asarray(im.resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0


def _prepared(img: np.ndarray, size: int) -> np.ndarray | None:
    """``cnnkit.data.preprocess.prepare_digit`` (the one preprocessing of ``cnnkit
    predict`` too), or None where the drawing holds no digit."""
    from cnnkit.data.preprocess import prepare_digit

    if float(np.max(img, initial=0.0)) <= 0.1:
        return None
    try:
        return prepare_digit(img, size).image
    except ValueError:  # nearly uniform: no strokes to speak of
        return None


def mnist_digit(img: np.ndarray) -> np.ndarray | None:
    """A drawn digit (gray, ink bright, any size) as an MNIST image ``(1, 28, 28)`` in
    [0, 1]: scaled into a 20x20 box keeping its aspect ratio, centre of mass at the centre
    of the 28x28 field. None for an empty drawing."""
    return _prepared(img, 28)


def digits8(img: np.ndarray) -> np.ndarray | None:
    """A drawn digit as an 8x8 image of scikit-learn's digits ``(1, 8, 8)`` in [0, 1]:
    scaled to fill a 32x32 bitmap (aspect ratio kept, centred), thresholded, strokes
    thickened by one pixel, and the on-pixels of each 4x4 block counted and divided by
    16. None for an empty drawing."""
    box = _bbox(img, 0.1)
    if box is None:
        return None
    t, b, l, r = box
    crop = img[t:b, l:r]
    h, w = crop.shape
    k = 32.0 / max(h, w)
    nh, nw = max(1, round(h * k)), max(1, round(w * k))
    small = _resize(crop, nh, nw) > 0.5
    bitmap = np.zeros((32, 32), bool)
    top, left = (32 - nh) // 2, (32 - nw) // 2
    bitmap[top : top + nh, left : left + nw] = small
    thick = bitmap.copy()  # one-pixel dilation with the 4-neighbourhood
    thick[1:] |= bitmap[:-1]
    thick[:-1] |= bitmap[1:]
    thick[:, 1:] |= bitmap[:, :-1]
    thick[:, :-1] |= bitmap[:, 1:]
    bitmap = thick
    counts = bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3))
    return (counts.astype(np.float32) / np.float32(16.0))[None]


def prepare_drawing(run: Path, data_url: str) -> np.ndarray | None:
    """A canvas drawing as the run's input image, or None for an empty canvas.

    Raises
    ------
    ValueError
        The run is not a one-channel 28x28 or 8x8 model, or the picture is unreadable.
    """
    geo = input_geometry(run)
    if geo not in ((1, 28), (1, 8)):
        raise ValueError(
            f"drawing needs a model on 1x28x28 or 1x8x8 digits; this run has input {geo}"
        )
    img = decode_drawing(data_url)
    return mnist_digit(img) if geo[1] == 28 else digits8(img)
