"""Shape arithmetic of convolution and pooling, and the geometry records the ops carry.

A :class:`ConvGeometry` or :class:`PoolGeometry` is worked out once, when the op is
called, from the user's arguments (after checking them), and read by name afterwards by
the reference maths, the fast paths and the backward pass.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from cnnkit.functional._windows import Pair, kernel_slice, out_size, pair

Pads = tuple[int, int, int, int]  # (top, bottom, left, right)


def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Spatial output size of a convolution or pooling: ``(W - F + 2P) / S + 1`` (floored).

    >>> conv_output_size(32, 5)  # 32x32 input, 5x5 filter, stride 1, no padding
    28
    """
    return out_size(size, kernel_size, stride, 2 * padding, dilation)


def resolve_padding(padding: Any, kernel: Pair, stride: Pair, dilation: Pair, where: str) -> Pads:
    """``(top, bottom, left, right)`` for an int, a pair, ``'valid'`` or ``'same'``.

    ``'same'`` (stride 1 only, as in PyTorch) pads ``dilation*(k-1)`` in total, the odd
    one on the bottom/right.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{where}: padding='same' needs stride 1; got stride {stride}")
            th = dilation[0] * (kernel[0] - 1)
            tw = dilation[1] * (kernel[1] - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        raise ValueError(
            f"{where}: padding must be an int, a pair, 'same' or 'valid'; got {padding!r}"
        )
    ph, pw = pair(padding, "padding", where)
    return (ph, ph, pw, pw)


def spatial_output(
    x_shape: tuple[int, ...], kernel: Pair, stride: Pair, dilation: Pair, pads: Pads, where: str
) -> Pair:
    """Output ``(OH, OW)``; raises when the (dilated) kernel exceeds the padded input."""
    h, w = x_shape[2:]
    eff = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    if eff[0] > hp or eff[1] > wp:
        raise ValueError(
            f"{where}: kernel {eff[0]}x{eff[1]} (after dilation) is larger than the padded "
            f"input {hp}x{wp} (input {h}x{w}, padding {pads})"
        )
    return (
        out_size(h, kernel[0], stride[0], pads[0] + pads[1], dilation[0]),
        out_size(w, kernel[1], stride[1], pads[2] + pads[3], dilation[1]),
    )


@dataclass(frozen=True)
class ConvGeometry:
    """One convolution's shapes and settings.

    Attributes
    ----------
    x_shape : (N, C_in, H, W)
    w_shape : (C_out, C_in / groups, KH, KW)
    stride, dilation : (int, int)
    pads : (top, bottom, left, right)
    groups : int
    out_hw : (OH, OW)
    """

    x_shape: tuple[int, int, int, int]
    w_shape: tuple[int, int, int, int]
    stride: Pair
    pads: Pads
    dilation: Pair
    groups: int
    out_hw: Pair

    @property
    def kernel(self) -> Pair:
        """``(KH, KW)``."""
        return (self.w_shape[2], self.w_shape[3])

    @property
    def padded_hw(self) -> Pair:
        """``(Hp, Wp)``: the input's height and width with the padding."""
        top, bottom, left, right = self.pads
        return (self.x_shape[2] + top + bottom, self.x_shape[3] + left + right)

    @property
    def positions(self) -> int:
        """``OH * OW``."""
        return self.out_hw[0] * self.out_hw[1]

    @property
    def macs(self) -> int:
        """Multiply-adds of the forward (each gradient takes as many):
        ``N * OH * OW * OC * Cg * KH * KW``."""
        oc, cg, kh, kw = self.w_shape
        return self.x_shape[0] * self.positions * oc * cg * kh * kw


@dataclass(frozen=True)
class PoolGeometry:
    """One pooling's window settings and the kernel taps derived from them.

    ``pads`` includes the extra bottom/right padding that lets a ceil-mode last window
    fit in the array. ``taps`` holds, per kernel position in row-major order, the index
    of the padded-input elements it reads for every output; ``disjoint``: windows do not
    overlap; ``covered``: they tile the padded input exactly.
    """

    kernel: Pair
    stride: Pair
    dilation: Pair
    pads: Pads
    out_hw: Pair
    taps: tuple
    disjoint: bool
    covered: bool


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size; in ceil mode the last window must start inside
    the input or the left padding."""
    eff = d * (k - 1) + 1
    num = size + 2 * p - eff + ((s - 1) if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool_geometry(
    kernel_size: int | Pair,
    stride: int | Pair | None,
    padding: int | Pair,
    dilation: int | Pair,
    ceil_mode: bool,
    hw: Pair,
    where: str,
) -> PoolGeometry:
    """The :class:`PoolGeometry` of a pooling over an ``hw`` input (cached per arguments:
    the same layer sees the same sizes every step)."""
    args = (kernel_size, stride, padding, dilation, bool(ceil_mode), *hw, where)
    try:
        return _pool_geometry(*args)
    except TypeError as e:  # unhashable arguments (lists): work it out uncached
        if "unhashable" not in str(e):
            raise
        return _pool_geometry.__wrapped__(*args)


@functools.lru_cache(maxsize=1024)
def _pool_geometry(
    kernel_size: int | Pair,
    stride: int | Pair | None,
    padding: int | Pair,
    dilation: int | Pair,
    ceil_mode: bool,
    h: int,
    w: int,
    where: str,
) -> PoolGeometry:
    k = pair(kernel_size, "kernel_size", where, 1)
    s = k if stride is None or stride == () else pair(stride, "stride", where, 1)
    p = pair(padding, "padding", where, 0)
    d = pair(dilation, "dilation", where, 1)
    for i in range(2):
        eff = d[i] * (k[i] - 1) + 1
        if 2 * p[i] > eff:
            raise ValueError(
                f"{where}: padding should be at most half of the (dilated) kernel size; got "
                f"padding {p}, kernel_size {k}, dilation {d}"
            )
    out = (
        _pool_out(h, k[0], s[0], p[0], d[0], ceil_mode),
        _pool_out(w, k[1], s[1], p[1], d[1], ceil_mode),
    )
    if min(out) < 1:
        raise ValueError(
            f"{where}: kernel {k} (dilation {d}) is larger than the padded input "
            f"{h + 2 * p[0]}x{w + 2 * p[1]}; output would be {out[0]}x{out[1]}"
        )
    # extra bottom/right padding so the last (ceil-mode) window fits in the array
    extra_h = max(0, (out[0] - 1) * s[0] + d[0] * (k[0] - 1) + 1 - (h + 2 * p[0]))
    extra_w = max(0, (out[1] - 1) * s[1] + d[1] * (k[1] - 1) + 1 - (w + 2 * p[1]))
    pads = (p[0], p[0] + extra_h, p[1], p[1] + extra_w)
    hw_padded = (h + pads[0] + pads[1], w + pads[2] + pads[3])
    taps = tuple(kernel_slice(t // k[1], t % k[1], s, d, out) for t in range(k[0] * k[1]))
    disjoint = all(st >= dd * (kk - 1) + 1 for st, dd, kk in zip(s, d, k, strict=True))
    covered = (
        disjoint and all(o * st == n for o, st, n in zip(out, s, hw_padded, strict=True)) and s == k
    )
    return PoolGeometry(k, s, d, pads, out, taps, disjoint, covered)
