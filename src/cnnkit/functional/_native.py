"""The compiled convolution kernels (``_native_conv.c``), with the NumPy path as fallback.

The kernels compute float32 convolutions straight from the padded input, with no im2col
matrix:

- channels-last data (wide layers): the forward, which also serves the stride-1 input
  gradient (a convolution too), and the weight gradient;
- channel-first data with stride 1 (narrow layers such as LeNet's): the same two;
- and the max-pool backward on channels-last data, one pass instead of a few NumPy
  passes per kernel tap (fwd+bwd of a 2x2 pool on 128x32x32x32: 4.95 -> 3.95 ms).

The NumPy path writes every window into an im2col matrix, and OpenBLAS copies that
matrix again into its packed panels before it multiplies. Measured on one core of this
project's machine (2-core AMD EPYC, AVX-512), batch 64 with 3x3 kernels, channels-last,
GFLOP/s on the NumPy path against the kernel:

| layer | forward | weight gradient |
|---|---|---|
| 3->32 channels at 32x32 | 58 / 119 | 63 / 64 |
| 32->32 at 32x32 | 131 / 134-263 | 133 / 179 |
| 32->64 at 16x16 | 171 / 149-253 | 182 / 222 |
| 64->64 at 16x16 | 172 / 154-258 | 179 / 193 |

The forward's lower figures include the padding copy; the higher ones are the kernel
alone. The kernels are compiled for AVX-512 and for AVX2 with FMA, and the widest one
the CPU runs is used. On this machine the AVX2 forward reaches 87-105 GFLOP/s, about
80 % of AVX2's peak.

Calls go through :mod:`ctypes`, which releases the GIL for the whole call: one GIL
hand-over per worker instead of three per im2col chunk.

The kernels are used when all of these hold:

- the extension was built (``pip install`` compiles it when a C compiler is present);
- the CPU has AVX2 and FMA;
- the data are float32;
- ``CNNKIT_NATIVE`` is not ``0``. ``CNNKIT_NATIVE=avx2`` picks the AVX2 kernels on an
  AVX-512 CPU.

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


ISAS = {"avx2": 1, "avx512": 2}  # kernel sets, as the library counts them


def _type_bn(lib: Any) -> None:
    lib.cnnkit_bn_sums_f32.restype = None
    lib.cnnkit_bn_sums_f32.argtypes = [_P, _P, _P, _L, _L, _L, ctypes.c_int] + [_P] * 5
    lib.cnnkit_bn_apply_f32.restype = None
    lib.cnnkit_bn_apply_f32.argtypes = [_P, _P, _L, _L, _L, ctypes.c_int, _P, _P, _P, ctypes.c_int]
    lib.cnnkit_bn_bwd_apply_f32.restype = None
    lib.cnnkit_bn_bwd_apply_f32.argtypes = [_P, _P, _P, _P, _L, _L, _L, ctypes.c_int] + [_P] * 4


def _load() -> tuple[Any, int]:
    """The library (its functions typed) and the kernel set chosen: the widest this CPU
    runs, or the one ``CNNKIT_NATIVE`` names; ``(None, 0)`` when it cannot be used."""
    want = os.environ.get("CNNKIT_NATIVE", "").lower()
    if want == "0":
        return None, 0
    try:
        from cnnkit.functional import _native_conv
    except ImportError:  # not built: no compiler at install time, or another platform
        return None, 0
    lib = ctypes.CDLL(_native_conv.__file__)
    lib.cnnkit_conv_select.argtypes = [ctypes.c_int]
    level = lib.cnnkit_conv_select(ISAS.get(want, max(ISAS.values())))
    if not level:
        return None, 0  # a CPU without AVX2 and FMA
    lib.cnnkit_conv_nhwc_f32.restype = None
    lib.cnnkit_conv_nhwc_f32.argtypes = [_P] + [_L] * 8 + [_P, _P, _P, _P] + [_L] * 14
    lib.cnnkit_conv_nchw_f32.restype = None
    lib.cnnkit_conv_nchw_f32.argtypes = [_P, _P, _P, _P] + [_L] * 12
    lib.cnnkit_conv_dw_nchw_f32.restype = ctypes.c_int
    lib.cnnkit_conv_dw_nchw_f32.argtypes = [_P, _P, _P] + [_L] * 12
    lib.cnnkit_conv_dw_nhwc_f32.restype = None
    lib.cnnkit_conv_dw_nhwc_f32.argtypes = [_P, _P, _P] + [_L] * 14
    lib.cnnkit_maxpool_bwd_nhwc_f32.restype = None
    lib.cnnkit_maxpool_bwd_nhwc_f32.argtypes = [_P, _P, _P, _P] + [_L] * 12
    _type_bn(lib)
    return lib, level


_conv, _level = _load()


def available() -> bool:
    """Whether the compiled kernels run on this machine (built, CPU able, not disabled)."""
    return _conv is not None


def isa() -> str | None:
    """The kernel set in use: ``'avx512'``, ``'avx2'``, or None (the NumPy path)."""
    return next((k for k, v in ISAS.items() if v == _level), None)


def supported() -> list[str]:
    """The kernel sets this CPU runs (none without the built library)."""
    best = _conv.cnnkit_conv_supported() if _conv is not None else 0
    return [k for k, v in ISAS.items() if v <= best]


def select(name: str) -> None:
    """Use kernel set ``name`` (``'avx2'`` or ``'avx512'``) from now on, for tests and
    benchmarks (``CNNKIT_NATIVE=avx2`` chooses at import)."""
    global _level
    if name not in supported():
        raise ValueError(f"cnnkit native convolution: {name!r} not among {supported()}")
    _level = _conv.cnnkit_conv_select(ISAS[name])


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
    src: np.ndarray | None = None,
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> None:
    """``out = conv(xp, wk) + bias`` for the images of one chunk, channels-last.

    With ``src``, ``xp`` is filled first, image by image: ``src`` zero-padded by ``pads``
    (top, bottom, left, right), so that each image is still in cache when convolved.

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
    src : ndarray, shape (B, C, H, W), float32, any strides; optional
    pads : (int, int, int, int)

    The shapes are checked here, since the kernel reads and writes raw memory.
    """
    b, oh, ow, g = _check(xp, wk, out, kernel, stride, dilation, bias)
    _, hp, wp, c = xp.shape
    fill = (None, 0, 0, 0, 0, 0, 0, 0, 0)
    if src is not None:
        top, bottom, left, right = pads
        _, _, h, w = src.shape
        if (
            src.dtype != np.float32
            or src.shape[:2] != (b, c)
            or (h + top + bottom, w + left + right) != (hp, wp)
            or min(pads) < 0
            or any(st % 4 for st in src.strides)
        ):
            raise ValueError(
                f"cnnkit native convolution: input {src.shape} ({src.dtype}, strides "
                f"{src.strides}) padded by {pads} does not fill {xp.shape}"
            )
        fill = (src.ctypes.data, *(st // 4 for st in src.strides), h, w, top, left)
    _conv.cnnkit_conv_nhwc_f32(
        *fill,
        xp.ctypes.data, wk.ctypes.data, None if bias is None else bias.ctypes.data,
        out.ctypes.data, b, hp, wp, g, c // g, wk.shape[2], *kernel, *stride, *dilation,
        oh, ow,
    )  # fmt: skip


def conv_nchw(
    xp: np.ndarray,
    wn: np.ndarray,
    bias: np.ndarray | None,
    out: np.ndarray,
    kernel: tuple[int, int],
    dilation: tuple[int, int],
) -> None:
    """``out = conv(xp, w) + bias`` with stride 1 for the images of one chunk, channel-first
    (layers with few output channels: the vectors run along output rows).

    Parameters
    ----------
    xp : ndarray, shape (B, C, Hp, Wp), float32, C-contiguous
        The padded input.
    wn : ndarray, shape (G, Cg, KH, KW, OCg), float32, C-contiguous
        The weights, output channels innermost (:func:`nchw_weight`).
    bias : ndarray, shape (OC,), float32, or None
    out : ndarray, shape (B, OC, OH, OW), float32, C-contiguous
        Written in full.
    kernel, dilation : (int, int)
    """
    g, cg, kh, kw, ocg = wn.shape
    _, _, hp, wp = xp.shape
    wk = wn.reshape(g, cg * kh * kw, ocg)  # the same checks as the channels-last kernels
    b, oh, ow, _ = _check(
        xp.transpose(0, 2, 3, 1), wk, out.transpose(0, 2, 3, 1), kernel, (1, 1), dilation, bias,
        contiguous=(xp, wn, out),
    )  # fmt: skip
    _conv.cnnkit_conv_nchw_f32(
        xp.ctypes.data, wn.ctypes.data, None if bias is None else bias.ctypes.data,
        out.ctypes.data, b, hp, wp, g, cg, ocg, kh, kw, *dilation, oh, ow,
    )  # fmt: skip


def conv_weight_grad_nchw(
    xp: np.ndarray,
    grad: np.ndarray,
    dw: np.ndarray,
    kernel: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> None:
    """``dw += dW`` (stride 1) for the images of one chunk, channel-first.

    Parameters
    ----------
    xp : ndarray, shape (B, C, Hp, Wp), float32, C-contiguous
        The padded input.
    grad : ndarray, shape (B, OC, OH, OW), float32, C-contiguous
        The output gradient.
    dw : ndarray, shape (OC, C/groups, KH, KW), float32, C-contiguous
        Accumulates the weight gradient.
    kernel, dilation : (int, int)
    groups : int
    """
    oc, cg, kh, kw = dw.shape
    wk = dw.reshape(groups, oc // groups, cg * kh * kw).transpose(0, 2, 1)
    _, _, hp, wp = xp.shape
    b, oh, ow, _ = _check(
        xp.transpose(0, 2, 3, 1), wk, grad.transpose(0, 2, 3, 1), kernel, (1, 1), dilation,
        None, contiguous=(xp, grad, dw),
    )  # fmt: skip
    if _conv.cnnkit_conv_dw_nchw_f32(
        xp.ctypes.data, grad.ctypes.data, dw.ctypes.data, b, hp, wp, groups, cg,
        oc // groups, kh, kw, *dilation, oh, ow,
    ):  # fmt: skip
        raise MemoryError("cnnkit native convolution: no memory for the weight-gradient sums")


def nchw_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """``(OC, Cg, KH, KW)`` weights as the ``(G, Cg, KH, KW, OCg)`` array of :func:`conv_nchw`."""
    oc, cg, kh, kw = w.shape
    w5 = w.reshape(groups, oc // groups, cg, kh, kw).transpose(0, 2, 3, 4, 1)
    return np.ascontiguousarray(w5)


def conv_weight_grad_nhwc(
    xp: np.ndarray,
    grad: np.ndarray,
    dwk: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> None:
    """``dwk += dW`` for the images of one chunk, channels-last.

    Parameters
    ----------
    xp : ndarray, shape (B, Hp, Wp, C), float32, C-contiguous
        The padded input.
    grad : ndarray, shape (B, OH, OW, OC), float32, C-contiguous
        The output gradient.
    dwk : ndarray, shape (G, KH*KW*Cg, OCg), float32, C-contiguous
        Accumulates the weight gradient, rows in ``(kh, kw, c)`` order.
    kernel, stride, dilation : (int, int)
    """
    b, oh, ow, g = _check(xp, dwk, grad, kernel, stride, dilation, None)
    _, hp, wp, c = xp.shape
    _conv.cnnkit_conv_dw_nhwc_f32(
        xp.ctypes.data, grad.ctypes.data, dwk.ctypes.data, b, hp, wp, g, c // g,
        dwk.shape[2], *kernel, *stride, *dilation, oh, ow,
    )  # fmt: skip


def _check(
    xp: np.ndarray,
    wk: np.ndarray,
    out: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    bias: np.ndarray | None,
    contiguous: tuple[np.ndarray, ...] | None = None,
) -> tuple[int, int, int, int]:
    """``(B, OH, OW, G)`` after checking that the kernel stays inside every array (it
    reads and writes raw memory): consistent shapes (arrays indexed channels-last),
    C-contiguous (``contiguous``: the arrays as the kernel gets them) float32."""
    if _conv is None:
        raise RuntimeError("cnnkit: the compiled convolution kernel is not available")
    b, hp, wp, c = xp.shape
    g, k, ocg = wk.shape
    oh, ow = out.shape[1:3]
    if (
        c % g
        or k != kernel[0] * kernel[1] * (c // g)
        or out.shape != (b, oh, ow, g * ocg)
        or (bias is not None and bias.shape != (g * ocg,))
        or not _windows_fit((oh, ow), kernel, stride, dilation, (hp, wp))
    ):
        raise ValueError(
            f"cnnkit native convolution: inconsistent shapes: input {xp.shape}, weights "
            f"{wk.shape}, output {out.shape}, kernel {kernel}, stride {stride}, dilation {dilation}"
        )
    _require_f32((contiguous or (xp, wk, out)) + (() if bias is None else (bias,)), "convolution")
    return b, oh, ow, g


def _windows_fit(
    out_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    in_hw: tuple[int, int],
) -> bool:
    """Whether every window of an ``out_hw`` output lies inside the ``in_hw`` input."""
    return min(out_hw) >= 1 and all(
        (o - 1) * s + (k - 1) * d < n  # the last row (column) read
        for o, k, s, d, n in zip(out_hw, kernel, stride, dilation, in_hw, strict=True)
    )


def _require_f32(arrays: tuple[np.ndarray, ...], what: str) -> None:
    for a in arrays:
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(
                f"cnnkit native {what}: expected C-contiguous float32 arrays; got {a.dtype} "
                f"(C-contiguous: {a.flags.c_contiguous})"
            )


def maxpool_backward_nhwc(
    xp: np.ndarray,
    best: np.ndarray,
    grad: np.ndarray,
    dxp: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> None:
    """Max-pool backward for the images of one chunk, channels-last: ``dxp +=`` each
    window's gradient at its first maximum (or first NaN when the maximum is NaN).

    Parameters
    ----------
    xp, dxp : ndarray, shape (B, Hp, Wp, C), float32, C-contiguous
        The padded input, and its gradient (zeroed by the caller).
    best, grad : ndarray, shape (B, OH, OW, C), float32, C-contiguous
        The forward's output and its gradient.
    kernel, stride, dilation : (int, int)
    """
    if _conv is None:
        raise RuntimeError("cnnkit: the compiled kernels are not available")
    b, hp, wp, c = xp.shape
    _, oh, ow, _ = best.shape
    if (
        dxp.shape != xp.shape
        or grad.shape != best.shape
        or best.shape[::3] != (b, c)
        or not _windows_fit((oh, ow), kernel, stride, dilation, (hp, wp))
    ):
        raise ValueError(
            f"cnnkit native max pool: inconsistent shapes: input {xp.shape}, output "
            f"{best.shape}, gradient {grad.shape}, kernel {kernel}, stride {stride}"
        )
    _require_f32((xp, best, grad, dxp), "max pool")
    _conv.cnnkit_maxpool_bwd_nhwc_f32(
        xp.ctypes.data, best.ctypes.data, grad.ctypes.data, dxp.ctypes.data, b, hp, wp, c,
        oh, ow, *kernel, *stride, *dilation,
    )  # fmt: skip


# --- BatchNorm (``_native_bn.c``): plain C, float32 data, double statistics ------------


def _bn_lib() -> Any:
    """The library, whose BatchNorm kernels :func:`_load` typed (None when off)."""
    return _conv


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def _bn_dims(x: np.ndarray, nhwc: bool) -> tuple[int, int, int]:
    """``(n, c, hw)`` of a 4-D ``(N, C, H, W)`` array whose memory is checked to be
    C-contiguous in the layout named (channels-last or channel-first)."""
    n, c, h, w = x.shape
    mem = x.transpose(0, 2, 3, 1) if nhwc else x
    if x.dtype != np.float32 or not mem.flags.c_contiguous:
        raise ValueError(
            f"native batch norm: expected contiguous float32 {'NHWC' if nhwc else 'NCHW'} "
            f"data; got {x.dtype} with strides {x.strides}"
        )
    return n, c, h * w


def bn_stats(x: np.ndarray, nhwc: bool, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel ``(sum(x - shift), sum((x - shift)**2))`` in float64."""
    return bn_backward_sums(None, x, None, nhwc, shift)


