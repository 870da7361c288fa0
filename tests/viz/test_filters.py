"""Filter grids and activation maps: returned arrays, layer lookup, PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import nn
from cnnkit.models import LeNet5
from cnnkit.viz import activations, filter_images, plot_activations, plot_filters
from cnnkit.viz.layers import resolve_layer

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG


def test_filter_images_are_normalised_per_filter() -> None:
    w = np.random.default_rng(0).normal(size=(4, 3, 5, 5))
    w[1] *= 100  # a filter with a much larger range is scaled on its own
    imgs = filter_images(w)
    assert imgs.shape == (4, 5, 5, 3)  # RGB: channels last
    for i in range(4):
        assert imgs[i].min() == 0 and imgs[i].max() == pytest.approx(1.0)
        ref = (w[i] - w[i].min()) / (w[i].max() - w[i].min())
        np.testing.assert_allclose(imgs[i], ref.transpose(1, 2, 0))
    gray = filter_images(np.ones((2, 1, 3, 3)))  # constant filters: no division by zero
    assert gray.shape == (2, 1, 3, 3) and np.all(gray == 0)


@pytest.mark.parametrize("c_in", [1, 3, 6])
def test_plot_filters(tmp_path: Path, c_in: int) -> None:
    ck.manual_seed(0)
    conv = nn.Conv2d(c_in, 10, 3)
    path = tmp_path / "f.png"
    imgs = plot_filters(conv, path)
    assert is_png(path)
    assert imgs.shape == ((10, 3, 3, 3) if c_in == 3 else (10, c_in, 3, 3))
    np.testing.assert_allclose(imgs, filter_images(conv.weight.data))


def test_plot_filters_rejects_a_linear_layer(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Conv2d"):
        plot_filters(nn.Linear(3, 4), tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


def test_layer_lookup_by_index_name_and_module() -> None:
    seq = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten())
    assert resolve_layer(seq, 1) == ("1", seq[1])
    assert resolve_layer(seq, -1) == ("2", seq[2])
    assert resolve_layer(seq, "0") == ("0", seq[0])
    assert resolve_layer(seq, seq[1]) == ("1", seq[1])
    lenet = LeNet5(input_size=8)
    assert resolve_layer(lenet, "features.3")[1] is lenet.features[3]
    assert resolve_layer(lenet, lenet.features[4])[0] == "features.4"
    with pytest.raises(ValueError, match="available: features"):
        resolve_layer(lenet, "features.9")
    with pytest.raises(ValueError, match="Sequential"):
        resolve_layer(lenet, 0)
    with pytest.raises(ValueError, match="out of range"):
        resolve_layer(seq, 3)
    with pytest.raises(ValueError, match="not a layer"):
        resolve_layer(seq, nn.ReLU())
    with pytest.raises(TypeError):
        resolve_layer(seq, 1.5)


def test_activations_equal_the_partial_forward(tmp_path: Path) -> None:
    ck.manual_seed(0)
    model = LeNet5(input_size=8)
    image = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    model.train()
    act = plot_activations(model, image, "features.1", tmp_path / "a.png")
    assert is_png(tmp_path / "a.png") and model.training
    want = model.features[1](model.features[0](ck.tensor(image[None]))).data[0]
    np.testing.assert_allclose(act, want, rtol=1e-6)
    assert act.shape == (6, 8, 8)
    # the same layer by module object; a Sequential by index
    np.testing.assert_allclose(activations(model, image, model.features[1]), act)
    np.testing.assert_allclose(activations(model.features, image, 1), act)
    with pytest.raises(ValueError, match="not feature maps"):
        plot_activations(model, image, "classifier.1", tmp_path / "b.png")


def test_plot_activations_rgb_and_many_maps(tmp_path: Path) -> None:
    ck.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 40, 3, padding=1), nn.ReLU())
    image = np.random.default_rng(0).random((3, 12, 12)).astype(np.float32)
    act = plot_activations(model, image, 0, tmp_path / "a.png", max_maps=16)
    assert act.shape == (40, 12, 12)  # all maps are returned, 16 are drawn
    assert is_png(tmp_path / "a.png")
