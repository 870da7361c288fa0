"""The tensor ops PyTorch scripts call (sorting, rounding, products, splitting, tiling,
einsum, counting, factories) and the F losses/normalisations, against PyTorch: values,
dtypes, every gradient (float64, awkward shapes) and the errors on bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn.functional as F

RNG = np.random.default_rng(7)


def _outputs(out: Any) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check(
    fn: Callable[..., Any],
    *arrays: np.ndarray,
    grad: bool = True,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> list:
    """Run ``fn(lib, *tensors)`` with lib = cnnkit and torch; compare every output's
    values and dtype, then (float inputs) every input's gradient of a random weighting
    of the float outputs. Returns cnnkit's outputs."""
    cks = [ck.Tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    ts = [torch.tensor(np.array(a, order="C")) for a in arrays]
    for t in ts:
        t.requires_grad_(grad and t.dtype.is_floating_point)
    got, want = _outputs(fn(ck, *cks)), _outputs(fn(torch, *ts))
    assert len(got) == len(want), f"{len(got)} outputs; torch gives {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        wn = w.detach().numpy()
        assert g.shape == wn.shape, f"output {i}: shape {g.shape} != torch's {wn.shape}"
        assert g.dtype == wn.dtype, f"output {i}: dtype {g.dtype} != torch's {wn.dtype}"
        np.testing.assert_allclose(g.numpy(), wn, rtol=rtol, atol=atol, err_msg=f"output {i}")
    if not grad or not any(t.requires_grad for t in ts):
        return got
    loss_c, loss_t = None, None
    for g, w in zip(got, want, strict=True):
        if w.requires_grad:
            assert g.requires_grad, "cnnkit's output is cut from the graph"
            weight = RNG.normal(size=tuple(w.shape))
            part_c, part_t = (g * ck.tensor(weight)).sum(), (w * torch.tensor(weight)).sum()
            loss_c = part_c if loss_c is None else loss_c + part_c
            loss_t = part_t if loss_t is None else loss_t + part_t
    if loss_t is None:
        return got
    loss_c.backward()
    loss_t.backward()
    for i, (c, t) in enumerate(zip(cks, ts, strict=True)):
        if t.requires_grad:
            assert c.grad is not None, f"input {i} got no gradient"
            np.testing.assert_allclose(
                c.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=atol, err_msg=f"grad {i}"
            )
    return got


def _ties(*shape: int) -> np.ndarray:
    """Float64 values with many ties (small integers)."""
    return RNG.integers(-2, 3, shape).astype(np.float64)


def _noncontig(*shape: int) -> np.ndarray:
    """A transposed (non-contiguous) float64 view of the given shape."""
    return RNG.normal(size=shape[::-1]).T


# --------------------------------------------------------------------- sorting
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_values_indices_and_gradient_stable_on_ties(dim: int, descending: bool) -> None:
    x = _ties(5, 4, 3)
    check(lambda lib, t: lib.sort(t, dim=dim, descending=descending, stable=True), x)
    check(lambda lib, t: t.sort(dim=dim, descending=descending, stable=True), x)
    check(lambda lib, t: lib.argsort(t, dim=dim, descending=descending, stable=True), x)
    check(lambda lib, t: t.argsort(dim=dim, descending=descending, stable=True), x)


def test_sort_nan_ints_and_0d() -> None:
    x = np.array([3.0, np.nan, -1.0, 3.0, np.nan, 0.5])
    for desc in (False, True):
        check(lambda lib, t, d=desc: lib.sort(t, descending=d, stable=True), x, atol=0)
    check(lambda lib, t: lib.sort(t, descending=True, stable=True), np.array([3, 1, 3, 2]))
    check(lambda lib, t: lib.sort(t, dim=0), np.array(2.5))
    check(lambda lib, t: lib.argsort(t), np.array(2.5))
    check(lambda lib, t: lib.sort(t, 1), _noncontig(3, 5))


def test_sort_bad_dim() -> None:
    with pytest.raises(IndexError, match="sort: dim 2 is out of range"):
        ck.sort(ck.zeros(3, 4), dim=2)
    with pytest.raises(TypeError, match="argsort: dim must be an int"):
        ck.argsort(ck.zeros(3), dim="0")


# ------------------------------------------------------------ element-wise
@pytest.mark.parametrize("op", ["maximum", "minimum", "max", "min"])
def test_maximum_minimum_broadcast_ties_split_the_gradient(op: str) -> None:
    a, b = _ties(3, 1, 4), _ties(5, 4)
    check(lambda lib, x, y: getattr(lib, op)(x, y), a, b)
    check(lambda lib, x, y: getattr(x, op)(y), b, a)
    check(lambda lib, x, y: getattr(lib, op)(x, y), np.array([1.0, np.nan]), np.ones(2))


def test_maximum_needs_a_tensor() -> None:
    with pytest.raises(TypeError, match="maximum: expected a Tensor"):
        ck.maximum(ck.zeros(2), 1.0)


@pytest.mark.parametrize("op", ["sign", "floor", "ceil", "trunc", "round"])
def test_step_functions_values_and_zero_gradient(op: str) -> None:
    x = np.array([[-2.5, -1.5, -0.5, -0.0], [0.5, 1.5, 2.5, 1.7], [-1.2, 0.0, 3.0, -3.49]])
    check(lambda lib, t: getattr(lib, op)(t), x)
    check(lambda lib, t: getattr(t, op)(), x.T)
    ints = np.array([-3, 0, 4])
    check(lambda lib, t: getattr(lib, op)(t), ints)


@pytest.mark.parametrize("decimals", [1, 2, -1])
def test_round_decimals(decimals: int) -> None:
    x = np.array([0.125, -2.35, 14.5, 25.0, -0.051, 1234.5678])
    check(lambda lib, t: lib.round(t, decimals=decimals), x, atol=1e-12)
    check(lambda lib, t: t.round(decimals=decimals), x, atol=1e-12)
    with pytest.raises(TypeError, match="round: decimals must be an int"):
        ck.tensor(x).round(1.5)


# -------------------------------------------------------------- matrix products
def test_mm_bmm_values_and_gradients() -> None:
    check(lambda lib, a, b: lib.mm(a, b), _noncontig(3, 5), RNG.normal(size=(5, 2)))
    check(lambda lib, a, b: a.mm(b), RNG.normal(size=(1, 4)), _noncontig(4, 3))
    check(lambda lib, a, b: lib.bmm(a, b), RNG.normal(size=(2, 3, 5)), RNG.normal(size=(2, 5, 1)))
    check(lambda lib, a, b: a.bmm(b), RNG.normal(size=(3, 1, 2)), RNG.normal(size=(3, 2, 4)))


def test_mm_bmm_refuse_other_shapes() -> None:
    with pytest.raises(ValueError, match=r"mm: expected matrices .* got \(2, 3\) and \(2, 3\)"):
        ck.mm(ck.zeros(2, 3), ck.zeros(2, 3))
    with pytest.raises(ValueError, match="mm: expected matrices"):
        ck.mm(ck.zeros(2, 3, 4), ck.zeros(4, 3))
    with pytest.raises(ValueError, match=r"bmm: .* got \(2, 3, 4\) and \(1, 4, 2\)"):
        ck.bmm(ck.zeros(2, 3, 4), ck.zeros(1, 4, 2))
    with pytest.raises(TypeError, match="bmm: expected a Tensor"):
        ck.bmm(ck.zeros(2, 3, 4), np.zeros((2, 4, 2)))


EINSUMS = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(3, 3)]),
    ("iji->j", [(3, 2, 3)]),
    ("ij->", [(3, 4)]),
    ("ij->ji", [(3, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("i,i->", [(5,), (5,)]),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("...ij->...j", [(2, 3, 4)]),
    ("...ij->ij", [(2, 3, 4)]),
    ("b...,b...->b", [(2, 3, 4), (2, 3, 4)]),
    ("Ab,bC", [(2, 3), (3, 4)]),
    ("ij,ij->ij", [(1, 3), (2, 3)]),
    ("ij,kj->ikj", [(2, 3), (4, 1)]),
    ("i j , j k -> i k", [(2, 3), (3, 2)]),
]


@pytest.mark.parametrize(("eq", "shapes"), EINSUMS)
def test_einsum_matches_torch_with_every_gradient(eq: str, shapes: list) -> None:
    arrays = [RNG.normal(size=s) for s in shapes]
    check(lambda lib, *ts: lib.einsum(eq, *ts), *arrays)
    check(lambda lib, *ts: lib.einsum(eq, list(ts)), *arrays)


def test_einsum_gradient_to_one_operand_only() -> None:
    a = ck.tensor(RNG.normal(size=(3, 4)), requires_grad=True)
    b = ck.tensor(RNG.normal(size=(4, 2)))
    ck.einsum("ij,jk->ik", a, b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.tile(b.numpy().sum(1), (3, 1)))
    assert b.grad is None


def test_einsum_bad_input() -> None:
    a, b = ck.zeros(2, 3), ck.zeros(4, 5)
    with pytest.raises(ValueError, match="einsum: the equation 'ij,jk->ik' names 2"):
        ck.einsum("ij,jk->ik", a)
    with pytest.raises(ValueError, match="einsum: subscript 'j' has size 4 in operand 1"):
        ck.einsum("ij,jk->ik", a, b)
    with pytest.raises(ValueError, match="einsum: operand 'ijk' names 3 dimension"):
        ck.einsum("ijk->i", a)
    with pytest.raises(ValueError, match="einsum: invalid subscript"):
        ck.einsum("i1->i", a)
    with pytest.raises(ValueError, match="appear in no operand"):
        ck.einsum("ij->ik", a)
    with pytest.raises(ValueError, match="repeat a label"):
        ck.einsum("ij->ii", a)
    with pytest.raises(TypeError, match="einsum: operand 1 must be a Tensor"):
        ck.einsum("ij,jk", a, np.zeros((3, 2)))
    with pytest.raises(TypeError, match="share one dtype"):
        ck.einsum("ij,jk", a, ck.zeros(3, 2, dtype="float64"))


# ------------------------------------------------------- splitting and tiling
@pytest.mark.parametrize(("n", "chunks"), [(7, 3), (6, 4), (5, 5), (2, 5), (1, 1)])
def test_chunk(n: int, chunks: int) -> None:
    x = RNG.normal(size=(3, n))
    check(lambda lib, t: lib.chunk(t, chunks, dim=1), x)
    check(lambda lib, t: t.chunk(chunks, -1), x)


@pytest.mark.parametrize("sizes", [2, 3, 7, 10, [1, 6], [0, 3, 4], (7,)])
def test_split(sizes: Any) -> None:
    x = _noncontig(2, 7, 3)
    check(lambda lib, t: lib.split(t, sizes, dim=1), x)
    check(lambda lib, t: t.split(sizes, -2), x)


def test_unbind_narrow_and_errors() -> None:
    x = RNG.normal(size=(3, 4, 2))
    for d in (0, 1, -1):
        check(lambda lib, t, d=d: lib.unbind(t, d), x)
    check(lambda lib, t: t.unbind(), x)
    check(lambda lib, t: lib.narrow(t, 1, 1, 2), x)
    check(lambda lib, t: t.narrow(-1, -1, 1), x)
    t = ck.zeros(3, 7)
    with pytest.raises(ValueError, match=r"split: section sizes \[2, 2\] must .* add up to 7"):
        ck.split(t, [2, 2], dim=1)
    with pytest.raises(ValueError, match="split: split_size must be a positive int, got 0"):
        t.split(0)
    with pytest.raises(TypeError, match="split: expected an int or a list"):
        t.split(1.5)
    with pytest.raises(ValueError, match="chunk: chunks must be a positive int, got 0"):
        t.chunk(0)
    with pytest.raises(IndexError, match="unbind: dim 2 is out of range"):
        t.unbind(2)
    with pytest.raises(ValueError, match="narrow: start 6 and length 2 do not fit"):
        t.narrow(1, 6, 2)


@pytest.mark.parametrize("dims", [(0,), (-1,), (0, 2), (2, 0, 1), ()])
def test_flip(dims: tuple) -> None:
    x = _noncontig(3, 2, 4)
    check(lambda lib, t: lib.flip(t, dims), x)
    check(lambda lib, t: t.flip(*dims) if dims else t.flip(dims), x)
    with pytest.raises(ValueError, match=r"flip: dims .* name a dimension twice"):
        ck.flip(ck.zeros(2, 3), (0, -2))


@pytest.mark.parametrize(
    ("shape", "reps"),
    [((2, 3), (2, 1)), ((2, 3), (1, 2, 3)), ((3,), (4,)), ((2, 1, 3), (1, 3, 0)), ((), (2, 3))],
)
def test_repeat_is_tile(shape: tuple, reps: tuple) -> None:
    x = RNG.normal(size=shape)
    check(lambda lib, t: t.repeat(*reps), x)
    check(lambda lib, t: t.repeat(reps), x)
    check(lambda lib, t: lib.tile(t, reps[-1:]), x)
    with pytest.raises(ValueError, match="repeat: expected at least 2 non-negative repeat counts"):
        ck.zeros(2, 3).repeat(2)


def test_repeat_interleave() -> None:
    x = _noncontig(3, 4)
    check(lambda lib, t: lib.repeat_interleave(t, 2), x)
    check(lambda lib, t: t.repeat_interleave(3, dim=0), x)
    counts = np.array([2, 0, 1, 3])
    check(lambda lib, t: t.repeat_interleave(lib.tensor(counts), dim=1), x)
    check(lambda lib, t: t.repeat_interleave(lib.tensor([2]), dim=-1), x)
    check(lambda lib, c: lib.repeat_interleave(c), counts)
    with pytest.raises(
        ValueError, match="repeat_interleave: got 3 repeat counts for dim of size 4"
    ):
        ck.tensor(x).repeat_interleave(ck.tensor([1, 2, 3]), dim=1)
    with pytest.raises(ValueError, match="non-negative int"):
        ck.tensor(x).repeat_interleave(-1)


# ----------------------------------------------------------------- reductions
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumsum(dim: int) -> None:
    check(lambda lib, t: lib.cumsum(t, dim), _noncontig(3, 4, 2))
    check(lambda lib, t: t.cumsum(dim=dim), RNG.integers(-5, 5, (3, 4, 2)).astype(np.int32))
    check(lambda lib, t: lib.cumsum(t, 0), np.array(1.5))
    x32 = _noncontig(2, 3, 2).astype("f4")
    check(lambda lib, t: lib.cumsum(t, dim, dtype=lib.float64), x32, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "x",
    [
        np.array([[2.0, 0.5, -3.0], [1.5, 0.0, 4.0], [0.0, 0.0, 2.0], [-1.0, 2.0, 0.25]]),
        np.array([[0.0, 1.0], [3.0, 2.0]]).T,
    ],
)
def test_prod_gradients_are_exact_with_zeros(x: np.ndarray) -> None:
    check(lambda lib, t: lib.prod(t), x)
    check(lambda lib, t: t.prod(1), x)
    check(lambda lib, t: t.prod(dim=0, keepdim=True), x)
    check(lambda lib, t: lib.prod(t, -1, True), x)


def test_prod_ints_empty_and_bad_dim() -> None:
    check(lambda lib, t: lib.prod(t, 0), np.array([[3, -2], [4, 5]], dtype=np.int32))
    check(lambda lib, t: lib.prod(t), np.array([True, True]))
    check(lambda lib, t: lib.prod(t, 1), np.zeros((2, 0)))
    check(lambda lib, t: lib.prod(t, 0), np.array(3.0))
    with pytest.raises(TypeError, match="prod: dim must be an int or None"):
        ck.prod(ck.zeros(2, 3), (0, 1))
    with pytest.raises(IndexError, match="prod: dim 2 is out of range"):
        ck.prod(ck.zeros(2, 3), 2)


@pytest.mark.parametrize(("dim", "keepdim"), [(0, False), (-1, True), ((0, 2), False)])
def test_logsumexp(dim: Any, keepdim: bool) -> None:
    x = RNG.normal(size=(3, 4, 5)) * 30
    x[0, 1, :] = -np.inf
    x[1, :, 2] = 800.0
    check(lambda lib, t: lib.logsumexp(t, dim, keepdim), x)
    check(lambda lib, t: t.logsumexp(dim, keepdim=keepdim), x)
    check(lambda lib, t: lib.logsumexp(t, 1), np.array([[1, 2, 3]]), rtol=1e-6)


def test_logsumexp_all_minus_inf() -> None:
    x = ck.tensor(np.full((2, 3), -np.inf))
    assert np.all(ck.logsumexp(x, 1).numpy() == torch.logsumexp(torch.tensor(x.numpy()), 1).numpy())


# ------------------------------------------------------------------- counting
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("counts", [False, True])
def test_unique(inverse: bool, counts: bool) -> None:
    x = np.array([[3, 1, 2], [1, 3, 3]])
    kw = {"return_inverse": inverse, "return_counts": counts}
    check(lambda lib, t: lib.unique(t, sorted=True, **kw), x)
    check(lambda lib, t: t.unique(**kw), x.astype(np.float32), grad=False)
    check(lambda lib, t: lib.unique(t, dim=0, **kw), np.array([[1, 2], [0, 5], [1, 2]]))


def test_bincount() -> None:
    x = np.array([0, 3, 3, 1, 0, 3])
    check(lambda lib, t: lib.bincount(t), x)
    check(lambda lib, t: t.bincount(minlength=7), x)
    check(lambda lib, t: lib.bincount(t, minlength=2), np.zeros(0, np.int64))
    w = RNG.normal(size=6)
    check(lambda lib, t, v: lib.bincount(t, v), x, w.astype(np.float32), grad=False)
    check(lambda lib, t, v: t.bincount(weights=v), x, w, grad=False)
    with pytest.raises(
        ValueError, match=r"bincount: expected a 1-D integer tensor; got shape \(2, 3\)"
    ):
        ck.bincount(ck.tensor(x.reshape(2, 3)))
    with pytest.raises(ValueError, match="bincount: values must be >= 0, got -1"):
        ck.bincount(ck.tensor([1, -1]))
    with pytest.raises(ValueError, match="bincount: weights have shape"):
        ck.bincount(ck.tensor(x), ck.tensor([1.0]))


# ----------------------------------------------------------------- factories
def test_empty_linspace_eye_match_torch() -> None:
    for args, kw in [((2, 3), {}), (((4,),), {"dtype": "float64"}), ((), {"size": (1, 2)})]:
        tkw = {k: getattr(torch, v) if k == "dtype" else v for k, v in kw.items()}
        got, want = ck.empty(*args, **kw), torch.empty(*args, **tkw)
        assert got.shape == tuple(want.shape) and got.dtype == want.numpy().dtype
    check(lambda lib: lib.linspace(-1, 2, 7))
    check(lambda lib: lib.linspace(0, 1, 1))
    check(lambda lib: lib.linspace(3, -2.5, 4, dtype=lib.float64))
    check(lambda lib: lib.linspace(0, 10, 4, dtype=lib.int64))
    check(lambda lib: lib.linspace(0, 1, 0))
    check(lambda lib: lib.eye(3))
    check(lambda lib: lib.eye(2, 4, dtype=lib.int64))
    check(lambda lib: lib.eye(3, 1))
    assert ck.linspace(0, 1, 3, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="linspace: steps must be a non-negative int"):
        ck.linspace(0, 1, -2)
    with pytest.raises(ValueError, match="eye: m must be a non-negative int, got -1"):
        ck.eye(2, -1)


def test_legacy_constructors() -> None:
    for name in ("LongTensor", "FloatTensor", "DoubleTensor", "IntTensor", "BoolTensor"):
        for args in [([1, 0, 2],), ([[1.7, -2.0]],), (2, 3), (), (ck.Size([2, 1]),)]:
            targs = tuple(torch.Size(a) if isinstance(a, ck.Size) else a for a in args)
            got, want = getattr(ck, name)(*args), getattr(torch, name)(*targs)
            assert got.shape == tuple(want.shape) and got.dtype == want.numpy().dtype
            if args and isinstance(args[0], list):
                np.testing.assert_array_equal(got.numpy(), want.numpy())
        assert isinstance(got, getattr(ck, name)) and isinstance(got, ck.Tensor)
    assert not isinstance(ck.zeros(2), ck.LongTensor) and isinstance(ck.zeros(2), ck.FloatTensor)
    with pytest.raises(TypeError, match="LongTensor: expected sizes as ints"):
        ck.LongTensor(2.5)
    with pytest.raises(ValueError, match="FloatTensor: sizes must be non-negative"):
        ck.FloatTensor(2, -1)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_new_factories_take_the_dtype(dtype: str) -> None:
    x = np.ones((2, 2), dtype)
    check(lambda lib, t: t.new_zeros(2, 3), x, grad=False)
    check(lambda lib, t: t.new_zeros((1, 4)), x, grad=False)
    check(lambda lib, t: t.new_ones([3]), x, grad=False)
    check(lambda lib, t: t.new_full((2, 1), 7), x, grad=False)
    check(lambda lib, t: t.new_tensor([[1, 2.5]]), x, grad=False)
    check(lambda lib, t: t.new_zeros(2, dtype=lib.int64), x, grad=False)
    assert (
        ck.Tensor(x).new_empty(3, 2).shape == (3, 2) == tuple(torch.tensor(x).new_empty(3, 2).shape)
    )
    y = ck.zeros(2).new_ones(3, requires_grad=True)
    assert y.requires_grad and y.dtype == np.float32
    with pytest.raises(
        TypeError, match=r"new_zeros\(\) got unexpected keyword arguments \['bogus'\]"
    ):
        ck.zeros(2).new_zeros(2, bogus=1)


def test_size_is_a_tuple_printed_as_torch() -> None:
    s = ck.Size([2, 3, 4])
    assert repr(s) == repr(torch.Size([2, 3, 4])) == "torch.Size([2, 3, 4])"
    assert str(s) == "(2, 3, 4)"
    assert (
        s == (2, 3, 4) and isinstance(s, tuple) and s.numel() == 24 == torch.Size([2, 3, 4]).numel()
    )
    assert s[1:] == (3, 4) and isinstance(s[1:], ck.Size) and s[0] == 2
    assert ck.zeros(s).shape == (2, 3, 4)
    with pytest.raises(TypeError, match="Size: expected a sequence of ints"):
        ck.Size([2, 1.5])


def test_shape_and_size_are_torch_size() -> None:
    c, t = ck.zeros(2, 3, 1), torch.zeros(2, 3, 1)
    for got, want in [(c.shape, t.shape), (c.size(), t.size()), (c[0].shape, t[0].shape)]:
        assert isinstance(got, ck.Size) and isinstance(got, tuple)
        assert repr(got) == repr(want) and got == tuple(want) and hash(got) == hash(tuple(want))
    assert c.size(1) == 3 and type(c.size(-1)) is int
    assert c.shape == (2, 3, 1) and c.shape != (2, 3) and tuple(c.shape) == (2, 3, 1)
    assert c.shape[1:] == t.shape[1:] == (3, 1) and repr(c.shape[1:]) == repr(t.shape[1:])
    assert ck.LongTensor(c.shape).shape == tuple(torch.LongTensor(t.shape).shape) == (2, 3, 1)
    assert ck.zeros(c.shape).shape == c.new_zeros(c.shape).shape == (2, 3, 1)
    assert c.view(c.size(0), -1).shape == (2, 3)
    # str (print, f-strings, error messages) stays the tuple's: torch prints torch.Size
    assert f"{c.shape}" == str(c.shape) == "(2, 3, 1)" and str(t.shape) == "torch.Size([2, 3, 1])"


# ----------------------------------------------------------------- F functions
@pytest.mark.parametrize("p", [2, 1, 3.0, 0.5, float("inf")])
@pytest.mark.parametrize("dim", [1, 0, -1])
def test_normalize(p: float, dim: int) -> None:
    x = _noncontig(4, 3, 5)
    x[1, :, 2] = 0.0  # a zero slice along dim 1
    x[:, 0, 0] = 0.0
    x[2, 1, 1] = x[2, 2, 1] = -x[2, 0, 1]  # a tie for the inf-norm
    check(lambda lib, t: lib.nn.functional.normalize(t, p=p, dim=dim), x, atol=1e-10)


def test_normalize_eps_and_errors() -> None:
    x = np.array([[1e-8, 0.0], [3.0, 4.0]])
    check(lambda lib, t: lib.nn.functional.normalize(t, eps=1e-6), x)
    check(lambda lib, t: lib.nn.functional.normalize(t, dim=0, eps=3.0), x)
    with pytest.raises(ValueError, match="normalize: p must be a positive number"):
        F.normalize(ck.zeros(2, 2), p=0)
    with pytest.raises(
        ValueError, match=r"normalize: dim 2 is out of range for input of shape \(2, 2\)"
    ):
        F.normalize(ck.zeros(2, 2), dim=2)
    with pytest.raises(TypeError, match="normalize: expected a floating-point Tensor"):
        F.normalize(ck.tensor([1, 2]))


@pytest.mark.parametrize(("beta", "threshold"), [(1.0, 20.0), (2.0, 5.0), (0.5, 1.0), (-2.0, 20.0)])
def test_softplus(beta: float, threshold: float) -> None:
    x = np.array([[-50.0, -3.0, -0.1, 0.0], [0.4, 2.5, 3.0, 10.0], [21.0, 40.0, 1e3, -1e3]])
    check(lambda lib, t: lib.nn.functional.softplus(t, beta=beta, threshold=threshold), x)
    x32 = x.astype(np.float32)
    check(lambda lib, t: lib.nn.functional.softplus(t), x32, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="softplus: beta must be a non-zero number"):
        F.softplus(ck.zeros(2), beta=0)
    with pytest.raises(TypeError, match="softplus: expected a floating-point Tensor"):
        F.softplus(ck.tensor([1, 2]))


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")  # torch's
@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction: str, log_target: bool) -> None:
    x = np.log(RNG.dirichlet(np.ones(5), size=3))
    t = RNG.dirichlet(np.ones(5), size=3)
    t = np.log(t) if log_target else t
    check(
        lambda lib, a, b: lib.nn.functional.kl_div(
            a, b, reduction=reduction, log_target=log_target
        ),
        x,
        t,
    )


def test_kl_div_zero_target_and_errors() -> None:
    x = np.log(np.array([[0.2, 0.3, 0.5]]))
    t = np.array([[0.0, 0.4, 0.6]])
    c = F.kl_div(ck.tensor(x, requires_grad=True), ck.tensor(t), reduction="sum")
    w = torch.nn.functional.kl_div(torch.tensor(x), torch.tensor(t), reduction="sum")
    np.testing.assert_allclose(c.item(), w.item(), rtol=1e-12)
    check(lambda lib, a: lib.nn.functional.kl_div(a, lib.tensor(t), reduction="batchmean"), x)
    with pytest.raises(ValueError, match="kl_div: reduction must be"):
        F.kl_div(ck.tensor(x), ck.tensor(t), reduction="avg")
    with pytest.raises(ValueError, match=r"kl_div: expected target of shape \(1, 3\)"):
        F.kl_div(ck.tensor(x), ck.tensor(t[0, :2]))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0, 2.0])
