"""Parameter initialisation in place (PyTorch's ``nn.init`` names and formulas).

All draws use the global generator (``ck.manual_seed``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnkit import backend
from cnnkit.tensor import Tensor


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """``fan_in = size(1) * receptive field``, ``fan_out = size(0) * receptive field``."""
    if tensor.ndim < 2:
        raise ValueError(
            f"fan in and fan out need a tensor with at least 2 dims; got shape {tensor.shape}"
        )
    receptive = int(np.prod(tensor.shape[2:])) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain for an activation (``'relu'``: sqrt(2), ``'tanh'``: 5/3, ...)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "sigmoid", "conv_transpose2d")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fill(tensor: Tensor, values: np.ndarray) -> Tensor:
    tensor.array[...] = values.astype(tensor.dtype, copy=False)
    tensor._bump_version("nn.init")
    return tensor


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with U(a, b) (a 'meta' tensor has no values: left as is)."""
    if backend.is_meta(tensor):
        return tensor
    return _fill(tensor, backend.default_rng().uniform(a, b, tensor.shape))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with N(mean, std^2) (a 'meta' tensor has no values: left as is)."""
    if backend.is_meta(tensor):
        return tensor
    return _fill(tensor, backend.default_rng().normal(mean, std, tensor.shape))


def constant_(tensor: Tensor, val: float) -> Tensor:
    if not backend.is_meta(tensor):
        tensor.array[...] = val
        tensor._bump_version("nn.init")
    return tensor


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot uniform: ``U(-a, a)``, ``a = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot normal: ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out'; got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(
    tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """He uniform: ``U(-b, b)``, ``b = gain * sqrt(3 / fan)``.

    With ``a = sqrt(5)`` (the layers' default) this is ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
    """
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(
    tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """He normal: ``std = gain / sqrt(fan)``."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def default_init(weight: Tensor, bias: Tensor | None, fan_in: int | None = None) -> None:
    """PyTorch's Linear/Conv default: weight ``kaiming_uniform_(a=sqrt(5))``, bias
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    if fan_in is None:
        kaiming_uniform_(weight, a=math.sqrt(5))
        fan_in = _calculate_fan_in_and_fan_out(weight)[0]
    else:  # weights laid out differently (locally connected): use the given fan-in
        bound = 1.0 / math.sqrt(fan_in)
        uniform_(weight, -bound, bound)
    if bias is not None:
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound)


def _rng(generator: Any, where: str) -> np.random.Generator:
    from cnnkit.torch_functions import _rng_of

    return _rng_of(generator, where)


def orthogonal_(tensor: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    """Fill with a (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2013).

    The tensor is seen as ``(rows, cols) = (size(0), numel / size(0))``; a Gaussian
    matrix of the taller of that shape and its transpose is QR-factorised and ``Q`` (its
    columns' signs fixed by ``R``'s diagonal, so that ``Q`` is uniformly distributed) is
    used: ``rows <= cols`` gives orthonormal rows, otherwise orthonormal columns.

    Parameters
    ----------
    tensor : Tensor, at least 2 dims
    gain : float
    generator : cnnkit.Generator, optional
    """
    if tensor.ndim < 2:
        raise ValueError(
            f"orthogonal_: only tensors with 2 or more dimensions are supported; got shape "
            f"{tuple(tensor.shape)}"
        )
    if backend.is_meta(tensor) or tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    a = _rng(generator, "orthogonal_").standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # a zero diagonal entry has probability 0
    if rows < cols:
        q = q.T
    return _fill(tensor, gain * q.reshape(tensor.shape))


def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: Any = None,
) -> Tensor:
    """Fill with ``N(mean, std^2)`` conditioned on ``[a, b]`` (``a``, ``b`` are values,
    not numbers of standard deviations, as in PyTorch).

    Drawn exactly by rejection: normal draws outside ``[a, b]`` are drawn again. The
    interval must hold at least 1e-4 of the distribution's mass (e.g. ``a`` no further
    than 3.7 std beyond the mean when ``b`` is infinite).

    Parameters
    ----------
    tensor : Tensor
    mean, std : float (``std > 0``)
    a, b : float, ``a < b``
    generator : cnnkit.Generator, optional
    """
    where = "trunc_normal_"
    if not std > 0:
        raise ValueError(f"{where}: std must be positive; got {std}")
    if not a < b:
        raise ValueError(f"{where}: expected a < b; got a={a}, b={b}")
    lo, hi = (a - mean) / std, (b - mean) / std
    mass = 0.5 * (math.erf(hi / math.sqrt(2)) - math.erf(lo / math.sqrt(2)))
    if mass < 1e-4:
        raise ValueError(
            f"{where}: [a, b] = [{a}, {b}] holds only {mass:.2g} of N({mean}, {std}^2)'s "
            "mass (at least 1e-4 needed); move the interval towards the mean"
        )
    if backend.is_meta(tensor):
        return tensor
    rng = _rng(generator, where)
    n = tensor.numel()
    out = np.empty(n, dtype=np.float64)
    filled = 0
    while filled < n:
        need = n - filled
        z = rng.standard_normal(int(need / mass * 1.1) + 16)
        z = z[(z >= lo) & (z <= hi)][:need]
        out[filled : filled + z.size] = z
        filled += z.size
    return _fill(tensor, (mean + std * out).reshape(tensor.shape))
