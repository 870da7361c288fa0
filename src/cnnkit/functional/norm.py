"""Normalisation: batch normalisation over the batch (and spatial) axes per channel;
layer and group normalisation over the axes of each sample.

Batch normalisation's equations are :func:`batch_norm_reference` (forward) and
:func:`batch_norm_reference_backward`; float32 images run the compiled one-pass kernels
of :mod:`cnnkit.functional._fast.norm` through the same signatures.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from cnnkit.autograd import Function
from cnnkit.functional._fast import norm as fast
from cnnkit.tensor import Tensor


def batch_norm_reference(
    x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None, mean: np.ndarray,
    invstd: np.ndarray, relu: bool,
) -> tuple[np.ndarray, tuple]:  # fmt: skip
    """``y = gamma * xh + beta`` with ``xh = (x - mean) * invstd`` per channel (axis 1),
    then ``max(y, 0)`` if ``relu``; keeps ``xh`` (and ``y`` with ``relu``) for backward."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    xh = (x - mean.reshape(shape)) * invstd.reshape(shape)
    out = xh * gamma.reshape(shape) if gamma is not None else xh.copy()
    if beta is not None:
        out += beta.reshape(shape)
    if relu:
        np.maximum(out, 0, out=out)
    return out, (xh, out if relu else None)


def batch_norm_reference_backward(
    grad: np.ndarray, saved: tuple, gamma: np.ndarray | None, mean: np.ndarray,
    invstd: np.ndarray, batch_stats: bool, needs: tuple[bool, bool, bool],
) -> tuple:  # fmt: skip
    """``(dx, dgamma, dbeta)``. With ``g`` the gradient through the ReLU (if fused),
    ``dgamma = sum(g * xh)``, ``dbeta = sum(g)``; training (batch statistics, ``M`` values
    per channel): ``dx = gamma * invstd / M * (M * g - dbeta - xh * dgamma)``;
    evaluation (running statistics are constants): ``dx = g * gamma * invstd``."""
    xh, y = saved
    if y is not None:
        grad = grad * (y > 0)
    need_x, need_g, need_b = needs
    shape = (1, -1) + (1,) * (grad.ndim - 2)
    axes = (0, *range(2, grad.ndim))
    dgamma = (grad * xh).sum(axis=axes) if (need_g or (need_x and batch_stats)) else None
    dbeta = grad.sum(axis=axes) if (need_b or (need_x and batch_stats)) else None
    dx = None
    if need_x:
        scale = invstd if gamma is None else gamma * invstd
        if batch_stats:
            m = grad.size // grad.shape[1]
            dx = grad - (dbeta / m).reshape(shape) - xh * (dgamma / m).reshape(shape)
            dx *= scale.reshape(shape)
        else:
            dx = grad * scale.reshape(shape)
    return dx, (dgamma if need_g else None), (dbeta if need_b else None)


