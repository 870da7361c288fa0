"""The multi-tensor (flat-buffer) optimizer step: 100 steps equal torch.optim's and the
per-parameter loop's, state_dict round trips, parameters without gradients."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_close

torch = pytest.importorskip("torch")

import cnnkit as ck  # noqa: E402
from cnnkit import optim  # noqa: E402

SHAPES = [(6, 3, 3, 3), (6,), (6,), (10, 24), (10,)]

CASES = {
    "sgd": (optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}),
    "sgd_nesterov": (optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "adam": (optim.Adam, torch.optim.Adam, {"lr": 1e-2, "weight_decay": 1e-3}),
    "adam_amsgrad": (optim.Adam, torch.optim.Adam, {"lr": 1e-2, "amsgrad": True}),
    "adamw": (optim.AdamW, torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1}),
}


def _run(name, dtype, foreach, steps=100):
    ck_cls, th_cls, kw = CASES[name]
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]
    cp = [ck.tensor(a.copy(), requires_grad=True) for a in init]
    tp = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    co, to = ck_cls(cp, **kw), th_cls(tp, foreach=False, **kw)
    co.foreach = foreach
    for gs in grads:
        for p, q, g in zip(cp, tp, gs, strict=True):
            p.grad = ck.tensor(g)
            q.grad = torch.tensor(g)
        co.step()
        to.step()
    return cp, tp, co


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_step_equals_torch_and_the_loop_over_100_steps(name, dtype):
    flat, tp, co = _run(name, dtype, True)
    assert co.__dict__.get("_flat_buckets")  # the flat step ran
    loop, _, _ = _run(name, dtype, False)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for a, b, t in zip(flat, loop, tp, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # same operations, same bits
        assert_close(a, t.detach(), **tol)


def test_flat_state_dict_round_trip_and_missing_grads():
    flat, _, co = _run("adam", np.float64, True, steps=5)
    sd = co.state_dict()
    assert sd["state"][0]["step"] == 5.0 and sd["state"][0]["exp_avg"].shape == SHAPES[0]
    ref, _, ro = _run("adam", np.float64, False, steps=5)
    for k in range(len(SHAPES)):
        np.testing.assert_array_equal(sd["state"][k]["exp_avg_sq"],
                                      ro.state_dict()["state"][k]["exp_avg_sq"])  # fmt: skip
    # a loaded state replaces the arrays: the bucket rebuilds itself and continues
    co2 = optim.Adam(flat, lr=1e-2, weight_decay=1e-3)
    co2.load_state_dict(sd)
    ro2 = optim.Adam(ref, lr=1e-2, weight_decay=1e-3)
    ro2.foreach = False
    ro2.load_state_dict(ro.state_dict())
    rng = np.random.default_rng(9)
    for step in range(3):
        gs = [rng.standard_normal(s) for s in SHAPES]
        for i, (p, q) in enumerate(zip(flat, ref, strict=True)):
            give = step != 1 or i != 2  # one parameter without gradient in one step
            p.grad = ck.tensor(gs[i]) if give else None
            q.grad = ck.tensor(gs[i]) if give else None
        co2.step()
        ro2.step()
    for a, b in zip(flat, ref, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
