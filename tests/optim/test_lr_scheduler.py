"""Learning-rate schedulers against torch.optim.lr_scheduler."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import optim
from cnnkit.optim import lr_scheduler
from tests.conftest import torch

N_STEPS = 30


def _ck_opt(two_groups: bool = True, lr: float = 0.1):
    a = ck.tensor(np.zeros(2), requires_grad=True)
    b = ck.tensor(np.zeros(3), requires_grad=True)
    if two_groups:
        return optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=lr, momentum=0.9)
    return optim.SGD([a, b], lr=lr, momentum=0.9)


def _torch_opt(two_groups: bool = True, lr: float = 0.1):
    a = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    if two_groups:
        return torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=lr, momentum=0.9)
    return torch.optim.SGD([a, b], lr=lr, momentum=0.9)


def _lam(e: int) -> float:
    return 0.95**e + 0.01 * e


SCHEDULERS = {
    "StepLR": (lambda m, o: m.StepLR(o, step_size=7, gamma=0.5)),
    "StepLR1": (lambda m, o: m.StepLR(o, step_size=1, gamma=0.9)),
    "MultiStepLR": (lambda m, o: m.MultiStepLR(o, milestones=[12, 3, 20, 20], gamma=0.3)),
    "ExponentialLR": (lambda m, o: m.ExponentialLR(o, gamma=0.87)),
    "CosineAnnealingLR": (lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.001)),
    "CosineAnnealingLR0": (lambda m, o: m.CosineAnnealingLR(o, T_max=25)),
    "LambdaLR": (lambda m, o: m.LambdaLR(o, lr_lambda=_lam)),
    "LambdaLRList": (lambda m, o: m.LambdaLR(o, lr_lambda=[_lam, lambda e: 1.0 / (1 + e)])),
}


def _warmup_cosine(m, o):
    return m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=5), m.CosineAnnealingLR(o, T_max=12)],
        milestones=[5],
    )  # fmt: skip


def _three_phases(m, o):
    return m.SequentialLR(
        o,
        [m.ExponentialLR(o, gamma=0.8), m.LinearLR(o, 0.5, 0.9, total_iters=4),
         m.MultiStepLR(o, milestones=[3, 6], gamma=0.5)],
        milestones=[4, 13],
    )  # fmt: skip


SCHEDULERS.update(
    {
        "LinearLR": (lambda m, o: m.LinearLR(o)),
        "LinearLRDecay": (lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.05,
                                                  total_iters=17)),
        "WarmRestarts": (lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=7, eta_min=0.002)),
        "WarmRestartsMult": (lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2)),
        "SequentialWarmupCosine": _warmup_cosine,
        "SequentialThree": _three_phases,
        "SequentialStepThenWarmRestarts": (lambda m, o: m.SequentialLR(
            o, [m.StepLR(o, 3, 0.5), m.CosineAnnealingWarmRestarts(o, 4, 2)], milestones=[8])),
    }
)  # fmt: skip


def _lrs(opt) -> list[float]:
    return [float(g["lr"]) for g in opt.param_groups]


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_sequence_matches_torch(name: str) -> None:
    make = SCHEDULERS[name]
    ck_o, th_o = _ck_opt(), _torch_opt()
    ck_s, th_s = make(lr_scheduler, ck_o), make(torch.optim.lr_scheduler, th_o)
    ck_seq, th_seq = [_lrs(ck_o)], [_lrs(th_o)]
    for _ in range(N_STEPS):
        th_o.step()
        ck_o.step()
        ck_s.step()
        th_s.step()
        ck_seq.append(_lrs(ck_o))
        th_seq.append(_lrs(th_o))
        assert ck_s.get_last_lr() == pytest.approx(th_s.get_last_lr(), rel=1e-12)
    assert ck_s.last_epoch == th_s.last_epoch == N_STEPS
    np.testing.assert_allclose(ck_seq, th_seq, rtol=1e-12, atol=1e-15)
    assert len({tuple(x) for x in ck_seq}) > 2, "learning rate never changed"
    assert [g["initial_lr"] for g in ck_o.param_groups] == [0.1, 0.5]


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_state_dict_round_trip(name: str) -> None:
    make = SCHEDULERS[name]
    ref_o = _ck_opt()
    ref_s = make(lr_scheduler, ref_o)
    ref_seq = []
    for _ in range(N_STEPS):
        ref_o.step()
        ref_s.step()
        ref_seq.append(_lrs(ref_o))

    o1 = _ck_opt()
    s1 = make(lr_scheduler, o1)
    for _ in range(11):
        o1.step()
        s1.step()
    sched_sd = json.loads(json.dumps(s1.state_dict()))
    assert "lr_lambdas" not in sched_sd
    opt_sd = o1.state_dict()

    o2 = _ck_opt()
    # the scheduler is built before the optimizer's state is loaded (PyTorch's order):
    # a scheduler whose first step changes the rate (LinearLR) would otherwise scale
    # the loaded rate
    s2 = make(lr_scheduler, o2)
    o2.load_state_dict(opt_sd)
    s2.load_state_dict(sched_sd)
    assert s2.last_epoch == 11
    assert s2.get_last_lr() == s1.get_last_lr()
    seq = [list(x) for x in ref_seq[:11]]
    for _ in range(N_STEPS - 11):
        o2.step()
        s2.step()
        seq.append(_lrs(o2))
    np.testing.assert_allclose(seq, ref_seq, rtol=1e-12)


PLATEAU_CONFIGS = [
    {},
    {"patience": 2, "factor": 0.5},
    {"patience": 1, "factor": 0.5, "cooldown": 2, "min_lr": 0.02},
    {"patience": 0, "factor": 0.3, "threshold": 0.1, "threshold_mode": "abs"},
    {"mode": "max", "patience": 2, "factor": 0.5, "min_lr": [0.01, 0.2]},
    {"mode": "max", "patience": 1, "threshold": 0.05, "threshold_mode": "abs", "eps": 0.05},
]

METRICS = [
    1.0, 0.9, 0.85, 0.86, 0.84, 0.84, 0.9, 0.95, 0.8, 0.81,
    0.8, 0.8, 0.79, 0.7, 0.71, 0.72, 0.73, 0.5, 0.6, 0.6,
    0.6, 0.61, 0.4, 0.45, 0.45, 0.45, 0.45, 0.3, 0.31, 0.32,
]  # fmt: skip


@pytest.mark.parametrize("kw", PLATEAU_CONFIGS, ids=[str(k) for k in PLATEAU_CONFIGS])
def test_plateau_matches_torch(kw: dict) -> None:
    ck_o, th_o = _ck_opt(), _torch_opt()
    ck_s = lr_scheduler.ReduceLROnPlateau(ck_o, **kw)
    th_s = torch.optim.lr_scheduler.ReduceLROnPlateau(th_o, **kw)
    metrics = METRICS if kw.get("mode", "min") == "min" else [-m for m in METRICS]
    ck_seq, th_seq = [], []
    for m in metrics:
        ck_s.step(m)
        th_s.step(m)
        ck_seq.append(_lrs(ck_o))
        th_seq.append(_lrs(th_o))
        assert ck_s.get_last_lr() == pytest.approx(th_s.get_last_lr(), rel=1e-12)
        assert ck_s.num_bad_epochs == th_s.num_bad_epochs
    np.testing.assert_allclose(ck_seq, th_seq, rtol=1e-12)
    if kw:
        assert ck_seq[-1] != ck_seq[0], "learning rate never reduced"


def test_plateau_state_dict_round_trip() -> None:
    kw = {"patience": 1, "factor": 0.5, "cooldown": 1}
    ref_o = _ck_opt()
    ref_s = lr_scheduler.ReduceLROnPlateau(ref_o, **kw)
    for m in METRICS:
        ref_s.step(m)
    o1 = _ck_opt()
    s1 = lr_scheduler.ReduceLROnPlateau(o1, **kw)
    for m in METRICS[:13]:
        s1.step(m)
    sd = json.loads(json.dumps(s1.state_dict()))
    o2 = _ck_opt()
    o2.load_state_dict(o1.state_dict())
    s2 = lr_scheduler.ReduceLROnPlateau(o2)
    s2.load_state_dict(sd)
    assert s2.patience == 1 and s2.best == s1.best
    for m in METRICS[13:]:
        s2.step(m)
    assert _lrs(o2) == _lrs(ref_o)
    assert s2.last_epoch == ref_s.last_epoch == len(METRICS)


def test_resume_with_last_epoch() -> None:
    o = _ck_opt()
    with pytest.raises(KeyError, match=r"initial_lr.*param_groups\[0\]"):
        lr_scheduler.StepLR(o, step_size=3, last_epoch=4)
    o.param_groups[0]["initial_lr"] = 0.1
    o.param_groups[1]["initial_lr"] = 0.5
    s = lr_scheduler.CosineAnnealingLR(o, T_max=10, last_epoch=4)
    assert s.last_epoch == 5
    assert s.get_last_lr()[0] == pytest.approx(0.05)


def test_scheduler_errors() -> None:
    o = _ck_opt()
    with pytest.raises(TypeError, match="StepLR: expected a cnnkit Optimizer, got list"):
        lr_scheduler.StepLR([], step_size=2)
    with pytest.raises(ValueError, match="StepLR: step_size must be a positive integer, got 0"):
        lr_scheduler.StepLR(o, step_size=0)
    with pytest.raises(ValueError, match="T_max must be positive, got -3"):
        lr_scheduler.CosineAnnealingLR(o, T_max=-3)
    with pytest.raises(ValueError, match=r"expected 2 lr_lambdas .* got 1"):
        lr_scheduler.LambdaLR(o, lr_lambda=[_lam])
    with pytest.raises(ValueError, match=r"factor should be < 1\.0, got 1\.5"):
        lr_scheduler.ReduceLROnPlateau(o, factor=1.5)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'avg'"):
        lr_scheduler.ReduceLROnPlateau(o, mode="avg")
    with pytest.raises(ValueError, match="threshold_mode must be 'rel' or 'abs', got 'x'"):
        lr_scheduler.ReduceLROnPlateau(o, threshold_mode="x")
    with pytest.raises(ValueError, match="expected 2 min_lrs"):
        lr_scheduler.ReduceLROnPlateau(o, min_lr=[0.1])


def test_module_access() -> None:
    import cnnkit.optim

    assert cnnkit.optim.lr_scheduler.StepLR is lr_scheduler.StepLR
    assert issubclass(lr_scheduler.ExponentialLR, lr_scheduler.LRScheduler)


@pytest.mark.parametrize(
    "name", ["LinearLRDecay", "WarmRestartsMult", "SequentialWarmupCosine", "SequentialThree"]
)
def test_long_sequence_matches_torch(name: str) -> None:
    """200 epochs: far past every milestone, restart and the end of every warm-up."""
    make = SCHEDULERS[name]
    ck_o, th_o = _ck_opt(), _torch_opt()
    ck_s, th_s = make(lr_scheduler, ck_o), make(torch.optim.lr_scheduler, th_o)
    assert _lrs(ck_o) == pytest.approx(_lrs(th_o), rel=1e-13)
    for _ in range(200):
        ck_o.step()
        th_o.step()
        ck_s.step()
        th_s.step()
        np.testing.assert_allclose(_lrs(ck_o), _lrs(th_o), rtol=1e-11, atol=1e-15)
    assert ck_s.last_epoch == th_s.last_epoch


@pytest.mark.parametrize(("t0", "mult"), [(5, 1), (3, 2), (2, 3)])
def test_warm_restarts_fractional_epochs_match_torch(t0: int, mult: int) -> None:
    ck_o, th_o = _ck_opt(), _torch_opt()
    ck_s = lr_scheduler.CosineAnnealingWarmRestarts(ck_o, T_0=t0, T_mult=mult, eta_min=0.01)
    th_s = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(th_o, T_0=t0, T_mult=mult,
                                                                eta_min=0.01)  # fmt: skip
    for epoch in np.arange(0, 30, 0.35):
        ck_o.step()
        th_o.step()
        ck_s.step(float(epoch))
        th_s.step(float(epoch))
        np.testing.assert_allclose(_lrs(ck_o), _lrs(th_o), rtol=1e-12)
        assert (ck_s.T_i, ck_s.last_epoch) == (th_s.T_i, th_s.last_epoch)


def test_new_schedulers_reject_bad_arguments() -> None:
    o = _ck_opt()
    with pytest.raises(ValueError, match=r"LinearLR: start_factor must be in \(0, 1\]"):
        lr_scheduler.LinearLR(o, start_factor=0.0)
    with pytest.raises(ValueError, match="LinearLR: total_iters must be a positive integer"):
        lr_scheduler.LinearLR(o, total_iters=0)
    with pytest.raises(ValueError, match="CosineAnnealingWarmRestarts: T_0 must be a positive"):
        lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=0)
    with pytest.raises(ValueError, match="CosineAnnealingWarmRestarts: T_mult must be"):
        lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0)
    with pytest.raises(ValueError, match="CosineAnnealingWarmRestarts: epoch must be >= 0"):
        lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2).step(-1)
    a, b = lr_scheduler.StepLR(o, 2), lr_scheduler.ExponentialLR(o, 0.9)
    with pytest.raises(ValueError, match="SequentialLR: expected 1 milestones"):
        lr_scheduler.SequentialLR(o, [a, b], milestones=[2, 4])
    with pytest.raises(ValueError, match=r"SequentialLR: scheduler 1 .* wraps another optimizer"):
        lr_scheduler.SequentialLR(o, [a, lr_scheduler.StepLR(_ck_opt(), 2)], milestones=[2])
    with pytest.raises(ValueError, match="SequentialLR: scheduler 0 is a ReduceLROnPlateau"):
        lr_scheduler.SequentialLR(o, [lr_scheduler.ReduceLROnPlateau(o), b], milestones=[2])
