"""ELU, SiLU and ReLU6 (functional and modules) against PyTorch: values and gradients,
including the points where the derivative changes (0, and 6 for ReLU6), and float64
gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn as nn
import cnnkit.nn.functional as F

X = np.array([[-7.0, -1.5, -1e-3, 0.0, 1e-3, 0.7], [3.0, 5.999, 6.0, 6.5, 40.0, -40.0]])

CASES = [
    ("elu", {}, nn.ELU, torch.nn.ELU),
    ("elu", {"alpha": 0.5}, lambda: nn.ELU(alpha=0.5), lambda: torch.nn.ELU(alpha=0.5)),
    ("silu", {}, nn.SiLU, torch.nn.SiLU),
    ("relu6", {}, nn.ReLU6, torch.nn.ReLU6),
]


@pytest.mark.parametrize(("name", "kw", "ck_mod", "t_mod"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_and_gradients_match_pytorch(name, kw, ck_mod, t_mod, dtype) -> None:
    w = np.random.default_rng(0).normal(size=X.shape).astype(dtype)
    for module in (False, True):
        xc = ck.tensor(X.astype(dtype), requires_grad=True)
        xt = torch.tensor(X.astype(dtype), requires_grad=True)
        yc = ck_mod()(xc) if module else getattr(F, name)(xc, **kw)
        yt = t_mod()(xt) if module else getattr(torch.nn.functional, name)(xt, **kw)
        tol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(yc.numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
        assert yc.dtype == dtype
        (yc * ck.tensor(w)).sum().backward()
        (yt * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["elu", "silu", "relu6"])
def test_gradcheck_float64(name: str) -> None:
    # away from the kinks, where the numeric derivative is defined
    x = np.random.default_rng(1).uniform(-4, 10, size=(3, 5))
    x = x[np.all(np.abs(x[..., None] - np.array([0.0, 6.0])) > 0.05, axis=-1)]
    xt = torch.tensor(x, requires_grad=True)
    assert torch.autograd.gradcheck(getattr(torch.nn.functional, name), (xt,))
    assert ck.gradcheck(getattr(F, name), (ck.tensor(x, requires_grad=True),))
