"""Adagrad (Duchi et al. 2011), as ``torch.optim.Adagrad``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnkit.optim.optimizer import Optimizer
from cnnkit.tensor import Tensor

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad: per-coordinate steps shrinking with the sum of past squared gradients.

    .. math::

        g &\leftarrow g + \lambda p \\
        \tilde\eta &= \eta / (1 + (t - 1)\, \delta) \\
        s &\leftarrow s + g^2 \quad (s_0 = \text{initial\_accumulator\_value}) \\
        p &\leftarrow p - \tilde\eta\, g / (\sqrt{s} + \epsilon)

    Parameters
    ----------
    params : iterable of Tensor or iterable of dict
    lr : float
        :math:`\eta`.
    lr_decay : float
        :math:`\delta`.
    weight_decay : float
        L2 penalty :math:`\lambda`.
    initial_accumulator_value : float
        Starting value of :math:`s`.
    eps : float
        :math:`\epsilon` added to the denominator.
    maximize : bool
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        defaults = {"lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value, "eps": eps,
                    "maximize": maximize}  # fmt: skip
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        for key in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            if not group.get(key, 0.0) >= 0.0:
                raise ValueError(f"Adagrad: invalid {key}={group[key]} (must be >= 0)")

    def _update(
        self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        """The equations above, in place."""
        if not state:
            state["step"] = 0
            state["sum"] = np.full_like(param, group["initial_accumulator_value"])
        state["step"] += 1
        wd = group["weight_decay"]
        g = grad + wd * param if wd != 0 else grad
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        s = state["sum"]
        s += g * g
        param -= clr * (g / (np.sqrt(s) + group["eps"]))