def test_smooth_l1_and_huber(reduction: str, beta: float) -> None:
    x = _noncontig(4, 5) * 2
    t = RNG.normal(size=(4, 5))
    x[0, 0], t[0, 0] = 1.0, 1.0 - beta  # exactly at the switch
    x[0, 1] = t[0, 1]
    check(
        lambda lib, a, b: lib.nn.functional.smooth_l1_loss(a, b, reduction=reduction, beta=beta),
        x,
        t,
    )
    if beta > 0:
        check(
            lambda lib, a, b: lib.nn.functional.huber_loss(a, b, reduction=reduction, delta=beta),
            x,
            t,
        )


def test_smooth_l1_and_huber_errors() -> None:
    a = ck.zeros(3)
    with pytest.raises(ValueError, match="smooth_l1_loss: beta must be a finite number >= 0"):
        F.smooth_l1_loss(a, a, beta=-1)
    with pytest.raises(ValueError, match="huber_loss: delta must be a finite number > 0, got 0"):
        F.huber_loss(a, a, delta=0)
    with pytest.raises(ValueError, match="huber_loss: reduction must be"):
        F.huber_loss(a, a, reduction="batchmean")
    with pytest.raises(ValueError, match=r"smooth_l1_loss: expected target of shape \(3,\)"):
        F.smooth_l1_loss(a, ck.zeros(2))
    with pytest.raises(TypeError, match="huber_loss: expected a floating-point Tensor"):
        F.huber_loss(ck.tensor([1, 2]), ck.tensor([1, 2]))


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("SmoothL1Loss", {"beta": 0.5}),
        ("HuberLoss", {"delta": 0.7, "reduction": "sum"}),
        ("KLDivLoss", {"reduction": "batchmean", "log_target": True}),
    ],
)
def test_loss_modules(name: str, kw: dict) -> None:
    x, t = _noncontig(3, 4), RNG.normal(size=(3, 4))
    check(lambda lib, a, b: getattr(lib.nn, name)(**kw)(a, b), x, t)
    with pytest.raises(ValueError, match=f"{name}: reduction must be"):
        getattr(ck.nn, name)(reduction="avg")


