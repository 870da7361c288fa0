"""Fully connected layer: ``y = x W^T + b``."""

from __future__ import annotations

import numpy as np

from cnnkit.autograd import Function
from cnnkit.tensor import Tensor


class Linear(Function):
    """``y = x W^T + b`` for ``x: (*, in)``, ``W: (out, in)``, ``b: (out,)``.

    Backward: ``dx = g W``, ``dW = g^T x`` (summed over leading dims), ``db = sum g``.
    """

    def forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        nx, nw, _ = self.needs_input_grad
        self.save_for_backward(x if nw else None, w if nx else None)
        out = x @ w.T
        if b is not None:
            out += b
        return out

    def infer(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> tuple:
        return (*x.shape[:-1], w.shape[0]), np.result_type(x, w)

    def backward(self, grad: np.ndarray) -> tuple:
        x, w = self.saved
        nx, nw, nb = self.needs_input_grad
        g2 = grad.reshape(-1, grad.shape[-1])
        dx = (grad @ w) if nx else None
        dw = g2.T @ x.reshape(-1, x.shape[-1]) if nw else None
        db = g2.sum(axis=0) if nb else None
        return dx, dw, db


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Affine map ``input @ weight.T + bias``.

    Parameters
    ----------
    input : Tensor, shape (*, in_features)
    weight : Tensor, shape (out_features, in_features)
    bias : Tensor, shape (out_features,), optional

    Returns
    -------
    Tensor, shape (*, out_features)
    """
    if input.ndim < 1 or input.shape[-1] != weight.shape[-1]:
        raise ValueError(
            f"linear: expected input (*, {weight.shape[-1]}) for weight of shape "
            f"{tuple(weight.shape)}; got {tuple(input.shape)}"
        )
    if input.dtype != weight.dtype:
        raise TypeError(
            f"linear: input dtype {input.dtype} does not match weight dtype {weight.dtype} "
            "(convert one with .float() / .double())"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(
            f"linear: bias must have shape ({weight.shape[0]},); got {tuple(bias.shape)}"
        )
    return Linear.apply(input, weight, bias)
