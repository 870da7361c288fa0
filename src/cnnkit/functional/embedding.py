"""``embedding``: rows of a weight matrix looked up by integer indices."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.autograd import Function
from cnnkit.tensor import Tensor, as_tensor

__all__ = ["Embedding", "embedding"]


class Embedding(Function):
    """``out[...] = W[idx[...]]``; backward scatters-adds ``g`` into the rows it read:
    ``dW[i] = sum of g over the positions where idx == i``, except the ``padding_idx``
    row, which gets no gradient."""

    def forward(self, w: np.ndarray, idx: np.ndarray, padding_idx: int | None) -> np.ndarray:
        self.idx, self.padding_idx, self.w_shape = idx, padding_idx, w.shape
        return w[idx]

    def infer(self, w: Any, idx: np.ndarray, padding_idx: int | None) -> tuple:
        return (*idx.shape, w.shape[1]), w.dtype

    def backward(self, grad: np.ndarray) -> tuple:
        dw = np.zeros(self.w_shape, dtype=grad.dtype)
        np.add.at(dw, self.idx.reshape(-1), grad.reshape(-1, self.w_shape[1]))
        if self.padding_idx is not None:
            dw[self.padding_idx] = 0
        return dw, None


def embedding(
    input: Any,
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    """Look up rows of ``weight`` (PyTorch's ``F.embedding``).

    Parameters
    ----------
    input : Tensor of int, any shape (*)
        Indices in ``[0, num_embeddings)``.
    weight : Tensor, shape (num_embeddings, embedding_dim)
    padding_idx : int, optional
        A row that receives no gradient (negative counts from the end).

    Returns
    -------
    Tensor, shape (*, embedding_dim)
    """
    where = "embedding"
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError(
            f"{where}: max_norm, scale_grad_by_freq and sparse are not supported"
        )
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"{where}: expected weight (num_embeddings, embedding_dim); got {got}")
    idx = np.asarray(as_tensor(input).array)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{where}: input must hold integer indices; got dtype {idx.dtype}")
    n = weight.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
        raise IndexError(f"{where}: index {bad} is out of range for {n} embeddings")
    pad = _padding_idx(padding_idx, n, where)
    return Embedding.apply(weight, idx.astype(np.int64, copy=False), padding_idx=pad)


def _padding_idx(padding_idx: int | None, n: int, where: str) -> int | None:
    """``padding_idx`` in ``[0, n)`` (a negative one counted from the end), or None."""
    if padding_idx is None:
        return None
    if not -n <= padding_idx < n:
        raise ValueError(f"{where}: padding_idx must be within [-{n}, {n}); got {padding_idx}")
    return int(padding_idx) % n
