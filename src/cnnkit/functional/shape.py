"""Shape ops: reshape, permute, indexing, concatenation, stacking, padding, flatten."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.autograd import Function, unbroadcast


class Reshape(Function):
    """View ``a`` with a new shape (same number of elements)."""

    def forward(self, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        self.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot view a tensor of shape {a.shape} ({a.size} elements) "
                f"as shape {tuple(shape)}"
            ) from None

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad.reshape(self.shape)


class Permute(Function):
    """Reorder dimensions: output dim i is input dim ``dims[i]``."""

    def forward(self, a: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
        if sorted(d % max(a.ndim, 1) for d in dims) != list(range(a.ndim)):
            raise ValueError(f"permute: dims {tuple(dims)} is not a permutation of {a.ndim} dims")
        self.dims = tuple(d % a.ndim for d in dims)
        return np.transpose(a, self.dims)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return np.transpose(grad, np.argsort(self.dims))


class Expand(Function):
    """Broadcast ``a`` to ``shape`` (a read-only view); backward sums back."""

    def forward(self, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        self.shape = a.shape
        return np.broadcast_to(a, shape)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return unbroadcast(grad, self.shape)


class GetItem(Function):
    """NumPy indexing (basic and advanced); backward scatters with ``np.add.at``."""

    def forward(self, a: np.ndarray, index: Any) -> np.ndarray:
        self.index = index
        self.shape = a.shape
        self.dtype = a.dtype
        return a[index]

    def backward(self, grad: np.ndarray) -> np.ndarray:
        g = np.zeros(self.shape, dtype=grad.dtype)
        np.add.at(g, self.index, grad)
        return g


class Cat(Function):
    """Concatenate tensors along ``dim``."""

    def forward(self, *arrays: np.ndarray, dim: int = 0) -> np.ndarray:
        if not arrays:
            raise ValueError("cat: expected a non-empty sequence of tensors")
        ndim = arrays[0].ndim
        for i, a in enumerate(arrays):
            if a.ndim != ndim:
                raise ValueError(
                    f"cat: tensor {i} has {a.ndim} dimensions; expected {ndim} like tensor 0"
                )
        self.dim = dim % ndim
        self.splits = np.cumsum([a.shape[self.dim] for a in arrays])[:-1]
        try:
            return np.concatenate(arrays, axis=self.dim)
        except ValueError:
            shapes = [a.shape for a in arrays]
            raise ValueError(
                f"cat: sizes must match except in dim {dim}; got shapes {shapes}"
            ) from None

    def backward(self, grad: np.ndarray) -> tuple:
        parts = np.split(grad, self.splits, axis=self.dim)
        needs = self.needs_input_grad
        return tuple(p if n else None for p, n in zip(parts, needs, strict=True))


class Stack(Function):
    """Stack same-shaped tensors along a new dimension ``dim``."""

    def forward(self, *arrays: np.ndarray, dim: int = 0) -> np.ndarray:
        if not arrays:
            raise ValueError("stack: expected a non-empty sequence of tensors")
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"stack: all tensors must have the same shape; got {sorted(shapes)}")
        self.dim = dim % (arrays[0].ndim + 1)
        return np.stack(arrays, axis=self.dim)

    def backward(self, grad: np.ndarray) -> tuple:
        return tuple(
            np.take(grad, i, axis=self.dim) if need else None
            for i, need in enumerate(self.needs_input_grad)
        )


class Pad(Function):
    """Constant padding; ``pad`` is a NumPy pad-width list ``[(before, after), ...]``."""

    def forward(self, a: np.ndarray, pad: list[tuple[int, int]], value: float = 0.0):
        self.slices = tuple(slice(b, b + n) for (b, _), n in zip(pad, a.shape, strict=False))
        return np.pad(a, pad, constant_values=value)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(grad[self.slices])


class Narrow(Function):
    """``a[start:stop]`` along ``dim`` (``squeeze``: the single index ``start``, dim
    dropped), as ``chunk``, ``split``, ``unbind`` and ``narrow`` cut; backward writes the
    gradient into that slot of zeros."""

    def forward(
        self, a: np.ndarray, dim: int, start: int, stop: int, squeeze: bool = False
    ) -> np.ndarray:
        self.shape = a.shape
        self.index = (slice(None),) * dim + ((start if squeeze else slice(start, stop)),)
        return a[self.index]

    def backward(self, grad: np.ndarray) -> np.ndarray:
        g = np.zeros(self.shape, dtype=grad.dtype)
        g[self.index] = grad
        return g


class Flip(Function):
    """Reverse the order of elements along each of ``dims``; backward flips back."""

    def forward(self, a: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
        self.dims = dims
        return np.flip(a, dims) if dims else a.copy()

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.flip(grad, self.dims) if self.dims else grad)


class Tile(Function):
    """``Tensor.repeat``: ``a`` (left-padded with size-1 dims to ``len(reps)`` dims)
    copied ``reps[i]`` times along dim ``i``. Backward views the gradient as
    ``(reps[0], n[0], reps[1], n[1], ...)`` and sums over the copies."""

    def forward(self, a: np.ndarray, reps: tuple[int, ...]) -> np.ndarray:
        self.shape = a.shape
        self.padded = (1,) * (len(reps) - a.ndim) + a.shape
        self.reps = reps
        return np.tile(a.reshape(self.padded), reps)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        pairs = [v for r, n in zip(self.reps, self.padded, strict=True) for v in (r, n)]
        g = grad.reshape(pairs).sum(axis=tuple(range(0, len(pairs), 2)))
        return g.reshape(self.shape)


class RepeatInterleave(Function):
    """Each element along ``dim`` repeated ``repeats[i]`` times in place (``np.repeat``);
    backward adds the copies' gradients back onto their source."""

    def forward(self, a: np.ndarray, repeats: np.ndarray, dim: int) -> np.ndarray:
        self.shape = a.shape
        self.dim = dim
        self.source = np.repeat(np.arange(a.shape[dim]), repeats)
        return np.repeat(a, repeats, axis=dim)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        g = np.zeros(self.shape, dtype=grad.dtype)
        np.add.at(np.moveaxis(g, self.dim, 0), self.source, np.moveaxis(grad, self.dim, 0))
        return g