def batch_statistics_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance per channel (axis 1), in two passes."""
    axes = (0, *range(2, x.ndim))
    return x.mean(axis=axes), x.var(axis=axes)


_REFERENCE = SimpleNamespace(
    statistics=batch_statistics_reference,
    forward=batch_norm_reference,
    backward=batch_norm_reference_backward,
)


def _path(x: np.ndarray) -> Any:
    """The one choice: compiled one-pass kernels for float32 ``(N, C, H, W)`` where built,
    else the reference maths (float64, 1-D/3-D inputs)."""
    return fast if fast.applies(x) else _REFERENCE


class BatchNorm(Function):
    """``y = gamma * (x - mu) / sqrt(var + eps) + beta`` per channel (axis 1), optionally
    followed by a ReLU (``relu=True``: one op, no intermediate kept).

    The maths is :func:`batch_norm_reference` and :func:`batch_norm_reference_backward`
    (float64 and the test oracle); float32 images take the compiled kernels of
    :mod:`cnnkit.functional._fast.norm`.
    """

    def forward(
        self,
        x: np.ndarray,
        gamma: np.ndarray | None,
        beta: np.ndarray | None,
        mean: np.ndarray,
        invstd: np.ndarray,
        batch_stats: bool,
        relu: bool = False,
    ) -> np.ndarray:
        self.path = _path(x)
        out, saved = self.path.forward(x, gamma, beta, mean, invstd, relu)
        self.save_for_backward(saved, gamma, mean, invstd)
        self.batch_stats = batch_stats
        return out

    def backward(self, grad: np.ndarray) -> tuple:
        saved, gamma, mean, invstd = self.saved
        return self.path.backward(
            grad, saved, gamma, mean, invstd, self.batch_stats, self.needs_input_grad
        )


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    relu: bool = False,
) -> Tensor:
    """Batch normalisation (PyTorch semantics).

    Training normalises with the batch mean and biased variance and updates the running
    statistics in place: ``running = (1 - momentum) * running + momentum * batch``, the
    variance unbiased (``* M / (M - 1)``). Evaluation uses the running statistics.

    Parameters
    ----------
    input : Tensor, shape (N, C) or (N, C, L) or (N, C, H, W)
    running_mean, running_var : Tensor, shape (C,), optional
    weight, bias : Tensor, shape (C,), optional
    relu : bool
        Apply a ReLU to the result in the same op (the values and gradients of
        ``relu(batch_norm(...))``, without the intermediate tensor).

    Returns
    -------
    Tensor, same shape as ``input``
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected input (N, C, *); got {tuple(input.shape)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):  # fmt: skip
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(
                f"batch_norm: expected {name} of shape ({c},) for input {tuple(input.shape)}; "
                f"got {tuple(t.shape)}"
            )
    x = input.array
    if training:
        m = x.size // c
        if m <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training; got input "
                f"{tuple(input.shape)}"
            )
        mean, var = _path(x).statistics(x)
        if running_mean is not None:
            running_mean.array *= 1 - momentum
            running_mean.array += momentum * mean.astype(running_mean.dtype)
        if running_var is not None:
            running_var.array *= 1 - momentum
            running_var.array += momentum * (var * (m / (m - 1))).astype(running_var.dtype)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation mode needs running_mean and running_var")
        mean = running_mean.array
        var = running_var.array
    invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    return BatchNorm.apply(
        input,
        weight,
        bias,
        mean=mean.astype(x.dtype),
        invstd=invstd,
        batch_stats=training,
        relu=bool(relu),
    )


class SyncBatchNorm(Function):
    """Batch normalisation with statistics over every rank's batch (data parallel).

    The forward is :func:`batch_norm_reference` with the global mean and variance. In
    backward the two per-channel sums of the input gradient formula, ``sum(g)`` and
    ``sum(g * xh)``, are summed over all ranks (one allreduce of ``2C`` values) and
    divided by the global count ``M``; ``dgamma`` and ``dbeta`` stay this rank's sums
    (data-parallel training averages them like every other parameter gradient).
    """

    def forward(self, x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None,
                mean: np.ndarray, invstd: np.ndarray, count: int) -> np.ndarray:  # fmt: skip
        self.count = count  # values per channel over all ranks
        out, (xh, _) = batch_norm_reference(x, gamma, beta, mean, invstd, relu=False)
        self.save_for_backward(xh, invstd, gamma)
        return out

    def backward(self, grad: np.ndarray) -> tuple:
        from cnnkit import distributed as dist

        xh, invstd, gamma = self.saved
        nx, ng, nb = self.needs_input_grad
        shape = (1, -1) + (1,) * (grad.ndim - 2)
        axes = (0, *range(2, grad.ndim))
        dgamma = (grad * xh).sum(axis=axes)
        dbeta = grad.sum(axis=axes)
        dx = None
        if nx:
            sums = np.concatenate([dbeta, dgamma])
            dist.all_reduce(sums)
            c = dbeta.shape[0]
            m = self.count
            scale = invstd if gamma is None else gamma * invstd
            dx = grad - (sums[:c] / m).reshape(shape) - xh * (sums[c:] / m).reshape(shape)
            dx *= scale.reshape(shape)
        return dx, (dgamma if ng else None), (dbeta if nb else None)


