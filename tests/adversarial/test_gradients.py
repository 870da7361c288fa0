"""No wrong gradient unnoticed: in-place changes between forward and backward (version
counters, as PyTorch), -inf logits in the losses, where() with inf/nan branches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn.functional as F
from cnnkit import nn, optim

INPLACE = "modified by an inplace operation"


def _x(requires_grad: bool = True) -> ck.Tensor:
    return ck.tensor(np.arange(6, dtype=np.float32).reshape(2, 3) / 5, requires_grad=requires_grad)


def _w() -> ck.Tensor:
    return ck.tensor(np.ones((3, 4), np.float32), requires_grad=True)


MODIFY: dict[str, Callable[[ck.Tensor], Any]] = {
    "zero_": lambda t: t.zero_(),
    "copy_": lambda t: t.copy_(np.full(t.shape, 2, np.float32)),
    "__setitem__": lambda t: t.__setitem__(0, 7.0),
    "view-__setitem__": lambda t: t.detach().reshape(-1).__setitem__(0, 3.0),
    "detach-zero_": lambda t: t.detach().zero_(),
}


@pytest.mark.parametrize("how", sorted(MODIFY))
@pytest.mark.parametrize("which", ["x", "w"])
def test_inplace_change_of_a_saved_input_raises_at_backward(how: str, which: str) -> None:
    x, w = _x(), _w()
    y = (x @ w).sum()
    with ck.no_grad():
        MODIFY[how](x if which == "x" else w)
    with pytest.raises(RuntimeError, match=INPLACE) as info:
        y.backward()
    msg = str(info.value)
    assert "MatMul" in msg
    shape = "(2, 3)" if which == "x" else "(3, 4)"
    assert f"shape {shape}" in msg
    op = how.split("-")[-1]
    assert f"{op} changed it" in msg


@pytest.mark.parametrize("how", sorted(MODIFY))
def test_inplace_change_of_a_saved_output_raises(how: str) -> None:
    x = _x()
    s = x.sigmoid()
    loss = s.sum()
    with ck.no_grad():
        MODIFY[how](s)
    with pytest.raises(RuntimeError, match="Sigmoid saved its output"):
        loss.backward()


@pytest.mark.parametrize("how", ["zero_", "copy_", "__setitem__"])
def test_writes_through_data_are_not_checked(how: str) -> None:
    """As in PyTorch: ``t.data`` has its own version counter (the gradient uses the new
    values, silently)."""
    x, w = _x(), _w()
    y = (x @ w).sum()
    MODIFY[how](w.data)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), w.numpy().sum(1)[None].repeat(2, 0))
    assert w._version_value == 0


def test_change_of_an_input_that_was_not_saved_is_allowed_as_in_pytorch() -> None:
    x, b = _x(), ck.tensor(np.ones(3, np.float32), requires_grad=True)
    y = (x + b).sum()
    with ck.no_grad():
        b.zero_()
    y.backward()
    np.testing.assert_array_equal(b.grad.numpy(), [2, 2, 2])
    tx, tb = torch.zeros(2, 3, requires_grad=True), torch.ones(3, requires_grad=True)
    ty = (tx + tb).sum()
    with torch.no_grad():
        tb.zero_()
    ty.backward()  # PyTorch agrees: no error


def _models() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    return {
        "conv": (lambda: nn.Conv2d(1, 2, 3), (1, 1, 5, 5)),
        "mlp": (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), (4, 3)),
        "batchnorm": (lambda: nn.BatchNorm2d(2), (2, 2, 3, 3)),
        "lenet": (lambda: __import__("cnnkit.models", fromlist=["x"]).get_model("lenet5"),
                  (2, 1, 28, 28)),
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(_models()))
@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_optimizer_step_between_forward_and_backward_raises(name: str, opt_name: str) -> None:
    make, shape = _models()[name]
    m = make()
    opt = getattr(optim, opt_name)(m.parameters(), lr=0.1)
    out = m(ck.randn(*shape)).sum()
    for p in m.parameters():
        p.grad = ck.zeros(*p.shape)
    opt.step()
    with pytest.raises(RuntimeError, match=INPLACE) as info:
        out.backward()
    assert f"{opt_name}.step() changed it" in str(info.value)
    assert "Parameter" in str(info.value)


def test_single_linear_on_data_does_not_raise_as_in_pytorch() -> None:
    """Linear keeps its weight only when the input needs a gradient (PyTorch too)."""
    m = nn.Linear(3, 2)
    opt = optim.SGD(m.parameters(), lr=0.1)
    out = m(ck.randn(4, 3)).sum()
    m.weight.grad = ck.zeros(2, 3)
    opt.step()
    out.backward()
    assert m.weight.grad is not None


def test_normal_training_loop_is_unaffected() -> None:
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = optim.SGD(m.parameters(), lr=0.1)
    start = [p._version_value for p in m.parameters()]
    for _ in range(3):
        loss = F.cross_entropy(m(ck.randn(5, 3)), np.array([0, 1, 0, 1, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert [p._version_value - v for p, v in zip(m.parameters(), start, strict=True)] == [3] * 4


def test_load_state_dict_between_forward_and_backward_raises() -> None:
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    out = m(ck.randn(2, 3)).sum()
    m.load_state_dict(m.state_dict())
    with pytest.raises(RuntimeError, match="load_state_dict changed it"):
        out.backward()


def test_retain_graph_backward_twice_after_inplace_raises_on_second() -> None:
    x, w = _x(), _w()
    y = (x @ w).sum()
    y.backward(retain_graph=True)
    with ck.no_grad():
        w.zero_()
    with pytest.raises(RuntimeError, match=INPLACE):
        y.backward()


# ----------------------------------------------------------------- -inf logits

LOGITS = [
    [[0.0, -np.inf, 1.0], [2.0, 0.5, -np.inf]],
    [[-np.inf, -np.inf, 3.0], [1.0, -np.inf, -np.inf]],
    [[5.0, -np.inf, -np.inf], [-np.inf, 0.0, 0.0]],
]


@pytest.mark.parametrize("logits", LOGITS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
def test_minus_inf_on_non_target_classes_matches_pytorch(logits: list, reduction: str,
                                                         fn: str) -> None:  # fmt: skip
    a = np.array(logits, np.float32)
    target = np.array([int(np.nanargmax(r)) for r in a])
    if fn == "nll_loss":
        a = a - np.log(np.exp(a).sum(1, keepdims=True))  # log-probabilities, -inf kept
    x = ck.tensor(a, requires_grad=True)
    out = getattr(F, fn)(x, target, reduction=reduction)
    tx = torch.tensor(a, requires_grad=True)
    tout = getattr(torch.nn.functional, fn)(tx, torch.tensor(target), reduction=reduction)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-6, atol=1e-7)
    assert np.isfinite(out.numpy()).all()
    out.sum().backward()
    tout.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------- where

BRANCH = [np.inf, -np.inf, np.nan]


@pytest.mark.parametrize("bad", BRANCH)
@pytest.mark.parametrize("side", ["a", "b"])
def test_where_gives_zero_gradient_to_the_branch_not_taken(bad: float, side: str) -> None:
    cond = np.array([True, False, True])
    good = np.array([1.0, 2.0, 3.0])
    worse = np.array([bad, 5.0, bad]) if side == "b" else np.array([4.0, bad, 6.0])
    av, bv = (good, worse) if side == "b" else (worse, good)
    a, b = ck.tensor(av, requires_grad=True), ck.tensor(bv, requires_grad=True)
    out = ck.where(cond, a, b)
    (out * 2).sum().backward()
    ta, tb = torch.tensor(av, requires_grad=True), torch.tensor(bv, requires_grad=True)
    tout = torch.where(torch.tensor(cond), ta, tb)
    (tout * 2).sum().backward()
    np.testing.assert_array_equal(out.numpy(), tout.detach().numpy())
    np.testing.assert_array_equal(a.grad.numpy(), ta.grad.numpy())
    np.testing.assert_array_equal(b.grad.numpy(), tb.grad.numpy())


def test_where_broadcasts_and_sums_gradients() -> None:
    cond = np.array([[True, False], [False, True]])
    a = ck.tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = ck.tensor(np.array([[np.nan], [4.0]]), requires_grad=True)
    ck.where(cond, a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(b.grad.numpy(), [[1.0], [1.0]])


def test_where_with_scalar_branch() -> None:
    a = ck.tensor(np.array([1.0, np.inf]), requires_grad=True)
    out = ck.where(np.array([True, False]), a, 0.0)
    out.sum().backward()
    np.testing.assert_array_equal(out.numpy(), [1.0, 0.0])
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 0.0])