def flatten(input: Any, start_dim: int = 0, end_dim: int = -1) -> Any:
    """Merge dims ``start_dim..end_dim`` into one (``input.flatten``)."""
    return input.flatten(start_dim, end_dim)


def pad(input: Any, pad: tuple[int, ...], mode: str = "constant", value: float = 0.0) -> Any:
    """Constant padding in PyTorch's order: ``(last_before, last_after, prev_before, ...)``."""
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is supported; got {mode!r}")
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(
            f"pad: expected an even-length tuple of at most {2 * input.ndim}; got {pad}"
        )
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return Pad.apply(input, pad=widths, value=value)


def one_hot(tensor: Any, num_classes: int = -1) -> Any:
    """Class indices ``(*)`` (int64) -> one-hot rows ``(*, num_classes)`` (int64), as PyTorch.

    ``num_classes=-1`` takes ``max(tensor) + 1``. No gradient flows (the input is integer).
    """
    from cnnkit.tensor import Tensor

    if not isinstance(tensor, Tensor):
        raise TypeError(f"one_hot: expected a Tensor of class indices, got {type(tensor).__name__}")
    idx = np.asarray(tensor.array)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: class indices must be an integer tensor, got dtype {idx.dtype}")
    if idx.size and idx.min() < 0:
        raise ValueError(f"one_hot: class indices must be >= 0, got {int(idx.min())}")
    if num_classes == -1:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    if num_classes < 0 or (idx.size and idx.max() >= num_classes):
        raise ValueError(
            f"one_hot: class values must be smaller than num_classes={num_classes}, "
            f"got {int(idx.max())}"
        )
    out = np.zeros((*idx.shape, int(num_classes)), np.int64)
    np.put_along_axis(out, idx[..., None].astype(np.int64), 1, axis=-1)
    return Tensor(out)
