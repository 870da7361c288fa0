"""Adadelta, RMSprop, Adagrad, SGD(nesterov) and OneCycleLR / MultiStepLR / ExponentialLR /
LambdaLR against PyTorch, step by step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck


def _run(tcls, ccls, steps: int = 6, **kw) -> float:
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((5, 4))
    tp = torch.nn.Parameter(torch.tensor(w0))
    cp = ck.nn.Parameter(ck.tensor(w0))
    to, co = tcls([tp], **kw), ccls([cp], **kw)
    for _ in range(steps):
        g = rng.standard_normal((5, 4))
        tp.grad, cp.grad = torch.tensor(g), ck.tensor(g)
        to.step()
        co.step()
    return float(np.abs(tp.detach().numpy() - cp.numpy()).max())


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("Adadelta", {}),
        ("Adadelta", {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1, "maximize": True}),
        ("RMSprop", {}),
        ("RMSprop", {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.1}),
        ("Adagrad", {}),
        (
            "Adagrad",
            {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 0.1},
        ),
        ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ],
)
def test_optimizer_matches_torch(name: str, kw: dict) -> None:
    assert _run(getattr(torch.optim, name), getattr(ck.optim, name), **kw) < 1e-12


def test_optimizer_rejects_bad_options() -> None:
    p = [ck.nn.Parameter(ck.zeros(2))]
    with pytest.raises(ValueError, match="rho"):
        ck.optim.Adadelta(p, rho=1.5)
    with pytest.raises(ValueError, match="lr"):
        ck.optim.RMSprop(p, lr=-1)


def _lrs(make_t, make_c, opt: str, steps: int) -> tuple[list, list]:
    tp = [torch.nn.Parameter(torch.zeros(2))]
    cp = [ck.nn.Parameter(ck.zeros(2))]
    kw = {"lr": 0.1, "momentum": 0.9} if opt == "SGD" else {"lr": 0.1}
    to, co = getattr(torch.optim, opt)(tp, **kw), getattr(ck.optim, opt)(cp, **kw)
    ts, cs = make_t(to), make_c(co)
    out_t, out_c = [], []
    for _ in range(steps):
        to.step()
        co.step()
        ts.step()
        cs.step()
        g_t, g_c = to.param_groups[0], co.param_groups[0]
        out_t.append((g_t["lr"], g_t.get("momentum", g_t.get("betas", (0,))[0])))
        out_c.append((g_c["lr"], g_c.get("momentum", g_c.get("betas", (0,))[0])))
    return out_t, out_c


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
@pytest.mark.parametrize(
    "kw",
    [
        {"max_lr": 1.0, "total_steps": 20},
        {"max_lr": 0.5, "epochs": 3, "steps_per_epoch": 5, "anneal_strategy": "linear"},
        {"max_lr": 0.5, "total_steps": 15, "three_phase": True, "pct_start": 0.25},
    ],
)
def test_one_cycle_lr_matches_torch(opt: str, kw: dict) -> None:
    n = kw.get("total_steps", 15) - 1
    t, c = _lrs(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, **kw),
        lambda o: ck.optim.lr_scheduler.OneCycleLR(o, **kw),
        opt,
        n,
    )
    np.testing.assert_allclose(np.array(c), np.array(t), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("MultiStepLR", {"milestones": [2, 5], "gamma": 0.3}),
        ("ExponentialLR", {"gamma": 0.9}),
        ("LambdaLR", {"lr_lambda": lambda e: 0.95**e}),
    ],
)
def test_schedulers_match_torch(name: str, kw: dict) -> None:
    t, c = _lrs(
        lambda o: getattr(torch.optim.lr_scheduler, name)(o, **kw),
        lambda o: getattr(ck.optim.lr_scheduler, name)(o, **kw),
        "SGD",
        8,
    )
    np.testing.assert_allclose(np.array(c), np.array(t), rtol=1e-12)


def test_one_cycle_lr_refuses_steps_past_the_end() -> None:
    o = ck.optim.SGD([ck.nn.Parameter(ck.zeros(2))], lr=0.1, momentum=0.9)
    s = ck.optim.lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=3)
    for _ in range(3):
        s.step()
    with pytest.raises(ValueError, match="total_steps"):
        s.step()
