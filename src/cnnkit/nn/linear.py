"""Fully connected, convolutional, transposed convolutional and locally connected layers."""

from __future__ import annotations

from typing import Any

from cnnkit.functional._windows import out_size, pair
from cnnkit.functional.conv import (
    conv2d,
    conv_transpose2d,
    conv_transpose_output_size,
    locally_connected2d,
    resolve_padding,
)
from cnnkit.functional.linear import linear
from cnnkit.nn import init
from cnnkit.nn._util import check_input, empty_param
from cnnkit.nn.module import Module
from cnnkit.tensor import Tensor


def _weight_and_bias(
    layer: Module,
    wshape: tuple[int, ...],
    bshape: tuple[int, ...],
    bias: bool,
    dtype: Any,
    device: Any,
) -> None:
    """Create ``layer.weight`` (and ``layer.bias`` or a ``None`` placeholder) and give
    them the layer's default initialisation."""
    where = type(layer).__name__
    layer.weight = empty_param(wshape, dtype, device, where)
    if bias:
        layer.bias = empty_param(bshape, dtype, device, where)
    else:
        layer.register_parameter("bias", None)
    layer.reset_parameters()


class Identity(Module):
    """Returns its input unchanged (a placeholder in architectures)."""

    _samplewise = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return input


class Linear(Module):
    """Fully connected layer ``y = x W^T + b``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool

    Shapes: input ``(*, in_features)`` -> output ``(*, out_features)``; weight
    ``(out_features, in_features)``; ``in*out + out`` parameters.
    """

    _samplewise = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"Linear: in_features and out_features must be positive; got "
                f"{in_features}, {out_features}"
            )
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        _weight_and_bias(self, (out_features, in_features), (out_features,), bias, dtype,
                         device)  # fmt: skip

    def reset_parameters(self) -> None:
        init.default_init(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        check_input(input, self, tuple(range(1, 9)), f"(*, {self.in_features})")
        if input.shape[-1] != self.in_features:
            raise ValueError(
                f"{self!r} expects input (*, {self.in_features}); got {tuple(input.shape)}"
            )
        return linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


def _conv_setup(
    layer: Module,
    where: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int],
    dilation: int | tuple[int, int],
    groups: int,
    padding_mode: str,
) -> None:
    """The arguments a convolution layer (plain or transposed) shares, checked and set."""
    if in_channels < 1 or out_channels < 1:
        raise ValueError(f"{where}: channels must be positive; got {in_channels}, {out_channels}")
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(
            f"{where}: groups={groups} must divide in_channels={in_channels} and "
            f"out_channels={out_channels}"
        )
    if padding_mode != "zeros":
        raise ValueError(f"{where}: only padding_mode='zeros' is supported; got {padding_mode!r}")
    layer.in_channels = int(in_channels)
    layer.out_channels = int(out_channels)
    layer.kernel_size = pair(kernel_size, "kernel_size", where, 1)
    layer.stride = pair(stride, "stride", where, 1)
    layer.dilation = pair(dilation, "dilation", where, 1)
    layer.groups = int(groups)
    layer.padding_mode = padding_mode


def _check_channels(layer: Module, input: Tensor) -> None:
    """A convolution's input: (N, C, H, W) or (C, H, W) with the layer's C."""
    check_input(input, layer, (3, 4), f"(N, {layer.in_channels}, H, W)")
    if input.shape[-3] != layer.in_channels:
        raise ValueError(
            f"{layer!r} expects input (N, {layer.in_channels}, H, W); got {tuple(input.shape)}"
        )


