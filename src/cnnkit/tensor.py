"""Tensor: an array, its gradient, and the node of the graph that produced it."""

from __future__ import annotations

import builtins
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit import autograd, backend
from cnnkit.functional import arith, shape
from cnnkit.functional import index as gather_ops

_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

MinMax = namedtuple("MinMax", ["values", "indices"])


class Size(tuple):
    """A shape (``torch.Size``, what ``x.shape`` and ``x.size()`` return): a tuple of ints
    that compares and hashes as the plain tuple. Its ``repr`` is ``torch.Size([2, 3])``;
    ``str`` (``print``, f-strings, hence every error message) keeps the tuple's
    ``(2, 3)``."""

    def __new__(cls, sizes: Any = ()) -> Size:
        dims = tuple(sizes)
        for n in dims:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
                raise TypeError(f"Size: expected a sequence of ints, got {n!r} in {sizes!r}")
        return super().__new__(cls, (int(n) for n in dims))

    def __repr__(self) -> str:
        return f"torch.Size({list(self)})"

    def __str__(self) -> str:
        return tuple.__repr__(self)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __getitem__(self, index: Any) -> Any:
        out = super().__getitem__(index)
        return Size(out) if isinstance(index, slice) else out

    def numel(self) -> int:
        """The number of elements of a tensor of this shape."""
        return int(np.prod(self, dtype=np.int64))


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    Parameters
    ----------
    data : np.ndarray
        The values (kept as is, no copy); afterwards the raw array is ``t.array``.
    requires_grad : bool
        Record operations on this tensor so ``backward`` can fill ``.grad``;
        only floating dtypes can require gradients.
    """

    __slots__ = (
        "__weakref__",
        "_ctx",
        "_retains_grad",
        "_version",
        "array",
        "grad",
        "requires_grad",
    )
    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected op

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        if isinstance(data, Tensor):
            data = data.array
        self.array: np.ndarray = data if isinstance(data, np.ndarray) else np.asarray(data)
        if requires_grad and self.array.dtype not in _FLOATS:
            raise TypeError(
                f"only floating-point tensors can require gradients; got dtype {self.array.dtype}"
            )
        self.requires_grad = bool(requires_grad)
        self.grad: Tensor | None = None
        self._ctx: autograd.Function | None = None
        self._retains_grad = False
        # in-place change counter shared with views: ``[count, last in-place op]``, or
        # None until first needed
        self._version: list[Any] | None = None

    @classmethod
    def _wrap(cls, data: np.ndarray, requires_grad: bool) -> Tensor:
        t = cls.__new__(cls)
        t.array = data if isinstance(data, np.ndarray) else np.asarray(data)
        t.requires_grad = requires_grad
        t.grad = None
        t._ctx = None
        t._retains_grad = False
        t._version = None
        return t

    # ----------------------------------------------------------------- properties
    @property
    def data(self) -> Tensor:
        """This tensor's values as a new Tensor sharing its storage, outside the graph.

        As in PyTorch: in-place changes through ``t.data`` are not seen by autograd, and
        assigning ``t.data = other`` swaps the values (shape and dtype may change).
        ``t.array`` is the raw NumPy array itself.
        """
        return Tensor._wrap(self.array, False)

    @data.setter
    def data(self, value: Any) -> None:
        self.array = value.array if isinstance(value, Tensor) else np.asarray(value)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy:
            return np.array(self.array, dtype=dtype, copy=True)
        return self.array if dtype is None else self.array.astype(dtype, copy=False)

    @property
    def shape(self) -> Size:
        """The dimensions: a tuple (``torch.Size``; its repr is ``torch.Size([...])``)."""
        return tuple.__new__(Size, self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def device(self) -> str:
        return "meta" if isinstance(self.array, backend.MetaArray) else "cpu"

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self) -> autograd.Function | None:
        return self._ctx

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    def size(self, dim: int | None = None) -> Size | int:
        return self.shape if dim is None else self.array.shape[dim]

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return int(self.array.size)

    def __len__(self) -> int:
        if self.array.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.array)

    def __iter__(self) -> Any:
        if self.array.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self.array)))

    def __repr__(self) -> str:
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self._ctx is not None:
            extra = f", grad_fn={self._ctx.name}"
        if isinstance(self.array, backend.MetaArray):
            return f"tensor(..., device='meta', size={self.shape}, dtype={self.dtype}{extra})"
        body = np.array2string(self.array, separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{extra})"

    # ----------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (shares memory; detach first if it requires grad)."""
        return self.array

    def item(self) -> float | int | bool:
        if self.array.size != 1:
            raise ValueError(f"item(): the tensor has {self.array.size} elements; expected 1")
        return self.array.reshape(()).item()

    def tolist(self) -> Any:
        return self.array.tolist()

    def detach(self) -> Tensor:
        """A tensor sharing the values (and, as in PyTorch, the in-place version counter),
        cut from the graph."""
        t = Tensor._wrap(self.array, False)
        if self._version is None:
            self._version = [0, ""]
        t._version = self._version
        return t

    @property
    def _version_value(self) -> int:
        """How many in-place changes this tensor (or a view of it) has seen."""
        return 0 if self._version is None else self._version[0]

    def _bump_version(self, op: str) -> None:
        """Record an in-place change by ``op`` (backward checks it against the version
        its nodes saved)."""
        if self._version is None:
            self._version = [1, op]
        else:
            self._version[0] += 1
            self._version[1] = op

    def clone(self) -> Tensor:
        return self * 1 if self.requires_grad else Tensor._wrap(self.array.copy(), False)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.dtype not in _FLOATS:
            raise TypeError(
                f"only floating-point tensors can require gradients; got dtype {self.dtype}"
            )
        self.requires_grad = requires_grad
        return self

    def register_post_accumulate_grad_hook(self, hook: Any) -> autograd.HookHandle:
        """Call ``hook(self)`` in backward once this leaf's ``.grad`` holds the pass's
        complete gradient (PyTorch's name); returns a handle with ``remove()``."""
        return autograd.register_post_accumulate_grad_hook(self, hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor during backward."""
        self._retains_grad = True

    def to(self, *args: Any, dtype: Any = None, device: Any = None, **_kw: Any) -> Tensor:
        """``to(dtype)``, ``to(device)``, ``to(other)`` or ``to(device, dtype)`` as in PyTorch;
        the only device is the CPU (another raises :class:`cnnkit._device.DeviceError`)."""
        from cnnkit._device import check_device
        from cnnkit._device import device as device_cls

        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif isinstance(a, device_cls) or (isinstance(a, str) and not _is_dtype(a)):
                device = a
            else:
                dtype = a
        check_device(device, "Tensor.to")
        return self if dtype is None else self.type(dtype)

    def cpu(self) -> Tensor:
        return self

    def cuda(self, *_args: Any, **_kw: Any) -> Tensor:
        from cnnkit._device import check_device

        check_device("cuda", "Tensor.cuda")
        return self

    def type(self, dtype: Any) -> Tensor:
        dt = np.dtype(dtype)
        if dt == self.dtype:
            return self
        return _Cast.apply(self, dtype=dt)

    def type_as(self, other: Tensor) -> Tensor:
        return self.type(other.dtype)

    def int(self) -> Tensor:
        return Tensor._wrap(self.array.astype(np.int32), False)

    def bool(self) -> Tensor:
        return Tensor._wrap(self.array.astype(bool), False)

    def _one(self, what: str) -> Any:
        if self.array.size != 1:
            raise ValueError(
                f"{what}(): only a one-element tensor converts to a Python scalar; "
                f"this one has shape {self.shape}"
            )
        return self.array.reshape(()).item()

    def __float__(self) -> float:
        return float(self._one("float"))

    def __int__(self) -> int:
        return int(self._one("int"))

    def __bool__(self) -> bool:
        return bool(self._one("bool"))

    def __format__(self, spec: str) -> str:
        # f"{loss:.4f}" on a one-element tensor formats its value, as in PyTorch
        if spec and self.array.size == 1:
            return format(self.array.reshape(()).item(), spec)
        return format(repr(self), spec)

    def __index__(self) -> int:
        if self.dtype.kind not in "iub" or self.array.size != 1:
            raise TypeError(
                f"only integer tensors of a single element can be an index; got dtype "
                f"{self.dtype}, shape {self.shape}"
            )
        return int(self.array.reshape(()).item())

    def float(self) -> Tensor:
        return self.type(np.float32)

    def double(self) -> Tensor:
        return self.type(np.float64)

    def long(self) -> Tensor:
        return Tensor._wrap(self.array.astype(np.int64), False)

    def zero_(self) -> Tensor:
        self._refuse_untracked_inplace("zero_")
        self.array[...] = 0
        self._bump_version("zero_")
        return self

    def copy_(self, other: Tensor | np.ndarray) -> Tensor:
        self._refuse_untracked_inplace("copy_", other)
        src = other.array if isinstance(other, Tensor) else np.asarray(other)
        self.array[...] = src
        self._bump_version("copy_")
        return self

    def _refuse_untracked_inplace(self, op: str, value: Any = None) -> None:
        """cnnkit's autograd does not rebase a graph on in-place writes (PyTorch does): a
        write into a tensor that requires grad, or of a value that does, would leave the
        gradients of the old values; refused while grad mode is on."""
        if not autograd.is_grad_enabled():
            return
        if self.requires_grad:
            what = "a leaf tensor that requires grad" if self.grad_fn is None else (
                "a tensor that is part of the autograd graph (requires grad)"
            )  # fmt: skip
        elif isinstance(value, Tensor) and value.requires_grad:
            what = "a tensor that does not require grad, from one that does"
        else:
            return
        raise RuntimeError(
            f"{op}: in-place write into {what} (shape {self.shape}); its gradient would not "
            "follow the change: write it out of place (y = y * 2) or inside ck.no_grad()"
        )

    # ----------------------------------------------------------------- autograd
    def backward(self, gradient: Tensor | np.ndarray | None = None, retain_graph: bool = False):
        """Backpropagate from this tensor, filling ``.grad`` of the leaves.

        Parameters
        ----------
        gradient : Tensor, optional
            d(loss)/d(self), same shape as self; may be omitted for a scalar.
        retain_graph : bool
            Keep saved buffers so backward can run again through the same graph.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward(): this tensor does not require grad and has no grad_fn "
                "(was it computed under no_grad, or from tensors with requires_grad=False?)"
            )
        if gradient is None:
            if self.array.size != 1:
                raise RuntimeError(
                    f"backward(): grad can be implicitly created only for scalar outputs; "
                    f"this tensor has shape {self.shape}, pass gradient="
                )
            g = np.ones(self.shape, dtype=self.dtype)
        else:
            g = gradient.array if isinstance(gradient, Tensor) else np.asarray(gradient)
            if g.shape != self.shape:
                raise ValueError(f"backward(): gradient has shape {g.shape}; expected {self.shape}")
            g = g.astype(self.dtype, copy=False)
        autograd.backward(self, g, retain_graph=retain_graph)

    # ----------------------------------------------------------------- arithmetic
    def _other(self, other: Any) -> Any:
        if isinstance(other, Tensor):
            return other
        arr = np.asarray(other)
        if arr.dtype.kind in "biuf" and self.dtype.kind == "f" and arr.dtype.kind != "f":
            arr = arr.astype(self.dtype)
        elif arr.dtype.kind == "f" and self.dtype.kind == "f" and arr.ndim == 0:
            arr = arr.astype(self.dtype)
        return Tensor._wrap(arr, False)

    def _operands(self, other: Any, true_division: bool = False) -> tuple[Tensor, Tensor]:
        """``(self, other)`` for a binary op, promoted as PyTorch does where NumPy would
        widen to float64: an integer or bool tensor meeting a floating tensor takes that
        tensor's dtype; meeting a Python float, or divided (``/``) by an integer, the
        default float dtype."""
        b = self._other(other)
        a, ka, kb = self, self.dtype.kind, b.dtype.kind
        if ka in "biu" and kb == "f":
            dt = backend.get_default_dtype() if not isinstance(other, Tensor) else b.dtype
            return Tensor._wrap(a.array.astype(dt), False), (
                b if b.dtype == dt else Tensor._wrap(b.array.astype(dt), False)
            )
        if ka == "f" and kb in "biu":
            return a, Tensor._wrap(b.array.astype(a.dtype), False)
        if true_division and ka in "biu" and kb in "biu":
            dt = backend.get_default_dtype()
            return Tensor._wrap(a.array.astype(dt), False), Tensor._wrap(b.array.astype(dt), False)
        return a, b

    def __add__(self, other: Any) -> Tensor:
        return arith.Add.apply(*self._operands(other))

    def __radd__(self, other: Any) -> Tensor:
        return arith.Add.apply(*self._operands(other)[::-1])

    def __sub__(self, other: Any) -> Tensor:
        return arith.Sub.apply(*self._operands(other))

    def __rsub__(self, other: Any) -> Tensor:
        return arith.Sub.apply(*self._operands(other)[::-1])

    def __mul__(self, other: Any) -> Tensor:
        return arith.Mul.apply(*self._operands(other))

    def __rmul__(self, other: Any) -> Tensor:
        return arith.Mul.apply(*self._operands(other)[::-1])

    def __truediv__(self, other: Any) -> Tensor:
        return arith.Div.apply(*self._operands(other, true_division=True))

    def __rtruediv__(self, other: Any) -> Tensor:
        return arith.Div.apply(*self._operands(other, true_division=True)[::-1])

    def __mod__(self, other: Any) -> Tensor:
        return arith.Remainder.apply(*self._operands(other))

    def __rmod__(self, other: Any) -> Tensor:
        return arith.Remainder.apply(*self._operands(other)[::-1])

    remainder = __mod__

    def __floordiv__(self, other: Any) -> Tensor:
        """``floor(a / b)``; not differentiable (PyTorch has no derivative for it either):
        the result does not require grad."""
        a, b = self._operands(other)
        return Tensor._wrap(np.floor_divide(a.array, b.array), False)

    def __rfloordiv__(self, other: Any) -> Tensor:
        a, b = self._operands(other)
        return Tensor._wrap(np.floor_divide(b.array, a.array), False)

    def __pow__(self, other: Any) -> Tensor:
        return arith.Pow.apply(*self._operands(other))

    def __rpow__(self, other: Any) -> Tensor:
        return arith.Pow.apply(*self._operands(other)[::-1])

    def __neg__(self) -> Tensor:
        return arith.Neg.apply(self)

    def __matmul__(self, other: Any) -> Tensor:
        return arith.MatMul.apply(self, self._other(other))

    def __rmatmul__(self, other: Any) -> Tensor:
        return arith.MatMul.apply(self._other(other), self)

    # comparisons give element-wise boolean tensors (no gradient), as in PyTorch
    def __lt__(self, other: Any) -> Tensor:
        return Tensor._wrap(np.less(self.array, _raw(other)), False)

    def __le__(self, other: Any) -> Tensor:
        return Tensor._wrap(np.less_equal(self.array, _raw(other)), False)

    def __gt__(self, other: Any) -> Tensor:
        return Tensor._wrap(np.greater(self.array, _raw(other)), False)

    def __ge__(self, other: Any) -> Tensor:
        return Tensor._wrap(np.greater_equal(self.array, _raw(other)), False)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor._wrap(np.equal(self.array, _raw(other)), False)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor._wrap(np.not_equal(self.array, _raw(other)), False)

    def __invert__(self) -> Tensor:
        return Tensor._wrap(~self.array, False)

    def __and__(self, other: Any) -> Tensor:
        return Tensor._wrap(self.array & _raw(other), False)

    def __or__(self, other: Any) -> Tensor:
        return Tensor._wrap(self.array | _raw(other), False)

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__
    __hash__ = object.__hash__

    def equal(self, other: Tensor) -> bool:
        """True when both have the same shape and values."""
        return bool(np.array_equal(self.array, _raw(other)))

    def allclose(
        self, other: Any, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False
    ) -> bool:
        """Whether ``|self - other| <= atol + rtol * |other|`` everywhere (broadcast)."""
        return bool(np.allclose(self.array, _raw(other), rtol=rtol, atol=atol, equal_nan=equal_nan))

    def exp(self) -> Tensor:
        return arith.Exp.apply(self)

    def log(self) -> Tensor:
        return arith.Log.apply(self)

    def sqrt(self) -> Tensor:
        return arith.Sqrt.apply(self)

    def abs(self) -> Tensor:
        return arith.Abs.apply(self)

    def sin(self) -> Tensor:
        return arith.Sin.apply(self)

    def cos(self) -> Tensor:
        return arith.Cos.apply(self)

    def clamp(self, min: float | None = None, max: float | None = None) -> Tensor:
        return arith.Clamp.apply(self, lo=min, hi=max)

    def relu(self) -> Tensor:
        from cnnkit.functional.activation import relu

        return relu(self)

    def sigmoid(self) -> Tensor:
        from cnnkit.functional.activation import sigmoid

        return sigmoid(self)

    def tanh(self) -> Tensor:
        from cnnkit.functional.activation import tanh

        return tanh(self)

    def softmax(self, dim: int) -> Tensor:
        from cnnkit.functional.activation import softmax

        return softmax(self, dim)

    def log_softmax(self, dim: int) -> Tensor:
        from cnnkit.functional.activation import log_softmax

        return log_softmax(self, dim)

    # ----------------------------------------------------------------- reductions
    def sum(
        self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False, **alias: Any
    ) -> Tensor:
        dim, keepdim = _aliases(dim, keepdim, alias, "sum")
        return arith.Sum.apply(self, dim=dim, keepdim=keepdim)

    def mean(
        self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False, **alias: Any
    ) -> Tensor:
        dim, keepdim = _aliases(dim, keepdim, alias, "mean")
        return arith.Mean.apply(self, dim=dim, keepdim=keepdim)

    def var(
        self, dim: int | tuple[int, ...] | None = None, unbiased: bool = True, keepdim=False
    ) -> Tensor:
        mu = self.mean(dim, keepdim=True)
        sq = ((self - mu) ** 2).sum(dim, keepdim=keepdim)
        n = self.numel() // max(sq.numel(), 1)
        return sq / (n - 1 if unbiased else n)

    def amax(
        self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False, **alias: Any
    ) -> Tensor:
        dim, keepdim = _aliases(dim, keepdim, alias, "amax")
        return arith.Amax.apply(self, dim=dim, keepdim=keepdim)

    def amin(
        self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False, **alias: Any
    ) -> Tensor:
        dim, keepdim = _aliases(dim, keepdim, alias, "amin")
        return arith.Amin.apply(self, dim=dim, keepdim=keepdim)

    def max(self, dim: Any = None, keepdim: bool = False, **alias: Any) -> Tensor | MinMax:
        """Largest value; with ``dim``, a ``(values, indices)`` pair as in PyTorch."""
        if isinstance(dim, Tensor):  # max(other): element-wise
            return self.maximum(dim)
        dim, keepdim = _aliases(dim, keepdim, alias, "max")
        if dim is None:
            return self.amax()
        idx = np.expand_dims(self.array.argmax(axis=dim), dim)
        vals = arith.TakeAlongDim.apply(self, idx, dim=dim, keepdim=keepdim)
        return MinMax(vals, Tensor._wrap(idx if keepdim else np.squeeze(idx, dim), False))

    def min(self, dim: Any = None, keepdim: bool = False, **alias: Any) -> Tensor | MinMax:
        """Smallest value; with ``dim``, a ``(values, indices)`` pair as in PyTorch."""
        if isinstance(dim, Tensor):  # min(other): element-wise
            return self.minimum(dim)
        dim, keepdim = _aliases(dim, keepdim, alias, "min")
        if dim is None:
            return self.amin()
        idx = np.expand_dims(self.array.argmin(axis=dim), dim)
        vals = arith.TakeAlongDim.apply(self, idx, dim=dim, keepdim=keepdim)
        return MinMax(vals, Tensor._wrap(idx if keepdim else np.squeeze(idx, dim), False))

    def argmax(self, dim: int | None = None, keepdim: bool = False, **alias: Any) -> Tensor:
        dim, keepdim = _aliases(dim, keepdim, alias, "argmax")
        if dim is None:
            return Tensor._wrap(np.asarray(self.array.argmax()), False)
        return Tensor._wrap(self.array.argmax(axis=dim, keepdims=keepdim), False)

    def argmin(self, dim: int | None = None, keepdim: bool = False, **alias: Any) -> Tensor:
        dim, keepdim = _aliases(dim, keepdim, alias, "argmin")
        if dim is None:
            return Tensor._wrap(np.asarray(self.array.argmin()), False)
        return Tensor._wrap(self.array.argmin(axis=dim, keepdims=keepdim), False)

    # ----------------------------------------------------- what training scripts call
    def std(
        self, dim: int | tuple[int, ...] | None = None, unbiased: bool = True, keepdim=False
    ) -> Tensor:
        """Standard deviation (Bessel-corrected unless ``unbiased=False``), as PyTorch."""
        return self.var(dim, unbiased=unbiased, keepdim=keepdim).sqrt()

    def pow(self, exponent: Any) -> Tensor:
        """``self ** exponent``."""
        return self**exponent

    def norm(self, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Tensor:
        """The p-norm over ``dim`` (all elements by default): ``p=2``/``"fro"``, ``1``,
        ``inf`` or any positive number, as ``Tensor.norm``; differentiable."""
        if p in ("fro", 2, 2.0):
            return (self * self).sum(dim, keepdim=keepdim).sqrt()
        if p in (float("inf"), "inf"):
            return self.abs().amax(dim, keepdim=keepdim)
        if isinstance(p, (int, float)) and p > 0:
            return (self.abs() ** p).sum(dim, keepdim=keepdim) ** (1.0 / p)
        raise ValueError(f"norm: p must be 'fro', inf or a positive number, got {p!r}")

    def square(self) -> Tensor:
        """``self * self``."""
        return self * self

    def matmul(self, other: Tensor) -> Tensor:
        """``self @ other``."""
        return self @ other

    clip = clamp

    def any(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """Whether any element (along ``dim``) is non-zero, as a bool tensor."""
        axis = None if dim is None else _dim(dim, max(self.ndim, 1), "any")
        return Tensor._wrap(np.any(self.array, axis=axis, keepdims=keepdim), False)

    def all(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """Whether every element (along ``dim``) is non-zero, as a bool tensor."""
        axis = None if dim is None else _dim(dim, max(self.ndim, 1), "all")
        return Tensor._wrap(np.all(self.array, axis=axis, keepdims=keepdim), False)

    def isnan(self) -> Tensor:
        """Element-wise ``x != x`` (a bool tensor): ``if torch.isnan(loss): ...``."""
        return Tensor._wrap(np.isnan(self.array), False)

    def isinf(self) -> Tensor:
        """Element-wise: is it +inf or -inf (a bool tensor)."""
        return Tensor._wrap(np.isinf(self.array), False)

    def isfinite(self) -> Tensor:
        """Element-wise: neither inf nor nan (a bool tensor)."""
        return Tensor._wrap(np.isfinite(self.array), False)

    def index_select(self, dim: int, index: Tensor) -> Tensor:
        """The slices at ``index`` (1-D, integer; may repeat) along ``dim``; the gradient
        of a repeated slice adds up."""
        d = _dim(dim, max(self.ndim, 1), "index_select")
        idx = np.asarray(_raw(index))
        if idx.ndim > 1 or idx.dtype.kind not in "iu":
            raise TypeError(
                f"index_select: index must be a 1-D integer tensor; got shape {idx.shape}, "
                f"dtype {idx.dtype}"
            )
        n = self.shape[d] if self.ndim else 1
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"index_select: index values must lie in [0, {n}) along dim {dim}")
        if self.ndim == 0:
            return self.reshape(1)[idx.reshape(-1)].reshape(())
        return shape.GetItem.apply(self, index=(slice(None),) * d + (idx.reshape(-1),))

    def masked_select(self, mask: Any) -> Tensor:
        """The elements where ``mask`` (bool, broadcast with this tensor) is True, as a
        1-D tensor in row-major order."""
        m = np.asarray(_raw(mask))
        if m.dtype != np.bool_:
            raise TypeError(f"masked_select: mask must be a bool tensor; got dtype {m.dtype}")
        try:
            full = np.broadcast_shapes(m.shape, tuple(self.shape))
        except ValueError:
            raise ValueError(
                f"masked_select: mask of shape {m.shape} and tensor of shape "
                f"{tuple(self.shape)} do not broadcast"
            ) from None
        x = self if tuple(self.shape) == full else self.expand(*full)
        return shape.GetItem.apply(x, index=np.broadcast_to(m, full))

    def contiguous(self) -> Tensor:
        """The tensor itself: cnnkit's ops accept any memory layout."""
        return self

    @property
    def is_cuda(self) -> bool:
        """Always False (cnnkit computes on the CPU)."""
        return False

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> MinMax:
        """The ``k`` largest (``largest=False``: smallest) values along ``dim`` and their
        indices, largest first, as ``torch.topk`` (ties: the lower index first); the
        gradient flows to the chosen places."""
        dim = int(dim) % max(self.ndim, 1)
        if not 0 <= k <= self.shape[dim]:
            raise ValueError(f"topk: k={k} is out of range for dim {dim} of size {self.shape[dim]}")
        key = -self.array if largest else self.array
        idx = np.take(np.argsort(key, axis=dim, kind="stable"), np.arange(k), axis=dim)
        vals = arith.TakeAlongDim.apply(self, idx, dim=dim, keepdim=True, distinct=True)
        return MinMax(vals, Tensor._wrap(idx.astype(np.int64), False))

    # ------------------------------------------- sorting, rounding, products (PyTorch's)
    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> MinMax:
        """Values sorted along ``dim`` and their original indices (int64), as
        ``torch.sort``; always stable (equal values keep their order, also descending);
        NaN sorts as the largest value. The gradient flows back to the original places."""
        idx = self.argsort(dim, descending, stable)
        if self.ndim == 0:
            return MinMax(self * 1 if self.requires_grad else self.clone(), idx)
        d = _dim(dim, self.ndim, "sort")
        vals = arith.TakeAlongDim.apply(self, idx.array, dim=d, keepdim=True, distinct=True)
        return MinMax(vals, idx)

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
        """The indices (int64) that sort ``dim``, as ``torch.argsort`` (stable)."""
        if self.ndim == 0:
            _dim(dim, 1, "argsort")
            return Tensor._wrap(np.zeros((), np.int64), False)
        d = _dim(dim, self.ndim, "argsort")
        a = self.array
        if not descending:
            return Tensor._wrap(np.argsort(a, axis=d, kind="stable").astype(np.int64), False)
        # descending and stable: sort the reversed array ascending, read it backwards
        n = a.shape[d]
        rev = np.argsort(np.flip(a, d), axis=d, kind="stable")
        return Tensor._wrap((n - 1 - np.flip(rev, d)).astype(np.int64), False)

    def maximum(self, other: Tensor) -> Tensor:
        """Element-wise larger of ``self`` and ``other`` (broadcast); a tie splits the
        gradient in half between them, as ``torch.maximum``."""
        return arith.Maximum.apply(self, _operand(other, "maximum"))

    def minimum(self, other: Tensor) -> Tensor:
        """Element-wise smaller of ``self`` and ``other``; ties split the gradient."""
        return arith.Minimum.apply(self, _operand(other, "minimum"))

    def sign(self) -> Tensor:
        """-1, 0 or 1 by the sign of each element (gradient 0, as PyTorch)."""
        return arith.Piecewise.apply(self, op="sign")

    def round(self, decimals: int = 0) -> Tensor:
        """Round half to even (to ``decimals`` places); gradient 0, as PyTorch."""
        if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)):
            raise TypeError(f"round: decimals must be an int, got {decimals!r}")
        return arith.Piecewise.apply(self, op="round", decimals=int(decimals))

    def floor(self) -> Tensor:
        """Largest integer <= each element (gradient 0)."""
        return arith.Piecewise.apply(self, op="floor")

    def ceil(self) -> Tensor:
        """Smallest integer >= each element (gradient 0)."""
        return arith.Piecewise.apply(self, op="ceil")

    def trunc(self) -> Tensor:
        """Each element rounded toward zero (gradient 0)."""
        return arith.Piecewise.apply(self, op="trunc")

    def mm(self, mat2: Tensor) -> Tensor:
        """Matrix product of ``(n, m)`` and ``(m, p)`` matrices (no broadcasting)."""
        mat2 = _operand(mat2, "mm")
        if self.ndim != 2 or mat2.ndim != 2 or self.shape[1] != mat2.shape[0]:
            raise ValueError(
                f"mm: expected matrices (n, m) and (m, p); got {tuple(self.shape)} and "
                f"{tuple(mat2.shape)}"
            )
        return arith.MatMul.apply(self, mat2)

    def bmm(self, mat2: Tensor) -> Tensor:
        """Batched matrix product ``(b, n, m) @ (b, m, p) -> (b, n, p)`` (no broadcasting)."""
        mat2 = _operand(mat2, "bmm")
        if (
            self.ndim != 3
            or mat2.ndim != 3
            or self.shape[0] != mat2.shape[0]
            or self.shape[2] != mat2.shape[1]
        ):
            raise ValueError(
                f"bmm: expected batches of matrices (b, n, m) and (b, m, p); got "
                f"{tuple(self.shape)} and {tuple(mat2.shape)}"
            )
        return arith.MatMul.apply(self, mat2)

    def cumsum(self, dim: int, dtype: Any = None) -> Tensor:
        """Running sum along ``dim``, as ``torch.cumsum`` (integers and bool give int64)."""
        x = self if dtype is None else self.type(dtype)
        if x.dtype.kind in "biu":
            x = Tensor._wrap(x.array.astype(np.int64), False)
        if x.ndim == 0:
            _dim(dim, 1, "cumsum")
            return x * 1 if x.requires_grad else x.clone()
        return arith.Cumsum.apply(x, dim=_dim(dim, x.ndim, "cumsum"))

    def prod(self, dim: int | None = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
        """Product of all elements, or along ``dim``, as ``torch.prod`` (integers and bool
        give int64); the gradient is exact where elements are 0."""
        x = self if dtype is None else self.type(dtype)
        if x.dtype.kind in "biu":
            x = Tensor._wrap(x.array.astype(np.int64), False)
        if dim is not None:
            if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
                raise TypeError(f"prod: dim must be an int or None, got {dim!r}")
            d = _dim(dim, max(x.ndim, 1), "prod")
            if x.ndim == 0:
                return arith.Prod.apply(x, dim=None)
            return arith.Prod.apply(x, dim=d, keepdim=bool(keepdim))
        return arith.Prod.apply(x, dim=None)

    def logsumexp(self, dim: int | tuple[int, ...], keepdim: bool = False) -> Tensor:
        """``log(sum(exp(x)))`` over ``dim`` without overflow, as ``torch.logsumexp``;
        integer input is computed in the default float dtype."""
        x = self
        if x.dtype.kind not in "f":
            x = Tensor._wrap(x.array.astype(backend.get_default_dtype()), False)
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        if x.ndim == 0:
            for d in dims:
                _dim(d, 1, "logsumexp")
            return x * 1 if x.requires_grad else x.clone()
        axes = tuple(_dim(d, x.ndim, "logsumexp") for d in dims)
        return arith.LogSumExp.apply(x, dim=axes, keepdim=bool(keepdim))

    # ------------------------------------------------------------- splitting, tiling
    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        """Elements ``start .. start + length - 1`` along ``dim``."""
        d = _dim(dim, self.ndim, "narrow")
        n = self.shape[d]
        start = start + n if start < 0 else start
        if length < 0 or not 0 <= start <= n or start + length > n:
            raise ValueError(
                f"narrow: start {start} and length {length} do not fit in dim {dim} of size {n}"
            )
        return shape.Narrow.apply(self, dim=d, start=start, stop=start + length)

    def split(self, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
        """Pieces along ``dim``: an int gives pieces of that size (the last may be
        smaller); a list gives pieces of those sizes (they must add up to the dim)."""
        d = _dim(dim, self.ndim, "split")
        n = self.shape[d]
        s = split_size_or_sections
        if isinstance(s, (list, tuple)):
            sizes = [int(k) for k in s]
            if any(k < 0 for k in sizes) or builtins.sum(sizes) != n:
                raise ValueError(
                    f"split: section sizes {list(s)} must be non-negative and add up to "
                    f"{n} (dim {dim} of shape {tuple(self.shape)})"
                )
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            if s <= 0 and not (s == 0 and n == 0):
                raise ValueError(f"split: split_size must be a positive int, got {s}")
            sizes = [builtins.min(int(s), n - i) for i in range(0, n, int(s))] if n else [0]
        else:
            raise TypeError(f"split: expected an int or a list of ints, got {type(s).__name__}")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        return tuple(
            shape.Narrow.apply(self, dim=d, start=int(a), stop=int(a) + k)
            for a, k in zip(starts, sizes, strict=True)
        )

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        """Split into ``chunks`` pieces of ``ceil(n / chunks)`` along ``dim`` (fewer
        pieces when ``n`` runs out first), as ``torch.chunk``."""
        if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
            raise ValueError(f"chunk: chunks must be a positive int, got {chunks!r}")
        n = self.shape[_dim(dim, self.ndim, "chunk")]
        return self.split(builtins.max(-(-n // int(chunks)), 1), dim)

    def unbind(self, dim: int = 0) -> tuple[Tensor, ...]:
        """The slices along ``dim``, each without that dim."""
        d = _dim(dim, self.ndim, "unbind")
        return tuple(
            shape.Narrow.apply(self, dim=d, start=i, stop=i + 1, squeeze=True)
            for i in range(self.shape[d])
        )

    def flip(self, *dims: Any) -> Tensor:
        """Reverse the order along each of ``dims``, as ``torch.flip``."""
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        axes = tuple(_dim(d, self.ndim, "flip") for d in dims)
        if len(set(axes)) != len(axes):
            raise ValueError(f"flip: dims {dims} name a dimension twice")
        return shape.Flip.apply(self, dims=axes)

    def repeat(self, *sizes: Any) -> Tensor:
        """Tile the tensor ``sizes[i]`` times along dim ``i`` (PyTorch's ``repeat``, which
        is NumPy's ``tile``); extra leading sizes add dimensions."""
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        reps = tuple(int(r) for r in sizes)
        if len(reps) < self.ndim or any(r < 0 for r in reps):
            raise ValueError(
                f"repeat: expected at least {self.ndim} non-negative repeat counts (one per "
                f"dim of shape {self.shape}); got {tuple(sizes)}"
            )
        return shape.Tile.apply(self, reps=reps)

    def repeat_interleave(
        self, repeats: Any, dim: int | None = None, *, output_size: int | None = None
    ) -> Tensor:
        """Repeat each element ``repeats`` times (an int, or one count per element along
        ``dim``) next to itself; ``dim=None`` works on the flattened tensor."""
        x = self.reshape(-1) if dim is None else self
        d = 0 if dim is None else _dim(dim, self.ndim, "repeat_interleave")
        r = np.asarray(_raw(repeats))
        if r.dtype.kind not in "iu" or r.ndim > 1 or (r.size and r.min() < 0):
            raise ValueError(
                f"repeat_interleave: repeats must be a non-negative int or 1-D int tensor, "
                f"got {repeats!r}"
            )
        if r.ndim == 1 and r.size not in (1, x.shape[d]):
            raise ValueError(
                f"repeat_interleave: got {r.size} repeat counts for dim of size {x.shape[d]}"
            )
        out = shape.RepeatInterleave.apply(x, r.reshape(-1) if r.ndim else r, dim=d)
        if output_size is not None and out.shape[d] != output_size:
            raise ValueError(
                f"repeat_interleave: output_size={output_size} but the result has {out.shape[d]}"
            )
        return out

    # --------------------------------------------------------------- counting (no grad)
    def unique(
        self,
        sorted: bool = True,
        return_inverse: bool = False,
        return_counts: bool = False,
        dim: int | None = None,
    ) -> Any:
        """The distinct values (sorted), optionally with, for each element, the index of
        its value (``return_inverse``, the input's shape) and how often each value occurs
        (``return_counts``), as ``torch.unique``; ``dim`` finds distinct slices."""
        axis = None if dim is None else _dim(dim, self.ndim, "unique")
        vals, inv, counts = np.unique(
            self.array, return_inverse=True, return_counts=True, axis=axis
        )
        inv = inv.reshape(self.shape if axis is None else -1).astype(np.int64)
        out: list[Tensor] = [Tensor._wrap(vals, False)]
        if return_inverse:
            out.append(Tensor._wrap(inv, False))
        if return_counts:
            out.append(Tensor._wrap(counts.astype(np.int64), False))
        return out[0] if len(out) == 1 else tuple(out)

    def bincount(self, weights: Tensor | None = None, minlength: int = 0) -> Tensor:
        """How often each value ``0 .. max`` occurs in this 1-D non-negative integer
        tensor (summing ``weights`` instead of 1 when given), at least ``minlength`` long."""
        a = self.array
        if a.ndim != 1 or a.dtype.kind not in "iub":
            raise ValueError(
                f"bincount: expected a 1-D integer tensor; got shape {tuple(self.shape)}, "
                f"dtype {self.dtype}"
            )
        if a.size and a.min() < 0:
            raise ValueError(f"bincount: values must be >= 0, got {int(a.min())}")
        if isinstance(minlength, bool) or int(minlength) < 0:
            raise ValueError(f"bincount: minlength must be >= 0, got {minlength!r}")
        if weights is None:
            return Tensor._wrap(np.bincount(a, minlength=int(minlength)).astype(np.int64), False)
        w = np.asarray(_raw(weights))
        if w.shape != a.shape:
            raise ValueError(f"bincount: weights have shape {w.shape}; expected {a.shape}")
        dt = w.dtype if w.dtype.kind == "f" else np.dtype(np.float64)
        return Tensor._wrap(np.bincount(a, w, minlength=int(minlength)).astype(dt), False)

    # ------------------------------------------------------------- new_* factories
    def new_tensor(self, data: Any, dtype: Any = None, requires_grad: bool = False, **kw: Any):
        """A new tensor from ``data`` with this tensor's dtype unless ``dtype`` says."""
        _check_new_kw(kw, "new_tensor")
        arr = np.array(_raw(data), dtype=self.dtype if dtype is None else np.dtype(dtype))
        return Tensor(arr, requires_grad)

    def new_full(
        self, size: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False, **kw
    ) -> Tensor:
        """A tensor of ``size`` filled with ``fill_value``, of this tensor's dtype."""
        _check_new_kw(kw, "new_full")
        dt = self.dtype if dtype is None else np.dtype(dtype)
        return Tensor(np.full(_size((size,)), fill_value, dt), requires_grad)

    def new_zeros(self, *size: Any, dtype: Any = None, requires_grad: bool = False, **kw):
        """Zeros of ``size`` (``new_zeros(2, 3)`` or ``new_zeros((2, 3))``), this dtype."""
        _check_new_kw(kw, "new_zeros")
        return self.new_full(_size(size), 0, dtype, requires_grad)

    def new_ones(self, *size: Any, dtype: Any = None, requires_grad: bool = False, **kw):
        """Ones of ``size``, of this tensor's dtype."""
        _check_new_kw(kw, "new_ones")
        return self.new_full(_size(size), 1, dtype, requires_grad)

    def new_empty(self, *size: Any, dtype: Any = None, requires_grad: bool = False, **kw):
        """A tensor of ``size`` and this dtype (its values are zeros)."""
        _check_new_kw(kw, "new_empty")
        return self.new_full(_size(size), 0, dtype, requires_grad)

    def _inplace_check(self, op: str) -> None:
        """PyTorch refuses in-place writes to a tensor autograd is tracking; so does cnnkit
        (which also cannot record an in-place op on a non-leaf in the graph)."""
        if self.requires_grad and autograd.is_grad_enabled():
            kind = "a leaf tensor" if self.is_leaf else "a tensor in the graph"
            raise RuntimeError(
                f"{op}: {kind} that requires grad is being used in an in-place operation; "
                f"write through .data or under torch.no_grad() (e.g. weight.data.{op}(...))"
            )

    def _write(self, values: Any, op: str) -> Tensor:
        self._inplace_check(op)
        self.array[...] = values
        self._bump_version(op)
        return self

    def add_(self, other: Any, alpha: float = 1) -> Tensor:
        """In place: ``self += alpha * other``."""
        return self._write(self.array + alpha * _raw(other), "add_")

    def sub_(self, other: Any, alpha: float = 1) -> Tensor:
        """In place: ``self -= alpha * other``."""
        return self._write(self.array - alpha * _raw(other), "sub_")

    def mul_(self, other: Any) -> Tensor:
        """In place: ``self *= other``."""
        return self._write(self.array * _raw(other), "mul_")

    def div_(self, other: Any) -> Tensor:
        """In place: ``self /= other``."""
        return self._write(self.array / _raw(other), "div_")

    def clamp_(self, min: float | None = None, max: float | None = None) -> Tensor:
        """In place: clip to ``[min, max]``."""
        return self._write(np.clip(self.array, min, max), "clamp_")

    def fill_(self, value: Any) -> Tensor:
        """In place: every element ``value``."""
        return self._write(_raw(value), "fill_")

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> Tensor:
        """In place: samples of N(mean, std^2) from the global generator (or ``generator``)."""
        rng = backend.default_rng() if generator is None else generator.rng
        return self._write(rng.normal(mean, std, self.shape), "normal_")

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator: Any = None) -> Tensor:
        """In place: samples of U[a, b) from the global generator (or ``generator``)."""
        rng = backend.default_rng() if generator is None else generator.rng
        return self._write(rng.uniform(a, b, self.shape), "uniform_")

    # ----------------------------------------------------------------- shape
    def reshape(self, *shape: Any) -> Tensor:
        return shape_mod_reshape(self, shape)

    view = reshape

    def view_as(self, other: Tensor) -> Tensor:
        return shape.Reshape.apply(self, shape=tuple(other.shape))

    def reshape_as(self, other: Tensor) -> Tensor:
        return shape.Reshape.apply(self, shape=tuple(other.shape))

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        nd = max(self.ndim, 1)
        s, e = start_dim % nd, end_dim % nd
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        new = (*self.shape[:s], int(np.prod(self.shape[s : e + 1])), *self.shape[e + 1 :])
        return shape.Reshape.apply(self, shape=new)

    def unflatten(self, dim: int, sizes: Any) -> Tensor:
        """Split dimension ``dim`` into ``sizes`` (one entry may be -1); the inverse of
        :meth:`flatten`: ``(N, C*H*W).unflatten(1, (C, H, W))`` gives ``(N, C, H, W)``."""
        return shape_mod_reshape(self, _unflattened_shape(self.shape, dim, sizes, "unflatten"))

    def permute(self, *dims: Any) -> Tensor:
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return shape.Permute.apply(self, dims=dims)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return shape.Permute.apply(self, dims=tuple(dims))

    def t(self) -> Tensor:
        return self.transpose(0, 1)

    def unsqueeze(self, dim: int) -> Tensor:
        d = dim % (self.ndim + 1)
        return shape.Reshape.apply(self, shape=(*self.shape[:d], 1, *self.shape[d:]))

    def squeeze(self, dim: int | None = None) -> Tensor:
        if dim is None:
            new = tuple(n for n in self.shape if n != 1)
        else:
            d = dim % max(self.ndim, 1)
            new = self.shape if self.shape[d] != 1 else self.shape[:d] + self.shape[d + 1 :]
        return shape.Reshape.apply(self, shape=new)

    def expand(self, *sizes: Any) -> Tensor:
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        lead = len(sizes) - self.ndim
        full = tuple(
            self.shape[i - lead] if (s == -1 and i >= lead) else s for i, s in enumerate(sizes)
        )
        return shape.Expand.apply(self, shape=full)

    def expand_as(self, other: Tensor) -> Tensor:
        """Broadcast to ``other``'s shape (``expand(*other.shape)``)."""
        return self.expand(*other.shape)

    def __getitem__(self, index: Any) -> Tensor:
        if isinstance(index, Tensor):
            index = index.array
        elif isinstance(index, tuple):
            index = tuple(i.array if isinstance(i, Tensor) else i for i in index)
        return shape.GetItem.apply(self, index=index)

    def __setitem__(self, index: Any, value: Any) -> None:
        self._refuse_untracked_inplace("__setitem__", value)
        if isinstance(index, Tensor):
            index = index.array
        elif isinstance(index, tuple):
            index = tuple(i.array if isinstance(i, Tensor) else i for i in index)
        self.array[index] = _raw(value)
        self._bump_version("__setitem__")

    # ----------------------------------------------------------------- indexing ops
    def gather(self, dim: int, index: Tensor) -> Tensor:
        """Values along ``dim`` at ``index`` (same number of dims; the output has
        ``index``'s shape): ``out[i][j] = self[i][index[i][j]]`` for ``dim=1``.
        ``probs.gather(1, y.unsqueeze(1))`` picks each row's probability of its label."""
        idx = np.asarray(_raw(index))
        d = gather_ops.check_index(self.shape, dim, idx, "gather")
        return gather_ops.Gather.apply(self, idx, dim=d)

    def _scatter(self, dim: int, index: Any, src: Any, accumulate: bool, where: str):
        idx = np.asarray(_raw(index))
        if isinstance(src, Tensor):
            d = gather_ops.check_index(self.shape, dim, idx, where, src_shape=src.shape)
            if src.ndim != self.ndim:
                raise ValueError(f"{where}: src has {src.ndim} dimension(s), the input {self.ndim}")
            return d, idx, src
        if accumulate:
            raise TypeError(f"{where}: src must be a Tensor; got {type(src).__name__}")
        d = gather_ops.check_index(self.shape, dim, idx, where)
        return d, idx, Tensor._wrap(np.asarray(src, dtype=self.dtype), False)

    def scatter(self, dim: int, index: Tensor, src: Any = None, *, value: Any = None):
        """A copy with ``out[i][index[i][j]] = src[i][j]`` for ``dim=1`` (``src`` a tensor,
        or a number as ``value=``); differentiable in ``self`` and ``src``."""
        src = value if src is None else src
        d, idx, s = self._scatter(dim, index, src, False, "scatter")
        return gather_ops.Scatter.apply(self, idx, s, dim=d, accumulate=False)

    def scatter_add(self, dim: int, index: Tensor, src: Tensor) -> Tensor:
        """A copy with ``out[i][index[i][j]] += src[i][j]`` for ``dim=1`` (repeated
        indices add up); differentiable in ``self`` and ``src``."""
        d, idx, s = self._scatter(dim, index, src, True, "scatter_add")
        return gather_ops.Scatter.apply(self, idx, s, dim=d, accumulate=True)

    def scatter_(self, dim: int, index: Tensor, src: Any = None, *, value: Any = None):
        """In place: :meth:`scatter` (``one_hot = zeros(n, c).scatter_(1, y[:, None], 1)``)."""
        self._inplace_check("scatter_")
        src = value if src is None else src
        d, idx, s = self._scatter(dim, index, src, False, "scatter_")
        gather_ops.scatter_into(self.array, idx, s.array, d, accumulate=False)
        self._bump_version("scatter_")
        return self

    def scatter_add_(self, dim: int, index: Tensor, src: Tensor) -> Tensor:
        """In place: :meth:`scatter_add`."""
        self._inplace_check("scatter_add_")
        d, idx, s = self._scatter(dim, index, src, True, "scatter_add_")
        gather_ops.scatter_into(self.array, idx, s.array, d, accumulate=True)
        self._bump_version("scatter_add_")
        return self

    def index_put_(self, indices: Sequence[Any], values: Any, accumulate: bool = False):
        """In place: ``self[indices] = values``, or ``+=`` with ``accumulate`` (repeated
        index tuples then all add up: a confusion matrix is
        ``cm.index_put_((y, pred), ones_like(y), accumulate=True)``)."""
        self._inplace_check("index_put_")
        if not isinstance(indices, (tuple, list)):
            raise TypeError(
                f"index_put_: indices must be a tuple of tensors; got {type(indices).__name__}"
            )
        if len(indices) > self.ndim:
            raise IndexError(f"index_put_: {len(indices)} index tensors for a {self.ndim}-d tensor")
        idx = tuple(np.asarray(_raw(i)) for i in indices)
        for i in idx:
            if i.dtype.kind not in "iub":
                raise TypeError(
                    f"index_put_: index tensors must be integer or bool; got dtype {i.dtype}"
                )
        vals = np.asarray(_raw(values), dtype=self.dtype)
        if accumulate:
            np.add.at(self.array, idx, vals)
        else:
            self.array[idx] = vals
        self._bump_version("index_put_")
        return self

    def masked_fill(self, mask: Any, value: Any) -> Tensor:
        """``value`` where the boolean ``mask`` (broadcast to this shape) is True, this
        tensor elsewhere; the gradient flows to the kept elements."""
        m = np.asarray(_raw(mask))
        if m.dtype != np.bool_:
            raise TypeError(f"masked_fill: mask must be a bool tensor; got dtype {m.dtype}")
        try:
            out_shape = np.broadcast_shapes(m.shape, self.shape)
        except ValueError:
            out_shape = None
        if out_shape != tuple(self.shape):
            raise ValueError(
                f"masked_fill: mask of shape {m.shape} does not broadcast to the tensor's "
                f"shape {tuple(self.shape)}"
            )
        if isinstance(value, Tensor) and value.ndim != 0:
            raise ValueError(f"masked_fill: value must be a number or a 0-d tensor; got "
                             f"shape {tuple(value.shape)}")  # fmt: skip
        fill = value.to(self.dtype) if isinstance(value, Tensor) else self._other(
            np.asarray(value, dtype=self.dtype)
        )  # fmt: skip
        return arith.Where.apply(Tensor._wrap(m, False), fill, self)

    def masked_fill_(self, mask: Any, value: Any) -> Tensor:
        """In place: :meth:`masked_fill`."""
        out = self.detach().masked_fill(mask, value)
        return self._write(out.array, "masked_fill_")

    def nonzero(self, *, as_tuple: bool = False) -> Any:
        """Indices of the non-zero elements: ``(k, ndim)`` int64 in row-major order, or
        with ``as_tuple`` one 1-D index tensor per dimension."""
        if self.ndim == 0:  # as PyTorch: one hit (or none) with no coordinates
            hits = int(bool(self.array))
            if as_tuple:
                return (Tensor._wrap(np.zeros(hits, np.int64), False),)
            return Tensor._wrap(np.zeros((hits, 0), np.int64), False)
        found = np.nonzero(self.array)
        if as_tuple:
            return tuple(Tensor._wrap(i.astype(np.int64), False) for i in found)
        return Tensor._wrap(np.stack(found, axis=1).astype(np.int64), False)

    def diag(self, diagonal: int = 0) -> Tensor:
        """Of a 1-D tensor: the square matrix with it on diagonal ``diagonal``; of a 2-D
        tensor: that diagonal (``cm.diag()`` holds a confusion matrix's hits)."""
        if self.ndim not in (1, 2):
            raise ValueError(f"diag: expected a 1-D or 2-D tensor; got shape {tuple(self.shape)}")
        return gather_ops.Diag.apply(self, k=int(diagonal))


class _Cast(autograd.Function):
    """Change the dtype; the gradient is cast back."""

    def forward(self, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        self.src = a.dtype
        return a.astype(dtype)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad.astype(self.src)


def _raw(x: Any) -> Any:
    return x.array if isinstance(x, Tensor) else x


def _dim(dim: Any, ndim: int, where: str) -> int:
    """``dim`` as an index in ``0 .. ndim-1`` (negative counts from the end)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{where}: dim must be an int, got {dim!r}")
    if not -ndim <= dim < ndim:
        raise IndexError(
            f"{where}: dim {dim} is out of range for a tensor with {ndim} dimension(s) "
            f"(expected {-ndim} .. {ndim - 1})"
        )
    return int(dim) % ndim


def _operand(other: Any, where: str) -> Tensor:
    if not isinstance(other, Tensor):
        raise TypeError(
            f"{where}: expected a Tensor as the second operand, got {type(other).__name__}"
        )
    return other


def _check_new_kw(kw: dict[str, Any], where: str) -> None:
    """``device=``, ``layout=``, ``pin_memory=`` of the new_* factories: the CPU only."""
    from cnnkit._device import check_device

    check_device(kw.pop("device", None), where)
    kw.pop("layout", None)
    kw.pop("pin_memory", None)
    if kw:
        raise TypeError(f"{where}() got unexpected keyword arguments {sorted(kw)}")


def _is_dtype(name: str) -> bool:
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True


def _aliases(dim: Any, keepdim: bool, alias: dict[str, Any], where: str) -> tuple[Any, bool]:
    """PyTorch's NumPy-style aliases: ``axis=`` for ``dim``, ``keepdims=`` for ``keepdim``."""
    if "axis" in alias:
        dim = alias.pop("axis")
    if "keepdims" in alias:
        keepdim = alias.pop("keepdims")
    if alias:
        raise TypeError(f"Tensor.{where}() got unexpected keyword arguments {sorted(alias)}")
    return dim, bool(keepdim)


def shape_mod_reshape(t: Tensor, shp: tuple) -> Tensor:
    if len(shp) == 1 and isinstance(shp[0], (tuple, list)):
        shp = tuple(shp[0])
    return shape.Reshape.apply(t, shape=tuple(int(s) for s in shp))


def _unflattened_shape(shp: tuple, dim: Any, sizes: Any, where: str) -> tuple[int, ...]:
    """``shp`` with dimension ``dim`` split into ``sizes`` (at most one -1, inferred)."""
    d = _dim(dim, max(len(shp), 1), where)
    if isinstance(sizes, (int, np.integer)) or not isinstance(sizes, Sequence) or not sizes:
        raise TypeError(f"{where}: sizes must be a non-empty tuple of ints; got {sizes!r}")
    sizes = [int(n) for n in sizes]
    n = shp[d] if shp else 1
    if sizes.count(-1) > 1 or any(k < -1 for k in sizes):
        raise ValueError(f"{where}: sizes may hold one -1 and no other negative; got {sizes}")
    known = int(np.prod([k for k in sizes if k != -1]))
    if -1 in sizes:
        if known == 0 or n % known:
            raise ValueError(
                f"{where}: dimension {dim} of size {n} cannot be split into {tuple(sizes)}"
            )
        sizes[sizes.index(-1)] = n // known
    elif known != n:
        raise ValueError(
            f"{where}: sizes {tuple(sizes)} multiply to {known}, but dimension {dim} has size {n}"
        )
    return (*shp[:d], *sizes, *shp[d + 1 :])


# --------------------------------------------------------------------- factories
def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Make a tensor from an array, a list or a scalar.

    A NumPy array keeps its dtype; Python floats become float32 (the default float
    dtype), Python ints int64, bools bool. ``dtype`` overrides.
    """
    if isinstance(data, Tensor):
        data = data.array
    if dtype is not None:
        arr = np.array(data, dtype=np.dtype(dtype))
    elif isinstance(data, np.ndarray):
        arr = data.copy()
    else:
        arr = np.array(data)
        if arr.dtype.kind == "f":
            arr = arr.astype(backend.get_default_dtype())
    return Tensor(arr, requires_grad=requires_grad)


def as_tensor(data: Any, dtype: Any = None) -> Tensor:
    """Like :func:`tensor` but without copying a NumPy array whose dtype already fits."""
    if isinstance(data, Tensor) and dtype is None:
        return data
    if isinstance(data, np.ndarray) and (dtype is None or np.dtype(dtype) == data.dtype):
        return Tensor(data)
    return tensor(data, dtype=dtype)


def _factory_shape(shape: tuple, size: Any, kw: dict[str, Any], where: str) -> tuple:
    """``zeros(2, 3)``, ``zeros((2, 3))`` or ``zeros(size=(2, 3))``; device= must be the CPU."""
    from cnnkit._device import check_device

    check_device(kw.pop("device", None), where)
    kw.pop("generator", None)
    if kw:
        raise TypeError(f"{where}() got unexpected keyword arguments {sorted(kw)}")
    if size is not None:
        if shape:
            raise TypeError(f"{where}(): give the shape positionally or as size=, not both")
        shape = (size,)
    return shape


def _size(shape: Sequence[Any]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def zeros(
    *shape: Any, dtype: Any = None, requires_grad: bool = False, size: Any = None, **kw: Any
) -> Tensor:
    shape = _factory_shape(shape, size, kw, "zeros")
    return Tensor(np.zeros(_size(shape), backend.resolve_dtype(dtype)), requires_grad)


def ones(
    *shape: Any, dtype: Any = None, requires_grad: bool = False, size: Any = None, **kw: Any
) -> Tensor:
    shape = _factory_shape(shape, size, kw, "ones")
    return Tensor(np.ones(_size(shape), backend.resolve_dtype(dtype)), requires_grad)


def full(shape: Sequence[int], fill_value: float, dtype: Any = None) -> Tensor:
    return Tensor(np.full(tuple(shape), fill_value, backend.resolve_dtype(dtype)))


def randn(
    *shape: Any, dtype: Any = None, requires_grad: bool = False, size: Any = None, **kw: Any
) -> Tensor:
    """Standard normal samples from the global generator (see ``manual_seed``)."""
    shape = _factory_shape(shape, size, kw, "randn")
    dt = backend.resolve_dtype(dtype)
    data = backend.default_rng().standard_normal(_size(shape)).astype(dt)
    return Tensor(data, requires_grad)


def rand(
    *shape: Any, dtype: Any = None, requires_grad: bool = False, size: Any = None, **kw: Any
) -> Tensor:
    """Uniform [0, 1) samples from the global generator."""
    shape = _factory_shape(shape, size, kw, "rand")
    dt = backend.resolve_dtype(dtype)
    return Tensor(backend.default_rng().random(_size(shape)).astype(dt), requires_grad)


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None) -> Tensor:
    """Evenly spaced values in [start, end); ints give int64 unless ``dtype`` says otherwise."""
    if end is None:
        start, end = 0, start
    arr = np.arange(start, end, step)
    if dtype is not None:
        arr = arr.astype(np.dtype(dtype))
    elif arr.dtype.kind == "f":
        arr = arr.astype(backend.get_default_dtype())
    return Tensor(arr)


def zeros_like(t: Tensor, dtype: Any = None) -> Tensor:
    return Tensor(np.zeros(t.shape, dtype=t.dtype if dtype is None else np.dtype(dtype)))


def ones_like(t: Tensor, dtype: Any = None) -> Tensor:
    return Tensor(np.ones(t.shape, dtype=t.dtype if dtype is None else np.dtype(dtype)))


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along an existing dimension."""
    return shape.Cat.apply(*tensors, dim=dim)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Stack along a new dimension."""
    return shape.Stack.apply(*tensors, dim=dim)


def where(cond: Tensor | np.ndarray, a: Tensor, b: Tensor | float) -> Tensor:
    """Elementwise ``a if cond else b`` (broadcast), differentiable in ``a`` and ``b``.

    The gradient flows only into the branch taken at each element: the other branch
    gets exactly 0 there, even where its value is inf or nan (as PyTorch).
    """
    c = np.asarray(_raw(cond), dtype=bool)
    if not isinstance(a, Tensor):
        a = b._other(a) if isinstance(b, Tensor) else Tensor(np.asarray(a))
    bt = b if isinstance(b, Tensor) else a._other(b)
    return arith.Where.apply(Tensor._wrap(c, False), a, bt)


def empty(
    *shape: Any, dtype: Any = None, requires_grad: bool = False, size: Any = None, **kw: Any
) -> Tensor:
    """A tensor of the given shape, as ``torch.empty``; its values are zeros (PyTorch
    leaves them uninitialised: code must not rely on them either way)."""
    for key in ("layout", "pin_memory", "memory_format"):
        kw.pop(key, None)
    shape = _factory_shape(shape, size, kw, "empty")
    return Tensor(np.zeros(_size(shape), backend.resolve_dtype(dtype)), requires_grad)


def linspace(
    start: float,
    end: float,
    steps: int,
    *,
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive, as
    ``torch.linspace`` (default float dtype unless ``dtype`` says otherwise)."""
    from cnnkit._device import check_device

    check_device(device, "linspace")
    start, end = _raw(start), _raw(end)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative int, got {steps!r}")
    dt = backend.resolve_dtype(dtype)
    vals = np.linspace(float(start), float(end), int(steps), dtype=np.float64)
    if dt.kind in "iu":  # PyTorch truncates toward zero for integer dtypes
        vals = np.trunc(vals)
    return Tensor(vals.astype(dt), requires_grad)


def eye(
    n: int,
    m: int | None = None,
    *,
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    """An ``(n, m)`` matrix (``m = n`` by default) with ones on the diagonal, as ``torch.eye``."""
    from cnnkit._device import check_device

    check_device(device, "eye")
    for name, v in (("n", n), ("m", n if m is None else m)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"eye: {name} must be a non-negative int, got {v!r}")
    return Tensor(
        np.eye(int(n), None if m is None else int(m), dtype=backend.resolve_dtype(dtype)),
        requires_grad,
    )
