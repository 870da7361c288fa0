"""Elementwise arithmetic, matrix product and reductions, each a Function.

Shapes follow NumPy broadcasting; gradients are summed back to each input's shape by
:func:`cnnkit.autograd.unbroadcast`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.autograd import Function, unbroadcast

Axis = int | tuple[int, ...] | None


class Add(Function):
    """``a + b`` with broadcasting."""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.shapes = (np.shape(a), np.shape(b))
        return a + b

    def backward(self, grad: np.ndarray) -> tuple:
        sa, sb = self.shapes
        na, nb = self.needs_input_grad
        return (unbroadcast(grad, sa) if na else None, unbroadcast(grad, sb) if nb else None)


class Sub(Function):
    """``a - b`` with broadcasting."""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.shapes = (np.shape(a), np.shape(b))
        return a - b

    def backward(self, grad: np.ndarray) -> tuple:
        sa, sb = self.shapes
        na, nb = self.needs_input_grad
        return (unbroadcast(grad, sa) if na else None, unbroadcast(-grad, sb) if nb else None)


class Mul(Function):
    """``a * b`` with broadcasting: d/da = b, d/db = a."""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        na, nb = self.needs_input_grad
        self.save_for_backward(a if nb else None, b if na else None)
        self.shapes = (np.shape(a), np.shape(b))
        return a * b

    def backward(self, grad: np.ndarray) -> tuple:
        a, b = self.saved
        sa, sb = self.shapes
        na, nb = self.needs_input_grad
        return (
            unbroadcast(grad * b, sa) if na else None,
            unbroadcast(grad * a, sb) if nb else None,
        )


class Div(Function):
    """``a / b`` with broadcasting: d/da = 1/b, d/db = -a/b^2."""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = a / b
        self.save_for_backward(b, out)
        self.shapes = (np.shape(a), np.shape(b))
        return out

    def backward(self, grad: np.ndarray) -> tuple:
        b, out = self.saved
        sa, sb = self.shapes
        na, nb = self.needs_input_grad
        ga = grad / b
        return (
            unbroadcast(ga, sa) if na else None,
            unbroadcast(-ga * out, sb) if nb else None,
        )


class Remainder(Function):
    """``a % b`` with the sign of ``b`` (Python's and PyTorch's ``%``):
    ``a - b floor(a / b)``, so d/da = 1, d/db = -floor(a / b)."""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.shapes = (np.shape(a), np.shape(b))
        if self.needs_input_grad[1]:
            self.save_for_backward(np.floor_divide(a, b))
        return np.remainder(a, b)

    def backward(self, grad: np.ndarray) -> tuple:
        sa, sb = self.shapes
        na, nb = self.needs_input_grad
        return (
            unbroadcast(grad, sa) if na else None,
            unbroadcast(-grad * self.saved[0], sb) if nb else None,
        )


class Pow(Function):
    """``a ** b``: d/da = b a^(b-1), d/db = a^b log(a) (where a > 0)."""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = a**b
        self.save_for_backward(a, b, out)
        self.shapes = (np.shape(a), np.shape(b))
        return out

    def backward(self, grad: np.ndarray) -> tuple:
        a, b, out = self.saved
        sa, sb = self.shapes
        na, nb = self.needs_input_grad
        ga = gb = None
        if na:
            ga = unbroadcast(grad * b * a ** (b - 1), sa)
        if nb:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_a = np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0)
            gb = unbroadcast(grad * out * log_a, sb)
        return ga, gb


class Neg(Function):
    """``-a``."""

    def forward(self, a: np.ndarray) -> np.ndarray:
        return -a

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return -grad


class Exp(Function):
    """``exp(a)``; its derivative is its output."""

    def forward(self, a: np.ndarray) -> np.ndarray:
        out = np.exp(a)
        self.save_for_backward(out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (out,) = self.saved
        return grad * out


class Sin(Function):
    """``sin(a)``; derivative ``cos(a)``."""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.save_for_backward(a)
        return np.sin(a)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (a,) = self.saved
        return grad * np.cos(a)


class Cos(Function):
    """``cos(a)``; derivative ``-sin(a)``."""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.save_for_backward(a)
        return np.cos(a)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (a,) = self.saved
        return -grad * np.sin(a)


class Log(Function):
    """Natural logarithm; derivative ``1/a``."""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.save_for_backward(a)
        return np.log(a)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (a,) = self.saved
        return grad / a


class Sqrt(Function):
    """Square root; derivative ``1 / (2 sqrt(a))``."""

    def forward(self, a: np.ndarray) -> np.ndarray:
        out = np.sqrt(a)
        self.save_for_backward(out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (out,) = self.saved
        return grad / (2 * out)


class Abs(Function):
    """``|a|``; subgradient 0 at 0 (as PyTorch)."""

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.save_for_backward(a)
        return np.abs(a)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (a,) = self.saved
        return grad * np.sign(a)


class Clamp(Function):
    """``clip(a, lo, hi)``; gradient passes where the value was inside [lo, hi]."""

    def forward(
        self, a: np.ndarray, lo: float | None = None, hi: float | None = None
    ) -> np.ndarray:
        mask = np.ones(a.shape, dtype=bool)
        if lo is not None:
            mask &= a >= lo
        if hi is not None:
            mask &= a <= hi
        self.save_for_backward(mask)
        return np.clip(a, lo, hi)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (mask,) = self.saved
        return grad * mask


class MatMul(Function):
    """``a @ b`` (NumPy matmul semantics, batched and broadcast; 1-D operands allowed)."""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        na, nb = self.needs_input_grad
        self.save_for_backward(a if nb else None, b if na else None)
        self.shapes = (a.shape, b.shape)
        return a @ b

    def backward(self, grad: np.ndarray) -> tuple:
        a, b = self.saved
        sa, sb = self.shapes
        na, nb = self.needs_input_grad
        # Promote 1-D operands to matrices so one formula covers every case.
        a2 = a[None, :] if a is not None and a.ndim == 1 else a
        b2 = b[:, None] if b is not None and b.ndim == 1 else b
        g = grad
        if len(sa) == 1 and len(sb) == 1:  # vector . vector: the gradient is a scalar
            g = np.reshape(g, (1, 1))
        elif len(sa) == 1:
            g = np.expand_dims(g, -2)
        elif len(sb) == 1:
            g = np.expand_dims(g, -1)
        ga = gb = None
        if na:
            ga = unbroadcast(g @ np.swapaxes(b2, -1, -2), a2.shape if a2 is not None else sa)
            ga = ga.reshape(sa) if len(sa) == 1 else unbroadcast(ga, sa)
        if nb:
            gb = unbroadcast(np.swapaxes(a2, -1, -2) @ g, b2.shape)
            gb = gb.reshape(sb)
        return ga, gb


def _norm_axis(axis: Axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for ax in axes:
        if not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"dim {ax} is out of range for a tensor with {ndim} dimensions")
        out.append(ax % max(ndim, 1))
    return tuple(sorted(set(out)))


def _expand_back(grad: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...], keepdim: bool):
    if not keepdim:
        for ax in axes:
            grad = np.expand_dims(grad, ax)
    return grad


class Sum(Function):
    """Sum over ``dim`` (all dims if None)."""

    def forward(self, a: np.ndarray, dim: Axis = None, keepdim: bool = False) -> np.ndarray:
        self.axes = _norm_axis(dim, a.ndim)
        self.shape = a.shape
        self.keepdim = keepdim
        return np.asarray(a.sum(axis=self.axes, keepdims=keepdim))

    def backward(self, grad: np.ndarray) -> np.ndarray:
        g = _expand_back(grad, self.shape, self.axes, self.keepdim)
        return np.broadcast_to(g, self.shape).copy()


class Mean(Function):
    """Mean over ``dim`` (all dims if None)."""

    def forward(self, a: np.ndarray, dim: Axis = None, keepdim: bool = False) -> np.ndarray:
        self.axes = _norm_axis(dim, a.ndim)
        self.shape = a.shape
        self.keepdim = keepdim
        self.count = int(np.prod([a.shape[ax] for ax in self.axes])) if a.ndim else 1
        return np.asarray(a.mean(axis=self.axes, keepdims=keepdim))

    def backward(self, grad: np.ndarray) -> np.ndarray:
        g = _expand_back(grad, self.shape, self.axes, self.keepdim) / self.count
        return np.broadcast_to(g, self.shape).astype(grad.dtype, copy=True)


class Amax(Function):
    """Maximum over ``dim`` (all dims if None); ties share the gradient evenly (as PyTorch)."""

    def forward(self, a: np.ndarray, dim: Axis = None, keepdim: bool = False) -> np.ndarray:
        self.axes = _norm_axis(dim, a.ndim)
        self.keepdim = keepdim
        out = a.max(axis=self.axes, keepdims=True)
        self.save_for_backward(a == out)
        return np.asarray(out if keepdim else np.squeeze(out, axis=self.axes))

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (mask,) = self.saved
        g = _expand_back(grad, mask.shape, self.axes, self.keepdim)
        count = mask.sum(axis=self.axes, keepdims=True)
        return (mask * (g / count)).astype(grad.dtype, copy=False)


class Amin(Amax):
    """Minimum over ``dim`` (all dims if None); ties share the gradient evenly."""

    def forward(self, a: np.ndarray, dim: Axis = None, keepdim: bool = False) -> np.ndarray:
        self.axes = _norm_axis(dim, a.ndim)
        self.keepdim = keepdim
        out = a.min(axis=self.axes, keepdims=True)
        self.save_for_backward(a == out)
        return np.asarray(out if keepdim else np.squeeze(out, axis=self.axes))


class TakeAlongDim(Function):
    """Values of ``a`` at integer ``index`` along ``dim`` (the gradient goes to those places).

    Used by ``max(dim)``/``min(dim)`` (index = first arg-extremum, as PyTorch) and gather;
    ``distinct`` promises no index repeats along ``dim`` (sort, topk), so backward can
    scatter without accumulating.
    """

    def forward(
        self, a: np.ndarray, index: np.ndarray, dim: int, keepdim: bool = True, distinct=False
    ):
        self.dim = dim % a.ndim
        self.shape = a.shape
        self.keepdim = keepdim
        self.distinct = distinct
        self.save_for_backward(index)
        out = np.take_along_axis(a, index, axis=self.dim)
        return out if keepdim else np.squeeze(out, axis=self.dim)

    def backward(self, grad: np.ndarray) -> tuple:
        (index,) = self.saved
        if not self.keepdim:
            grad = np.expand_dims(grad, self.dim)
        g = np.zeros(self.shape, dtype=grad.dtype)
        np.put_along_axis(g, index, grad, axis=self.dim)
        # put_along_axis overwrites on repeated indices; add them up instead when gathering.
        if index.shape[self.dim] > 1 and not self.distinct:
            g[...] = 0
            idx = list(np.indices(index.shape, sparse=True))
            idx[self.dim] = index
            np.add.at(g, tuple(idx), grad)
        return g, None


class Where(Function):
    """``out = a where cond else b`` (broadcast). Gradient rule: ``d/da = g`` where
    ``cond`` and exactly 0 elsewhere, ``d/db = g`` where not ``cond`` and exactly 0
    elsewhere, so an inf or nan in the branch not taken never reaches the gradient (a
    select, not ``a * cond + b * ~cond``, as PyTorch)."""

    def forward(self, cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.shapes = (a.shape, b.shape)
        self.save_for_backward(cond)
        return np.where(cond, a, b)

    def backward(self, grad: np.ndarray) -> tuple:
        (cond,) = self.saved
        na, nb = self.needs_input_grad[1:3]
        zero = np.zeros((), grad.dtype)
        ga = unbroadcast(np.where(cond, grad, zero), self.shapes[0]) if na else None
        gb = unbroadcast(np.where(cond, zero, grad), self.shapes[1]) if nb else None
        return None, ga, gb


def as_array(value: Any, dtype: np.dtype) -> np.ndarray:
    """A Python scalar or array-like as an array of ``dtype`` (keeps float32 float32)."""
    return np.asarray(value, dtype=dtype)


class Maximum(Function):
    """Element-wise ``max(a, b)`` (broadcast); the larger input gets the gradient, a tie
    splits it in half between both (as PyTorch). A NaN propagates, and (as PyTorch, which
    only zeroes the input that compares smaller) both inputs get the gradient there."""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.shapes = (a.shape, b.shape)
        self.save_for_backward(a, b)
        return self.pick(a, b)

    @staticmethod
    def pick(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(a, b)

    @staticmethod
    def loses(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Where ``a`` is not the result (strictly)."""
        return a < b

    def backward(self, grad: np.ndarray) -> tuple:
        a, b = self.saved
        na, nb = self.needs_input_grad
        half = np.where(a == b, grad * 0.5, grad)
        zero = np.zeros((), grad.dtype)
        ga = unbroadcast(np.where(self.loses(a, b), zero, half), self.shapes[0]) if na else None
        gb = unbroadcast(np.where(self.loses(b, a), zero, half), self.shapes[1]) if nb else None
        return ga, gb


