"""Activations, softmax family and dropout, each a Function with its derivative."""

from __future__ import annotations

import numpy as np

from cnnkit import backend
from cnnkit.autograd import Function, is_grad_enabled
from cnnkit.functional import _parallel as parallel
from cnnkit.functional._windows import is_channels_last, to_layout
from cnnkit.tensor import Tensor


class ReLU(Function):
    """``max(x, 0)``; derivative 1 where x > 0, else 0 (0 at 0, as PyTorch)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.size < parallel.COPY_MIN:  # small: no split (and no per-call overhead)
            out = np.maximum(x, 0)
        else:
            out = np.empty_like(x)  # x's memory layout
            parallel.batches(len(x), x.size, lambda a, z: np.maximum(x[a:z], 0, out=out[a:z]))
        self.save_for_backward(out)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (out,) = self.saved
        if out.size < parallel.COPY_MIN:
            return grad * (out > 0)
        if out.ndim == 4 and grad.strides != out.strides:  # e.g. channels-last activations
            grad = to_layout(grad, is_channels_last(out))
        dx = np.empty_like(grad)

        def part(a: int, z: int) -> None:  # (a multiply is ~10x faster than np.where)
            np.multiply(grad[a:z], out[a:z] > 0, out=dx[a:z])

        parallel.batches(len(out), out.size, part)
        return dx


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
        raise TypeError(f"{name}: dim is required (e.g. dim=1 for (N, C) logits)")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{name}: dim {dim} is out of range for input of shape {x.shape}")
    return dim % x.ndim


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """Rectified linear unit, elementwise. ``input``: any shape."""
    return ReLU.apply(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """Leaky ReLU, elementwise."""
    return LeakyReLU.apply(input, negative_slope=negative_slope)


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
