"""Normalisation layers: batch normalisation (running statistics), layer and group
normalisation (statistics of each sample)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.backend import is_meta, meta_array
from cnnkit.functional.norm import batch_norm, group_norm, layer_norm, sync_batch_norm
from cnnkit.nn import init
from cnnkit.nn._util import check_input, empty_param
from cnnkit.nn.module import Module
from cnnkit.tensor import Tensor


class _BatchNorm(Module):
    _samplewise = True

    def _per_sample(self) -> bool:  # with running statistics only
        return super()._per_sample() and not self.training and self.track_running_stats

    _ndims: tuple[int, ...] = ()
    _expected = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        if num_features < 1:
            raise ValueError(f"{where}: num_features must be positive; got {num_features}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = empty_param((num_features,), dtype, device, where)
            self.bias = empty_param((num_features,), dtype, device, where)
            init.ones_(self.weight)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            probe = empty_param((num_features,), dtype, device, where)
            dt = probe.dtype
            if is_meta(probe):
                self.register_buffer("running_mean", Tensor(meta_array((num_features,), dt)))
                self.register_buffer("running_var", Tensor(meta_array((num_features,), dt)))
            else:
                self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype=dt)))
                self.register_buffer("running_var", Tensor(np.ones(num_features, dtype=dt)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.array[...] = 0
            self.running_var.array[...] = 1
            self.num_batches_tracked.array[...] = 0

    def forward(self, input: Tensor) -> Tensor:
        return self._normalize(input, relu=False)

    def forward_relu(self, input: Tensor) -> Tensor:
        """``relu(self.forward(input))`` as one op (the same values and gradients, no
        intermediate tensor); containers use it where no hook could see the difference."""
        return self._normalize(input, relu=True)

    def _normalize(self, input: Tensor, relu: bool) -> Tensor:
        check_input(input, self, self._ndims, self._expected.format(c=self.num_features))
        if input.shape[1] != self.num_features:
            raise ValueError(
                f"{self!r} expects input {self._expected.format(c=self.num_features)}; "
                f"got {tuple(input.shape)}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.array[...] += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.array)
        use_batch = self.training or not self.track_running_stats
        track = self.training and self.track_running_stats
        return batch_norm(
            input,
            self.running_mean if track or not use_batch else None,
            self.running_var if track or not use_batch else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
            relu=relu,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)`` input, per feature ``C``."""

    _ndims = (2, 3)
    _expected = "(N, {c}) or (N, {c}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` input, per channel."""

    _ndims = (4,)
    _expected = "(N, {c}, H, W)"


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation with statistics over the batches of all ranks (PyTorch's
    ``nn.SyncBatchNorm``): in training, with a process group initialised, the mean and
    variance are those of the global batch, and backward is that of one process holding
    the whole batch. Otherwise (evaluation, or no process group) it is ``BatchNorm``.

    Input ``(N, C, *)``. Build it directly or with :meth:`convert_sync_batchnorm`.
    """

    _ndims = (2, 3, 4, 5)
    _expected = "(N, {c}, *)"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def forward(self, input: Tensor) -> Tensor:
        from cnnkit import distributed as dist

        if not (self.training and dist.is_initialized()):
            return super().forward(input)
        check_input(input, self, self._ndims, self._expected.format(c=self.num_features))
        if input.shape[1] != self.num_features:
            raise ValueError(
                f"{self!r} expects input {self._expected.format(c=self.num_features)}; "
                f"got {tuple(input.shape)}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        track = self.track_running_stats
        if track:
            self.num_batches_tracked.numpy()[...] += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.numpy())
        return sync_batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            factor,
            self.eps,
        )

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any = None) -> Module:
        """Replace every ``BatchNorm1d``/``BatchNorm2d`` in ``module`` by a
        ``SyncBatchNorm`` holding the same parameters, running statistics and mode;
        returns the converted module (a new object only when ``module`` itself is one)."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            new = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group)  # fmt: skip
            if module.affine:
                new.weight = module.weight
                new.bias = module.bias
            if module.track_running_stats:
                new.running_mean = module.running_mean
                new.running_var = module.running_var
                new.num_batches_tracked = module.num_batches_tracked
            new.train(module.training)
            return new
        for name, child in list(module.named_children()):
            converted = cls.convert_sync_batchnorm(child, process_group)
            if converted is not child:
                setattr(module, name, converted)
        return module


class LayerNorm(Module):
    """Standardise each sample over its trailing ``normalized_shape`` axes, then scale and
    shift elementwise (``weight`` ones, ``bias`` zeros, shape ``normalized_shape``).

    Input ``(*, *normalized_shape)`` -> same shape.
    """

    _samplewise = True

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...] | list[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        shape = tuple(shape)
        if not shape or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
            raise ValueError(
                f"LayerNorm: normalized_shape must be positive ints; got {normalized_shape!r}"
            )
        self.normalized_shape = tuple(int(s) for s in shape)
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        if elementwise_affine:
            self.weight = empty_param(self.normalized_shape, dtype, device, "LayerNorm")
            init.ones_(self.weight)
            if bias:
                self.bias = empty_param(self.normalized_shape, dtype, device, "LayerNorm")
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input: Tensor) -> Tensor:
        try:
            return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)
        except ValueError as e:
            raise ValueError(f"{self!r}: {e}") from None

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine="
            f"{self.elementwise_affine}, bias={self.bias is not None}"
        )


class GroupNorm(Module):
    """Standardise each sample over groups of ``num_channels / num_groups`` channels (and
    all their positions), then scale and shift per channel (``weight`` ones, ``bias``
    zeros, shape ``(num_channels,)``).

    Input ``(N, num_channels, *)`` -> same shape.
    """

    _samplewise = True

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if num_groups < 1 or num_channels < 1 or num_channels % num_groups:
            raise ValueError(
                f"GroupNorm: num_groups={num_groups} must be positive and divide "
                f"num_channels={num_channels}"
            )
        self.num_groups = int(num_groups)
        self.num_channels = int(num_channels)
        self.eps = float(eps)
        self.affine = bool(affine)
        if affine:
            self.weight = empty_param((num_channels,), dtype, device, "GroupNorm")
            init.ones_(self.weight)
            if bias:
                self.bias = empty_param((num_channels,), dtype, device, "GroupNorm")
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input: Tensor) -> Tensor:
        expected = f"(N, {self.num_channels}, *)"
        check_input(input, self, tuple(range(2, 9)), expected)
        if input.shape[1] != self.num_channels:
            raise ValueError(f"{self!r} expects input {expected}; got {tuple(input.shape)}")
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )
