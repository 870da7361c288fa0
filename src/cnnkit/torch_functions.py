"""The free functions PyTorch scripts call as ``torch.X(tensor, ...)``.

Each one forwards to the :class:`~cnnkit.tensor.Tensor` method of the same name (where the
op and its gradient live); nothing is computed here.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from cnnkit import autograd, backend
from cnnkit.tensor import Size, Tensor

__all__ = [
    "BoolTensor",
    "DoubleTensor",
    "FloatTensor",
    "Generator",
    "IntTensor",
    "LongTensor",
    "abs",
    "all",
    "allclose",
    "amax",
    "amin",
    "any",
    "argmax",
    "argmin",
    "argsort",
    "bincount",
    "bmm",
    "ceil",
    "chunk",
    "clamp",
    "clip",
    "cos",
    "cumsum",
    "diag",
    "einsum",
    "eq",
    "equal",
    "exp",
    "flatten",
    "flip",
    "floor",
    "from_numpy",
    "gather",
    "get_num_threads",
    "index_select",
    "inference_mode",
    "is_tensor",
    "isfinite",
    "isinf",
    "isnan",
    "log",
    "log_softmax",
    "logsumexp",
    "masked_fill",
    "masked_select",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "mm",
    "narrow",
    "nonzero",
    "norm",
    "numel",
    "permute",
    "pow",
    "prod",
    "randint",
    "randperm",
    "repeat_interleave",
    "reshape",
    "round",
    "scatter",
    "scatter_add",
    "set_num_threads",
    "sigmoid",
    "sign",
    "sin",
    "softmax",
    "sort",
    "split",
    "sqrt",
    "square",
    "squeeze",
    "std",
    "sum",
    "tanh",
    "tile",
    "topk",
    "transpose",
    "trunc",
    "unbind",
    "unflatten",
    "unique",
    "unsqueeze",
    "var",
]


def max(input: Tensor, dim: Any = None, keepdim: bool = False, **alias: Any) -> Any:
    """``max(x)`` the largest value; ``max(x, dim)`` a ``(values, indices)`` pair;
    ``max(x, y)`` the element-wise maximum."""
    return input.max(dim, keepdim, **alias)


def min(input: Tensor, dim: Any = None, keepdim: bool = False, **alias: Any) -> Any:
    """``min(x)``, ``min(x, dim)`` -> ``(values, indices)``, or ``min(x, y)`` element-wise."""
    return input.min(dim, keepdim, **alias)


def argmax(input: Tensor, dim: int | None = None, keepdim: bool = False, **alias: Any) -> Tensor:
    """Index of the largest value (over all elements, or along ``dim``)."""
    return input.argmax(dim, keepdim, **alias)


def argmin(input: Tensor, dim: int | None = None, keepdim: bool = False, **alias: Any) -> Tensor:
    """Index of the smallest value (over all elements, or along ``dim``)."""
    return input.argmin(dim, keepdim, **alias)


def sum(input: Tensor, dim: Any = None, keepdim: bool = False, **alias: Any) -> Tensor:
    """Sum over all elements or along ``dim``."""
    return _tensor(input).sum(dim, keepdim, **alias)


def mean(input: Tensor, dim: Any = None, keepdim: bool = False, **alias: Any) -> Tensor:
    """Mean over all elements or along ``dim``."""
    return input.mean(dim, keepdim, **alias)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions ``start_dim..end_dim``: ``flatten(x, 1)`` gives ``(N, C*H*W)``."""
    return input.flatten(start_dim, end_dim)


def unflatten(input: Tensor, dim: int, sizes: Any) -> Tensor:
    """Split dimension ``dim`` into ``sizes``: ``unflatten(x, 1, (C, H, W))`` turns
    ``(N, C*H*W)`` into ``(N, C, H, W)``; one size may be -1."""
    return input.unflatten(dim, sizes)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (as ``torch.from_numpy``)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray; got {type(array).__name__}")
    return Tensor(array)


def is_tensor(obj: Any) -> bool:
    """True for a :class:`Tensor`."""
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> int:
    """Number of elements."""
    return input.numel()


def eq(input: Tensor, other: Any) -> Tensor:
    """Element-wise ``==`` as a bool tensor."""
    return input == other


def exp(input: Tensor) -> Tensor:
    return input.exp()


def log(input: Tensor) -> Tensor:
    return input.log()


def sqrt(input: Tensor) -> Tensor:
    return input.sqrt()


def abs(input: Tensor) -> Tensor:
    return input.abs()


def sigmoid(input: Tensor) -> Tensor:
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:
    return input.tanh()


