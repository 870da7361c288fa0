"""Losses for the three heads: regression (MSE, L1), binary (BCE, BCE on logits) and
multiclass (cross-entropy, NLL), numerically stable and with PyTorch's reductions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.autograd import Function
from cnnkit.functional.activation import _stable_sigmoid
from cnnkit.tensor import Tensor, as_tensor

_REDUCTIONS = ("mean", "sum", "none")
_BCE_EPS = float(np.float32(1e-12))  # PyTorch clamps x (1 - x) at the float 1e-12


def _check_reduction(reduction: str, where: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{where}: reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")


def _target(target: Any, input: Tensor, where: str, same_shape: bool = True) -> Tensor:
    t = as_tensor(target)
    if same_shape and tuple(t.shape) != tuple(input.shape):
        raise ValueError(
            f"{where}: expected target of shape {tuple(input.shape)} (the input's); "
            f"got {tuple(t.shape)}"
        )
    if t.dtype.kind != "f" and same_shape:
        t = Tensor(t.array.astype(input.dtype))
    return t


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _reduce_array(loss: np.ndarray, reduction: str) -> tuple[np.ndarray, float]:
    """The reduced loss and the factor each element's gradient is scaled by."""
    if reduction == "mean":
        return np.asarray(loss.mean(), dtype=loss.dtype), 1.0 / max(loss.size, 1)
    if reduction == "sum":
        return np.asarray(loss.sum(), dtype=loss.dtype), 1.0
    return loss, 1.0


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(input - target)^2`` (regression head).

    Parameters
    ----------
    input, target : Tensor, same shape
    reduction : 'mean', 'sum' or 'none'
    """
    _check_reduction(reduction, "mse_loss")
    d = input - _target(target, input, "mse_loss")
    return _reduce(d * d, reduction)


def l1_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean absolute error ``|input - target|``."""
    _check_reduction(reduction, "l1_loss")
    return _reduce((input - _target(target, input, "l1_loss")).abs(), reduction)


class BinaryCrossEntropy(Function):
    """``-w [t log x + (1 - t) log(1 - x)]`` with logs clamped at -100 (as PyTorch);
    ``d/dx = w (x - t) / max(x (1 - x), 1e-12)``."""

    def forward(
        self, x: np.ndarray, t: np.ndarray, w: np.ndarray | None, reduction: str
    ) -> np.ndarray:
        with np.errstate(divide="ignore"):
            loss = -(t * np.maximum(np.log(x), -100) + (1 - t) * np.maximum(np.log1p(-x), -100))
        if w is not None:
            loss = loss * w
        out, self.scale = _reduce_array(loss, reduction)
        self.save_for_backward(x, t, w)
        return out

    def backward(self, grad: np.ndarray) -> tuple:
        x, t, w = self.saved
        g = (x - t) / np.maximum(x * (1 - x), _BCE_EPS) * (grad * self.scale)
        if w is not None:
            g = g * w
        return g.astype(x.dtype, copy=False), None, None


