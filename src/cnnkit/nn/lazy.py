"""``LazyLinear`` / ``LazyConv2d``: layers whose input size is read from the first input.

Until the first forward the weight is an empty placeholder :class:`Parameter` (so an
optimizer can already hold it); the first forward gives it its shape, initialises it as
the eager layer does, and turns the module into a plain :class:`Linear` /
:class:`Conv2d` (as PyTorch does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit import backend
from cnnkit.nn.linear import Conv2d, Linear
from cnnkit.nn.module import Module, Parameter
from cnnkit.tensor import Tensor

__all__ = ["LazyConv2d", "LazyLinear"]


def _placeholder(dtype: Any) -> Parameter:
    return Parameter(np.empty((0,), dtype=backend.resolve_dtype(dtype)))


class _Lazy(Module):
    _becomes: type[Module]

    def _materialize(self, wshape: tuple[int, ...], bshape: tuple[int, ...]) -> None:
        self.weight.array = np.zeros(wshape, dtype=self.weight.dtype)
        if self.bias is not None:
            self.bias.array = np.zeros(bshape, dtype=self.bias.dtype)
        self.__class__ = self._becomes
        self.reset_parameters()

    def has_uninitialized_params(self) -> bool:
        return True


class LazyLinear(_Lazy):
    """:class:`Linear` whose ``in_features`` is ``input.shape[-1]`` of the first input.

    Parameters
    ----------
    out_features : int
    bias : bool
    """

    _becomes = Linear

    def __init__(
        self, out_features: int, bias: bool = True, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        if out_features < 1:
            raise ValueError(f"LazyLinear: out_features must be positive; got {out_features}")
        backend.check_device(device, "LazyLinear")
        self.in_features = 0
        self.out_features = int(out_features)
        self.weight = _placeholder(dtype)
        if bias:
            self.bias = _placeholder(dtype)
        else:
            self.register_parameter("bias", None)

    def forward(self, input: Tensor) -> Tensor:
        if not isinstance(input, Tensor) or input.ndim < 1:
            raise ValueError(f"LazyLinear expects a Tensor (*, in_features); got {input!r}")
        self.in_features = int(input.shape[-1])
        self._materialize((self.out_features, self.in_features), (self.out_features,))
        return self(input)

    def extra_repr(self) -> str:
        return f"in_features=<lazy>, out_features={self.out_features}"


class LazyConv2d(_Lazy):
    """:class:`Conv2d` whose ``in_channels`` is ``input.shape[-3]`` of the first input.

    Parameters are :class:`Conv2d`'s without ``in_channels``.
    """

    _becomes = Conv2d

    def __init__(
        self,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        # a template Conv2d checks the arguments and resolves the geometry once
        tmpl = Conv2d(groups, out_channels, kernel_size, stride, padding, dilation, groups,
                      bias, padding_mode, device="meta", dtype=dtype)  # fmt: skip
        for k in ("out_channels", "kernel_size", "stride", "dilation", "padding", "groups",
                  "padding_mode"):  # fmt: skip
            object.__setattr__(self, k, getattr(tmpl, k))
        self.in_channels = 0
        self.weight = _placeholder(dtype)
        if bias:
            self.bias = _placeholder(dtype)
        else:
            self.register_parameter("bias", None)

    def forward(self, input: Tensor) -> Tensor:
        if not isinstance(input, Tensor) or input.ndim not in (3, 4):
            raise ValueError(f"LazyConv2d expects a Tensor (N, C, H, W); got {input!r}")
        c = int(input.shape[-3])
        if c % self.groups:
            raise ValueError(f"LazyConv2d: groups={self.groups} must divide in_channels={c}")
        self.in_channels = c
        kh, kw = self.kernel_size
        self._materialize((self.out_channels, c // self.groups, kh, kw), (self.out_channels,))
        return self(input)

    def extra_repr(self) -> str:
        return f"<lazy>, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
