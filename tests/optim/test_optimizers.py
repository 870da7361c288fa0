"""SGD, Adam and AdamW against torch.optim: parameter trajectories, state dicts, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import optim
from tests.conftest import torch

SHAPES = [(3, 4), (5,), (2, 3, 2)]
STEPS = 15


def _init_arrays(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def _grads(n_steps: int, seed: int = 1) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in SHAPES] for _ in range(n_steps)]


def _ck_params(arrays: list[np.ndarray]) -> list:
    return [ck.tensor(a.copy(), requires_grad=True) for a in arrays]


def _torch_params(arrays: list[np.ndarray]) -> list:
    return [torch.tensor(a.copy(), requires_grad=True) for a in arrays]


def _groups(params: list, group_opts: list[dict] | None):
    if group_opts is None:
        return params
    return [{"params": params[:1], **group_opts[0]}, {"params": params[1:], **group_opts[1]}]


def _run_ck(opt, params, grads) -> None:
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = ck.tensor(g.copy())
        opt.step()


def _run_torch(opt, params, grads) -> None:
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = torch.tensor(g.copy())
        opt.step()


CONFIGS = [
    ("SGD", {"lr": 0.1}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.9}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}, None),
    ("SGD", {"lr": 0.03, "momentum": 0.5, "weight_decay": 0.2, "maximize": True}, None),
    ("SGD", {"lr": 0.1, "momentum": 0.9}, [{"lr": 0.5}, {"momentum": 0.3, "dampening": 0.1}]),
    ("Adam", {"lr": 0.01}, None),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}, None),
    ("Adam", {"lr": 0.02, "amsgrad": True}, None),
    ("Adam", {"lr": 0.02, "amsgrad": True, "maximize": True, "weight_decay": 0.05}, None),
    ("Adam", {"lr": 0.01}, [{"lr": 0.1}, {"betas": (0.5, 0.9), "amsgrad": True}]),
    ("AdamW", {"lr": 0.01}, None),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.3, "amsgrad": True}, None),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.1, "maximize": True}, None),
    ("AdamW", {"lr": 0.01}, [{"lr": 0.1, "weight_decay": 0.5}, {"weight_decay": 0.0}]),
]


def _ids(cfg) -> str:
    name, kw, groups = cfg
    parts = [name] + [f"{k}={v}" for k, v in kw.items()]
    if groups:
        parts.append("groups")
    return "-".join(parts)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_ids(c) for c in CONFIGS])
def test_matches_torch(cfg) -> None:
    name, kw, group_opts = cfg
    arrays = _init_arrays()
    grads = _grads(STEPS)
    ck_p = _ck_params(arrays)
    th_p = _torch_params(arrays)
    ck_opt = getattr(optim, name)(_groups(ck_p, group_opts), **kw)
    th_opt = getattr(torch.optim, name)(_groups(th_p, group_opts), **kw)
    _run_ck(ck_opt, ck_p, grads)
    _run_torch(th_opt, th_p, grads)
    for i, (a, b) in enumerate(zip(ck_p, th_p, strict=True)):
        expected = b.detach().numpy()
        assert not np.allclose(a.array, arrays[i]), "parameters did not move"
        np.testing.assert_allclose(a.array, expected, rtol=1e-12, atol=1e-14, err_msg=f"p{i}")


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_ids(c) for c in CONFIGS])
def test_state_dict_round_trip(cfg) -> None:
    name, kw, group_opts = cfg
    arrays = _init_arrays(2)
    grads = _grads(10, seed=3)
    cls = getattr(optim, name)

    ref_p = _ck_params(arrays)
    ref = cls(_groups(ref_p, group_opts), **kw)
    _run_ck(ref, ref_p, grads)

    p1 = _ck_params(arrays)
    opt1 = cls(_groups(p1, group_opts), **kw)
    _run_ck(opt1, p1, grads[:5])
    sd = opt1.state_dict()
    assert sorted(sd) == ["param_groups", "state"]
    all_idx = [i for g in sd["param_groups"] for i in g["params"]]
    assert all_idx == list(range(len(SHAPES)))
    for entry in sd["state"].values():
        for v in entry.values():
            if isinstance(v, np.ndarray):
                assert not any(v is s for st in opt1.state.values() for s in st.values())
    sd_saved = copy.deepcopy(sd)

    # keep training the first optimizer: the saved dict must not change (copies)
    _run_ck(opt1, p1, grads[5:])
    for k, entry in sd["state"].items():
        for name_, v in entry.items():
            np.testing.assert_array_equal(v, sd_saved["state"][k][name_])

    p2 = _ck_params(arrays)
    opt_tmp = cls(_groups(p2, group_opts), **kw)
    _run_ck(opt_tmp, p2, grads[:5])
    cloned = [ck.tensor(p.array.copy(), requires_grad=True) for p in p2]
    fresh = cls(_groups(cloned, None if group_opts is None else [{}, {}]), lr=123.0)
    fresh.load_state_dict(sd_saved)
    assert fresh.param_groups[0]["lr"] == sd_saved["param_groups"][0]["lr"]
    _run_ck(fresh, cloned, grads[5:])
    for a, b in zip(cloned, ref_p, strict=True):
        np.testing.assert_allclose(a.array, b.array, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "cfg",
    [c for c in CONFIGS if c[1].get("momentum") or c[0] != "SGD"],
    ids=[_ids(c) for c in CONFIGS if c[1].get("momentum") or c[0] != "SGD"],
)
def test_resumes_from_torch_checkpoint_file(cfg, tmp_path) -> None:
    """torch.save(optimizer.state_dict()) read back with cnnkit.load (state as Tensors,
    Adam's step a 0-d tensor) continues exactly as PyTorch does, and the reverse."""
    name, kw, group_opts = cfg
    arrays = _init_arrays(4)
    grads = _grads(12, seed=5)
    th_p = _torch_params(arrays)
    th_opt = getattr(torch.optim, name)(_groups(th_p, group_opts), **kw)
    _run_torch(th_opt, th_p, grads[:6])
    torch.save(th_opt.state_dict(), tmp_path / "opt.pt")
    ck_p = [ck.tensor(p.detach().numpy().copy(), requires_grad=True) for p in th_p]
    ck_opt = getattr(optim, name)(_groups(ck_p, group_opts), lr=1.0)
    ck_opt.load_state_dict(ck.load(tmp_path / "opt.pt"))
    assert all(isinstance(v, np.ndarray) or np.isscalar(v)
               for st in ck_opt.state.values() for v in st.values())  # fmt: skip
    _run_torch(th_opt, th_p, grads[6:])
    _run_ck(ck_opt, ck_p, grads[6:])
    for a, b in zip(ck_p, th_p, strict=True):
        np.testing.assert_allclose(a.array, b.detach().numpy(), rtol=1e-12, atol=1e-14)

    # cnnkit's own checkpoint, read back by cnnkit.load and by torch.load
    ck.save(ck_opt.state_dict(), tmp_path / "ck.pt")
    again = getattr(optim, name)(_groups(_ck_params(arrays), group_opts), **kw)
    again.load_state_dict(ck.load(tmp_path / "ck.pt"))
    th_opt2 = getattr(torch.optim, name)(_groups(_torch_params(arrays), group_opts), **kw)
    th_opt2.load_state_dict(torch.load(tmp_path / "ck.pt", weights_only=True))
    for k, st in th_opt.state_dict()["state"].items():
        for key, v in st.items():
            np.testing.assert_allclose(again.state_dict()["state"][k][key], v.numpy())
            np.testing.assert_allclose(th_opt2.state_dict()["state"][k][key].numpy(), v.numpy())


def test_state_dict_format_matches_torch_keys() -> None:
    arrays = _init_arrays()
    grads = _grads(2)
    ck_p = _ck_params(arrays)
    th_p = _torch_params(arrays)
    ck_opt = optim.Adam(ck_p, lr=0.01, amsgrad=True)
    th_opt = torch.optim.Adam(th_p, lr=0.01, amsgrad=True)
    _run_ck(ck_opt, ck_p, grads)
    _run_torch(th_opt, th_p, grads)
    a, b = ck_opt.state_dict(), th_opt.state_dict()
    assert set(a["state"]) == set(b["state"]) == {0, 1, 2}
    assert set(a["state"][0]) == set(b["state"][0])
    assert a["state"][0]["step"] == float(b["state"][0]["step"]) == 2.0
    np.testing.assert_allclose(a["state"][1]["exp_avg_sq"], b["state"][1]["exp_avg_sq"].numpy())
    assert a["param_groups"][0]["params"] == b["param_groups"][0]["params"]
    assert a["param_groups"][0]["betas"] == (0.9, 0.999)


def test_grad_none_is_skipped() -> None:
    arrays = _init_arrays()
    params = _ck_params(arrays)
    opt = optim.Adam(params, lr=0.1)
    params[0].grad = ck.tensor(np.ones(SHAPES[0]))
    opt.step()
    assert not np.allclose(params[0].array, arrays[0])
    np.testing.assert_array_equal(params[1].array, arrays[1])
    assert params[1] not in opt.state
    assert list(opt.state_dict()["state"]) == [0]


def test_zero_grad() -> None:
    params = _ck_params(_init_arrays())
    opt = optim.SGD(params, lr=0.1)
    for p in params:
        p.grad = ck.tensor(np.ones(p.shape))
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.array.any() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_closure_and_float32() -> None:
    p = ck.tensor(np.array([1.0, -2.0], dtype=np.float32), requires_grad=True)
    tp = torch.tensor([1.0, -2.0], dtype=torch.float32, requires_grad=True)
    opt = optim.AdamW([p], lr=0.1)
    topt = torch.optim.AdamW([tp], lr=0.1)
    for _ in range(5):
        p.grad = ck.tensor(np.array([0.5, -1.5], dtype=np.float32))
        tp.grad = torch.tensor([0.5, -1.5], dtype=torch.float32)
        assert opt.step(lambda: 7.0) == 7.0
        topt.step()
    assert p.dtype == np.float32
    assert opt.state[p]["exp_avg"].dtype == np.float32
    np.testing.assert_allclose(p.array, tp.detach().numpy(), rtol=1e-6)


def test_add_param_group() -> None:
    a, b = _ck_params(_init_arrays())[:2]
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert len(opt.param_groups) == 2
    assert opt.param_groups[1]["lr"] == 0.01
    assert opt.param_groups[1]["momentum"] == 0.9
    with pytest.raises(ValueError, match="more than one group"):
        opt.add_param_group({"params": [a]})


def test_load_state_dict_mismatch() -> None:
    params = _ck_params(_init_arrays())
    opt = optim.SGD(params, lr=0.1)
    sd = optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1).state_dict()
    with pytest.raises(ValueError, match=r"SGD.*2 parameter groups, but the optimizer has 1"):
        opt.load_state_dict(sd)
    sd = optim.SGD(params[:2], lr=0.1).state_dict()
    with pytest.raises(ValueError, match=r"group 0 .* has 2 parameters.*has 3"):
        opt.load_state_dict(sd)


