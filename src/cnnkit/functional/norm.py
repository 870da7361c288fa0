"""Batch normalisation over the batch (and spatial) axes, per channel."""

from __future__ import annotations

import numpy as np

from cnnkit.autograd import Function
from cnnkit.tensor import Tensor


class BatchNorm(Function):
    """``y = gamma * (x - mu) / sqrt(var + eps) + beta`` per channel (axis 1).

    Training (batch statistics, ``M`` values per channel, ``xh`` the normalised input):
    ``dx = invstd / M * (M * dxh - sum(dxh) - xh * sum(dxh * xh))`` with ``dxh = g * gamma``.
    Evaluation (running statistics are constants): ``dx = g * gamma * invstd``.
    Both: ``dgamma = sum(g * xh)``, ``dbeta = sum(g)``.
    """

    def forward(
        self,
        x: np.ndarray,
        gamma: np.ndarray | None,
        beta: np.ndarray | None,
        mean: np.ndarray,
        invstd: np.ndarray,
        batch_stats: bool,
    ) -> np.ndarray:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        self.axes = (0, *range(2, x.ndim))
        self.shape = shape
        self.batch_stats = batch_stats
        xh = (x - mean.reshape(shape)) * invstd.reshape(shape)
        out = xh * gamma.reshape(shape) if gamma is not None else xh.copy()
        if beta is not None:
            out += beta.reshape(shape)
        self.save_for_backward(xh, invstd, gamma)
        return out

    def backward(self, grad: np.ndarray) -> tuple:
        xh, invstd, gamma = self.saved
        nx, ng, nb = self.needs_input_grad
        shape, axes = self.shape, self.axes
        dgamma = (grad * xh).sum(axis=axes) if (ng or (nx and self.batch_stats)) else None
        dbeta = grad.sum(axis=axes) if (nb or (nx and self.batch_stats)) else None
        dx = None
        if nx:
            scale = invstd if gamma is None else gamma * invstd
            if self.batch_stats:
                m = grad.size // grad.shape[1]
                dx = grad - (dbeta / m).reshape(shape) - xh * (dgamma / m).reshape(shape)
                dx *= scale.reshape(shape)
            else:
                dx = grad * scale.reshape(shape)
        return dx, (dgamma if ng else None), (dbeta if nb else None)


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation (PyTorch semantics).

    Training normalises with the batch mean and biased variance and updates the running
    statistics in place: ``running = (1 - momentum) * running + momentum * batch``, the
    variance unbiased (``* M / (M - 1)``). Evaluation uses the running statistics.

    Parameters
    ----------
    input : Tensor, shape (N, C) or (N, C, L) or (N, C, H, W)
    running_mean, running_var : Tensor, shape (C,), optional
    weight, bias : Tensor, shape (C,), optional

    Returns
    -------
    Tensor, same shape as ``input``
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected input (N, C, *); got {tuple(input.shape)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):  # fmt: skip
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(
                f"batch_norm: expected {name} of shape ({c},) for input {tuple(input.shape)}; "
                f"got {tuple(t.shape)}"
            )
    x = input.array
    axes = (0, *range(2, x.ndim))
    if training:
        m = x.size // c
        if m <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training; got input "
                f"{tuple(input.shape)}"
            )
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        if running_mean is not None:
            running_mean.array *= 1 - momentum
            running_mean.array += momentum * mean.astype(running_mean.dtype)
        if running_var is not None:
            running_var.array *= 1 - momentum
            running_var.array += momentum * (var * (m / (m - 1))).astype(running_var.dtype)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation mode needs running_mean and running_var")
        mean = running_mean.array
        var = running_var.array
    invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    return BatchNorm.apply(
        input, weight, bias, mean=mean.astype(x.dtype), invstd=invstd, batch_stats=training
    )
