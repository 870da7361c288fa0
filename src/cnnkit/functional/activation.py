"""Activations, softmax family and dropout, each a Function with its derivative."""

from __future__ import annotations

import math

import numpy as np

from cnnkit import backend
from cnnkit.autograd import Function, is_grad_enabled
from cnnkit.functional import _parallel as parallel
from cnnkit.functional._windows import is_channels_last, to_layout
from cnnkit.tensor import Tensor


class ReLU(Function):
    """``max(x, 0)``; derivative 1 where x > 0, else 0 (0 at 0, as PyTorch)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        if parallel.split_workers(x.size) == 1:  # small: no split (no per-call overhead)
            out = np.maximum(x, 0)
        else:
            out = np.empty_like(x)  # x's memory layout
            parallel.batches(len(x), x.size, lambda a, z: np.maximum(x[a:z], 0, out=out[a:z]))
        self.save_for_backward(out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (out,) = self.saved
        if parallel.split_workers(out.size) == 1:
            return grad * (out > 0)
        if out.ndim == 4 and grad.strides != out.strides:  # e.g. channels-last activations
            grad = to_layout(grad, is_channels_last(out))
        dx = np.empty_like(grad)

        def part(a: int, z: int) -> None:  # (a multiply is ~10x faster than np.where)
            np.multiply(grad[a:z], out[a:z] > 0, out=dx[a:z])

        parallel.batches(len(out), out.size, part)
        return dx


class AddReLU(Function):
    """``max(a + b, 0)`` (a residual connection's sum and the ReLU after it) as one op;
    both inputs get the gradient ``g * (out > 0)``."""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.ndim == 4:
            b = to_layout(b, is_channels_last(a))
        out = np.empty_like(a)  # a's memory layout

        def part(lo: int, hi: int) -> None:
            np.add(a[lo:hi], b[lo:hi], out=out[lo:hi])
            np.maximum(out[lo:hi], 0, out=out[lo:hi])

        parallel.batches(len(a), a.size, part)
        self.save_for_backward(out)
        return out

    def backward(self, grad: np.ndarray) -> tuple:
        (out,) = self.saved
        if out.ndim == 4 and grad.strides != out.strides:
            grad = to_layout(grad, is_channels_last(out))
        dx = np.empty_like(out)

        def part(lo: int, hi: int) -> None:
            np.multiply(grad[lo:hi], out[lo:hi] > 0, out=dx[lo:hi])

        parallel.batches(len(out), out.size, part)
        return dx, dx  # (autograd never writes into a gradient it was given)


class LeakyReLU(Function):
    """``x if x > 0 else slope * x``."""

    def forward(self, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
        self.slope = negative_slope
        self.save_for_backward(x > 0)
        return np.where(x > 0, x, x * x.dtype.type(negative_slope))

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (pos,) = self.saved
        slope = grad.dtype.type(self.slope)
        return grad * (pos + (~pos) * slope).astype(grad.dtype, copy=False)


class PReLU(Function):
    """``x if x > 0 else a * x`` with a learned slope ``a``: one value, or one per channel
    (axis 1, broadcast over the other axes).

    ``dx = g`` where ``x > 0``, else ``a g``; ``da = sum g x`` over the elements with
    ``x <= 0`` (summed over every axis but the channel axis).
    """

    def forward(self, x: np.ndarray, a: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (x.ndim - 2) if a.size > 1 else (1,) * x.ndim
        self.a_shape = a.shape
        a_b = a.reshape(shape) if x.ndim else a.reshape(())
        pos = x > 0
        self.save_for_backward(x, pos, a_b)
        return np.where(pos, x, a_b * x).astype(x.dtype, copy=False)

    def backward(self, grad: np.ndarray) -> tuple:
        x, pos, a_b = self.saved
        nx, na = self.needs_input_grad
        dx = np.where(pos, grad, a_b * grad).astype(grad.dtype, copy=False) if nx else None
        da = None
        if na:
            neg = np.where(pos, 0, grad * x)
            per_channel = self.a_shape[0] > 1
            axes = tuple(i for i in range(neg.ndim) if not (per_channel and i == 1))
            da = neg.sum(axis=axes).reshape(self.a_shape).astype(grad.dtype, copy=False)
        return dx, da


def _stable_sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow at |x| = 1000
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Function):
    """``1 / (1 + exp(-x))``; derivative ``s (1 - s)``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = _stable_sigmoid(x)
        self.save_for_backward(out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (s,) = self.saved
        return grad * s * (1 - s)


class Tanh(Function):
    """``tanh(x)``; derivative ``1 - tanh(x)^2``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = np.tanh(x)
        self.save_for_backward(out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (t,) = self.saved
        return grad * (1 - t * t)


class Softmax(Function):
    """``exp(x_i - max) / sum_j exp(x_j - max)`` along ``dim``.

    Backward: ``s * (g - sum(g * s))`` (the softmax Jacobian applied to g).
    """

    def forward(self, x: np.ndarray, dim: int) -> np.ndarray:
        self.dim = dim
        e = np.exp(x - x.max(axis=dim, keepdims=True))
        out = e / e.sum(axis=dim, keepdims=True)
        self.save_for_backward(out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (s,) = self.saved
        return s * (grad - (grad * s).sum(axis=self.dim, keepdims=True))


class LogSoftmax(Function):
    """``x - max - log(sum exp(x - max))`` along ``dim``; backward ``g - softmax * sum(g)``."""

    def forward(self, x: np.ndarray, dim: int) -> np.ndarray:
        self.dim = dim
        shifted = x - x.max(axis=dim, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        self.save_for_backward(out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (out,) = self.saved
        return grad - np.exp(out) * grad.sum(axis=self.dim, keepdims=True)


class DropoutMask(Function):
    """Multiply by a precomputed mask scaled by ``1 / (1 - p)`` (inverted dropout)."""

    def forward(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (mask,) = self.saved
        return grad * mask


def _check_dim(x: Tensor, dim: int | None, name: str) -> int:
    if dim is None:
        # PyTorch's implicit choice (deprecated there, still common in old scripts)
        import warnings

        dim = 0 if x.ndim in (0, 1, 3) else 1
        warnings.warn(
            f"{name}: implicit dim is deprecated; chose dim={dim} as PyTorch does "
            f"(pass dim= explicitly)",
            stacklevel=3,
        )
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{name}: dim {dim} is out of range for input of shape {x.shape}")
    return dim % x.ndim


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """Rectified linear unit, elementwise. ``input``: any shape."""
    return ReLU.apply(input)


def add_relu(a: Tensor, b: Tensor) -> Tensor:
    """``relu(a + b)`` in one op (values and gradients the same); ``a`` and ``b`` of one
    shape and dtype, else it runs as the two ops."""
    if (
        isinstance(a, Tensor)
        and isinstance(b, Tensor)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.ndim >= 1
    ):
        return AddReLU.apply(a, b)
    return ReLU.apply(a + b)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """Leaky ReLU, elementwise."""
    return LeakyReLU.apply(input, negative_slope=negative_slope)


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """Parametric ReLU: ``x if x > 0 else weight * x``.

    Parameters
    ----------
    input : Tensor, shape (N, C, *) or (N,) or a scalar
    weight : Tensor, shape (1,) or (C,) (one slope per channel, axis 1)

    Returns
    -------
    Tensor, the input's shape
    """
    for name, t in (("input", input), ("weight", weight)):
        if not isinstance(t, Tensor):
            raise TypeError(f"prelu: {name} must be a cnnkit Tensor; got {type(t).__name__}")
    if weight.ndim != 1:
        raise ValueError(f"prelu: expected weight of shape (1,) or (C,); got {tuple(weight.shape)}")
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.shape[0] not in (1, channels):
        raise ValueError(
            f"prelu: weight has {weight.shape[0]} slopes but input {tuple(input.shape)} has "
            f"{channels} channels (axis 1); give 1 or {channels}"
        )
    return PReLU.apply(input, weight)


def sigmoid(input: Tensor) -> Tensor:
    """Logistic sigmoid, elementwise, stable for large |x|."""
    return Sigmoid.apply(input)


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent, elementwise."""
    return Tanh.apply(input)


def softmax(input: Tensor, dim: int | None = None) -> Tensor:
    """Softmax along ``dim`` (stable: subtracts the max)."""
    return Softmax.apply(input, dim=_check_dim(input, dim, "softmax"))


def log_softmax(input: Tensor, dim: int | None = None) -> Tensor:
    """Log-softmax along ``dim`` (stable log-sum-exp)."""
    return LogSoftmax.apply(input, dim=_check_dim(input, dim, "log_softmax"))


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)`` when training.

    The mask is drawn from the global generator (``ck.manual_seed``).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1]; got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = backend.default_rng().random(input.shape) >= p
    mask = keep.astype(input.dtype) * input.dtype.type(1.0 / (1.0 - p))
    if not (input.requires_grad and is_grad_enabled()):
        return Tensor._wrap(input.array * mask, False)
    return DropoutMask.apply(input, mask)