def sync_batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Training-mode batch normalisation over the union of all ranks' batches.

    Per channel, over ``M`` values of all ranks: ``mean = sum(x) / M`` (one allreduce
    of ``C`` sums and the count), ``var = sum((x - mean)^2) / M`` (a second allreduce,
    so the variance is as accurate as the one-process two-pass formula). The running
    statistics are updated as in :func:`batch_norm` with the global ``M``.

    Parameters
    ----------
    input : Tensor, shape (N, C, *)
        This rank's batch (``N`` may differ between ranks).
    running_mean, running_var : Tensor, shape (C,), optional
    weight, bias : Tensor, shape (C,), optional

    Returns
    -------
    Tensor, same shape as ``input``
    """
    from cnnkit import distributed as dist

    if input.ndim < 2:
        raise ValueError(f"sync_batch_norm: expected input (N, C, *); got {tuple(input.shape)}")
    x = input.numpy()
    c = x.shape[1]
    axes = (0, *range(2, x.ndim))
    first = np.concatenate([x.sum(axis=axes, dtype=np.float64), [x.size // c]])
    dist.all_reduce(first)
    m = round(float(first[-1]))
    if m <= 1:
        raise ValueError(
            f"sync_batch_norm: expected more than 1 value per channel over all ranks when "
            f"training; got {m} (input {tuple(input.shape)} on this rank)"
        )
    mean = first[:c] / m
    shape = (1, -1) + (1,) * (x.ndim - 2)
    sq = ((x - mean.astype(x.dtype).reshape(shape)) ** 2).sum(axis=axes, dtype=np.float64)
    dist.all_reduce(sq)
    var = sq / m
    if running_mean is not None:
        rm = running_mean.numpy()
        rm *= 1 - momentum
        rm += momentum * mean.astype(rm.dtype)
    if running_var is not None:
        rv = running_var.numpy()
        rv *= 1 - momentum
        rv += momentum * (var * (m / (m - 1))).astype(rv.dtype)
    invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    return SyncBatchNorm.apply(
        input, weight, bias, mean=mean.astype(x.dtype), invstd=invstd, count=m
    )


class Normalize(Function):
    """``y = x / max(||x||_p, eps)`` along ``dim``. With ``n = ||x||_p`` above ``eps``:
    ``dx = g / n - (sum(g x) / n^2) dn/dx``, where ``dn/dx = sign(x) |x|^(p-1) / n^(p-1)``
    (for ``p = inf``: ``sign(x)`` at the largest ``|x|``, ties sharing it); at or below
    ``eps`` the norm is a constant and ``dx = g / eps``."""

    def forward(self, x: np.ndarray, p: float, dim: int, eps: float) -> np.ndarray:
        ax = np.abs(x)
        if p == np.inf:
            n = ax.max(axis=dim, keepdims=True)
        elif p == 2:
            n = np.sqrt((x * x).sum(axis=dim, keepdims=True))
        else:
            n = (ax**p).sum(axis=dim, keepdims=True) ** (1.0 / p)
        denom = np.maximum(n, x.dtype.type(eps))
        self.p, self.dim = p, dim
        self.save_for_backward(x, n, denom, n >= eps)  # clamp_min passes at eps
        return (x / denom).astype(x.dtype, copy=False)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        x, n, denom, above = self.saved
        p, dim = self.p, self.dim
        with np.errstate(divide="ignore", invalid="ignore"):
            if p == np.inf:
                top = np.abs(x) == n
                dn = np.sign(x) * top / top.sum(axis=dim, keepdims=True)
            elif p == 2:
                dn = x / n
            else:
                # 0 where x = 0 (also for p < 1, where |x|^(p-1) is infinite), as PyTorch
                dn = np.where(x == 0, 0, np.sign(x) * (np.abs(x) / n) ** (p - 1))
            dn = np.where(above, dn, 0)
        gx = grad / denom - (grad * x).sum(axis=dim, keepdims=True) / denom**2 * dn
        return gx.astype(grad.dtype, copy=False)


def normalize(
    input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: Any = None
) -> Tensor:
    """Scale slices along ``dim`` to unit ``p``-norm: ``x / max(||x||_p, eps)``.

    Parameters
    ----------
    input : Tensor, any shape with at least one dim, floating point
    p : float
        The norm's exponent (positive, may be ``inf``).
    dim : int
        The dimension whose slices are normalised (``1``: each row of ``(n, d)``).
    eps : float
        Lower bound on the divisor (a zero slice stays zero).
    """
    if out is not None:
        raise ValueError("normalize: out= is not supported; use the returned tensor")
    if not isinstance(input, Tensor) or input.dtype.kind != "f":
        what = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(f"normalize: expected a floating-point Tensor, got {what}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0:
        raise ValueError(f"normalize: p must be a positive number (or inf), got {p!r}")
    nd = max(input.ndim, 1)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not -nd <= dim < nd:
        raise ValueError(
            f"normalize: dim {dim!r} is out of range for input of shape {tuple(input.shape)}"
        )
    x = input if input.ndim else input.reshape(1)
    y = Normalize.apply(x, p=float(p), dim=int(dim) % nd, eps=float(eps))
    return y if input.ndim else y.reshape(())


class CosineSimilarity(Function):
    """``out = sum(x1 x2) / (d1 d2)`` along ``dim``, ``d = max(||x||, eps)``, for inputs of
    one shape.

    Backward, with ``g`` the output gradient spread along ``dim``:
    ``dx1 = g (x2 / (d1 d2) - out x1 / (d1 n1))`` and the same with 1 and 2 swapped,
    where ``n = ||x||``. As in PyTorch, the clamp of the norm at ``eps`` is not
    differentiated (the norm's own derivative ``x / n`` is used even below ``eps``), and
    a zero vector has derivative ``x / n = 0``.
    """

    def forward(self, x1: np.ndarray, x2: np.ndarray, dim: int, eps: float) -> np.ndarray:
        n1 = np.sqrt((x1 * x1).sum(axis=dim, keepdims=True))
        n2 = np.sqrt((x2 * x2).sum(axis=dim, keepdims=True))
        d1, d2 = np.maximum(n1, eps), np.maximum(n2, eps)
        out = (x1 * x2).sum(axis=dim, keepdims=True) / (d1 * d2)
        self.dim = dim
        self.save_for_backward(x1, x2, n1, n2, d1, d2, out)
        return np.squeeze(out, axis=dim).astype(x1.dtype, copy=False)

    def backward(self, grad: np.ndarray) -> tuple:
        x1, x2, n1, n2, d1, d2, out = self.saved
        g = np.expand_dims(grad, self.dim)
        with np.errstate(divide="ignore", invalid="ignore"):
            r1 = np.where(n1 > 0, x1 / (d1 * n1), 0.0)
            r2 = np.where(n2 > 0, x2 / (d2 * n2), 0.0)
        g1 = g * (x2 / (d1 * d2) - out * r1) if self.needs_input_grad[0] else None
        g2 = g * (x1 / (d1 * d2) - out * r2) if self.needs_input_grad[1] else None
        return (
            None if g1 is None else g1.astype(grad.dtype, copy=False),
            None if g2 is None else g2.astype(grad.dtype, copy=False),
        )


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Cosine of the angle between ``x1`` and ``x2`` along ``dim``, after broadcasting
    them to one shape: ``sum(x1 / max(||x1||, eps) * x2 / max(||x2||, eps))``, each norm
    clamped on its own (as PyTorch).

    Parameters
    ----------
    x1, x2 : Tensor, broadcastable, floating point; e.g. ``(1, d)`` against ``(n, d)``
    dim : int
        The dimension holding the vectors' components.
    eps : float
        Lower bound on each norm (a zero vector gives similarity 0).

    Returns
    -------
    Tensor
        The broadcast shape without ``dim``: ``(n,)`` for the example above.
    """
    for name, x in (("x1", x1), ("x2", x2)):
        if not isinstance(x, Tensor) or x.dtype.kind != "f":
            what = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(
                f"cosine_similarity: {name} must be a floating-point Tensor, got {what}"
            )
    try:
        shape = np.broadcast_shapes(tuple(x1.shape), tuple(x2.shape))
    except ValueError:
        raise ValueError(
            f"cosine_similarity: x1 of shape {tuple(x1.shape)} and x2 of shape "
            f"{tuple(x2.shape)} do not broadcast"
        ) from None
    nd = max(len(shape), 1)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not -nd <= dim < nd:
        raise ValueError(f"cosine_similarity: dim {dim!r} is out of range for shape {shape}")
    # expand's backward sums the gradient back to a broadcast input's shape
    a = x1.expand(*shape) if tuple(x1.shape) != shape else x1
    b = x2.expand(*shape) if tuple(x2.shape) != shape else x2
    return CosineSimilarity.apply(a, b, dim=int(dim) % nd, eps=float(eps))


def _standardize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> tuple[np.ndarray, np.ndarray]:
    """``xh = (x - mean) * invstd`` over ``axes`` (biased variance); returns ``xh`` and
    ``invstd`` (kept dims)."""
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=axes, keepdims=True)
    invstd = 1.0 / np.sqrt(var + eps)
    return centred * invstd, invstd