class Conv2d(Module):
    """2-D convolution: ``out_channels`` filters of size ``in_channels/groups x KH x KW``
    slid over the input (shared weights).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, dilation : int or (int, int)
    padding : int, (int, int), 'same' or 'valid'
    groups : int
    bias : bool

    Shapes: input ``(N, C_in, H, W)`` -> ``(N, C_out, OH, OW)`` with
    ``OH = (H + 2P - D*(KH-1) - 1) // S + 1``; weight ``(C_out, C_in/groups, KH, KW)``.
    Parameters: ``C_out * (C_in/groups * KH * KW + 1)`` (one 5x5x3 filter: 76).
    """

    _samplewise = True

    def __init__(
        self,
        in_channels: int,
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
        where = "Conv2d"
        _conv_setup(self, where, in_channels, out_channels, kernel_size, stride, dilation,
                    groups, padding_mode)  # fmt: skip
        resolve_padding(padding, self.kernel_size, self.stride, self.dilation, where)
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding", where)
        kh, kw = self.kernel_size
        wshape = (out_channels, in_channels // groups, kh, kw)
        _weight_and_bias(self, wshape, (out_channels,), bias, dtype, device)

    def reset_parameters(self) -> None:
        init.default_init(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        _check_channels(self, input)
        try:
            return conv2d(
                input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                self.groups,
            )  # fmt: skip
        except ValueError as e:  # e.g. a kernel larger than the padded input: name the layer
            raise ValueError(f"{self!r}: {e}") from None

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding not in ((0, 0), "valid"):
            s += (
                f", padding={self.padding!r}"
                if isinstance(self.padding, str)
                else f", padding={self.padding}"
            )
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class ConvTranspose2d(Module):
    """2-D transposed convolution: the gradient of a :class:`Conv2d` with respect to its
    input, used to upsample (decoders, segmentation heads, GAN generators).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, output_padding, dilation : int or (int, int)
    groups : int
    bias : bool

    Shapes: input ``(N, C_in, H, W)`` -> ``(N, C_out, OH, OW)`` with
    ``OH = (H - 1) * S - 2P + D * (KH - 1) + output_padding + 1``; weight
    ``(C_in, C_out/groups, KH, KW)`` (PyTorch's layout); bias ``(C_out,)``.
    """

    _samplewise = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | tuple[int, int] = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        where = "ConvTranspose2d"
        _conv_setup(self, where, in_channels, out_channels, kernel_size, stride, dilation,
                    groups, padding_mode)  # fmt: skip
        self.padding = pair(padding, "padding", where)
        self.output_padding = pair(output_padding, "output_padding", where)
        for i in range(2):
            if self.output_padding[i] >= max(self.stride[i], self.dilation[i]):
                raise ValueError(
                    f"{where}: output_padding {self.output_padding} must be smaller than the "
                    f"stride {self.stride} or the dilation {self.dilation} in each dimension"
                )
        kh, kw = self.kernel_size
        wshape = (in_channels, out_channels // groups, kh, kw)
        _weight_and_bias(self, wshape, (out_channels,), bias, dtype, device)

    def reset_parameters(self) -> None:
        init.default_init(self.weight, self.bias)

    def _output_padding(self, input: Tensor, output_size: Any) -> tuple[int, int]:
        """PyTorch's rule: the output_padding that reaches ``output_size`` (its last two
        entries), which must lie within one stride of the smallest output."""
        if output_size is None:
            return self.output_padding
        size = tuple(int(s) for s in output_size)[-2:]
        if len(size) != 2:
            raise ValueError(f"{self!r}: output_size must end with (OH, OW); got {output_size}")
        pads = []
        for i in range(2):
            least = conv_transpose_output_size(
                input.shape[-2 + i], self.kernel_size[i], self.stride[i], self.padding[i], 0,
                self.dilation[i],
            )  # fmt: skip
            extra = size[i] - least
            if not 0 <= extra < max(self.stride[i], self.dilation[i]):
                raise ValueError(
                    f"{self!r}: output_size {size} is not reachable from input "
                    f"{tuple(input.shape)}: each size must be in [{least}, "
                    f"{least + max(self.stride[i], self.dilation[i]) - 1}] along dim {i}"
                )
            pads.append(extra)
        return (pads[0], pads[1])

    def forward(self, input: Tensor, output_size: Any = None) -> Tensor:
        _check_channels(self, input)
        op = self._output_padding(input, output_size)
        try:
            return conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, op,
                                    self.groups, self.dilation)  # fmt: skip
        except ValueError as e:
            raise ValueError(f"{self!r}: {e}") from None

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class LocallyConnected2d(Module):
    """Locally connected layer: a convolution whose filters are NOT shared — every output
    location ``(i, j)`` has its own ``in_channels x KH x KW`` filter per output channel.

    Parameters
    ----------
    in_channels, out_channels : int
    input_size : int or (int, int)
        Spatial size ``(H, W)`` of the input (the weights depend on it).
    kernel_size, stride, padding : int or (int, int)
    bias : bool
        One bias per output channel and location.

    Shapes: input ``(N, C_in, H, W)`` -> ``(N, C_out, OH, OW)``; weight
    ``(OH, OW, C_out, C_in, KH, KW)``; bias ``(C_out, OH, OW)``.
    """

    _samplewise = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: int | tuple[int, int],
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        where = "LocallyConnected2d"
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"{where}: channels must be positive; got {in_channels}, {out_channels}"
            )
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.input_size = pair(input_size, "input_size", where, 1)
        self.kernel_size = pair(kernel_size, "kernel_size", where, 1)
        self.stride = pair(stride, "stride", where, 1)
        self.padding = pair(padding, "padding", where)
        oh = out_size(self.input_size[0], self.kernel_size[0], self.stride[0], 2 * self.padding[0])
        ow = out_size(self.input_size[1], self.kernel_size[1], self.stride[1], 2 * self.padding[1])
        if oh < 1 or ow < 1:
            raise ValueError(
                f"{where}: kernel {self.kernel_size} is larger than the padded input "
                f"{self.input_size} (padding {self.padding})"
            )
        self.output_size = (oh, ow)
        kh, kw = self.kernel_size
        wshape = (oh, ow, out_channels, in_channels, kh, kw)
        _weight_and_bias(self, wshape, (out_channels, oh, ow), bias, dtype, device)

    def reset_parameters(self) -> None:
        kh, kw = self.kernel_size
        init.default_init(self.weight, self.bias, fan_in=self.in_channels * kh * kw)

    def forward(self, input: Tensor) -> Tensor:
        h, w = self.input_size
        expected = f"(N, {self.in_channels}, {h}, {w})"
        check_input(input, self, (3, 4), expected)
        if tuple(input.shape[-3:]) != (self.in_channels, h, w):
            raise ValueError(f"{self!r} expects input {expected}; got {tuple(input.shape)}")
        return locally_connected2d(input, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
            f"kernel_size={self.kernel_size}"
        )
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s
