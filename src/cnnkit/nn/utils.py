"""``nn.utils``: gradient clipping (``clip_grad_norm_``, ``clip_grad_value_``)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cnnkit.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters: Tensor | Iterable[Tensor]) -> list[np.ndarray]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p.grad.array for p in params if p.grad is not None]


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    r"""Scale all gradients together so their joint norm is at most ``max_norm``.

    The total norm is the ``norm_type``-norm of the per-parameter norms
    (``inf``: the largest absolute entry); every gradient is multiplied by
    :math:`\min(1, \text{max\_norm} / (\text{total} + 10^{-6}))` in place.

    Returns
    -------
    Tensor
        The total norm before clipping (0-d).
    """
    grads = _grads(parameters)
    if not grads:
        return Tensor(np.asarray(0.0, dtype=np.float32))
    p = float(norm_type)
    if p == float("inf"):
        norms = [np.max(np.abs(g)) if g.size else 0.0 for g in grads]
        total = float(np.max(norms))
    else:
        norms = [np.sum(np.abs(g.astype(np.float64)) ** p) ** (1.0 / p) for g in grads]
        total = float(np.sum(np.asarray(norms) ** p) ** (1.0 / p))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
            f"{total}; set error_if_nonfinite=False to clip anyway"
        )
    coef = min(float(max_norm) / (total + 1e-6), 1.0)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return Tensor(np.asarray(total, dtype=grads[0].dtype))


def clip_grad_value_(
    parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None
) -> None:
    """Clamp every gradient entry to ``[-clip_value, clip_value]`` in place."""
    v = float(clip_value)
    for g in _grads(parameters):
        np.clip(g, -v, v, out=g)