def _standardize_backward(
    dxh: np.ndarray, xh: np.ndarray, invstd: np.ndarray, axes: tuple[int, ...]
) -> np.ndarray:
    """Input gradient of :func:`_standardize` given ``dxh = dL/dxh``:
    ``dx = invstd * (dxh - mean(dxh) - xh * mean(dxh * xh))``, means over ``axes``."""
    m1 = dxh.mean(axis=axes, keepdims=True)
    m2 = (dxh * xh).mean(axis=axes, keepdims=True)
    return invstd * (dxh - m1 - xh * m2)


class LayerNorm(Function):
    """``y = gamma * xh + beta`` with ``xh`` the input standardised over its last ``k``
    axes (one mean and variance per leading index); ``gamma``, ``beta`` have the shape of
    those ``k`` axes.

    Backward: ``dgamma = sum g * xh``, ``dbeta = sum g`` over the leading axes;
    ``dx = invstd * (d - mean(d) - xh * mean(d * xh))`` with ``d = g * gamma``, the means
    over the normalised axes.
    """

    def forward(self, x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None,
                k: int, eps: float) -> np.ndarray:  # fmt: skip
        axes = tuple(range(x.ndim - k, x.ndim))
        xh, invstd = _standardize(x, axes, eps)
        out = xh * gamma if gamma is not None else xh.copy()
        if beta is not None:
            out += beta
        self.axes = axes
        self.save_for_backward(xh, invstd, gamma)
        return out.astype(x.dtype, copy=False)

    def backward(self, grad: np.ndarray) -> tuple:
        xh, invstd, gamma = self.saved
        nx, ng, nb = self.needs_input_grad
        lead = tuple(range(grad.ndim - len(self.axes)))
        dx = None
        if nx:
            d = grad * gamma if gamma is not None else grad
            dx = _standardize_backward(d, xh, invstd, self.axes)
        dgamma = (grad * xh).sum(axis=lead) if ng else None
        dbeta = grad.sum(axis=lead) if nb else None
        return dx, dgamma, dbeta


