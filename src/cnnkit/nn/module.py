"""Module (a layer or a network holding parameters, buffers and sub-modules) and Parameter."""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from cnnkit import runtime
from cnnkit.backend import is_meta, meta_array
from cnnkit.tensor import Tensor

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _is_dtype_name(name: str) -> bool:
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True


class Parameter(Tensor):
    """A tensor that is a module's learnable parameter (``requires_grad`` by default).

    Assigning one as a module attribute registers it, so it appears in
    ``parameters()`` and ``state_dict()``.
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = np.empty(0, dtype=np.float32)
        super().__init__(data.array if isinstance(data, Tensor) else data, requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class RemovableHandle:
    """Returned by ``register_forward_hook``; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: dict[int, Any]) -> None:
        self.hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Module:
    """Base class of every layer and network (PyTorch's ``nn.Module``).

    Subclasses create parameters and sub-modules in ``__init__`` (as attributes) and
    define ``forward``; call the module itself to run it (hooks included).
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        params, modules, buffers = self._parameters, self._modules, self._buffers
        if isinstance(value, Parameter):
            self.__dict__.pop(name, None)
            modules.pop(name, None)
            buffers.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            self.__dict__.pop(name, None)
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"{type(self).__name__}.{name} is a parameter: assign a Parameter or None; "
                    f"got {type(value).__name__}"
                )
            params[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"{type(self).__name__}.{name} is a buffer: assign a Tensor or None; "
                    f"got {type(value).__name__}"
                )
            buffers[name] = value
        elif name in modules and value is None:
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or a ``None`` placeholder, e.g. a disabled bias)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: expected a Parameter; got {type(param).__name__}")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add state that is not learned (e.g. running statistics); saved in the state_dict
        unless ``persistent=False``."""
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a sub-module under ``name``."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: expected a Module; got {type(module).__name__}")
        self._modules[name] = module

    register_module = add_module

    # ------------------------------------------------------------------ running
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    #: The ``forward`` defined in this class treats the samples of a batch independently
    #: (the built-in layers and models set it), so a batch may be split over the cores.
    _samplewise = False

    def _per_sample(self) -> bool:
        """Whether this module's forward, in its current mode, treats samples
        independently (batch statistics or batch-wide reductions make it False).

        Only the class that defines the ``forward`` in use vouches for it: a subclass
        that overrides ``forward`` without setting ``_samplewise`` is not trusted.
        """
        for klass in type(self).__mro__:
            if "forward" in klass.__dict__:
                return klass is Module or bool(klass.__dict__.get("_samplewise", False))
        return False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._forward_pre_hooks:
            for hook in list(self._forward_pre_hooks.values()):
                res = hook(self, args)
                if res is not None:
                    args = res if isinstance(res, tuple) else (res,)
        out = runtime.call_module(self, args, kwargs)  # forward, maybe split over the cores
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                res = hook(self, args, out)
                if res is not None:
                    out = res
        return out

    def register_forward_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Call ``hook(module, inputs, output)`` after every forward; a non-None return
        value replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Call ``hook(module, inputs)`` before every forward."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # ---------------------------------------------------------------- traversal
    def named_modules(
        self, memo: set | None = None, prefix: str = ""
    ) -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, with dotted names (each once)."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named(self, store: str, prefix: str, recurse: bool) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mname, m in mods:
            for name, t in getattr(m, store).items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{mname}.{name}" if mname else name), t

    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """``(name, parameter)`` pairs, names as in the state_dict (shared ones once)."""
        yield from self._named("_parameters", prefix, recurse)  # type: ignore[misc]

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        yield from self._named("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every sub-module (children first) and on this module."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -------------------------------------------------------------------- modes
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active, batch norm uses batch statistics)."""
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode): mode must be a bool; got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters."""
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.array[...] = 0

    def to(self, *args: Any, dtype: Any = None, device: Any = None) -> Module:
        """Cast floating parameters and buffers in place (``to(float64)``, ``to('cpu')``)."""
        from cnnkit._device import check_device
        from cnnkit._device import device as device_cls

        for a in args:
            if isinstance(a, device_cls) or (isinstance(a, str) and not _is_dtype_name(a)):
                device = a
            else:
                dtype = a
        check_device(device, f"{type(self).__name__}.to")
        if dtype is None:
            return self
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"{type(self).__name__}.to: expected a floating dtype; got {dt}")
        for t in [*self.parameters(), *self.buffers()]:
            if t.dtype.kind == "f" and t.dtype != dt:
                t.array = meta_array(t.shape, dt) if is_meta(t) else t.array.astype(dt)
                if t.grad is not None:
                    t.grad = Tensor(t.grad.array.astype(dt))
        return self

    def cpu(self) -> Module:
        return self

    def cuda(self, device: Any = None) -> Module:
        """Raises :class:`cnnkit._device.DeviceError`: cnnkit runs on the CPU."""
        from cnnkit._device import check_device

        check_device("cuda", f"{type(self).__name__}.cuda")
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    # --------------------------------------------------------------- state dict
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> OrderedDict[str, Tensor]:
        """Parameters and persistent buffers by dotted name (PyTorch's keys); the values
        share memory with the module. A module used twice appears under both names."""
        out: OrderedDict[str, Tensor] = OrderedDict()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            pre, m = stack.pop()
            for name, p in m._parameters.items():
                if p is not None:
                    out[pre + name] = p if keep_vars else p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[pre + name] = b if keep_vars else b.detach()
            children = [(f"{pre}{n}.", c) for n, c in m._modules.items() if c is not None]
            stack.extend(reversed(children))
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> IncompatibleKeys:
        """Copy values into the parameters and buffers (in place, cast to their dtype).

        Values may be cnnkit Tensors, NumPy arrays or anything array-like (a PyTorch
        tensor too). Shape and dtype mismatches always raise; with ``strict``, missing or
        unexpected keys raise as well. All-or-nothing: every key, shape and dtype is
        checked first (the error lists each problem) and only then are values copied, so
        a failure leaves the module unchanged.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(
                f"{type(self).__name__}.load_state_dict: expected a mapping of names to "
                f"tensors; got {type(state_dict).__name__}"
            )
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict and (missing or unexpected):
            if missing:
                errors.append(f"missing keys: {missing}")
            if unexpected:
                errors.append(f"unexpected keys: {unexpected}")
        values = {}
        for k, target in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            if not isinstance(v, (Tensor, np.ndarray)) and hasattr(v, "detach"):
                v = v.detach()  # e.g. a PyTorch tensor that requires grad
            try:
                arr = v.array if isinstance(v, Tensor) else np.asarray(v)
                if not isinstance(arr, np.ndarray):
                    arr = np.asarray(arr)
            except (TypeError, ValueError) as e:
                errors.append(f"{k}: not an array ({type(v).__name__}: {e})")
                continue
            if tuple(arr.shape) != tuple(target.shape):
                errors.append(f"{k}: expected shape {tuple(target.shape)}; got {tuple(arr.shape)}")
                continue
            bad_kind = arr.dtype.kind not in "biuf" + ("c" if target.dtype.kind == "c" else "")
            if bad_kind or (target.dtype.kind in "iu" and arr.dtype.kind == "f"):
                errors.append(f"{k}: expected dtype {target.dtype}; got {arr.dtype}")
                continue
            values[k] = arr
        if errors:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(errors))
        on_meta = [k for k in values if is_meta(own[k])]
        if on_meta:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: {on_meta[0]} (and {len(on_meta) - 1} "
                "more) is on the 'meta' device and cannot hold values; build the model on 'cpu'"
            )
        cast = {k: arr.astype(own[k].dtype, copy=False) for k, arr in values.items()}
        for k, arr in cast.items():
            own[k].array[...] = arr
            own[k]._bump_version("load_state_dict")
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        """The arguments shown inside ``Layer(...)`` in the repr."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        children = [(n, m) for n, m in self._modules.items() if m is not None]
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = [f"{type(self).__name__}(" + (extra if extra else "")]
        for name, m in children:
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"

    def __dir__(self) -> list[str]:
        return sorted(
            set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules)
        )
