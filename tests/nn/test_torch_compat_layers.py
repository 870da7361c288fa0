"""GELU, Dropout2d, Softmax2d, AdaptiveMaxPool2d, F.interpolate, lazy layers and gradient
clipping: forward and every gradient against PyTorch, float64 gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn as nn
import cnnkit.nn.functional as F
from tests.conftest import assert_close


def _pair(x: np.ndarray) -> tuple[ck.Tensor, torch.Tensor]:
    return ck.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch_and_gradcheck(approximate: str) -> None:
    x = np.random.default_rng(0).normal(0, 2, (3, 7))
    a, b = _pair(x)
    ya, yb = nn.GELU(approximate)(a), torch.nn.GELU(approximate)(b)
    assert_close(ya, yb)
    g = np.random.default_rng(1).normal(size=x.shape)
    ya.backward(ck.tensor(g))
    yb.backward(torch.tensor(g))
    assert_close(a.grad, b.grad)
    assert ck.gradcheck(lambda t: F.gelu(t, approximate), [ck.tensor(x, requires_grad=True)])


def test_softmax2d_matches_torch() -> None:
    x = np.random.default_rng(0).normal(size=(2, 4, 3, 5))
    a, b = _pair(x)
    ya, yb = nn.Softmax2d()(a), torch.nn.Softmax2d()(b)
    assert_close(ya, yb)
    (ya * ck.tensor(x)).sum().backward()
    (yb * torch.tensor(x)).sum().backward()
    assert_close(a.grad, b.grad)


@pytest.mark.parametrize(("hw", "out"), [((7, 9), (3, 4)), ((5, 5), 5), ((6, 8), (None, 3))])
def test_adaptive_max_pool2d_matches_torch(hw: tuple[int, int], out) -> None:
    x = np.random.default_rng(0).normal(size=(2, 3, *hw))
    a, b = _pair(x)
    ya, yb = nn.AdaptiveMaxPool2d(out)(a), torch.nn.AdaptiveMaxPool2d(out)(b)
    assert_close(ya, yb)
    g = np.random.default_rng(1).normal(size=tuple(yb.shape))
    ya.backward(ck.tensor(g))
    yb.backward(torch.tensor(g))
    assert_close(a.grad, b.grad)
    assert ck.gradcheck(lambda t: F.adaptive_max_pool2d(t, out), [ck.tensor(x, requires_grad=True)])


@pytest.mark.parametrize(
    "kw",
    [
        {"scale_factor": 2, "mode": "nearest"},
        {"size": (5, 7), "mode": "nearest"},
        {"scale_factor": 1.5, "mode": "nearest"},
        {"scale_factor": 2, "mode": "bilinear"},
        {"size": (7, 4), "mode": "bilinear"},
        {"size": (7, 9), "mode": "bilinear", "align_corners": True},
        {"scale_factor": 0.5, "mode": "bilinear"},
    ],
)
def test_interpolate_matches_torch(kw: dict) -> None:
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 6))
    a, b = _pair(x)
    ya, yb = F.interpolate(a, **kw), torch.nn.functional.interpolate(b, **kw)
    assert_close(ya, yb)
    g = np.random.default_rng(1).normal(size=tuple(yb.shape))
    ya.backward(ck.tensor(g))
    yb.backward(torch.tensor(g))
    assert_close(a.grad, b.grad)
    assert ck.gradcheck(lambda t: F.interpolate(t, **kw), [ck.tensor(x, requires_grad=True)])


def test_interpolate_rejects_bad_arguments() -> None:
    x = ck.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="mode"):
        F.interpolate(x, scale_factor=2, mode="bicubic")
    with pytest.raises(ValueError, match="exactly one"):
        F.interpolate(x)


def test_dropout2d_zeroes_whole_channels_and_scales() -> None:
    ck.manual_seed(0)
    x = ck.ones(8, 16, 3, 3, requires_grad=True)
    y = nn.Dropout2d(0.5)(x)
    per_channel = y.numpy().reshape(8, 16, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))
    assert 0 < (per_channel == 0).all(-1).sum() < 128
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())
    m = nn.Dropout2d(0.5).eval()
    assert m(x) is x


def test_lazy_layers_take_their_input_size_and_become_eager() -> None:
    ck.manual_seed(0)
    model = nn.Sequential(nn.LazyConv2d(4, 3, padding=1), nn.Flatten(), nn.LazyLinear(5))
    params_before = list(model.parameters())
    opt = ck.optim.SGD(model.parameters(), lr=0.1)
    y = model(ck.randn(2, 3, 6, 6))
    assert y.shape == (2, 5)
    assert type(model[0]) is nn.Conv2d and model[0].weight.shape == (4, 3, 3, 3)
    assert type(model[2]) is nn.Linear and model[2].in_features == 144
    assert [id(p) for p in model.parameters()] == [id(p) for p in params_before]
    bound = 1 / np.sqrt(144)  # PyTorch's default init for in_features=144
    assert np.abs(model[2].weight.numpy()).max() <= bound
    y.sum().backward()
    w = model[2].weight.numpy().copy()
    opt.step()
    assert not np.allclose(w, model[2].weight.numpy())
    tm = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(),
                             torch.nn.Linear(144, 5))  # fmt: skip
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()})
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 6)).astype(np.float32)
    assert_close(model(ck.tensor(x)), tm(torch.tensor(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_torch(norm_type: float) -> None:
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=s) for s in [(3, 4), (5,), (2, 2, 2)]]
    cps = [ck.nn.Parameter(ck.tensor(np.zeros(g.shape))) for g in grads]
    tps = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for c, t, g in zip(cps, tps, grads, strict=True):
        c.grad, t.grad = ck.tensor(g), torch.tensor(g)
    nc = nn.utils.clip_grad_norm_(cps, 1.5, norm_type)
    nt = torch.nn.utils.clip_grad_norm_(tps, 1.5, norm_type)
    assert float(nc) == pytest.approx(float(nt), rel=1e-12)
    for c, t in zip(cps, tps, strict=True):
        assert_close(c.grad, t.grad)
    nn.utils.clip_grad_value_(cps, 0.1)
    torch.nn.utils.clip_grad_value_(tps, 0.1)
    for c, t in zip(cps, tps, strict=True):
        assert_close(c.grad, t.grad)


def _decoder(mod):
    nn_ = mod.nn if mod is ck else torch.nn
    return nn_.Sequential(
        nn_.Conv2d(3, 8, 3, padding=1), nn_.GroupNorm(2, 8), nn_.PReLU(8), nn_.ZeroPad2d(1),
        nn_.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1),
        nn_.Upsample(scale_factor=0.5, mode="bilinear"), nn_.Flatten(), nn_.LayerNorm(576),
        nn_.Linear(576, 5),
    )  # fmt: skip


def test_new_layers_checkpoints_interchange_with_torch(tmp_path) -> None:
    """A model of the layers added for PyTorch scripts: torch's file loads into cnnkit's
    model and back, with the same outputs."""
    t = _decoder(torch).double()
    torch.save(t.state_dict(), tmp_path / "t.pt")
    c = _decoder(ck).double()
    c.load_state_dict(ck.load(tmp_path / "t.pt"))
    x = np.random.default_rng(0).normal(size=(2, 3, 10, 10))
    assert_close(c(ck.tensor(x)), t(torch.tensor(x)))
    ck.save(c.state_dict(), tmp_path / "c.pt")
    t2 = _decoder(torch).double()
    t2.load_state_dict(torch.load(tmp_path / "c.pt"))
    assert_close(t2(torch.tensor(x)).detach().numpy(), t(torch.tensor(x)), rtol=0, atol=0)


def test_new_layers_on_the_meta_device() -> None:
    from cnnkit.backend import meta_array

    m = nn.Sequential(nn.ConvTranspose2d(3, 4, 3, stride=2, device="meta"),
                      nn.GroupNorm(2, 4, device="meta"), nn.LayerNorm(11, device="meta"),
                      nn.PReLU(device="meta"), nn.Upsample(scale_factor=2))  # fmt: skip
    assert m(ck.Tensor(meta_array((1, 3, 5, 5), "float32"))).shape == (1, 4, 22, 22)
    e = nn.Embedding(10, 3, padding_idx=2, device="meta")
    assert e(ck.tensor([[1, 2]])).shape == (1, 2, 3)
