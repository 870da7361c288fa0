"""Loss modules (PyTorch names): MSE, L1, smooth L1, Huber, BCE, BCE on logits,
cross-entropy, NLL, KL divergence."""

from __future__ import annotations

from typing import Any

from cnnkit.functional import loss as L
from cnnkit.nn.module import Module
from cnnkit.tensor import Tensor, as_tensor


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        L._check_reduction(reduction, type(self).__name__)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """Mean squared error (regression head)."""

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return L.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """Mean absolute error."""

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return L.l1_loss(input, target, self.reduction)


def _buffer(m: Module, name: str, value: Any) -> None:
    m.register_buffer(name, None if value is None else as_tensor(value))


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities (after a sigmoid)."""

    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        _buffer(self, "weight", weight)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return L.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy in one stable step (binary head on logits)."""

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(reduction)
        _buffer(self, "weight", weight)
        _buffer(self, "pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return L.binary_cross_entropy_with_logits(
            input, target, self.weight, self.reduction, self.pos_weight
        )


class CrossEntropyLoss(_Loss):
    """Softmax + cross-entropy on logits, targets as class indices or probabilities."""

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(reduction)
        _buffer(self, "weight", weight)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return L.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing)  # fmt: skip


class NLLLoss(_Loss):
    """Negative log-likelihood of class indices given log-probabilities."""

    def __init__(
        self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        _buffer(self, "weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return L.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class SmoothL1Loss(_Loss):
    """Quadratic for ``|input - target| < beta``, linear beyond (``beta = 0``: L1)."""

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                 beta: float = 1.0) -> None:  # fmt: skip
        L._legacy(size_average, reduce, "SmoothL1Loss")
        super().__init__(reduction)
        self.beta = float(beta)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return L.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """Quadratic for ``|input - target| <= delta``, ``delta``-sloped linear beyond."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = float(delta)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return L.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class KLDivLoss(Module):
    """Kullback-Leibler divergence of ``target`` from ``input`` (log-probabilities);
    ``reduction='batchmean'`` gives the per-sample divergence."""

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                 log_target: bool = False) -> None:  # fmt: skip
        super().__init__()
        L._legacy(size_average, reduce, "KLDivLoss")
        L._check_kl_reduction(reduction, "KLDivLoss")
        self.reduction = reduction
        self.log_target = bool(log_target)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return L.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
