"""DeepDream raises the chosen layer's mean activation; shapes and dtypes are kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cnnkit as ck
from cnnkit.data import Digits
from cnnkit.models import LeNet5
from cnnkit.train.run import load_run
from cnnkit.viz import deep_dream, layer_norm, plot_dream, resize_bilinear


def digit(i: int = 0) -> np.ndarray:
    x, _ = Digits(split="test")[i]
    return np.asarray(getattr(x, "data", x))


def check(model, image, layer, channel=None, factor=1.3, **kw) -> tuple[float, float]:
    """The target's L2 norm grows by ``factor`` (the goals at the defaults on trained
    models are in test_dream_goals.py)."""
    before = layer_norm(model, image, layer, channel)
    out = deep_dream(model, image, layer, channel=channel, **kw)
    assert out.shape == np.shape(image) and out.dtype == image.dtype
    assert np.all(np.isfinite(out))
    after = layer_norm(model, out, layer, channel)
    print(f"{layer} channel={channel}: {before:.4g} -> {after:.4g}")
    assert after >= factor * before and after > before + 0.01, (before, after)
    return before, after


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["features.1", "features.4", "classifier.2"])
def test_dream_on_a_trained_model(digits_run: Path, layer: str) -> None:
    _, model = load_run(digits_run)
    for i in range(3):
        check(model, digit(i), layer)


@pytest.mark.slow
def test_dream_one_channel_with_octaves_and_jitter(digits_run: Path) -> None:
    _, model = load_run(digits_run)
    ck.manual_seed(0)
    check(model, digit(5), "features.4", channel=3, octaves=2, octave_scale=1.5, jitter=1)


@pytest.mark.parametrize("layer", ["features.1", "features.4"])
def test_dream_on_a_random_model(layer: str) -> None:
    ck.manual_seed(0)
    model = LeNet5(input_size=8)
    image = digit(1)
    check(model, image, layer)
    batch = image[None].astype(np.float64)  # (1, c, h, w) float64 in, same out
    out = deep_dream(model, batch, layer, steps=3)
    assert out.shape == batch.shape and out.dtype == np.float64


def test_dream_leaves_model_and_input_alone() -> None:
    ck.manual_seed(0)
    model = LeNet5(input_size=8, dropout=0.5)
    model.train()
    image = digit(2)
    copy = image.copy()
    weights = [p.array.copy() for p in model.parameters()]
    deep_dream(model, image, "features.4", steps=2, clip=(0.0, 1.0))
    np.testing.assert_array_equal(image, copy)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    for p, w in zip(model.parameters(), weights, strict=True):
        np.testing.assert_array_equal(p.array, w)


def test_dream_zero_steps_is_the_identity_and_bad_arguments_raise() -> None:
    model = LeNet5(input_size=8)
    image = digit(0)
    np.testing.assert_allclose(deep_dream(model, image, "features.1", steps=0), image)
    with pytest.raises(ValueError, match="lr > 0"):
        deep_dream(model, image, "features.1", lr=0)
    with pytest.raises(ValueError, match="channel 99"):
        deep_dream(model, image, "features.1", channel=99)
    with pytest.raises(ValueError, match="no layer named"):
        deep_dream(model, image, "conv9")


def test_resize_bilinear() -> None:
    img = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    np.testing.assert_array_equal(resize_bilinear(img, (4, 4)), img)
    small = resize_bilinear(img, (2, 2))
    np.testing.assert_allclose(small[0], [[2.5, 4.5], [10.5, 12.5]])  # 2x2 block means
    big = resize_bilinear(img, (8, 8))
    assert big.shape == (1, 8, 8) and big.dtype == np.float32
    assert big.min() >= 0 and big.max() <= 15


def test_plot_dream(tmp_path: Path) -> None:
    image = digit(0)
    path = plot_dream(image, image + 1, tmp_path / "d.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_keep_structure_projects_onto_the_correlation_constraint() -> None:
    from cnnkit.viz.dream import _keep_structure, _pearson

    rng = np.random.default_rng(0)
    ref = digit(3).astype(np.float64)
    lo, hi = np.zeros((1, 1, 1)), np.ones((1, 1, 1))
    rc = ref - ref.mean()

    def contrast(d):  # the reference's pattern in d, as a fraction of its own
        return float(((d - d.mean()) * rc).sum() / (rc * rc).sum())

    for keep in (0.3, 0.5, 0.9):
        img = np.clip(ref + rng.normal(0, 0.8, ref.shape), 0, 1)
        assert _pearson(img, ref) < keep  # the noise broke the structure
        out = _keep_structure(img, ref, keep, lo, hi)
        r = _pearson(out, ref)
        assert keep <= r < keep + 0.02, (keep, r)  # on the boundary, not far inside it
        assert out.min() >= 0 and out.max() <= 1 and contrast(out) >= keep - 1e-6
        if keep < 0.9:  # the contrast floor does not bind: a projection onto the cone
            s = [t for t in np.linspace(0, 1, 2001) if _pearson(ref + t * (img - ref), ref) >= keep]
            blend = ref + max(s) * (img - ref)  # scaling the whole change back moves farther
            assert np.linalg.norm(out - img) < np.linalg.norm(blend - img)
    ok = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1)
    assert _pearson(ok, ref) > 0.9
    np.testing.assert_array_equal(_keep_structure(ok, ref, 0.5, lo, hi), ok)  # feasible: kept
    # a faint copy on a flat image correlates perfectly but has lost the picture
    faint = 0.99 + 0.01 * ref
    assert _pearson(faint, ref) > 0.999 and contrast(faint) < 0.02
    out = _keep_structure(faint, ref, 0.5, lo, hi)
    assert contrast(out) >= 0.5 - 1e-6 and _pearson(out, ref) >= 0.5
    assert out.min() >= 0 and out.max() <= 1
    # a constant image has lost the structure; a constant reference has none to keep
    assert _pearson(np.full_like(ref, 0.5), ref) == 0.0
    assert _pearson(ref, np.full_like(ref, 0.5)) == 1.0
    out = _keep_structure(np.full_like(ref, 0.5), ref, 0.5, lo, hi)
    assert _pearson(out, ref) >= 0.5 and contrast(out) >= 0.5 - 1e-6