_erf = np.frompyfunc(math.erf, 1, 1)


class GELU(Function):
    r"""Gaussian error linear unit :math:`x \Phi(x)`, exact (erf) or the tanh approximation.

    Exact: :math:`y = \tfrac{x}{2}(1 + \mathrm{erf}(x/\sqrt2))`,
    :math:`y' = \Phi(x) + x \varphi(x)`. Tanh: :math:`u = \sqrt{2/\pi}(x + 0.044715 x^3)`,
    :math:`y = \tfrac{x}{2}(1 + \tanh u)`, :math:`y' = \tfrac12(1 + \tanh u) +
    \tfrac{x}{2}(1 - \tanh^2 u)\sqrt{2/\pi}(1 + 3 \cdot 0.044715 x^2)`.
    """

    def forward(self, x: np.ndarray, approximate: str) -> np.ndarray:
        self.save_for_backward(x)
        self.approximate = approximate
        if approximate == "tanh":
            t = np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))
            self.t = t
            return (0.5 * x * (1 + t)).astype(x.dtype, copy=False)
        cdf = 0.5 * (1 + _erf(x / np.sqrt(2)).astype(x.dtype))
        self.cdf = cdf
        return x * cdf

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (x,) = self.saved
        if self.approximate == "tanh":
            t = self.t
            du = np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * x**2)
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
        else:
            pdf = np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
            d = self.cdf + x * pdf
        return (grad * d).astype(x.dtype, copy=False)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """GELU, elementwise; ``approximate`` is ``'none'`` (erf) or ``'tanh'``."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh'; got {approximate!r}")
    return GELU.apply(input, approximate=approximate)


def dropout2d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> Tensor:
    """Zero whole channels of ``(N, C, H, W)`` (or ``(C, H, W)``) with probability ``p``.

    The surviving channels are scaled by ``1/(1-p)``; one mask value per ``(n, c)`` drawn
    from the global generator.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout2d: p must be in [0, 1]; got {p}")
    if input.ndim not in (3, 4):
        raise ValueError(f"dropout2d: expected input (N, C, H, W) or (C, H, W); got {input.shape}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = backend.default_rng().random((*input.shape[:-2], 1, 1)) >= p
    mask = keep.astype(input.dtype) * input.dtype.type(1.0 / (1.0 - p))
    mask = np.broadcast_to(mask, input.shape)
    if not (input.requires_grad and is_grad_enabled()):
        return Tensor._wrap(input.array * mask, False)
    return DropoutMask.apply(input, mask)


class ELU(Function):
    """``x if x > 0 else alpha (exp(x) - 1)``; derivative 1, else ``out + alpha``."""

    def forward(self, x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
        a = x.dtype.type(alpha)
        out = np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
        self.alpha = a
        self.save_for_backward(x > 0, out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        pos, out = self.saved
        return np.where(pos, grad, grad * (out + self.alpha))


class SiLU(Function):
    """``x * sigmoid(x)`` (swish); derivative ``s (1 + x (1 - s))``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        s = _stable_sigmoid(x)
        self.save_for_backward(x, s)
        return x * s

    def backward(self, grad: np.ndarray) -> np.ndarray:
        x, s = self.saved
        return grad * s * (1 + x * (1 - s))


class ReLU6(Function):
    """``min(max(x, 0), 6)``; derivative 1 strictly inside (0, 6), else 0 (as PyTorch)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward((x > 0) & (x < 6))
        return np.clip(x, 0, 6)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (inside,) = self.saved
        return grad * inside


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """Exponential linear unit, elementwise (``inplace`` accepted; a new tensor is returned)."""
    return ELU.apply(input, alpha=alpha)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """``x * sigmoid(x)``, elementwise (``inplace`` accepted; a new tensor is returned)."""
    return SiLU.apply(input)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """``min(max(x, 0), 6)``, elementwise (``inplace`` accepted; a new tensor is returned)."""
    return ReLU6.apply(input)


class Softplus(Function):
    """``log(1 + exp(beta x)) / beta``, and ``x`` itself where ``beta x > threshold``
    (as PyTorch); derivative ``sigmoid(beta x)``, 1 above the threshold."""

    def forward(self, x: np.ndarray, beta: float, threshold: float) -> np.ndarray:
        z = x * x.dtype.type(beta)
        linear = z > threshold
        soft = (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / x.dtype.type(beta)
        self.save_for_backward(z, linear)
        return np.where(linear, x, soft).astype(x.dtype, copy=False)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        z, linear = self.saved
        return np.where(linear, grad, grad * _stable_sigmoid(z)).astype(grad.dtype, copy=False)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """Smooth ReLU ``log(1 + exp(beta x)) / beta``, linear where ``beta x > threshold``.

    Parameters
    ----------
    input : Tensor, any shape, floating point
    beta : float
        Sharpness (non-zero); larger is closer to ReLU.
    threshold : float
        Above ``beta x > threshold`` the output is ``x`` (the two agree to float precision).
    """
    if not isinstance(input, Tensor) or input.dtype.kind != "f":
        what = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(f"softplus: expected a floating-point Tensor, got {what}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta == 0:
        raise ValueError(f"softplus: beta must be a non-zero number, got {beta!r}")
    return Softplus.apply(input, beta=float(beta), threshold=float(threshold))
