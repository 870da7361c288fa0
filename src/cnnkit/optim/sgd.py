"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnkit.optim.optimizer import Optimizer
from cnnkit.tensor import Tensor

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``.

    For each parameter :math:`p` with gradient :math:`g` (negated when ``maximize``):

    .. math::

        g &\leftarrow g + \lambda p \\
        b &\leftarrow \mu b + (1 - \tau) g \quad (b = g \text{ on the first step}) \\
        g &\leftarrow g + \mu b \text{ if nesterov else } b \\
        p &\leftarrow p - \eta g

    Parameters
    ----------
    params : iterable of Tensor or iterable of dict
        Parameters to optimise, or parameter groups.
    lr : float
        Learning rate :math:`\eta`.
    momentum : float
        Momentum factor :math:`\mu`.
    dampening : float
        Dampening :math:`\tau` for momentum.
    weight_decay : float
        L2 penalty :math:`\lambda`.
    nesterov : bool
        Use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    maximize : bool
        Maximise the objective instead of minimising it.
    """

    _elementwise = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        lr = group.get("lr", 0.0)
        momentum = group.get("momentum", 0.0)
        dampening = group.get("dampening", 0.0)
        weight_decay = group.get("weight_decay", 0.0)
        if not lr >= 0.0:
            raise ValueError(f"SGD: invalid learning rate lr={lr} (must be >= 0)")
        if not momentum >= 0.0:
            raise ValueError(f"SGD: invalid momentum={momentum} (must be >= 0)")
        if not weight_decay >= 0.0:
            raise ValueError(f"SGD: invalid weight_decay={weight_decay} (must be >= 0)")
        if group.get("nesterov", False) and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"SGD: nesterov momentum requires momentum > 0 and dampening = 0, "
                f"got momentum={momentum}, dampening={dampening}"
            )

    def _update(
        self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        """``d = g + wd p``; with momentum ``buf = m buf + (1 - dampening) d`` (``buf = d``
        on the first step) and ``d = buf`` (or ``d + m buf`` for Nesterov); ``p -= lr d``."""
        lr, momentum = group["lr"], group["momentum"]
        weight_decay = group["weight_decay"]
        d_p = grad + weight_decay * param if weight_decay != 0 else grad
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = np.array(d_p, dtype=param.dtype, copy=True)
                state["momentum_buffer"] = buf
            else:
                buf *= momentum
                dampening = group["dampening"]
                buf += d_p if dampening == 0 else (1 - dampening) * d_p
            d_p = d_p + momentum * buf if group["nesterov"] else buf
        param -= d_p if lr == 1 else lr * d_p