def clamp(input: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    return input.clamp(min, max)


def matmul(input: Tensor, other: Tensor) -> Tensor:
    return input @ other


def reshape(input: Tensor, shape: Any) -> Tensor:
    return input.reshape(shape)


def permute(input: Tensor, dims: Any) -> Tensor:
    return input.permute(dims)


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    return input.transpose(dim0, dim1)


def squeeze(input: Tensor, dim: int | None = None) -> Tensor:
    return input.squeeze(dim)


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    return input.unsqueeze(dim)


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def inference_mode(mode: bool = True) -> autograd._GradMode:
    """Context manager / decorator turning graph recording off (as ``no_grad``)."""
    return autograd.set_grad_enabled(not mode)


class Generator:
    """A seedable random generator, as ``torch.Generator`` (``Generator().manual_seed(0)``).

    Parameters
    ----------
    device : str
        Only ``"cpu"``.

    Attributes
    ----------
    rng : numpy.random.Generator
        The NumPy generator it wraps (what cnnkit's loaders and splits draw from).
    """

    def __init__(self, device: Any = "cpu") -> None:
        from cnnkit._device import check_device

        check_device(device, "Generator")
        self.rng = np.random.default_rng(int(backend.default_rng().integers(0, 2**63 - 1)))
        self._seed: int | None = None

    def manual_seed(self, seed: int) -> Generator:
        self._seed = int(seed)
        self.rng = np.random.default_rng(self._seed)
        return self

    def initial_seed(self) -> int | None:
        return self._seed


def _rng_of(generator: Generator | None, where: str) -> np.random.Generator:
    """The NumPy generator behind ``generator`` (the global one when None)."""
    if generator is None:
        return backend.default_rng()
    if not isinstance(generator, Generator):
        raise TypeError(f"{where}: generator must be a cnnkit.Generator, got {type(generator)}")
    return generator.rng


def randperm(
    n: int,
    *,
    generator: Generator | None = None,
    dtype: Any = "int64",
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """A random permutation of ``0 .. n-1`` (int64), as ``torch.randperm``.

    Draws from ``generator`` (a :class:`Generator`) or the global generator; the order
    differs from PyTorch's for the same seed (a different random stream).
    """
    from cnnkit._device import check_device

    check_device(device, "randperm")
    if isinstance(n, Tensor):
        n = n.item()
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"randperm: n must be a non-negative int, got {n!r}")
    perm = _rng_of(generator, "randperm").permutation(int(n))
    return Tensor(perm.astype(np.dtype(dtype)), requires_grad)


def randint(
    low: int,
    high: Any = None,
    size: Any = None,
    *,
    generator: Generator | None = None,
    dtype: Any = "int64",
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """Integers drawn uniformly from ``[low, high)`` in shape ``size``, as ``torch.randint``.

    ``randint(high, size)`` (two positional arguments) draws from ``[0, high)``.
    """
    from cnnkit._device import check_device

    check_device(device, "randint")
    if size is None:
        if not isinstance(high, (tuple, list)):
            raise TypeError("randint: give size as a tuple, e.g. randint(0, 10, (3,))")
        low, high, size = 0, low, high
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"randint: size must be a tuple of ints, got {size!r}")
    if int(high) <= int(low):
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    vals = _rng_of(generator, "randint").integers(int(low), int(high), tuple(size))
    return Tensor(vals.astype(np.dtype(dtype)), requires_grad)


def softmax(input: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """Softmax along ``dim`` (``torch.softmax``)."""
    return (input if dtype is None else input.type(dtype)).softmax(dim)


def log_softmax(input: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """Log-softmax along ``dim`` (``torch.log_softmax``)."""
    return (input if dtype is None else input.type(dtype)).log_softmax(dim)


def std(input: Tensor, dim: Any = None, unbiased: bool = True, keepdim: bool = False) -> Tensor:
    """Standard deviation (``Tensor.std``)."""
    return input.std(dim, unbiased=unbiased, keepdim=keepdim)


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:
    """The ``k`` largest values and their indices (``Tensor.topk``)."""
    return input.topk(k, dim, largest, sorted)


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for BLAS and cnnkit's batch-parallel ops (``torch.set_num_threads``)."""
    from cnnkit.functional import _parallel

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    for lib in _parallel._controllers()[1]:
        lib.set_num_threads(int(n))


def get_num_threads() -> int:
    """The threads cnnkit computes with (``torch.get_num_threads``)."""
    from cnnkit.functional import _parallel

    return _parallel.workers()


# ------------------------------------------------ sorting, element-wise, reductions
def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
    """``(values, indices)`` sorted along ``dim`` (``Tensor.sort``)."""
    return input.sort(dim, descending, stable)


def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """Indices that sort ``dim`` (``Tensor.argsort``)."""
    return input.argsort(dim, descending, stable)


def maximum(input: Tensor, other: Tensor) -> Tensor:
    """Element-wise maximum (``Tensor.maximum``)."""
    return _tensor(input).maximum(other)


def minimum(input: Tensor, other: Tensor) -> Tensor:
    """Element-wise minimum (``Tensor.minimum``)."""
    return _tensor(input).minimum(other)


def sign(input: Tensor) -> Tensor:
    return input.sign()


def round(input: Tensor, *, decimals: int = 0) -> Tensor:
    """Round half to even, to ``decimals`` places (``Tensor.round``)."""
    return input.round(decimals)


def floor(input: Tensor) -> Tensor:
    return input.floor()


def ceil(input: Tensor) -> Tensor:
    return input.ceil()


def trunc(input: Tensor) -> Tensor:
    return input.trunc()


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    """``(n, m) @ (m, p)`` (``Tensor.mm``)."""
    return input.mm(mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """``(b, n, m) @ (b, m, p)`` (``Tensor.bmm``)."""
    return input.bmm(mat2)


def einsum(equation: str, *operands: Any) -> Tensor:
    """Einstein summation (:func:`cnnkit.functional.einsum.einsum`)."""
    from cnnkit.functional.einsum import einsum as _einsum

    return _einsum(equation, *operands)


def cumsum(input: Tensor, dim: int, dtype: Any = None) -> Tensor:
    return input.cumsum(dim, dtype=dtype)


def prod(input: Tensor, dim: int | None = None, keepdim: bool = False, dtype: Any = None):
    """Product of all elements or along ``dim`` (``Tensor.prod``)."""
    return input.prod(dim, keepdim, dtype=dtype)


def logsumexp(input: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    return input.logsumexp(dim, keepdim)


# ------------------------------------------------------------- splitting, tiling
def split(tensor: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces of a size, or of the listed sizes, along ``dim`` (``Tensor.split``)."""
    return tensor.split(split_size_or_sections, dim)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    return input.chunk(chunks, dim)


def unbind(input: Tensor, dim: int = 0) -> tuple[Tensor, ...]:
    return input.unbind(dim)


def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    return input.narrow(dim, start, length)


def flip(input: Tensor, dims: Any) -> Tensor:
    return input.flip(dims)


def tile(input: Tensor, dims: Any) -> Tensor:
    """``Tensor.repeat`` with fewer counts than dims allowed (they pad with 1 on the left)."""
    reps = tuple(dims)
    return input.repeat((1,) * (input.ndim - len(reps)) + reps)


def repeat_interleave(input: Tensor, repeats: Any = None, dim: int | None = None, **kw: Any):
    """Each element repeated in place (``Tensor.repeat_interleave``); with only a 1-D
    count tensor, the indices ``i`` repeated ``input[i]`` times."""
    if repeats is None:
        counts = np.asarray(input.array)
        if counts.ndim != 1 or counts.dtype.kind not in "iu" or (counts.size and counts.min() < 0):
            raise ValueError(
                "repeat_interleave: with one argument, expected a 1-D tensor of non-negative "
                f"int counts, got shape {input.shape}, dtype {input.dtype}"
            )
        return Tensor(np.repeat(np.arange(counts.size, dtype=np.int64), counts))
    return input.repeat_interleave(repeats, dim, **kw)


# ---------------------------------------------------------------- counting
def unique(
    input: Tensor,
    sorted: bool = True,
    return_inverse: bool = False,
    return_counts: bool = False,
    dim: int | None = None,
) -> Any:
    """Distinct values, and optionally inverse indices and counts (``Tensor.unique``)."""
    return input.unique(sorted, return_inverse, return_counts, dim)


def bincount(input: Tensor, weights: Tensor | None = None, minlength: int = 0) -> Tensor:
    return input.bincount(weights, minlength)


# ---------------------------------------------------------- legacy constructors
class _LegacyType(type):
    """``isinstance(t, torch.LongTensor)`` is a dtype check, as in PyTorch."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, Tensor) and obj.dtype == np.dtype(cls.dtype)


def _legacy(args: tuple, dtype: str, name: str) -> Tensor:
    """``XTensor(2, 3)`` or ``XTensor(torch.Size)``: a zero tensor of that shape;
    ``XTensor([...])`` (a list, tuple, array or tensor): those values in ``dtype``."""
    dt = np.dtype(dtype)
    if len(args) == 1 and isinstance(args[0], Size):
        return Tensor(np.zeros(tuple(args[0]), dt))
    # builtins: this module defines torch's any/all
    if builtins.all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in args):
        if builtins.any(a < 0 for a in args):
            raise ValueError(f"{name}: sizes must be non-negative, got {args}")
        return Tensor(np.zeros(tuple(int(a) for a in args) if args else (0,), dt))
    if len(args) == 1 and isinstance(args[0], (list, tuple, np.ndarray, Tensor)):
        data = args[0].array if isinstance(args[0], Tensor) else args[0]
        return Tensor(np.array(data, dtype=dt))
    raise TypeError(
        f"{name}: expected sizes as ints (e.g. {name}(2, 3)) or data as a list; got "
        f"{', '.join(type(a).__name__ for a in args)}"
    )


class LongTensor(metaclass=_LegacyType):
    """PyTorch's legacy ``torch.LongTensor``: ``LongTensor([1, 2])`` makes an int64 tensor
    of those values, ``LongTensor(2, 3)`` an int64 tensor of that shape (zeros)."""

    dtype = "int64"

    def __new__(cls, *args: Any) -> Tensor:  # type: ignore[misc]
        return _legacy(args, cls.dtype, cls.__name__)


class FloatTensor(LongTensor):
    """``torch.FloatTensor``: as :class:`LongTensor`, float32."""

    dtype = "float32"


class DoubleTensor(LongTensor):
    """``torch.DoubleTensor``: as :class:`LongTensor`, float64."""

    dtype = "float64"


class IntTensor(LongTensor):
    """``torch.IntTensor``: as :class:`LongTensor`, int32."""

    dtype = "int32"


class BoolTensor(LongTensor):
    """``torch.BoolTensor``: as :class:`LongTensor`, bool."""

    dtype = "bool"


def sin(input: Tensor) -> Tensor:
    """Elementwise sine."""
    return input.sin()


def cos(input: Tensor) -> Tensor:
    """Elementwise cosine."""
    return input.cos()


def equal(input: Tensor, other: Tensor) -> bool:
    """True when both tensors have the same shape and the same values."""
    return _tensor(input).equal(other)


def allclose(
    input: Tensor, other: Tensor, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False
) -> bool:
    """Whether ``|input - other| <= atol + rtol * |other|`` everywhere (broadcast)."""
    return _tensor(input).allclose(other, rtol=rtol, atol=atol, equal_nan=equal_nan)


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """Values of ``input`` along ``dim`` at ``index`` (see :meth:`Tensor.gather`)."""
    return input.gather(dim, index)


def scatter(input: Tensor, dim: int, index: Tensor, src: Any = None, *, value: Any = None):
    """A copy of ``input`` with ``src`` written at ``index`` along ``dim`` (see
    :meth:`Tensor.scatter`)."""
    return input.scatter(dim, index, src, value=value)


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """A copy of ``input`` with ``src`` added at ``index`` along ``dim``."""
    return input.scatter_add(dim, index, src)


def masked_fill(input: Tensor, mask: Tensor, value: Any) -> Tensor:
    """``value`` where ``mask`` is True, ``input`` elsewhere."""
    return input.masked_fill(mask, value)


def nonzero(input: Tensor, *, as_tuple: bool = False) -> Any:
    """Indices of the non-zero elements (see :meth:`Tensor.nonzero`)."""
    return input.nonzero(as_tuple=as_tuple)


def diag(input: Tensor, diagonal: int = 0) -> Tensor:
    """A diagonal matrix from a 1-D tensor, or a 2-D tensor's diagonal."""
    return input.diag(diagonal)


def pow(input: Any, exponent: Any) -> Tensor:
    """``input ** exponent`` (either may be a number)."""
    return input**exponent if isinstance(input, Tensor) else exponent.__rpow__(input)


def square(input: Tensor) -> Tensor:
    """``input * input``."""
    return input.square()


def var(input: Tensor, dim: Any = None, unbiased: bool = True, keepdim: bool = False) -> Tensor:
    """Variance (Bessel-corrected unless ``unbiased=False``; ``Tensor.var``)."""
    return input.var(dim, unbiased=unbiased, keepdim=keepdim)


def amax(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Largest values over ``dim`` (ties share the gradient)."""
    return input.amax(dim, keepdim)


def amin(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Smallest values over ``dim`` (ties share the gradient)."""
    return input.amin(dim, keepdim)


def norm(input: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Tensor:
    """The p-norm over ``dim`` (``Tensor.norm``)."""
    return input.norm(p, dim, keepdim)


def clip(input: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """Alias of :func:`clamp`."""
    return input.clamp(min, max)


def any(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Whether any element (along ``dim``) is non-zero."""
    return input.any(dim, keepdim)


def all(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Whether every element (along ``dim``) is non-zero."""
    return input.all(dim, keepdim)


def isnan(input: Tensor) -> Tensor:
    """Element-wise: is it nan."""
    return input.isnan()


def isinf(input: Tensor) -> Tensor:
    """Element-wise: is it +inf or -inf."""
    return input.isinf()


def isfinite(input: Tensor) -> Tensor:
    """Element-wise: neither inf nor nan."""
    return input.isfinite()


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """The slices of ``input`` at ``index`` along ``dim``."""
    return input.index_select(dim, index)


def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    """The elements of ``input`` where ``mask`` is True, as a 1-D tensor."""
    return input.masked_select(mask)
