"""Batch normalisation layers with running statistics."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.backend import is_meta, meta_array
from cnnkit.functional.norm import batch_norm
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
