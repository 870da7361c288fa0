"""Containers: Sequential, ModuleList, ModuleDict, ParameterList."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from cnnkit.autograd import is_grad_enabled
from cnnkit.backend import is_meta
from cnnkit.functional.activation import relu as relu_fn
from cnnkit.functional.conv import conv2d
from cnnkit.nn.layers import MaxPool2d, ReLU
from cnnkit.nn.linear import Conv2d, Linear
from cnnkit.nn.module import Module, Parameter
from cnnkit.nn.norm import BatchNorm2d, _BatchNorm
from cnnkit.tensor import Tensor


def _unhooked(*mods: Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks for m in mods)


def _pool_first(a: Module, b: Module) -> bool:
    """``a`` is a plain ReLU and ``b`` a max pool, neither with hooks."""
    return type(a) is ReLU and type(b) is MaxPool2d and _unhooked(a, b)


def _relu_in_place(t: Any) -> Any:
    """ReLU written over ``t``, which the caller just made and nobody else holds, in
    inference without a graph: the same values as ``relu`` (NaN kept), no new buffer."""
    if not isinstance(t, Tensor) or is_meta(t) or t.requires_grad or is_grad_enabled():
        return relu_fn(t)
    np.maximum(t.array, 0, out=t.array)
    return t


def _fresh_then_relu(a: Module, b: Module) -> bool:
    """Inference without a graph through a library ``Conv2d`` or ``Linear`` (whose output is
    a new buffer) and a plain ReLU, neither hooked: the ReLU may overwrite that output."""
    return (
        not is_grad_enabled()
        and type(a) in (Conv2d, Linear)
        and type(b) is ReLU
        and _unhooked(a, b)
    )


def bn_relu_fusable(a: Module, b: Module) -> bool:
    """``a`` is a BatchNorm layer whose ``forward`` is the library's and ``b`` a plain
    ReLU, neither with hooks: ``b(a(x))`` may run as ``a.forward_relu(x)``."""
    return (
        isinstance(a, _BatchNorm)
        and type(a).forward is _BatchNorm.forward
        and type(b) is ReLU
        and _unhooked(a, b)
    )


def conv_bn_foldable(conv: Module, bn: Module) -> bool:
    """Inference without a graph through a library ``Conv2d`` and an evaluating
    ``BatchNorm2d`` with running statistics, neither hooked: the BatchNorm is an affine map
    per channel and may be folded into the convolution's weights and bias."""
    return (
        not is_grad_enabled()
        and isinstance(conv, Conv2d)
        and type(conv).forward is Conv2d.forward
        and isinstance(bn, BatchNorm2d)
        and type(bn).forward is _BatchNorm.forward
        and not bn.training
        and bn.track_running_stats
        and bn.running_mean is not None
        and conv.out_channels == bn.num_features
        and _unhooked(conv, bn)
    )


def conv_bn(conv: Module, bn: Module, x: Tensor, relu: bool = False) -> Tensor:
    """``bn(conv(x))`` (then ReLU if ``relu``), with the BatchNorm folded into the
    convolution where :func:`conv_bn_foldable`: ``w' = w * s``,
    ``b' = (b - running_mean) * s + beta`` with ``s = gamma / sqrt(running_var + eps)``."""
    if not conv_bn_foldable(conv, bn):
        y = conv(x)
        if relu and isinstance(bn, _BatchNorm) and type(bn).forward is _BatchNorm.forward:
            return bn.forward_relu(y) if _unhooked(bn) else relu_fn(bn(y))
        y = bn(y)
        return relu_fn(y) if relu else y
    dtype = conv.weight.dtype
    s = 1.0 / np.sqrt(bn.running_var.array.astype(np.float64) + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight.array
    w = conv.weight.array * s.reshape(-1, 1, 1, 1)
    b = -bn.running_mean.array.astype(np.float64) * s
    if conv.bias is not None:
        b = b + conv.bias.array * s
    if bn.bias is not None:
        b = b + bn.bias.array
    y = conv2d(x, Tensor(w.astype(dtype)), Tensor(b.astype(dtype)), conv.stride, conv.padding,
               conv.dilation, conv.groups)  # fmt: skip
    return _relu_in_place(y) if relu else y  # y: a new buffer, and no graph


class Sequential(Module):
    """Modules applied one after the other: ``Sequential(m1, m2, ...)`` or
    ``Sequential(OrderedDict(name=module, ...))``."""

    _samplewise = True

    def __init__(self, *args: Any) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], (OrderedDict, dict)):
            for name, m in args[0].items():
                self._add(str(name), m)
        else:
            for i, m in enumerate(args):
                self._add(str(i), m)

    def _add(self, name: str, m: Any) -> None:
        if not isinstance(m, Module):
            raise TypeError(f"Sequential: item {name} is not a Module; got {type(m).__name__}")
        self.add_module(name, m)

    def forward(self, input: Any) -> Any:
        mods = list(self._modules.values())
        i = 0
        while i < len(mods):
            if i + 1 < len(mods) and conv_bn_foldable(mods[i], mods[i + 1]):
                relu = i + 2 < len(mods) and type(mods[i + 2]) is ReLU and _unhooked(mods[i + 2])
                input = conv_bn(mods[i], mods[i + 1], input, relu)  # BatchNorm folded
                i += 3 if relu else 2
                continue
            if i + 1 < len(mods) and bn_relu_fusable(mods[i], mods[i + 1]):
                input = mods[i].forward_relu(input)  # one op: BatchNorm then ReLU
                i += 2
                continue
            if i + 1 < len(mods) and _pool_first(mods[i], mods[i + 1]):
                # ReLU then max pool equals max pool then ReLU, values and gradients: ReLU
                # is monotonic, so each window's first maximum is the same position (and
                # a window with no positive value passes no gradient either way). The
                # ReLU then runs on a quarter of the values (2x2 pool); nobody sees its
                # full-size output, as neither module has hooks.
                pooled = mods[i + 1](input)  # a new buffer; without a graph, ReLU over it
                input = mods[i](pooled) if is_grad_enabled() else _relu_in_place(pooled)
                i += 2
                continue
            if i + 1 < len(mods) and _fresh_then_relu(mods[i], mods[i + 1]):
                input = _relu_in_place(mods[i](input))  # inference: no second buffer
                i += 2
                continue
            input = mods[i](input)
            i += 1
        return input

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int | slice) -> Any:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        if not -len(items) <= idx < len(items):
            raise IndexError(f"Sequential: index {idx} out of range for {len(items)} modules")
        return items[idx][1]

    def append(self, module: Module) -> Sequential:
        self._add(str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules whose parameters are registered (names ``0``, ``1``, ...)."""

    _samplewise = True

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        for m in modules or ():
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: expected a Module; got {type(module).__name__}")
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int) -> Module:
        return list(self._modules.values())[idx]


class ModuleDict(Module):
    """A dict of modules whose parameters are registered under their keys."""

    _samplewise = True

    def __init__(self, modules: Mapping[str, Module] | None = None) -> None:
        super().__init__()
        for k, m in (modules or {}).items():
            self[k] = m

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()


class ParameterList(Module):
    """A list of parameters registered under the names ``0``, ``1``, ... (a tensor that is
    not a Parameter is wrapped in one, as PyTorch does)."""

    def __init__(self, values: Iterable[Any] | None = None) -> None:
        super().__init__()
        for v in values or ():
            self.append(v)

    @staticmethod
    def _as_parameter(value: Any) -> Parameter:
        if isinstance(value, Parameter):
            return value
        if isinstance(value, Tensor):
            return Parameter(value)
        raise TypeError(
            f"ParameterList: expected a Parameter or Tensor; got {type(value).__name__}"
        )

    def append(self, value: Any) -> ParameterList:
        self.register_parameter(str(len(self)), self._as_parameter(value))
        return self

    def extend(self, values: Iterable[Any]) -> ParameterList:
        for v in values:
            self.append(v)
        return self

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._parameters.values())

    def _key(self, idx: int) -> str:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"ParameterList: index {idx} is out of range for {n} parameters")
        return str(idx % n)

    def __getitem__(self, idx: int) -> Parameter:
        return self._parameters[self._key(idx)]

    def __setitem__(self, idx: int, value: Any) -> None:
        self.register_parameter(self._key(idx), self._as_parameter(value))

    def extra_repr(self) -> str:
        return "\n".join(
            f"({k}): Parameter containing: [{p.dtype} of size {tuple(p.shape)}]"
            for k, p in self._parameters.items()
        )
