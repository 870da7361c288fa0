"""Whole-network parity with PyTorch: training trajectories and a multi-branch module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn as nn
import cnnkit.optim as optim
from tests.conftest import assert_close

tnn = torch.nn


def _small_cnn(lib, **kw):
    return lib.Sequential(
        lib.Conv2d(1, 4, 3, padding=1, **kw),
        lib.BatchNorm2d(4, **kw),
        lib.ReLU(),
        lib.MaxPool2d(2),
        lib.Conv2d(4, 6, 3, **kw),
        lib.ReLU(),
        lib.Flatten(),
        lib.Linear(6 * 4 * 4, 10, **kw),
    )


def _batches(steps, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((8, 1, 12, 12)), rng.integers(0, 10, 8)) for _ in range(steps)]


def _train_both(make_opts, steps):
    torch.manual_seed(0)
    t_model = _small_cnn(tnn).double()
    c_model = _small_cnn(nn, dtype="float64")
    c_model.load_state_dict(t_model.state_dict())
    t_opt, c_opt = make_opts(t_model, c_model)
    t_loss_fn, c_loss_fn = tnn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    t_losses, c_losses = [], []
    for x, y in _batches(steps):
        t_opt.zero_grad()
        c_opt.zero_grad()
        lt = t_loss_fn(t_model(torch.tensor(x)), torch.tensor(y))
        lc = c_loss_fn(c_model(ck.tensor(x)), ck.tensor(y))
        lt.backward()
        lc.backward()
        t_opt.step()
        c_opt.step()
        t_losses.append(lt.item())
        c_losses.append(lc.item())
    return t_model, c_model, t_losses, c_losses


def _assert_same_model(t_model, c_model, t_losses, c_losses):
    np.testing.assert_allclose(c_losses, t_losses, rtol=1e-8)
    assert c_losses[-1] < c_losses[0]  # it actually learned something
    t_sd = t_model.state_dict()
    c_sd = c_model.state_dict()
    assert list(c_sd) == list(t_sd)
    for k, v in t_sd.items():
        assert_close(c_sd[k], v, rtol=1e-8, atol=1e-10, what=k)
    # and the trained models agree in eval mode (running statistics included)
    t_model.eval()
    c_model.eval()
    x = np.random.default_rng(99).standard_normal((5, 1, 12, 12))
    assert_close(c_model(ck.tensor(x)), t_model(torch.tensor(x)), rtol=1e-8, atol=1e-10)


def test_sgd_nesterov_training_matches_torch():
    def make(t_model, c_model):
        kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True)
        return torch.optim.SGD(t_model.parameters(), **kw), optim.SGD(c_model.parameters(), **kw)

    _assert_same_model(*_train_both(make, 20))


def test_adam_training_matches_torch():
    def make(t_model, c_model):
        kw = dict(lr=1e-2, betas=(0.9, 0.99), weight_decay=1e-4)
        return torch.optim.Adam(t_model.parameters(), **kw), optim.Adam(c_model.parameters(), **kw)

    _assert_same_model(*_train_both(make, 10))


# ----------------------------------------------------------------------------- inception block
def _inception_class(lib, cat):
    base = lib.Module

    class Inception(base):
        """Four branches concatenated on channels; the input ``x`` feeds every branch."""

        def __init__(self, cin, **kw):
            super().__init__()
            self.b1 = lib.Conv2d(cin, 4, 1, **kw)
            self.b3_reduce = lib.Conv2d(cin, 3, 1, **kw)
            self.b3 = lib.Conv2d(3, 5, 3, padding=1, **kw)
            self.b5_reduce = lib.Conv2d(cin, 2, 1, **kw)
            self.b5 = lib.Conv2d(2, 3, 5, padding="same", **kw)
            self.pool = lib.MaxPool2d(3, stride=1, padding=1)
            self.pool_proj = lib.Conv2d(cin, 2, 1, bias=False, **kw)
            self.bn = lib.BatchNorm2d(4 + 5 + 3 + 2, **kw)
            self.act = lib.ReLU()
            self.head = lib.Linear(14, 3, **kw)

        def forward(self, x):
            r = self.act(self.b3_reduce(x))
            # r is used twice: in the 3x3 branch and again added to a 1x1 view of it
            y3 = self.b3(r) + r.sum(dim=1, keepdim=True)
            y = cat(
                [
                    self.b1(x),
                    y3,
                    self.b5(self.act(self.b5_reduce(x))),
                    self.pool_proj(self.pool(x)),
                ],
                dim=1,
            )
            y = self.act(self.bn(y))
            return self.head(y.mean(dim=(2, 3))), y

    return Inception


def test_inception_module_outputs_and_gradients_match_torch():
    torch.manual_seed(0)
    t_block = _inception_class(tnn, lambda ts, dim: torch.cat(ts, dim=dim))(3).double()
    c_block = _inception_class(nn, ck.cat)(3, dtype="float64")
    assert [n for n, _ in c_block.named_parameters()] == [n for n, _ in t_block.named_parameters()]
    c_block.load_state_dict(t_block.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    xt = torch.tensor(x, requires_grad=True)
    xc = ck.tensor(x, requires_grad=True)
    lt, ft = t_block(xt)
    lc, fc = c_block(xc)
    assert fc.shape == (2, 14, 7, 6)
    assert_close(fc, ft, what="features")
    assert_close(lc, lt, what="logits")
    y = np.array([0, 2])
    t_loss = tnn.CrossEntropyLoss()(lt, torch.tensor(y)) + (ft**2).mean()
    c_loss = nn.CrossEntropyLoss()(lc, ck.tensor(y)) + (fc**2).mean()
    assert_close(c_loss, t_loss, what="loss")
    t_loss.backward()
    c_loss.backward()
    assert_close(xc.grad, xt.grad, what="input grad")
    t_params = dict(t_block.named_parameters())
    for name, p in c_block.named_parameters():
        assert_close(p.grad, t_params[name].grad, what=f"{name} grad")
    assert_close(c_block.bn.running_var, t_block.bn.running_var)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_gradients_accumulate_across_backward_calls_like_torch(set_to_none):
    torch.manual_seed(1)
    t_model = _small_cnn(tnn).double()
    c_model = _small_cnn(nn, dtype="float64")
    c_model.load_state_dict(t_model.state_dict())
    (x1, y1), (x2, y2) = _batches(2, seed=3)
    for x, y in [(x1, y1), (x2, y2)]:
        tnn.CrossEntropyLoss()(t_model(torch.tensor(x)), torch.tensor(y)).backward()
        nn.CrossEntropyLoss()(c_model(ck.tensor(x)), ck.tensor(y)).backward()
    t_params = dict(t_model.named_parameters())
    for name, p in c_model.named_parameters():
        assert_close(p.grad, t_params[name].grad, what=name)
    t_model.zero_grad(set_to_none=set_to_none)
    c_model.zero_grad(set_to_none=set_to_none)
    for name, p in c_model.named_parameters():
        if set_to_none:
            assert p.grad is None and t_params[name].grad is None
        else:
            assert_close(p.grad, t_params[name].grad, what=name)