def binary_cross_entropy(
    input: Tensor, target: Any, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Binary cross-entropy on probabilities in [0, 1] (after a sigmoid).

    Prefer :func:`binary_cross_entropy_with_logits`, which is stable for any logit.

    Parameters
    ----------
    input : Tensor, any shape, values in [0, 1]
    target : Tensor, same shape, values in [0, 1]
    weight : Tensor, broadcastable to input, optional
    """
    where = "binary_cross_entropy"
    _check_reduction(reduction, where)
    t = _target(target, input, where)
    x = input.array
    if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1):
        raise ValueError(
            f"{where}: input must be probabilities in [0, 1]; got values in "
            f"[{np.nanmin(x):.4g}, {np.nanmax(x):.4g}] (use binary_cross_entropy_with_logits "
            "for raw scores)"
        )
    w = None if weight is None else np.broadcast_to(as_tensor(weight).array, x.shape)
    return BinaryCrossEntropy.apply(input, t, w, reduction=reduction)


class BCEWithLogits(Function):
    """``w [(1 - t) x + l softplus(-x)]`` with ``l = 1 + (pos_weight - 1) t``, softplus
    computed as ``log1p(exp(-|x|)) + max(-x, 0)`` (no overflow at |x| = 1000).

    ``d/dx = w [(1 - t) - l sigmoid(-x)]``; ``d/dt = w [-x + (pos_weight - 1) softplus(-x)]``.
    """

    def forward(
        self,
        x: np.ndarray,
        t: np.ndarray,
        w: np.ndarray | None,
        pw: np.ndarray | None,
        reduction: str,
    ) -> np.ndarray:
        sp = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)  # softplus(-x)
        lw = 1 if pw is None else 1 + (pw - 1) * t
        loss = (1 - t) * x + lw * sp
        if w is not None:
            loss = loss * w
        out, self.scale = _reduce_array(loss, reduction)
        self.save_for_backward(x, t, w, pw, sp)
        return out

    def backward(self, grad: np.ndarray) -> tuple:
        x, t, w, pw, sp = self.saved
        nx, nt = self.needs_input_grad[:2]
        gs = grad * self.scale
        if w is not None:
            gs = gs * w
        dx = dt = None
        if nx:
            lw = 1 if pw is None else 1 + (pw - 1) * t
            dx = ((1 - t) - lw * _stable_sigmoid(-x)) * gs
        if nt:
            dt = (-x + (0 if pw is None else (pw - 1) * sp)) * gs
        return dx, dt, None, None


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Any,
    weight: Tensor | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable step (binary head on raw logits).

    Parameters
    ----------
    input : Tensor, any shape (logits)
    target : Tensor, same shape, values in [0, 1]
    weight : Tensor, broadcastable to input, optional
    pos_weight : Tensor, broadcastable to input (usually (C,)), optional
        Weight of the positive term.
    """
    where = "binary_cross_entropy_with_logits"
    _check_reduction(reduction, where)
    t = _target(target, input, where)
    shape = input.shape
    w = None if weight is None else np.broadcast_to(as_tensor(weight).array, shape)
    pw = None if pos_weight is None else np.broadcast_to(as_tensor(pos_weight).array, shape)
    return BCEWithLogits.apply(input, t, w, pw, reduction=reduction)


class WeightedNLL(Function):
    """``loss_i = -sum_c q_ic z_ic`` over rows ``i`` of ``z`` (N, C, *), class axis 1.

    ``q`` encodes targets, class weights and label smoothing. With ``from_logits`` ``z``
    is ``log_softmax(x)`` computed stably inside and ``d/dx = -q + (sum_c q) softmax(x)``;
    otherwise ``z`` is the input (log-probabilities) and ``d/dz = -q``. The mean divides
    by ``denom`` (PyTorch: the summed weights of the non-ignored targets).
    """

    def forward(
        self,
        x: np.ndarray,
        q: np.ndarray,
        denom: float,
        reduction: str,
        from_logits: bool,
    ) -> np.ndarray:
        if from_logits:
            shifted = x - x.max(axis=1, keepdims=True)
            lse = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            z = shifted - lse
        else:
            z = x
        with np.errstate(invalid="ignore"):
            per = -(q * z).sum(axis=1)
        if not np.isfinite(per).all():
            # a class of weight 0 (not the target) with a log-probability of -inf adds 0,
            # not 0 * -inf = nan (PyTorch's finite loss for masked logits)
            with np.errstate(invalid="ignore"):
                per = -np.where(q != 0, q * z, 0).sum(axis=1).astype(x.dtype, copy=False)
        if reduction == "none":
            out, self.scale = per, 1.0
        elif reduction == "sum":
            out, self.scale = np.asarray(per.sum(), dtype=x.dtype), 1.0
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.asarray(per.sum() / denom, dtype=x.dtype)
                self.scale = 1.0 / denom if denom else np.nan
        self.from_logits = from_logits
        self.save_for_backward(q, z if from_logits else None)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        q, z = self.saved
        g = np.asarray(grad * self.scale, dtype=q.dtype)
        if g.ndim:
            g = np.expand_dims(g, 1)
        if self.from_logits:
            return (np.exp(z) * q.sum(axis=1, keepdims=True) - q) * g
        return -q * g


def _class_targets(
    input: Tensor,
    target: Any,
    weight: Tensor | None,
    ignore_index: int,
    label_smoothing: float,
    where: str,
) -> tuple[np.ndarray, float]:
    """The ``q`` matrix (shape of input) and the mean's denominator for class targets."""
    if input.ndim < 1:
        raise ValueError(f"{where}: expected input (N, C) or (N, C, *); got a scalar")
    x = input.array
    unbatched = input.ndim == 1
    c = x.shape[0] if unbatched else x.shape[1]
    t = np.asarray(target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{where}: label_smoothing must be in [0, 1]; got {label_smoothing}")
    w = None
    if weight is not None:
        w = np.asarray(weight, dtype=x.dtype)
        if w.shape != (c,):
            raise ValueError(f"{where}: expected weight of shape ({c},); got {w.shape}")
    cshape = (-1,) + (1,) * (x.ndim - 2) if not unbatched else (-1,)
    if t.dtype.kind == "f":  # class probabilities
        if t.shape != x.shape:
            raise ValueError(
                f"{where}: probability targets must have the input's shape {x.shape}; got {t.shape}"
            )
        q = t.astype(x.dtype)
        if label_smoothing:
            q = q * (1 - label_smoothing) + label_smoothing / c
        if w is not None:
            q = q * w.reshape(cshape)
        denom = float(x.size // c)
        return q, denom
    if t.dtype.kind not in "iu":
        raise TypeError(f"{where}: target must be class indices (int) or probabilities (float)")
    expected = x.shape[:1] + x.shape[2:] if not unbatched else ()
    if t.shape != expected:
        raise ValueError(
            f"{where}: expected class-index target of shape {expected} for input "
            f"{x.shape}; got {t.shape}"
        )
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= c))
    if bad.any():
        raise ValueError(
            f"{where}: target {int(t[bad].flat[0])} is out of range for {c} classes "
            f"(expected 0..{c - 1} or ignore_index={ignore_index})"
        )
    safe = np.where(valid, t, 0)
    onehot = np.zeros(x.shape, dtype=x.dtype)
    axis = 0 if unbatched else 1
    np.put_along_axis(onehot, np.expand_dims(safe, axis), 1.0, axis=axis)
    wy = np.ones(t.shape, dtype=x.dtype) if w is None else w[safe]
    wy = wy * valid
    q = onehot * np.expand_dims(wy * (1 - label_smoothing), axis)
    if label_smoothing:
        wc = np.ones(c, dtype=x.dtype) if w is None else w
        smooth = (label_smoothing / c) * wc.reshape(cshape) * np.expand_dims(valid, axis)
        q = q + smooth.astype(x.dtype)
    return q, float(wy.sum())


def _weighted_nll(
    input: Tensor,
    target: Any,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    from_logits: bool,
    where: str,
) -> Tensor:
    _check_reduction(reduction, where)
    if input.dtype.kind != "f":
        raise TypeError(f"{where}: expected a floating input; got {input.dtype}")
    q, denom = _class_targets(input, target, weight, ignore_index, label_smoothing, where)
    x = input if input.ndim > 1 else input.unsqueeze(0)
    if input.ndim == 1:
        q = q[None]
    out = WeightedNLL.apply(x, q, denom=denom, reduction=reduction, from_logits=from_logits)
    return out.squeeze(0) if input.ndim == 1 and reduction == "none" else out


def cross_entropy(
    input: Tensor,
    target: Any,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax + cross-entropy in one stable step (multiclass head on raw logits).

    Parameters
    ----------
    input : Tensor, shape (N, C) or (N, C, d1, ...) or (C,)
        Unnormalised scores (logits).
    target : Tensor or array
        Class indices, shape (N,) or (N, d1, ...), int; or class probabilities with the
        input's shape, float.
    weight : Tensor, shape (C,), optional
        Per-class weights; the mean divides by the summed weights of the targets.
    ignore_index : int
        Targets equal to it contribute nothing (index targets only).
    reduction : 'mean', 'sum' or 'none'
    label_smoothing : float in [0, 1]
        Mix the target with the uniform distribution.

    Returns
    -------
    Tensor, a scalar, or shape (N, d1, ...) with ``reduction='none'``.
    """
    return _weighted_nll(input, target, weight, ignore_index, reduction, label_smoothing,
                         True, "cross_entropy")  # fmt: skip


def nll_loss(
    input: Tensor,
    target: Any,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of class indices given log-probabilities (after
    ``log_softmax``).

    Parameters
    ----------
    input : Tensor, shape (N, C) or (N, C, d1, ...)
    target : Tensor or array of int, shape (N,) or (N, d1, ...)
    """
    t = np.asarray(target)
    if t.dtype.kind == "f":
        raise TypeError("nll_loss: target must be class indices (int)")
    return _weighted_nll(input, target, weight, ignore_index, reduction, 0.0, False, "nll_loss")


class _Elementwise(Function):
    """An element-wise loss ``l(x, t)`` reduced by ``reduction``: subclasses give the
    loss and its two partial derivatives on raw arrays."""

    def forward(self, x: np.ndarray, t: np.ndarray, reduction: str, **params: Any):
        self.params_ = params
        loss = self.loss(x, t, **params)
        if reduction == "batchmean":  # the sum over the batch's first dim, as PyTorch
            self.scale = 1.0 / (x.shape[0] if x.ndim else 1)
            out = np.asarray(loss.sum() * self.scale, dtype=loss.dtype)
        else:
            out, self.scale = _reduce_array(loss, reduction)
        self.save_for_backward(x, t)
        return out.astype(x.dtype, copy=False)

    def backward(self, grad: np.ndarray) -> tuple:
        x, t = self.saved
        nx, nt = self.needs_input_grad
        g = grad * self.scale
        with np.errstate(divide="ignore", invalid="ignore"):
            gx = (self.d_input(x, t, **self.params_) * g).astype(x.dtype) if nx else None
            gt = (self.d_target(x, t, **self.params_) * g).astype(t.dtype) if nt else None
        return gx, gt

    def loss(self, x: np.ndarray, t: np.ndarray, **params: Any) -> np.ndarray:
        raise NotImplementedError

    def d_input(self, x: np.ndarray, t: np.ndarray, **params: Any) -> np.ndarray:
        raise NotImplementedError

    def d_target(self, x: np.ndarray, t: np.ndarray, **params: Any) -> np.ndarray:
        return -self.d_input(x, t, **params)  # the losses of x - t


class KLDiv(_Elementwise):
    """``t (log t - x)`` (0 where ``t = 0``) with ``x`` log-probabilities; with
    ``log_target``, ``exp(t) (t - x)``. ``d/dx = -t`` (``-exp(t)``); ``d/dt = log t + 1 - x``
    (``exp(t) (t - x + 1)``)."""

    def loss(self, x: np.ndarray, t: np.ndarray, log_target: bool) -> np.ndarray:
        if log_target:
            return np.exp(t) * (t - x)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_log_t = np.where(t == 0, 0, t * np.log(np.where(t == 0, 1, t)))
        return t_log_t - t * x

    def d_input(self, x: np.ndarray, t: np.ndarray, log_target: bool) -> np.ndarray:
        return -np.exp(t) if log_target else -t

    def d_target(self, x: np.ndarray, t: np.ndarray, log_target: bool) -> np.ndarray:
        if log_target:
            return np.exp(t) * (t - x + 1)
        return np.log(t) + t / t - x  # 0 / 0 = nan at t = 0, as PyTorch's xlogy


class SmoothL1(_Elementwise):
    """With ``d = x - t``: ``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``
    (``beta = 0``: ``|d|``); ``d/dx = d / beta`` inside, ``sign(d)`` outside."""

    def loss(self, x: np.ndarray, t: np.ndarray, beta: float) -> np.ndarray:
        ad = np.abs(x - t)
        if beta == 0:
            return ad
        return np.where(ad < beta, 0.5 * ad * ad / beta, ad - 0.5 * beta)

    def d_input(self, x: np.ndarray, t: np.ndarray, beta: float) -> np.ndarray:
        d = x - t
        if beta == 0:
            return np.sign(d)
        return np.where(np.abs(d) < beta, d / beta, np.sign(d))


class Huber(_Elementwise):
    """With ``d = x - t``: ``0.5 d^2`` where ``|d| <= delta``, else
    ``delta (|d| - 0.5 delta)``; ``d/dx = clip(d, -delta, delta)``."""

    def loss(self, x: np.ndarray, t: np.ndarray, delta: float) -> np.ndarray:
        ad = np.abs(x - t)
        return np.where(ad <= delta, 0.5 * ad * ad, delta * (ad - 0.5 * delta))

    def d_input(self, x: np.ndarray, t: np.ndarray, delta: float) -> np.ndarray:
        return np.clip(x - t, -delta, delta)


def _legacy(size_average: Any, reduce: Any, where: str) -> None:
    """PyTorch's deprecated ``size_average`` / ``reduce`` arguments: refused, by name."""
    if size_average is not None or reduce is not None:
        raise ValueError(
            f"{where}: size_average and reduce are deprecated in PyTorch and not supported; "
            "use reduction='mean', 'sum' or 'none'"
        )


def _check_kl_reduction(reduction: str, where: str) -> None:
    if reduction not in (*_REDUCTIONS, "batchmean"):
        raise ValueError(
            f"{where}: reduction must be 'mean', 'batchmean', 'sum' or 'none'; got {reduction!r}"
        )


def _float_input(input: Any, where: str) -> None:
    if not isinstance(input, Tensor) or input.dtype.kind != "f":
        what = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(f"{where}: expected a floating-point Tensor as input, got {what}")


def _positive(value: Any, name: str, where: str, allow_zero: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{where}: {name} must be a finite number {bound}, got {value!r}")
    return float(value)


def kl_div(
    input: Tensor,
    target: Any,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    """Kullback-Leibler divergence ``sum t (log t - x)`` of the target distribution from
    the input's, as ``F.kl_div``.

    Parameters
    ----------
    input : Tensor, any shape
        Log-probabilities (e.g. ``log_softmax`` output).
    target : Tensor, same shape
        Probabilities, or log-probabilities with ``log_target=True``.
    reduction : 'mean', 'batchmean', 'sum' or 'none'
        ``'batchmean'`` (the true KL divergence per sample) divides the sum by
        ``input.shape[0]``; ``'mean'`` divides by the number of elements.
    """
    where = "kl_div"
    _legacy(size_average, reduce, where)
    _check_kl_reduction(reduction, where)
    _float_input(input, where)
    t = _target(target, input, where)
    return KLDiv.apply(input, t, reduction=reduction, log_target=bool(log_target))


def smooth_l1_loss(
    input: Tensor,
    target: Any,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:
    """Smooth L1 loss: quadratic ``0.5 d^2 / beta`` for ``|d| < beta``, ``|d| - 0.5 beta``
    beyond (``d = input - target``), as ``F.smooth_l1_loss``.

    Parameters
    ----------
    input, target : Tensor, same shape
    reduction : 'mean', 'sum' or 'none'
    beta : float
        Where the loss turns linear (``>= 0``; ``0`` is the L1 loss).
    """
    where = "smooth_l1_loss"
    _legacy(size_average, reduce, where)
    _check_reduction(reduction, where)
    _float_input(input, where)
    b = _positive(beta, "beta", where, allow_zero=True)
    return SmoothL1.apply(input, _target(target, input, where), reduction=reduction, beta=b)


def huber_loss(input: Tensor, target: Any, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """Huber loss: ``0.5 d^2`` for ``|d| <= delta``, ``delta (|d| - 0.5 delta)`` beyond,
    as ``F.huber_loss`` (``smooth_l1_loss`` with ``beta = delta``, times ``delta``).

    Parameters
    ----------
    input, target : Tensor, same shape
    reduction : 'mean', 'sum' or 'none'
    delta : float
        Where the loss turns linear (``> 0``).
    """
    where = "huber_loss"
    _check_reduction(reduction, where)
    _float_input(input, where)
    d = _positive(delta, "delta", where, allow_zero=False)
    return Huber.apply(input, _target(target, input, where), reduction=reduction, delta=d)