class Minimum(Maximum):
    """Element-wise ``min(a, b)``; the smaller input gets the gradient, ties split it."""

    @staticmethod
    def pick(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.minimum(a, b)

    @staticmethod
    def loses(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a > b


class Piecewise(Function):
    """A step function of ``a`` (``sign``, ``round``, ``floor``, ``ceil``, ``trunc``):
    its derivative is 0 wherever it exists, and PyTorch passes 0 everywhere."""

    def forward(self, a: np.ndarray, op: str, decimals: int = 0) -> np.ndarray:
        self.shape = a.shape
        if a.dtype.kind in "biu" and op != "sign":
            return a.copy()
        if op == "round":
            return np.round(a, decimals)
        return getattr(np, op)(a)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return np.zeros(self.shape, grad.dtype)


class Cumsum(Function):
    """Running sum along ``dim``; the gradient is the running sum of ``grad`` taken from
    the end: ``d out_j / d a_i = 1`` for every ``j >= i``."""

    def forward(self, a: np.ndarray, dim: int) -> np.ndarray:
        self.dim = dim
        return np.cumsum(a, axis=dim)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        rev = np.flip(grad, self.dim)
        return np.ascontiguousarray(np.flip(np.cumsum(rev, axis=self.dim), self.dim))


class Prod(Function):
    """Product over ``dim`` (all elements if None). The gradient of each element is the
    product of all the others, built from running products from the left and from the
    right, so zeros in the input give exact gradients (no division)."""

    def forward(self, a: np.ndarray, dim: int | None, keepdim: bool = False) -> np.ndarray:
        self.shape = a.shape
        self.flat = dim is None
        work = a.reshape(-1) if self.flat else a
        self.dim = 0 if self.flat else dim
        self.keepdim = keepdim and not self.flat
        if self.needs_input_grad[0]:
            self.save_for_backward(work)
        return np.asarray(np.prod(work, axis=self.dim, keepdims=self.keepdim))

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (work,) = self.saved
        d = self.dim
        n = work.shape[d]
        if n == 0:
            return np.zeros(self.shape, grad.dtype)
        ones = np.ones_like(np.take(work, [0], axis=d))
        # left[i] = prod(a[:i]), right[i] = prod(a[i+1:])
        head = np.take(work, np.arange(n - 1), axis=d)
        tail = np.flip(np.take(work, np.arange(1, n), axis=d), d)
        left = np.concatenate([ones, np.cumprod(head, axis=d)], axis=d)
        right = np.flip(np.concatenate([ones, np.cumprod(tail, axis=d)], axis=d), d)
        g = grad if self.keepdim or self.flat else np.expand_dims(grad, d)
        return (left * right * g).reshape(self.shape).astype(grad.dtype, copy=False)


class LogSumExp(Function):
    """``log(sum(exp(a)))`` over ``dim``, computed as ``m + log(sum(exp(a - m)))`` with
    ``m`` the maximum (finite-safe); the gradient is ``softmax(a) * grad``."""

    def forward(self, a: np.ndarray, dim: Axis, keepdim: bool = False) -> np.ndarray:
        self.axes = _norm_axis(dim, a.ndim)
        self.keepdim = keepdim
        m = np.max(a, axis=self.axes, keepdims=True) if a.size else np.zeros((1,) * a.ndim)
        m = np.where(np.isfinite(m), m, 0).astype(a.dtype)
        with np.errstate(divide="ignore"):
            out = np.log(np.sum(np.exp(a - m), axis=self.axes, keepdims=True)) + m
        self.save_for_backward(a, out)
        return np.asarray(out if keepdim else np.squeeze(out, axis=self.axes))

    def backward(self, grad: np.ndarray) -> np.ndarray:
        a, out = self.saved
        g = _expand_back(grad, a.shape, self.axes, self.keepdim)
        with np.errstate(invalid="ignore"):  # a slice all -inf: nan, as PyTorch
            return (np.exp(a - out) * g).astype(grad.dtype, copy=False)
