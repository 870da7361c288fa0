"""Adadelta (Zeiler 2012), as ``torch.optim.Adadelta``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnkit.optim.optimizer import Optimizer
from cnnkit.tensor import Tensor

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta: step sizes from running averages of squared gradients and squared updates.

    .. math::

        g &\leftarrow g + \lambda p \\
        v &\leftarrow \rho v + (1 - \rho) g^2 \\
        \Delta &= \frac{\sqrt{u + \epsilon}}{\sqrt{v + \epsilon}}\, g \\
        u &\leftarrow \rho u + (1 - \rho) \Delta^2 \\
        p &\leftarrow p - \eta \Delta

    Parameters
    ----------
    params : iterable of Tensor or iterable of dict
    lr : float
        Scale :math:`\eta` of the update (1.0 in the paper).
    rho : float
        Decay :math:`\rho` of both running averages.
    eps : float
        :math:`\epsilon` inside the square roots.
    weight_decay : float
        L2 penalty :math:`\lambda`.
    maximize : bool
        Maximise the objective instead.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay,
                    "maximize": maximize}  # fmt: skip
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        if not group.get("lr", 0.0) >= 0.0:
            raise ValueError(f"Adadelta: invalid learning rate lr={group['lr']} (must be >= 0)")
        if not 0.0 <= group.get("rho", 0.0) <= 1.0:
            raise ValueError(f"Adadelta: invalid rho={group['rho']} (must be in [0, 1])")
        if not group.get("eps", 0.0) >= 0.0:
            raise ValueError(f"Adadelta: invalid eps={group['eps']} (must be >= 0)")
        if not group.get("weight_decay", 0.0) >= 0.0:
            raise ValueError(
                f"Adadelta: invalid weight_decay={group['weight_decay']} (must be >= 0)"
            )

    def _update(
        self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        """The equations above, in place."""
        rho, eps, wd = group["rho"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(param)
            state["acc_delta"] = np.zeros_like(param)
        state["step"] += 1
        g = grad + wd * param if wd != 0 else grad
        v, u = state["square_avg"], state["acc_delta"]
        v *= rho
        v += (1 - rho) * g * g
        delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u *= rho
        u += (1 - rho) * delta * delta
        param -= group["lr"] * delta