# ------------------------------------------------------ trigonometry and remainder
def test_sin_cos() -> None:
    x = _noncontig(4, 5) * 3
    for op in ("sin", "cos"):
        check(lambda lib, t, o=op: getattr(lib, o)(t), x)
        check(lambda lib, t, o=op: getattr(t, o)() * getattr(t, o)(), x[1:, ::2])
        check(lambda lib, t, o=op: getattr(lib, o)(t), np.array(0.7))


def test_remainder_and_floor_division() -> None:
    a = np.array([[5.5, -3.2, 7.0], [-7.5, 0.25, -2.0]])
    b = np.array([2.0, -3.0, 0.75])
    check(lambda lib, x, y: x % y, a, b)  # the sign of the divisor, both gradients
    check(lambda lib, x, y: (x * 2) % 1.5 + (x + 10) % (y * y + 1), a, b)
    check(lambda lib, x: 4 % x, a, grad=False)  # PyTorch has no gradient for this one
    check(lambda lib, x: x.remainder(2.5), a)
    ints, small = np.array([7, -7, 0, 12]), np.array([3, 3, -5, -5])
    check(lambda lib, x, y: x % y, ints, small)
    check(lambda lib, x, y: (x // y, x // 4, 20 // y), ints, small)
    check(lambda lib, x, y: (x // y, 1.0 // y), a, b, grad=False)
    f = ck.tensor(a, requires_grad=True) // 2
    assert not f.requires_grad  # PyTorch has no derivative for floor division either


# --------------------------------------------------------------------- indexing
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_gather_repeats_add_up_in_the_gradient(dim: int) -> None:
    x = _noncontig(4, 5, 3)
    nd = dim % 3
    shape = [3, 4, 2]
    shape[nd] = 6  # longer than x along dim: indices repeat
    index = RNG.integers(0, x.shape[nd], shape)
    check(lambda lib, t, i: lib.gather(t, dim, i), x, index)
    check(lambda lib, t, i: t.gather(dim, i), x, index)


def test_gather_picks_the_label_probability() -> None:
    logits, y = _noncontig(6, 4), np.array([3, 0, 1, 1, 2, 3])
    check(
        lambda lib, t, i: -t.log_softmax(1).gather(1, i.unsqueeze(1)).squeeze(1).mean(), logits, y
    )


def test_gather_errors() -> None:
    x = ck.zeros(3, 4)
    with pytest.raises(ValueError, match=r"gather: index has 1 dimension\(s\), the input 2"):
        x.gather(1, ck.tensor([0, 1]))
    with pytest.raises(TypeError, match="gather: index must be an integer tensor"):
        x.gather(1, ck.zeros(3, 1))
    with pytest.raises(IndexError, match=r"gather: index values must lie in \[0, 4\)"):
        x.gather(1, ck.tensor([[4]]))
    with pytest.raises(IndexError, match=r"gather: index values must lie in \[0, 4\)"):
        x.gather(1, ck.tensor([[-1]]))
    with pytest.raises(ValueError, match=r"exceeds input shape \(3, 4\) in dimension 0"):
        x.gather(1, ck.zeros(4, 1, dtype=ck.int64))
    with pytest.raises(IndexError, match="gather: dim 2 is out of range"):
        x.gather(2, ck.zeros(1, 1, dtype=ck.int64))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_scatter_and_scatter_add(dim: int) -> None:
    x = _noncontig(4, 5)
    nd = dim % 2
    # scatter: distinct places along dim (repeats make PyTorch's result undefined)
    index = np.stack([RNG.permutation(x.shape[nd])[:3] for _ in range(4 if nd else 3)])
    index = index if nd else index.T.copy()
    src = RNG.normal(size=index.shape)
    check(lambda lib, t, s, i: lib.scatter(t, dim, i, s), x, src, index)
    check(lambda lib, t, s, i: t.scatter(dim, i, s) * 2, x, src, index)
    check(lambda lib, t, i: t.scatter(dim, i, value=-1.5), x, index)
    # a src larger than index: its corner is used (PyTorch's backward fails on this one)
    check(lambda lib, t, s, i: t.scatter(dim, i, s), x, RNG.normal(size=(7, 6)), index, grad=False)
    # scatter_add: repeats add up
    rep = RNG.integers(0, x.shape[nd], (4, 5) if nd else (6, 5))
    src2 = RNG.normal(size=rep.shape)
    check(lambda lib, t, s, i: lib.scatter_add(t, dim, i, s), x, src2, rep)
    check(lambda lib, t, s, i: t.scatter_add(dim, i, s), x, src2, rep)


def test_in_place_scatter_index_put_masked_fill() -> None:
    y = np.array([2, 0, 1, 2, 2])
    pred = np.array([2, 1, 1, 0, 2])
    for lib in (ck, torch):
        yt, pt = lib.tensor(y), lib.tensor(pred)
        one_hot = lib.zeros(5, 3).scatter_(1, yt.unsqueeze(1), 1.0)
        np.testing.assert_array_equal(one_hot.numpy(), np.eye(3)[y])
        ones = lib.zeros(5, 3).scatter_(1, yt.unsqueeze(1), lib.ones(5, 1) * 2)
        np.testing.assert_array_equal(ones.numpy(), 2 * np.eye(3)[y])
        counts = lib.zeros(3).scatter_add_(0, yt, lib.ones(5))
        np.testing.assert_array_equal(counts.numpy(), [1, 1, 3])
        cm = lib.zeros(3, 3, dtype=lib.int64)
        cm.index_put_((yt, pt), lib.ones_like(yt), accumulate=True)
        np.testing.assert_array_equal(cm.numpy(), [[0, 1, 0], [0, 1, 0], [1, 0, 2]])
        cm.index_put_((yt, pt), lib.tensor(7))  # no accumulate: written once
        np.testing.assert_array_equal(cm.numpy(), [[0, 7, 0], [0, 7, 0], [7, 0, 7]])
        cm2 = lib.zeros(3, 3, dtype=lib.int64)
        for t_, p_ in zip(yt, pt, strict=True):  # 0-d tensors as indices, read and written
            cm2[t_, p_] += 1
        cm2[lib.tensor([0, 1]), lib.tensor([2, 2])] = 5
        np.testing.assert_array_equal(cm2.numpy(), [[0, 1, 5], [0, 1, 5], [1, 0, 2]])
        m = lib.tensor([[1.0, 2.0], [3.0, 4.0]])
        m.masked_fill_(m > 2.5, 0.0)
        np.testing.assert_array_equal(m.numpy(), [[1, 2], [0, 0]])
    with pytest.raises(RuntimeError, match="scatter_: a leaf tensor that requires grad"):
        ck.zeros(2, 2, requires_grad=True).scatter_(0, ck.tensor([[0, 1]]), 1.0)
    with pytest.raises(TypeError, match="index_put_: indices must be a tuple"):
        ck.zeros(2).index_put_(ck.tensor([0]), ck.tensor(1.0))
    with pytest.raises(ValueError, match=r"scatter: index shape \(1, 3\) exceeds src shape"):
        ck.zeros(2, 3).scatter(1, ck.tensor([[0, 1, 2]]), ck.zeros(1, 2))


def test_masked_fill() -> None:
    x = _noncontig(3, 4)
    mask = np.array([True, False, True, False])  # broadcast over the rows
    check(lambda lib, t: t.masked_fill(lib.tensor(mask), -2.0) * t, x)
    check(lambda lib, t: lib.masked_fill(t, t > 0, float("-inf")).softmax(1), x)
    check(lambda lib, t: t.masked_fill(t < 0, lib.tensor(0.5)), x)  # a 0-d tensor value
    with pytest.raises(TypeError, match="masked_fill: mask must be a bool tensor"):
        ck.zeros(2).masked_fill(ck.tensor([1, 0]), 1.0)
    with pytest.raises(ValueError, match=r"masked_fill: mask of shape \(3, 2\) does not"):
        ck.zeros(2).masked_fill(ck.zeros(3, 2, dtype=ck.bool), 1.0)


def test_nonzero() -> None:
    x = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]])
    check(lambda lib, t: lib.nonzero(t), x, grad=False)
    check(lambda lib, t: t.nonzero(as_tuple=True), x, grad=False)
    check(lambda lib, t: (t > 0).nonzero(as_tuple=True)[0], np.array([0.0, 3.0, 0.0, 2.0]))
    check(lambda lib, t: lib.nonzero(t), np.zeros((2, 0, 3)), grad=False)
    check(lambda lib, t: lib.nonzero(t), np.array(2.0), grad=False)
    check(lambda lib, t: t.nonzero(as_tuple=True), np.array(0.0), grad=False)


@pytest.mark.parametrize("k", [0, 1, -2])
def test_diag(k: int) -> None:
    check(lambda lib, t: lib.diag(t, k), RNG.normal(size=4))
    check(lambda lib, t: t.diag(k), _noncontig(4, 6))
    check(lambda lib, t: lib.diag(t, k), _noncontig(5, 3))
    check(lambda lib, t: t.diag(k), np.arange(12).reshape(3, 4))
    with pytest.raises(ValueError, match=r"diag: expected a 1-D or 2-D tensor"):
        ck.zeros(2, 2, 2).diag()


def test_equal_allclose_functions() -> None:
    a = np.array([1.0, 2.0, 3.0])
    for lib in (ck, torch):
        x = lib.tensor(a)
        assert lib.equal(x, lib.tensor(a)) and not lib.equal(x, lib.tensor(a[:2]))
        assert not lib.equal(x, x + 1e-9)
        assert lib.allclose(x, x + 1e-9) and not lib.allclose(x, x + 1e-3)
        assert lib.allclose(x, x + 1e-3, atol=1e-2)
        assert lib.allclose(lib.tensor([float("nan")]), lib.tensor([float("nan")]), equal_nan=True)


@pytest.mark.parametrize("dim", [1, 0, -1])
def test_cosine_similarity(dim: int) -> None:
    a, b = _noncontig(4, 5), RNG.normal(size=(4, 5))
    a[1] = 0.0  # a zero vector along dim 1
    a[:, 2] = 0.0  # and along dim 0
    check(lambda lib, x, y: lib.nn.functional.cosine_similarity(x, y, dim=dim), a, b)
    # broadcasting: one vector against a batch, each with its own gradient
    check(lambda lib, x, y: lib.nn.functional.cosine_similarity(x[:1], y, dim=dim), a, b)
    check(lambda lib, x, y: lib.nn.functional.cosine_similarity(x, y, dim, eps=0.5), a * 0.1, b)


def test_cosine_similarity_errors() -> None:
    with pytest.raises(ValueError, match=r"cosine_similarity: x1 of shape \(2, 3\) and x2"):
        F.cosine_similarity(ck.zeros(2, 3), ck.zeros(2, 4))
    with pytest.raises(TypeError, match="cosine_similarity: x2 must be a floating-point"):
        F.cosine_similarity(ck.zeros(2, 3), ck.tensor([[1, 2, 3]]))
    with pytest.raises(ValueError, match="cosine_similarity: dim 2 is out of range"):
        F.cosine_similarity(ck.zeros(2, 3), ck.zeros(2, 3), dim=2)


# ---------------------------------------------------------- dtype promotion
@pytest.mark.parametrize(
    "expr",
    ["i * 0.5", "0.5 * i", "i / 2", "2 / i", "i / i", "i + f", "f + i", "f * i", "f - i",
     "i ** 2", "i ** 2.0", "2.0 ** i", "i % 1.5", "i // 2.0", "b + 1.5", "b * f", "b / i",
     "i + 1", "i // i", "j + i", "j * 1.5", "d + i", "f + 0.25"],
)  # fmt: skip
def test_integer_operands_promote_as_torch(expr: str) -> None:
    """An integer or bool tensor meeting a float (tensor or Python number), or divided by
    an integer, computes in the float's dtype / the default float32, not float64."""

    def fn(lib, i, j, b, f, d):
        return eval(expr)

    out = check(
        fn, np.array([1, 2, 3]), np.array([1, 2, 3], np.int32), np.array([True, False, True]),
        np.array([0.5, 1.5, 2.5], np.float32), np.array([0.5, 1.5, 2.5]), rtol=1e-6,
        grad=False,
    )  # fmt: skip
    assert out[0].dtype != np.float64 or "d" in expr


def test_promoted_float_operand_keeps_its_gradient() -> None:
    f, i = np.array([0.5, -1.5, 2.5]), np.array([1, 2, 3])
    check(lambda lib, x, k: x * k + k / x - (k % x) + x**k, f, i)
    check(lambda lib, x, k: (k + 0.5) * x, f.astype(np.float32), i, rtol=1e-6)


# ------------------------------------------------- what checks and guards call
def test_any_all_and_float_tests() -> None:
    x = np.array([[0.0, 1.5, np.nan], [np.inf, 0.0, -np.inf], [0.0, 0.0, 0.0]])
    for name in ("isnan", "isinf", "isfinite"):
        check(lambda lib, t, n=name: getattr(lib, n)(t), x, grad=False)
        check(lambda lib, t, n=name: getattr(t, n)(), x.T, grad=False)
    for name in ("any", "all"):
        for args in [(), (0,), (1,), (-1, True)]:
            check(lambda lib, t, n=name, a=args: getattr(lib, n)(t, *a), x, grad=False)
            check(lambda lib, t, n=name, a=args: getattr(t > 0, n)(*a), x, grad=False)
        check(lambda lib, t, n=name: getattr(t, n)(), np.array([3, 0, 1]), grad=False)
    with pytest.raises(IndexError, match="any: dim 2 is out of range"):
        ck.zeros(2, 2).any(2)


def test_pow_square_var_amax_norm_clip_functions() -> None:
    x, e = _noncontig(3, 4), RNG.uniform(0.5, 2.0, (3, 4))
    check(lambda lib, t, p: lib.pow(t.abs() + 0.1, p), x, e)
    check(lambda lib, t: lib.pow(2.0, t) + lib.pow(t, 3), x)
    check(lambda lib, t: lib.square(t) + t.square(), x)
    check(lambda lib, t: (lib.var(t, 1), lib.var(t, 0, unbiased=False, keepdim=True)), x)
    check(lambda lib, t: (lib.amax(t, 1), lib.amin(t, (0, 1))), _ties(3, 4))
    check(lambda lib, t: (lib.norm(t), lib.norm(t, 1, 0), lib.norm(t, dim=1, keepdim=True)), x)
    check(lambda lib, t: (lib.clip(t, -0.5, 0.5), t.clip(min=0.0)), x)
    check(lambda lib, a, b: (a.matmul(b), lib.matmul(a, b)), x, _noncontig(4, 2))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_index_select_repeats_add_up(dim: int) -> None:
    x = _noncontig(4, 5, 3)
    index = RNG.integers(0, x.shape[dim], 7)
    check(lambda lib, t, i: lib.index_select(t, dim, i), x, index)
    check(lambda lib, t, i: t.index_select(dim, i) * 3, x, index)
    check(lambda lib, t, i: t.index_select(dim, i), x, np.array([], dtype=np.int64))


def test_index_select_errors() -> None:
    with pytest.raises(TypeError, match="index_select: index must be a 1-D integer tensor"):
        ck.zeros(3).index_select(0, ck.tensor([[0]]))
    with pytest.raises(IndexError, match=r"index_select: index values must lie in \[0, 3\)"):
        ck.zeros(3).index_select(0, ck.tensor([3]))


def test_masked_select() -> None:
    x = _noncontig(3, 4)
    check(lambda lib, t: lib.masked_select(t, t > 0), x)
    check(lambda lib, t: t.masked_select(lib.tensor([True, False, False, True])) * 2, x)
    # the mask may be the larger one: the tensor is broadcast
    check(lambda lib, t: t[0].masked_select(lib.tensor(np.eye(3, 4, dtype=bool))), x)
    with pytest.raises(TypeError, match="masked_select: mask must be a bool tensor"):
        ck.zeros(3).masked_select(ck.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="masked_select: mask of shape"):
        ck.zeros(3).masked_select(ck.zeros(4, dtype=ck.bool))
