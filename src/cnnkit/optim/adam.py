"""Adam and AdamW (decoupled weight decay), with optional AMSGrad."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnkit.optim.optimizer import Optimizer
from cnnkit.tensor import Tensor

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam``.

    With gradient :math:`g` (negated when ``maximize``) at step :math:`t`:

    .. math::

        g &\leftarrow g + \lambda p \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t}
            \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    with :math:`v` replaced by its running maximum when ``amsgrad``.

    Parameters
    ----------
    params : iterable of Tensor or iterable of dict
        Parameters to optimise, or parameter groups.
    lr : float
        Learning rate :math:`\eta`.
    betas : tuple of float
        Decay rates :math:`(\beta_1, \beta_2)` of the moment estimates, in ``[0, 1)``.
    eps : float
        Term added to the denominator for numerical stability.
    weight_decay : float
        L2 penalty :math:`\lambda` added to the gradient.
    amsgrad : bool
        Use the AMSGrad variant (maximum of past second moments).
    maximize : bool
        Maximise the objective instead of minimising it.
    """

    _decoupled = False

    _elementwise = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        name = self._name
        lr = group.get("lr", 0.0)
        eps = group.get("eps", 0.0)
        weight_decay = group.get("weight_decay", 0.0)
        betas = group.get("betas", (0.0, 0.0))
        if not lr >= 0.0:
            raise ValueError(f"{name}: invalid learning rate lr={lr} (must be >= 0)")
        if not eps >= 0.0:
            raise ValueError(f"{name}: invalid eps={eps} (must be >= 0)")
        if not weight_decay >= 0.0:
            raise ValueError(f"{name}: invalid weight_decay={weight_decay} (must be >= 0)")
        if len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name}: invalid beta{i + 1}={beta} (must be in [0, 1))")

    def _update(
        self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        """Moments ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``; step
        ``p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)`` (``max`` of past ``v``
        with AMSGrad); weight decay added to ``g``, or, decoupled (AdamW), ``p *= 1 - lr wd``.
        """
        lr = group["lr"]
        beta1, beta2 = group["betas"]
        weight_decay = group["weight_decay"]
        amsgrad = group["amsgrad"]
        if not state:
            state.update(step=0.0, exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
        if amsgrad and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = np.zeros_like(param)
        exp_avg = state["exp_avg"]
        exp_avg_sq = state["exp_avg_sq"]
        state["step"] = float(state["step"]) + 1.0
        step = state["step"]
        g = grad
        if weight_decay != 0:
            if self._decoupled:
                param *= 1.0 - lr * weight_decay
            else:
                g = g + weight_decay * param
        # m += (1 - b1) (g - m): PyTorch's lerp, same rounding
        tmp = np.subtract(g, exp_avg)
        tmp *= 1.0 - beta1
        exp_avg += tmp
        exp_avg_sq *= beta2
        np.multiply(g, 1.0 - beta2, out=tmp)
        tmp *= g
        exp_avg_sq += tmp
        step_size = lr / (1.0 - beta1**step)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**step)
        if amsgrad:
            max_sq = state["max_exp_avg_sq"]
            np.maximum(max_sq, exp_avg_sq, out=max_sq)
            np.sqrt(max_sq, out=tmp)
        else:
            np.sqrt(exp_avg_sq, out=tmp)
        tmp /= bias_correction2_sqrt
        tmp += group["eps"]
        np.divide(exp_avg, tmp, out=tmp)
        tmp *= -step_size
        param += tmp


class AdamW(Adam):
    r"""Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    Before the Adam update each parameter is shrunk, :math:`p \leftarrow p (1 - \eta \lambda)`,
    instead of adding :math:`\lambda p` to the gradient.

    Parameters
    ----------
    params : iterable of Tensor or iterable of dict
        Parameters to optimise, or parameter groups.
    lr : float
        Learning rate :math:`\eta`.
    betas : tuple of float
        Decay rates of the moment estimates, in ``[0, 1)``.
    eps : float
        Term added to the denominator for numerical stability.
    weight_decay : float
        Decoupled weight decay :math:`\lambda`.
    amsgrad : bool
        Use the AMSGrad variant.
    maximize : bool
        Maximise the objective instead of minimising it.
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