@pytest.mark.parametrize(
    ("factory", "exc", "pattern"),
    [
        (lambda p: optim.SGD(p, lr=-0.1), ValueError, r"SGD.*lr=-0\.1"),
        (lambda p: optim.SGD(p, momentum=-0.5), ValueError, r"SGD.*momentum=-0\.5"),
        (lambda p: optim.SGD(p, weight_decay=-1.0), ValueError, r"SGD.*weight_decay=-1\.0"),
        (lambda p: optim.SGD(p, nesterov=True), ValueError, r"SGD: nesterov.*momentum=0"),
        (
            lambda p: optim.SGD(p, momentum=0.9, dampening=0.1, nesterov=True),
            ValueError,
            r"SGD: nesterov.*dampening=0\.1",
        ),
        (lambda p: optim.Adam(p, lr=-1e-3), ValueError, r"Adam.*lr=-0\.001"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.9)), ValueError, r"Adam.*beta1=1\.0"),
        (lambda p: optim.Adam(p, betas=(0.9, -0.1)), ValueError, r"Adam.*beta2=-0\.1"),
        (lambda p: optim.Adam(p, eps=-1e-8), ValueError, r"Adam.*eps=-1e-08"),
        (lambda p: optim.AdamW(p, weight_decay=-0.1), ValueError, r"AdamW.*weight_decay=-0\.1"),
        (lambda p: optim.SGD([{"params": p, "lr": -2.0}]), ValueError, r"SGD.*lr=-2\.0"),
        (lambda p: optim.SGD([], lr=0.1), ValueError, r"SGD got an empty parameter list"),
        (lambda p: optim.Adam(p[0], lr=0.1), TypeError, r"Adam.*single Tensor"),
        (
            lambda p: optim.SGD([p[0] * 2.0], lr=0.1),
            ValueError,
            r"SGD can't optimize a non-leaf Tensor.*shape",
        ),
        (
            lambda p: optim.SGD([ck.tensor(np.zeros(3, dtype=np.int64))], lr=0.1),
            TypeError,
            r"SGD.*floating-point.*int64",
        ),
        (lambda p: optim.SGD([np.zeros(3)], lr=0.1), TypeError, r"SGD.*ndarray"),
        (lambda p: optim.SGD(p + p[:1], lr=0.1), ValueError, r"SGD.*same tensor twice"),
    ],
)
def test_errors(factory, exc, pattern) -> None:
    params = _ck_params(_init_arrays())
    with pytest.raises(exc, match=pattern):
        factory(params)


def test_does_not_import_torch() -> None:
    import pathlib

    root = pathlib.Path(optim.__file__).parent
    for f in root.glob("*.py"):
        assert "import torch" not in f.read_text(), f


def test_frozen_parameters_are_accepted_and_left_alone() -> None:
    # transfer-learning scripts freeze layers and still pass model.parameters()
    arrays = _init_arrays()
    cp, tp = _ck_params(arrays), _torch_params(arrays)
    for ps in (cp, tp):
        ps[0].requires_grad_(False)
    opt_c = optim.SGD(cp, lr=0.1, momentum=0.9)
    opt_t = torch.optim.SGD(tp, lr=0.1, momentum=0.9)
    for _ in range(2):
        for opt, ps in ((opt_c, cp), (opt_t, tp)):
            opt.zero_grad()
            sum((q * q).sum() for q in ps).backward()
            opt.step()
    for c, t in zip(cp, tp, strict=True):
        np.testing.assert_allclose(c.numpy(), t.detach().numpy(), rtol=1e-6)
    np.testing.assert_array_equal(cp[0].numpy(), arrays[0])
