"""The compiled convolution kernel (``_native_conv.c``), with the NumPy path as fallback.

The forward convolution of channels-last float32 data is computed straight from the
padded input, without an im2col matrix. The NumPy path writes every window into an
im2col matrix, and OpenBLAS copies that matrix again into its packed panels before it
multiplies. Measured on one core of this project's machine (2-core AMD EPYC, AVX-512),
batch 64 with 3x3 kernels:

- 32->32 channels at 32x32: 135 GFLOP/s on the NumPy path, 263 in the kernel.
- 32->64 at 16x16: 179 and 253.
- 64->64 at 16x16: 176 and 258.

Calls go through :mod:`ctypes`, which releases the GIL for the whole call: one GIL
hand-over per worker instead of three per im2col chunk.

The kernel is used when all of these hold:

- the extension was built (``pip install`` compiles it when a C compiler is present);
- the CPU has AVX-512F and FMA;
- the data are float32;
- ``CNNKIT_NATIVE`` is not ``0``.

Otherwise, and for float64 (the gradient checks), the NumPy code runs; both compute
the same convolution, in a different order of float additions.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

_P = ctypes.c_void_p
_L = ctypes.c_long


def _load() -> Any:
    """The library's ``cnnkit_conv_nhwc_f32``, or None when it cannot be used here."""
    if os.environ.get("CNNKIT_NATIVE", "1") == "0":
        return None
    try:
        from cnnkit.functional import _native_conv
    except ImportError:  # not built: no compiler at install time, or another platform
        return None
    lib = ctypes.CDLL(_native_conv.__file__)
    if not lib.cnnkit_conv_supported():
        return None
    fn = lib.cnnkit_conv_nhwc_f32
    fn.restype = None
    fn.argtypes = [_P, _P, _P, _P] + [_L] * 14
    return fn


_conv = _load()


def available() -> bool:
    """Whether the compiled kernel runs on this machine (built, CPU able, not disabled)."""
    return _conv is not None


def usable(*arrays: np.ndarray) -> bool:
    """Whether the kernel applies to these operands: float32 and the kernel available."""
    return _conv is not None and all(a.dtype == np.float32 for a in arrays)


def conv_nhwc(
    xp: np.ndarray,
    wk: np.ndarray,
    bias: np.ndarray | None,
    out: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> None:
    """``out = conv(xp, wk) + bias`` for the images of one chunk, channels-last.

    Parameters
    ----------
    xp : ndarray, shape (B, Hp, Wp, C), float32, C-contiguous
        The padded input.
    wk : ndarray, shape (G, KH*KW*Cg, OCg), float32, C-contiguous
        The weights with rows in ``(kh, kw, c)`` order (``conv._gemm_weight``).
    bias : ndarray, shape (OC,), float32, or None
    out : ndarray, shape (B, OH, OW, OC), float32, C-contiguous
        Written in full.
    kernel, stride, dilation : (int, int)

    The shapes are checked here, since the kernel reads and writes raw memory.
    """
    if _conv is None:
        raise RuntimeError("cnnkit: the compiled convolution kernel is not available")
    b, hp, wp, c = xp.shape
    g, k, ocg = wk.shape
    kh, kw = kernel
    oh, ow = out.shape[1:3]
    last_h = (oh - 1) * stride[0] + (kh - 1) * dilation[0]  # the last row and column read
    last_w = (ow - 1) * stride[1] + (kw - 1) * dilation[1]
    if (
        c % g
        or k != kh * kw * (c // g)
        or out.shape != (b, oh, ow, g * ocg)
        or (bias is not None and bias.shape != (g * ocg,))
        or last_h >= hp
        or last_w >= wp
        or min(oh, ow) < 1
    ):
        raise ValueError(
            f"conv_nhwc: inconsistent shapes: input {xp.shape}, weights {wk.shape}, "
            f"output {out.shape}, kernel {kernel}, stride {stride}, dilation {dilation}"
        )
    for a in (xp, wk, out) + (() if bias is None else (bias,)):
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(
                f"conv_nhwc: expected C-contiguous float32 arrays; got {a.dtype} "
                f"(C-contiguous: {a.flags.c_contiguous})"
            )
    _conv(
        xp.ctypes.data, wk.ctypes.data, None if bias is None else bias.ctypes.data,
        out.ctypes.data, b, hp, wp, g, c // g, ocg, kh, kw, *stride, *dilation, oh, ow,
    )  # fmt: skip
