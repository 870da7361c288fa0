"""Every convolution's maps in one pass, and the image tiles the displays are built from."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import nn
from cnnkit.viz import activations
from cnnkit.viz.conv_maps import conv_activations, conv_layers, normalise, tile


def test_one_pass_gives_each_convolutions_own_output() -> None:
    ck.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 3),
    )  # fmt: skip
    model.train()
    x = np.random.default_rng(0).standard_normal((1, 8, 8)).astype(np.float32)
    maps, out = conv_activations(model, x)
    assert [n for n, _ in maps] == [n for n, _ in conv_layers(model)] == ["0", "3"]
    for name, act in maps:
        np.testing.assert_array_equal(act, activations(model, x, name))
    np.testing.assert_allclose(out, model.eval()(ck.tensor(x[None])).numpy()[0], rtol=1e-6)
    assert model.training is False  # eval() above; conv_activations restored train mode
    model.train()
    conv_activations(model, x)
    assert model.training is True
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed
    with pytest.raises(ValueError, match=r"expected one image \(c, h, w\)"):
        conv_activations(model, np.zeros((2, 1, 8, 8), np.float32))


def test_tile_layout_by_hand() -> None:
    imgs = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2) / 11
    out = tile(imgs, ncols=2, scale=2, pad=1, fill=0.5)
    assert out.shape == (2 * (4 + 1) + 1, 2 * (4 + 1) + 1)
    np.testing.assert_array_equal(out[1:5, 1:5], np.kron(imgs[0], np.ones((2, 2))))
    np.testing.assert_array_equal(out[1:5, 6:10], np.kron(imgs[1], np.ones((2, 2))))
    np.testing.assert_array_equal(out[6:10, 1:5], np.kron(imgs[2], np.ones((2, 2))))
    assert np.all(out[6:10, 6:10] == 0.5) and np.all(out[0] == 0.5) and np.all(out[:, 5] == 0.5)
    rgb = tile(np.zeros((2, 3, 3, 3)), pad=0)
    assert rgb.shape == (3, 6, 3)
    with pytest.raises(ValueError, match="expected"):
        tile(np.zeros((2, 3, 3, 2)))


def test_normalise() -> None:
    a = np.array([[1.0, 3.0], [5.0, 5.0]])
    np.testing.assert_allclose(normalise(a), [[0, 0.5], [1, 1]])
    np.testing.assert_allclose(normalise(a, per_item=True), [[0, 1], [0, 0]])