def bn_apply(
    x: np.ndarray, y: np.ndarray, nhwc: bool, m: np.ndarray, a: np.ndarray, b: np.ndarray,
    relu: bool,
) -> None:  # fmt: skip
    """``y = (x - m) * a + b`` per channel (``max(., 0)`` if ``relu``); same layout for both."""
    n, c, hw = _bn_dims(x, nhwc)
    _bn_dims(y, nhwc)
    m32, a32, b32 = (np.ascontiguousarray(v, dtype=np.float32) for v in (m, a, b))
    _bn_lib().cnnkit_bn_apply_f32(_ptr(x), _ptr(y), n, c, hw, int(nhwc), _ptr(m32), _ptr(a32),
                                  _ptr(b32), int(relu))  # fmt: skip


def bn_backward_sums(
    g: np.ndarray | None, x: np.ndarray, y: np.ndarray | None, nhwc: bool, mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per channel ``(sum(g'), sum(g' * (x - mean)))`` in float64, ``g'`` being ``g``
    where ``y > 0`` when ``y`` is given (BatchNorm fused with ReLU), else ``g``; without
    ``g``, ``g' = x - mean`` (the shifted sum and sum of squares)."""
    n, c, hw = _bn_dims(x, nhwc)
    for a in (g, y):
        if a is not None:
            _bn_dims(a, nhwc)
    sg, sgx = np.zeros(c), np.zeros(c)
    fa, fb = np.empty(c, np.float32), np.empty(c, np.float32)
    m32 = np.ascontiguousarray(mean, dtype=np.float32)
    _bn_lib().cnnkit_bn_sums_f32(_ptr(g), _ptr(x), _ptr(y), n, c, hw, int(nhwc), _ptr(m32),
                                       _ptr(sg), _ptr(sgx), _ptr(fa), _ptr(fb))  # fmt: skip
    return sg, sgx


def bn_backward_apply(
    g: np.ndarray, x: np.ndarray, y: np.ndarray | None, dx: np.ndarray, nhwc: bool,
    mean: np.ndarray, a: np.ndarray, b: np.ndarray, d: np.ndarray,
) -> None:  # fmt: skip
    """``dx = a * g' + b * (x - mean) + d`` per channel (``g'`` as in
    :func:`bn_backward_sums`)."""
    n, c, hw = _bn_dims(x, nhwc)
    for arr in (g, y, dx):
        if arr is not None:
            _bn_dims(arr, nhwc)
    vecs = [np.ascontiguousarray(v, dtype=np.float32) for v in (mean, a, b, d)]
    _bn_lib().cnnkit_bn_bwd_apply_f32(_ptr(g), _ptr(x), _ptr(y), _ptr(dx), n, c, hw, int(nhwc),
                                      *(_ptr(v) for v in vecs))  # fmt: skip