def _check_affine(t: Any, shape: tuple[int, ...], name: str, where: str, x_shape: tuple) -> None:
    if t is not None and tuple(t.shape) != shape:
        raise ValueError(
            f"{where}: expected {name} of shape {shape} for input {x_shape}; got {tuple(t.shape)}"
        )


def layer_norm(
    input: Tensor,
    normalized_shape: int | tuple[int, ...] | list[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Layer normalisation: standardise over the last ``len(normalized_shape)`` axes of
    each sample, then scale and shift elementwise.

    Parameters
    ----------
    input : Tensor, shape (*, *normalized_shape)
    normalized_shape : int or tuple of int
        The trailing shape to normalise over.
    weight, bias : Tensor, shape normalized_shape, optional
    eps : float
        Added to the variance.

    Returns
    -------
    Tensor, the input's shape
    """
    where = "layer_norm"
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if not isinstance(input, Tensor):
        raise TypeError(f"{where}: input must be a cnnkit Tensor; got {type(input).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"{where}: expected a floating input; got dtype {input.dtype}")
    if k == 0 or input.ndim < k or tuple(input.shape[input.ndim - k :]) != shape:
        raise ValueError(
            f"{where}: expected input of shape (*, {', '.join(map(str, shape))}) "
            f"(normalized_shape={shape}); got {tuple(input.shape)}"
        )
    _check_affine(weight, shape, "weight", where, tuple(input.shape))
    _check_affine(bias, shape, "bias", where, tuple(input.shape))
    return LayerNorm.apply(input, weight, bias, k=k, eps=float(eps))


class GroupNorm(Function):
    """``y = gamma_c * xh + beta_c`` with ``xh`` standardised over each group of
    ``C / G`` channels and all spatial positions of one sample; ``gamma``, ``beta`` (C,).

    Backward as :class:`LayerNorm` over the group axes: with ``d = g * gamma_c`` reshaped
    to ``(N, G, -1)``, ``dx = invstd * (d - mean(d) - xh * mean(d * xh))``;
    ``dgamma_c = sum g * xh``, ``dbeta_c = sum g`` over the batch and spatial axes.
    """

    def forward(self, x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None,
                groups: int, eps: float) -> np.ndarray:  # fmt: skip
        n = x.shape[0]
        xh, invstd = _standardize(x.reshape(n, groups, -1), (2,), eps)
        xh = xh.reshape(x.shape)
        cshape = (1, -1) + (1,) * (x.ndim - 2)
        out = xh * gamma.reshape(cshape) if gamma is not None else xh.copy()
        if beta is not None:
            out += beta.reshape(cshape)
        self.groups = groups
        self.save_for_backward(xh, invstd, gamma)
        return out.astype(x.dtype, copy=False)

    def backward(self, grad: np.ndarray) -> tuple:
        xh, invstd, gamma = self.saved
        nx, ng, nb = self.needs_input_grad
        n = grad.shape[0]
        cshape = (1, -1) + (1,) * (grad.ndim - 2)
        axes = (0, *range(2, grad.ndim))
        dx = None
        if nx:
            d = grad * gamma.reshape(cshape) if gamma is not None else grad
            dx = _standardize_backward(
                d.reshape(n, self.groups, -1), xh.reshape(n, self.groups, -1), invstd, (2,)
            ).reshape(grad.shape)
        dgamma = (grad * xh).sum(axis=axes) if ng else None
        dbeta = grad.sum(axis=axes) if nb else None
        return dx, dgamma, dbeta


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Group normalisation: standardise each sample over groups of ``C / num_groups``
    channels (and all their positions), then scale and shift per channel.

    Parameters
    ----------
    input : Tensor, shape (N, C, *)
    num_groups : int, divides C
    weight, bias : Tensor, shape (C,), optional
    eps : float

    Returns
    -------
    Tensor, the input's shape
    """
    where = "group_norm"
    if not isinstance(input, Tensor):
        raise TypeError(f"{where}: input must be a cnnkit Tensor; got {type(input).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"{where}: expected a floating input; got dtype {input.dtype}")
    if input.ndim < 2:
        raise ValueError(f"{where}: expected input (N, C, *); got {tuple(input.shape)}")
    c = input.shape[1]
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)):
        raise TypeError(f"{where}: num_groups must be an int; got {num_groups!r}")
    if num_groups < 1 or c % num_groups:
        raise ValueError(
            f"{where}: num_groups={num_groups} must be positive and divide the {c} channels "
            f"of input {tuple(input.shape)}"
        )
    _check_affine(weight, (c,), "weight", where, tuple(input.shape))
    _check_affine(bias, (c,), "bias", where, tuple(input.shape))
    return GroupNorm.apply(input, weight, bias, groups=int(num_groups), eps=float(eps))
