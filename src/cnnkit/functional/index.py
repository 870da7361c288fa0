"""Indexing ops with integer or boolean indices, each a Function: ``gather`` and
``scatter`` / ``scatter_add`` along a dimension, and the diagonal (``diag``).

Shapes (PyTorch's rules): for ``gather(a, dim, index)`` and ``scatter(a, dim, index, src)``
``index`` has ``a``'s number of dimensions, and ``index.size(d) <= a.size(d)`` for every
``d != dim`` (``<= src.size(d)`` for every ``d`` in ``scatter``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.autograd import Function


def _positions(index: np.ndarray, dim: int) -> tuple[np.ndarray, ...]:
    """Fancy-index tuple naming, for every element of ``index``, the element of the
    indexed array it points at: its own coordinates, with ``index`` along ``dim``."""
    idx = list(np.indices(index.shape, sparse=True))
    idx[dim] = index
    return tuple(idx)


def check_index(
    a_shape: tuple[int, ...], dim: int, index: np.ndarray, where: str, src_shape=None
) -> int:
    """``dim`` as a non-negative int after checking ``index`` against the rules above;
    raises naming ``where``."""
    nd = len(a_shape)
    if not -max(nd, 1) <= dim < max(nd, 1):
        raise IndexError(f"{where}: dim {dim} is out of range for a {nd}-d tensor")
    dim %= max(nd, 1)
    if index.dtype.kind not in "iu":
        raise TypeError(f"{where}: index must be an integer tensor; got dtype {index.dtype}")
    if index.ndim != nd:
        raise ValueError(
            f"{where}: index has {index.ndim} dimension(s), the input {nd}; they must match "
            f"(index shape {index.shape}, input shape {a_shape})"
        )
    for d in range(nd):
        if d != dim and index.shape[d] > a_shape[d]:
            raise ValueError(
                f"{where}: index shape {index.shape} exceeds input shape {a_shape} in dimension {d}"
            )
        if src_shape is not None and index.shape[d] > src_shape[d]:
            raise ValueError(
                f"{where}: index shape {index.shape} exceeds src shape {src_shape} in dimension {d}"
            )
    n = a_shape[dim] if nd else 1
    if index.size and (index.min() < 0 or index.max() >= n):
        raise IndexError(
            f"{where}: index values must lie in [0, {n}) along dim {dim}; got "
            f"{int(index.min())} .. {int(index.max())}"
        )
    return dim


class Gather(Function):
    """``out[i][j][k] = a[index[i][j][k]][j][k]`` for ``dim=0`` (and so on): the
    output has ``index``'s shape. Backward adds each output gradient into the element
    it was read from (indices may repeat)."""

    def forward(self, a: np.ndarray, index: np.ndarray, dim: int) -> np.ndarray:
        self.shape, self.dim = a.shape, dim
        self.save_for_backward(index)
        return a[_positions(index, dim)]

    def backward(self, grad: np.ndarray) -> tuple:
        (index,) = self.saved
        g = np.zeros(self.shape, dtype=grad.dtype)
        np.add.at(g, _positions(index, self.dim), grad)
        return g, None


class Scatter(Function):
    """A copy of ``a`` with ``out[index[i][j]][j] = src[i][j]`` (``dim=0``), or ``+=``
    when ``accumulate`` (``scatter_add``). Only the ``index``-shaped corner of ``src``
    is used.

    Backward: ``src`` gets the output gradient read back at the written places (a
    gather); ``a`` gets the output gradient, zeroed where it was overwritten (scatter)
    or unchanged (scatter_add, where ``a`` passes through).
    """

    def forward(
        self, a: np.ndarray, index: np.ndarray, src: np.ndarray, dim: int, accumulate: bool
    ) -> np.ndarray:
        self.dim, self.accumulate = dim, accumulate
        self.src_shape = np.shape(src)
        self.save_for_backward(index)
        return scatter_into(a.copy(), index, src, dim, accumulate)

    def backward(self, grad: np.ndarray) -> tuple:
        (index,) = self.saved
        pos = _positions(index, self.dim)
        ga = gs = None
        if self.needs_input_grad[0]:
            ga = grad.copy()
            if not self.accumulate:
                ga[pos] = 0
        if self.needs_input_grad[2]:
            gs = np.zeros(self.src_shape, dtype=grad.dtype)
            gs[tuple(slice(0, n) for n in index.shape)] = grad[pos]
        return ga, None, gs


def scatter_into(
    out: np.ndarray, index: np.ndarray, src: Any, dim: int, accumulate: bool
) -> np.ndarray:
    """Write (or add) ``src`` into ``out`` in place at ``index`` along ``dim``; ``src`` an
    array (its ``index``-shaped corner is used) or a scalar."""
    pos = _positions(index, dim)
    if np.ndim(src):
        src = src[tuple(slice(0, n) for n in index.shape)]
    if accumulate:
        np.add.at(out, pos, src)
    else:
        out[pos] = src
    return out


class Diag(Function):
    """``diag``: a 1-D input becomes the square matrix with it on diagonal ``k``; a 2-D
    input gives its diagonal ``k`` (above the main one for ``k > 0``). Backward is the
    other direction."""

    def forward(self, a: np.ndarray, k: int) -> np.ndarray:
        self.k, self.shape = k, a.shape
        return np.diag(a, k).copy()

    def backward(self, grad: np.ndarray) -> np.ndarray:
        if len(self.shape) == 1:
            return np.diagonal(grad, self.k).copy()
        g = np.zeros(self.shape, dtype=grad.dtype)
        steps = np.arange(grad.shape[0])
        g[steps + max(-self.k, 0), steps + max(self.k, 0)] = grad
        return g
