"""Pooling, activations (PReLU with its learned slopes), dropout, flatten."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnkit.functional import activation as A
from cnnkit.functional import pool as P
from cnnkit.functional.resize import interpolate
from cnnkit.nn._util import check_input, empty_param
from cnnkit.nn.module import Module
from cnnkit.tensor import Tensor


class MaxPool2d(Module):
    """Max pooling over ``kernel_size`` windows (``stride`` defaults to the kernel size).

    Input ``(N, C, H, W)`` -> ``(N, C, OH, OW)``; no parameters.
    """

    _samplewise = True

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        if return_indices:
            raise NotImplementedError("MaxPool2d: return_indices=True is not supported")
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.dilation = dilation
        self.ceil_mode = ceil_mode

    def forward(self, input: Tensor) -> Tensor:
        check_input(input, self, (3, 4), "(N, C, H, W)")
        return P.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode)  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(Module):
    """Average pooling over ``kernel_size`` windows (PyTorch's divisor rules).

    Input ``(N, C, H, W)`` -> ``(N, C, OH, OW)``; no parameters.
    """

    _samplewise = True

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Tensor) -> Tensor:
        check_input(input, self, (3, 4), "(N, C, H, W)")
        return P.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)  # fmt: skip

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size (global average pooling with 1)."""

    _samplewise = True

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        check_input(input, self, (3, 4), "(N, C, H, W)")
        return P.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class ReLU(Module):
    """``max(0, x)`` elementwise.

    ``inplace`` is accepted for PyTorch compatibility; the result is always a new array
    (autograd here keeps no version counters to make in-place updates safe).
    """

    _samplewise = True

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return A.relu(input)


class LeakyReLU(Module):
    """``x`` for positive, ``negative_slope * x`` for negative inputs."""

    _samplewise = True

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return A.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """``1 / (1 + exp(-x))`` elementwise."""

    _samplewise = True

    def forward(self, input: Tensor) -> Tensor:
        return A.sigmoid(input)


class Tanh(Module):
    """``tanh(x)`` elementwise."""

    _samplewise = True

    def forward(self, input: Tensor) -> Tensor:
        return A.tanh(input)


class Softmax(Module):
    """Softmax along ``dim``."""

    _samplewise = True

    def _per_sample(self) -> bool:  # dim None may mean the batch dim
        return super()._per_sample() and self.dim is not None and self.dim >= 1

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return A.softmax(input, self._dim(input))

    def _dim(self, input: Tensor) -> int:
        # PyTorch's legacy rule when dim is None: 0 for 0-, 1- and 3-D input, else 1
        if self.dim is not None:
            return self.dim
        return 0 if input.ndim in (0, 1, 3) else 1

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """Log-softmax along ``dim``."""

    _samplewise = True

    def forward(self, input: Tensor) -> Tensor:
        return A.log_softmax(input, self._dim(input))


class Dropout(Module):
    """Zero each element with probability ``p`` in training mode (scaling the rest by
    ``1/(1-p)``); identity in evaluation mode. ``inplace`` is accepted and ignored, as for
    :class:`ReLU`."""

    _samplewise = True

    def _per_sample(self) -> bool:  # random masks: keep the random stream's order
        return super()._per_sample() and (not self.training or self.p == 0.0)

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1]; got {p}")
        self.p = float(p)
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return A.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` (default: all but the batch dim)."""

    _samplewise = True

    def _per_sample(self) -> bool:
        return super()._per_sample() and self.start_dim >= 1

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: Any) -> Tensor:
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dimension ``dim`` into ``unflattened_size``: the inverse of :class:`Flatten`,
    e.g. ``Unflatten(1, (32, 7, 7))`` turns ``(N, 1568)`` into ``(N, 32, 7, 7)``."""

    _samplewise = True

    def _per_sample(self) -> bool:
        # a negative dim may name the batch dim: only a positive one is vouched for
        return super()._per_sample() and self.dim >= 1

    def __init__(self, dim: int, unflattened_size: Sequence[int]) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"Unflatten: dim must be an int; got {dim!r}")
        if isinstance(unflattened_size, int) or not isinstance(unflattened_size, Sequence):
            raise TypeError(
                "Unflatten: unflattened_size must be a tuple or list of ints; got "
                f"{unflattened_size!r}"
            )
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def forward(self, input: Tensor) -> Tensor:
        return input.unflatten(self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Dropout2d(Dropout):
    """Zero whole channels with probability ``p`` in training mode (scaling the rest by
    ``1/(1-p)``); identity in evaluation mode. Input ``(N, C, H, W)`` or ``(C, H, W)``."""

    def forward(self, input: Tensor) -> Tensor:
        return A.dropout2d(input, self.p, self.training)


class GELU(Module):
    """Gaussian error linear unit; ``approximate='tanh'`` for the tanh formula."""

    _samplewise = True

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return A.gelu(input, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softmax2d(Module):
    """Softmax over the channels of ``(N, C, H, W)`` or ``(C, H, W)`` at every pixel."""

    _samplewise = True

    def forward(self, input: Tensor) -> Tensor:
        check_input(input, self, (3, 4), "(N, C, H, W)")
        return A.softmax(input, -3)


class AdaptiveMaxPool2d(Module):
    """Max pooling to a fixed ``output_size`` (PyTorch's windows); ``(N, C, H, W)`` ->
    ``(N, C, OH, OW)``."""

    _samplewise = True

    def __init__(
        self, output_size: int | tuple[int | None, int | None], return_indices: bool = False
    ) -> None:
        super().__init__()
        if return_indices:
            raise NotImplementedError("AdaptiveMaxPool2d: return_indices=True is not supported")
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        check_input(input, self, (3, 4), "(N, C, H, W)")
        return P.adaptive_max_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class ELU(Module):
    """``x`` for positive, ``alpha (exp(x) - 1)`` for other inputs."""

    _samplewise = True

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return A.elu(input, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SiLU(Module):
    """``x * sigmoid(x)`` elementwise (swish)."""

    _samplewise = True

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return A.silu(input)


class ReLU6(Module):
    """``min(max(x, 0), 6)`` elementwise."""

    _samplewise = True

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return A.relu6(input)


class PReLU(Module):
    """``x if x > 0 else a * x`` with learned slopes ``a``: ``num_parameters`` 1 (one
    shared slope) or ``C`` (one per channel, axis 1), each initialised to ``init``.

    Parameters: ``weight`` of shape ``(num_parameters,)``.
    """

    _samplewise = True

    def __init__(
        self, num_parameters: int = 1, init: float = 0.25, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, int):
            raise TypeError(f"PReLU: num_parameters must be an int; got {num_parameters!r}")
        if num_parameters < 1:
            raise ValueError(f"PReLU: num_parameters must be positive; got {num_parameters}")
        self.num_parameters = num_parameters
        self.init = float(init)
        self.weight = empty_param((num_parameters,), dtype, device, "PReLU")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        from cnnkit.nn import init

        init.constant_(self.weight, self.init)

    def forward(self, input: Tensor) -> Tensor:
        return A.prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class Upsample(Module):
    """Resize ``(N, C, H, W)`` images to ``size`` or by ``scale_factor`` with ``mode``
    ``'nearest'`` or ``'bilinear'`` (:func:`~cnnkit.functional.resize.interpolate`)."""

    _samplewise = True

    def __init__(
        self,
        size: int | tuple[int, int] | None = None,
        scale_factor: float | tuple[float, float] | None = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ) -> None:
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"Upsample: mode must be 'nearest' or 'bilinear'; got {mode!r}")
        if mode == "nearest" and align_corners is not None:
            raise ValueError("Upsample: align_corners can only be set with mode='bilinear'")
        self.size = size
        if isinstance(scale_factor, (tuple, list)):
            self.scale_factor: Any = tuple(float(f) for f in scale_factor)
        else:
            self.scale_factor = None if scale_factor is None else float(scale_factor)
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input: Tensor) -> Tensor:
        check_input(input, self, (4,), "(N, C, H, W)")
        return interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                           self.recompute_scale_factor)  # fmt: skip

    def extra_repr(self) -> str:
        what = f"scale_factor={self.scale_factor!r}" if self.size is None else f"size={self.size!r}"
        return f"{what}, mode={self.mode!r}"
