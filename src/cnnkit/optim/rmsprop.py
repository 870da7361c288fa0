"""RMSprop (Hinton's lecture 6e), as ``torch.optim.RMSprop``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnkit.optim.optimizer import Optimizer
from cnnkit.tensor import Tensor

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop: divide the gradient by a running root mean square of recent gradients.

    .. math::

        g &\leftarrow g + \lambda p \\
        v &\leftarrow \alpha v + (1 - \alpha) g^2 \\
        \bar g &\leftarrow \alpha \bar g + (1 - \alpha) g \quad (\text{centered}) \\
        d &= g / (\sqrt{v - \bar g^2} + \epsilon) \quad
            (\sqrt{v} + \epsilon \text{ if not centered}) \\
        b &\leftarrow \mu b + d, \; p \leftarrow p - \eta b \quad
        (p \leftarrow p - \eta d \text{ without momentum})

    Parameters
    ----------
    params : iterable of Tensor or iterable of dict
    lr : float
        :math:`\eta`.
    alpha : float
        Smoothing constant :math:`\alpha`.
    eps : float
        :math:`\epsilon` added to the denominator.
    weight_decay : float
        L2 penalty :math:`\lambda`.
    momentum : float
        :math:`\mu`.
    centered : bool
        Normalise by the estimated variance instead of the second moment.
    maximize : bool
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                    "momentum": momentum, "centered": centered, "maximize": maximize}  # fmt: skip
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        for key in ("lr", "eps", "weight_decay", "momentum", "alpha"):
            if not group.get(key, 0.0) >= 0.0:
                raise ValueError(f"RMSprop: invalid {key}={group[key]} (must be >= 0)")

    def _update(
        self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        """The equations above, in place."""
        alpha, eps, wd, mu = group["alpha"], group["eps"], group["weight_decay"], group["momentum"]
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(param)
            if mu > 0:
                state["momentum_buffer"] = np.zeros_like(param)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(param)
        state["step"] += 1
        g = grad + wd * param if wd != 0 else grad
        v = state["square_avg"]
        v *= alpha
        v += (1 - alpha) * g * g
        if group["centered"]:
            ga = state["grad_avg"]
            ga *= alpha
            ga += (1 - alpha) * g
            avg = np.sqrt(v - ga * ga) + eps
        else:
            avg = np.sqrt(v) + eps
        if mu > 0:
            buf = state["momentum_buffer"]
            buf *= mu
            buf += g / avg
            param -= group["lr"] * buf
        else:
            param -= group["lr"] * (g / avg)
