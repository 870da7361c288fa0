"""SmoothL1Loss, HuberLoss and KLDivLoss against PyTorch in float64: every reduction,
the gradients of input and target, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn as nn
from cnnkit.functional import loss as L
from tests.conftest import assert_close

REDUCTIONS = ["mean", "sum", "none"]


def _pair(x: np.ndarray) -> tuple[ck.Tensor, torch.Tensor]:
    return ck.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)


def _compare(c_loss, t_loss, x: np.ndarray, t: np.ndarray) -> float:
    """Forward, then the gradients of input and target with a random upstream gradient;
    returns the largest difference from PyTorch's, relative to its magnitude."""
    xc, xt = _pair(x)
    tc, tt = _pair(t)
    yc, yt = c_loss(xc, tc), t_loss(xt, tt)
    assert_close(yc, yt, what="forward")
    g = np.random.default_rng(7).normal(size=tuple(yt.shape))
    yc.backward(ck.tensor(g))
    yt.backward(torch.tensor(g))
    assert_close(xc.grad, xt.grad, what="input grad")
    assert_close(tc.grad, tt.grad, what="target grad")
    pairs = [(yc, yt), (xc.grad, xt.grad), (tc.grad, tt.grad)]
    return max(
        float(np.max(np.abs(a.numpy() - b.detach().numpy()), initial=0.0))
        / max(1.0, float(np.max(np.abs(b.detach().numpy()), initial=0.0)))
        for a, b in pairs
    )


def _diffs(shape: tuple[int, ...], width: float) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets whose differences fall on both sides of ``width`` and on it."""
    rng = np.random.default_rng(0)
    t = rng.normal(size=shape)
    d = rng.normal(0, 2 * max(width, 0.5), size=shape)
    d.flat[0], d.flat[1], d.flat[2] = width, -width, 0.0
    return t + d, t


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [1.0, 0.3, 2.5, 0.0])
def test_smooth_l1_loss_matches_torch(reduction: str, beta: float) -> None:
    x, t = _diffs((3, 5, 7), beta)
    err = _compare(nn.SmoothL1Loss(reduction=reduction, beta=beta),
                   torch.nn.SmoothL1Loss(reduction=reduction, beta=beta), x, t)  # fmt: skip
    assert err < 1e-12


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [1.0, 0.3, 2.5])
def test_huber_loss_matches_torch(reduction: str, delta: float) -> None:
    x, t = _diffs((4, 9), delta)
    err = _compare(nn.HuberLoss(reduction=reduction, delta=delta),
                   torch.nn.HuberLoss(reduction=reduction, delta=delta), x, t)  # fmt: skip
    assert err < 1e-12


def test_smooth_l1_non_contiguous_and_scalar() -> None:
    x, t = _diffs((6, 8), 1.0)
    assert _compare(nn.SmoothL1Loss(), torch.nn.SmoothL1Loss(), x.T, t.T) < 1e-12
    assert _compare(nn.HuberLoss(), torch.nn.HuberLoss(), np.array(3.0), np.array(0.5)) < 1e-12


def test_smooth_l1_gradcheck() -> None:
    x, t = _diffs((3, 4), 0.7)
    x.flat[:3] += 1e-3  # away from the kink, where finite differences straddle it
    xt = [ck.tensor(x, requires_grad=True), ck.tensor(t, requires_grad=True)]
    assert ck.gradcheck(lambda a, b: L.smooth_l1_loss(a, b, beta=0.7), xt)
    assert ck.gradcheck(lambda a, b: L.huber_loss(a, b, reduction="sum", delta=0.7), xt)


def _log_probs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).normal(size=shape)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(reduction: str, log_target: bool) -> None:
    x = _log_probs((5, 4, 3), 0)
    t = _log_probs((5, 4, 3), 1)
    if not log_target:
        t = np.exp(t)
    ours = nn.KLDivLoss(reduction=reduction, log_target=log_target)
    err = _compare(ours, torch.nn.KLDivLoss(reduction=reduction, log_target=log_target), x, t)
    assert err < 1e-12


def test_kl_div_zero_target_adds_nothing() -> None:
    x = _log_probs((2, 3), 0)
    t = np.array([[0.0, 0.4, 0.6], [1.0, 0.0, 0.0]])
    xc, xt = _pair(x)
    yc = nn.KLDivLoss(reduction="batchmean")(xc, ck.tensor(t))
    yt = torch.nn.KLDivLoss(reduction="batchmean")(xt, torch.tensor(t))
    assert_close(yc, yt)
    yc.backward()
    yt.backward()
    assert_close(xc.grad, xt.grad)
    assert np.isfinite(yc.item())
    assert ck.gradcheck(lambda a: L.kl_div(a, ck.tensor(t), reduction="sum"),
                        [ck.tensor(x, requires_grad=True)])  # fmt: skip


def test_losses_state_dict_and_repr() -> None:
    for m in (nn.SmoothL1Loss(beta=0.5), nn.HuberLoss(delta=2.0), nn.KLDivLoss()):
        assert m.state_dict() == {}
    assert nn.KLDivLoss(reduction="batchmean").reduction == "batchmean"


def test_losses_reject_bad_arguments() -> None:
    x = ck.zeros(2, 3)
    with pytest.raises(ValueError, match="smooth_l1_loss: beta must be a finite number >= 0"):
        L.smooth_l1_loss(x, ck.zeros(2, 3), beta=-1.0)
    with pytest.raises(ValueError, match="huber_loss: delta must be a finite number > 0"):
        L.huber_loss(x, ck.zeros(2, 3), delta=0.0)
    with pytest.raises(ValueError, match=r"expected target of shape \(2, 3\)"):
        nn.SmoothL1Loss()(x, ck.zeros(3, 2))
    with pytest.raises(ValueError, match="SmoothL1Loss: reduction must be"):
        nn.SmoothL1Loss(reduction="avg")
    with pytest.raises(ValueError, match="KLDivLoss: reduction must be 'mean', 'batchmean'"):
        nn.KLDivLoss(reduction="batch")
    with pytest.raises(ValueError, match="kl_div: reduction must be"):
        L.kl_div(x, ck.zeros(2, 3), reduction="avg")
    with pytest.raises(ValueError, match="size_average and reduce are deprecated"):
        nn.KLDivLoss(size_average=True)
    with pytest.raises(TypeError, match="kl_div: expected a floating-point Tensor as input"):
        L.kl_div(ck.tensor(np.zeros((2, 2), np.int64)), ck.zeros(2, 2))
