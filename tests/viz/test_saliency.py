"""Saliency: the class-score input gradient equals PyTorch's for the same LeNet-5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import cnnkit as ck
from cnnkit.models import LeNet5
from cnnkit.viz import plot_saliency, saliency, saliency_map


def torch_twin(model: LeNet5, size: int, dropout: float = 0.0) -> torch.nn.Module:
    """The same LeNet-5 in PyTorch, with the cnnkit model's weights (float64, eval mode)."""
    tn = torch.nn
    pad1 = 0 if size >= 32 else 2
    s1 = (size + 2 * pad1 - 4) // 2
    pad2 = 0 if s1 >= 10 else 2
    s2 = (s1 + 2 * pad2 - 4) // 2
    head: list[torch.nn.Module] = [tn.Flatten()]
    for a, b in ((16 * s2 * s2, 120), (120, 84)):
        head += [tn.Linear(a, b), tn.ReLU()] + ([tn.Dropout(dropout)] if dropout else [])
    head.append(tn.Linear(84, 10))
    twin = tn.ModuleDict(
        {
            "features": tn.Sequential(
                tn.Conv2d(1, 6, 5, padding=pad1), tn.ReLU(), tn.MaxPool2d(2),
                tn.Conv2d(6, 16, 5, padding=pad2), tn.ReLU(), tn.MaxPool2d(2),
            ),
            "classifier": tn.Sequential(*head),
        }
    ).double()  # fmt: skip
    state = {
        k: torch.from_numpy(np.asarray(v.data, np.float64)) for k, v in model.state_dict().items()
    }
    twin.load_state_dict(state)
    return twin.eval()


def torch_saliency(twin: torch.nn.Module, image: np.ndarray, target: int) -> np.ndarray:
    x = torch.tensor(image[None], dtype=torch.float64, requires_grad=True)
    scores = twin["classifier"](twin["features"](x))
    scores[0, target].backward()
    return x.grad[0].numpy()


@pytest.mark.parametrize("size", [8, 28])
def test_saliency_equals_torch_input_gradient(size: int) -> None:
    ck.manual_seed(1)
    model = LeNet5(input_size=size).double()
    twin = torch_twin(model, size)
    image = np.random.default_rng(size).random((1, size, size))
    for target in (0, 3, 9):
        got = saliency(model, image, target)
        want = torch_saliency(twin, image, target)
        assert got.shape == image.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
        assert np.abs(want).max() > 0


def test_saliency_default_target_is_the_prediction_and_model_state_is_kept() -> None:
    ck.manual_seed(2)
    model = LeNet5(input_size=8, dropout=0.5).double()
    model.train()
    image = np.random.default_rng(0).random((1, 1, 8, 8))  # a batch of one works too
    twin = torch_twin(model, 8, dropout=0.5)
    with torch.no_grad():
        pred = int(twin["classifier"](twin["features"](torch.tensor(image))).argmax())
    first = model.features[0].weight
    first.grad = ck.ones(*first.shape, dtype=first.dtype)  # a gradient the user accumulated
    got = saliency(model, image)
    np.testing.assert_allclose(got, torch_saliency(twin, image[0], pred), rtol=1e-10, atol=1e-13)
    assert model.training, "saliency must restore training mode"
    assert all(p.requires_grad for p in model.parameters())
    np.testing.assert_array_equal(first.grad.data, 1.0)  # left alone
    assert all(p.grad is None for p in model.parameters() if p is not first)


def test_saliency_rejects_bad_targets_and_batches() -> None:
    model = LeNet5(input_size=8)
    image = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="target"):
        saliency(model, image, 10)
    with pytest.raises(ValueError, match="one image"):
        saliency(model, np.zeros((2, 1, 8, 8), np.float32))


def test_saliency_map_and_plot(tmp_path: Path) -> None:
    ck.manual_seed(3)
    model = LeNet5(input_size=8)
    image = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    grad = saliency(model, image, 2)
    smap = saliency_map(grad)
    assert smap.shape == (8, 8) and smap.max() == pytest.approx(1.0) and smap.min() >= 0
    path = tmp_path / "sal.png"
    out = plot_saliency(model, image, path, target=2)
    np.testing.assert_allclose(out, smap)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp*"))
