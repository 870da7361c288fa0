"""Einstein summation (``torch.einsum``) as one Function with a gradient for each operand.

The equation is first rewritten in explicit form (``'...'`` replaced by letters of its
own, the implicit output spelled out), size-1 dimensions are broadcast against the other
operands, and the op is ``np.einsum``. The gradient of operand ``k`` is itself an
einsum: the output gradient contracted with every other operand onto ``k``'s labels.
Labels that appear only in ``k`` (summed away) are broadcast back; a label repeated in
``k`` (a diagonal, ``'ii->i'``) receives its gradient on that diagonal only.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit.autograd import Function

_LETTERS = set(string.ascii_letters)


@dataclass(frozen=True)
class EinsumPlan:
    """An equation in explicit form: one label string per operand, the output's labels,
    every label's size, and each operand's shape once broadcast to those sizes."""

    terms: tuple[str, ...]
    output: str
    sizes: dict[str, int]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def equation(self) -> str:
        return ",".join(self.terms) + "->" + self.output


def _fail(msg: str) -> ValueError:
    return ValueError(f"einsum: {msg}")


def plan(equation: str, shapes: list[tuple[int, ...]]) -> EinsumPlan:
    """Check ``equation`` against the operand shapes and rewrite it in explicit form."""
    if not isinstance(equation, str):
        raise TypeError(f"einsum: the equation must be a str, got {type(equation).__name__}")
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    raw = lhs.split(",")
    if len(raw) != len(shapes):
        raise _fail(
            f"the equation {equation!r} names {len(raw)} operand(s); got {len(shapes)} tensors"
        )
    for term in [*raw, rhs]:
        rest = term.replace("...", "", 1)
        bad = set(rest) - _LETTERS
        if bad:
            raise _fail(
                f"invalid subscript(s) {sorted(bad)} in {equation!r}: use letters a-z, A-Z "
                "and at most one '...' per operand"
            )
    used = set(eq) & _LETTERS
    spare = [c for c in string.ascii_letters if c not in used]
    n_ell = []
    for term, shp in zip(raw, shapes, strict=True):
        explicit = len(term.replace("...", ""))
        if "..." in term:
            if len(shp) < explicit:
                raise _fail(f"operand {term!r} names {explicit} dims; the tensor has {len(shp)}")
            n_ell.append(len(shp) - explicit)
        elif len(shp) != explicit:
            raise _fail(
                f"operand {term!r} names {explicit} dimension(s); the tensor has shape {tuple(shp)}"
            )
        else:
            n_ell.append(0)
    ell = "".join(spare[: max(n_ell, default=0)])
    if arrow:
        out = rhs.replace("...", ell)
    else:
        counts = {c: lhs.count(c) for c in set(lhs) & _LETTERS}
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1))
    terms = tuple(
        t.replace("...", ell[len(ell) - k :] if k else "") for t, k in zip(raw, n_ell, strict=True)
    )
    if len(set(out)) != len(out):
        raise _fail(f"output subscripts {rhs!r} repeat a label")
    sizes: dict[str, int] = {}
    for k, (term, shp) in enumerate(zip(terms, shapes, strict=True)):
        for c, n in zip(term, shp, strict=True):
            seen = sizes.get(c, 1)
            if n != seen and 1 not in (n, seen):
                raise _fail(
                    f"subscript {c!r} has size {n} in operand {k} (shape {tuple(shp)}), "
                    f"which does not broadcast with the size {seen} seen before"
                )
            sizes[c] = max(seen, n)
    missing = set(out) - set(sizes)
    if missing:
        raise _fail(f"output subscript(s) {sorted(missing)} appear in no operand")
    full = tuple(tuple(sizes[c] for c in term) for term in terms)
    return EinsumPlan(terms, out, sizes, full)


class Einsum(Function):
    """``np.einsum`` on operands broadcast to the plan's shapes; backward contracts the
    output gradient with the other operands onto each operand's labels."""

    def forward(self, *arrays: np.ndarray, plan: EinsumPlan) -> np.ndarray:
        self.plan = plan
        self.in_shapes = tuple(a.shape for a in arrays)
        full = [np.broadcast_to(a, s) for a, s in zip(arrays, plan.shapes, strict=True)]
        if any(self.needs_input_grad):
            self.save_for_backward(*full)
        return np.asarray(np.einsum(plan.equation, *full, optimize=len(full) > 2))

    def backward(self, grad: np.ndarray) -> tuple:
        full = self.saved
        p = self.plan
        grads: list[np.ndarray | None] = []
        for k, need in enumerate(self.needs_input_grad):
            if not need:
                grads.append(None)
                continue
            term = p.terms[k]
            others = [(t, a) for i, (t, a) in enumerate(zip(p.terms, full, strict=True)) if i != k]
            unique = "".join(dict.fromkeys(term))
            reach = set(p.output).union(*(set(t) for t, _ in others))
            kept = "".join(c for c in unique if c in reach)
            spec = ",".join([p.output, *(t for t, _ in others)]) + "->" + kept
            g = np.einsum(spec, grad, *(a for _, a in others), optimize=len(others) > 1)
            # labels summed inside operand k alone: every element got the same gradient
            g = g.reshape([p.sizes[c] if c in kept else 1 for c in unique])
            g = np.broadcast_to(g, [p.sizes[c] for c in unique])
            if len(unique) == len(term):
                gk = np.array(g, dtype=grad.dtype)
            else:  # a repeated label: the gradient lives on the diagonal
                gk = np.zeros(p.shapes[k], grad.dtype)
                np.einsum(f"{term}->{unique}", gk)[...] = g
            grads.append(_sum_to(gk, self.in_shapes[k]))
        return tuple(grads)


def _sum_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum the gradient over the dims that were broadcast from size 1."""
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, g.shape, strict=True)) if n != m)
    return g.sum(axis=axes, keepdims=True) if axes else g


def einsum(equation: str, *operands: Any) -> Any:
    """Einstein summation over the operands' labelled dimensions, as ``torch.einsum``.

    Parameters
    ----------
    equation : str
        Comma-separated subscripts, one letter per dimension (``'bij,bjk->bik'``), with
        optional ``'...'`` for leading broadcast dimensions and an optional ``->output``
        (omitted: the labels used once, in alphabetical order, after the ``'...'`` dims).
    *operands : Tensor
        One tensor per subscript term (or a single list of them); size-1 dimensions
        broadcast.

    Returns
    -------
    Tensor
        Shape given by the output labels; differentiable in every operand.
    """
    from cnnkit.tensor import Tensor

    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError("einsum: expected at least one operand tensor")
    for i, t in enumerate(operands):
        if not isinstance(t, Tensor):
            raise TypeError(f"einsum: operand {i} must be a Tensor, got {type(t).__name__}")
    dtypes = {t.dtype for t in operands}
    if len(dtypes) > 1:
        raise TypeError(
            f"einsum: operands must share one dtype; got {sorted(str(d) for d in dtypes)}"
        )
    p = plan(equation, [tuple(t.shape) for t in operands])
    return Einsum.apply(*operands, plan=p)
