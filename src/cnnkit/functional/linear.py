"""Fully connected layer: ``y = x W^T + b``."""

from __future__ import annotations

import numpy as np

from cnnkit.autograd import Function
from cnnkit.functional import _parallel as parallel
from cnnkit.tensor import Tensor


class Linear(Function):
    """``y = x W^T + b`` for ``x: (*, in)``, ``W: (out, in)``, ``b: (out,)``.

    Backward: ``dx = g W``, ``dW = g^T x`` (summed over leading dims), ``db = sum g``.
    Large products are split over the worker threads: ``y`` and ``dx`` by rows of the
    batch, ``dW`` by output features.
    """

    def forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        nx, nw, _ = self.needs_input_grad
        self.save_for_backward(x if nw else None, w if nx else None)
        if parallel.split_workers(x.size * w.shape[0], "macs") == 1:  # small: one product, no split
            out = x @ w.T
            if b is not None:
                out += b
            return out
        x2 = x.reshape(-1, x.shape[-1])
        out = np.empty((len(x2), w.shape[0]), dtype=np.result_type(x, w))

        def rows(a: int, z: int) -> None:
            np.matmul(x2[a:z], w.T, out=out[a:z])
            if b is not None:
                out[a:z] += b

        parallel.batches(len(x2), x2.size * w.shape[0], rows, True, "macs")
        return out.reshape(*x.shape[:-1], w.shape[0])

    def infer(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> tuple:
        return (*x.shape[:-1], w.shape[0]), np.result_type(x, w)

    def backward(self, grad: np.ndarray) -> tuple:
        x, w = self.saved
        nx, nw, nb = self.needs_input_grad
        g2 = grad.reshape(-1, grad.shape[-1])
        dx = dw = db = None
        if nx:
            dx2 = np.empty((len(g2), w.shape[1]), dtype=np.result_type(grad, w))
            parallel.batches(
                len(g2),
                g2.size * w.shape[1],
                lambda a, z: np.matmul(g2[a:z], w, out=dx2[a:z]),
                True,
                "macs",
            )
            dx = dx2.reshape(*grad.shape[:-1], w.shape[1])
        if nw:
            x2 = x.reshape(-1, x.shape[-1])
            dw = np.empty((g2.shape[1], x2.shape[1]), dtype=np.result_type(grad, x))
            parallel.batches(
                len(dw),
                g2.size * x2.shape[1],
                lambda a, z: np.matmul(g2[:, a:z].T, x2, out=dw[a:z]),
                True,
                "macs",
            )
        if nb:  # a column sum is a sequential sum per column in NumPy: add in double
            db = g2.sum(axis=0, dtype=np.result_type(g2.dtype, np.float64)).astype(g2.dtype)
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
