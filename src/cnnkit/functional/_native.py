"""The compiled convolution kernels (``_native_conv.c``), with the NumPy path as fallback.

The kernels compute float32 convolutions straight from the padded input, with no im2col
matrix:

- channels-last data (wide layers): the forward, which also serves the stride-1 input
  gradient (a convolution too), and the weight gradient;
- channel-first data with stride 1 (narrow layers such as LeNet's): the same two;
- and the max-pool backward on channels-last data, one pass instead of a few NumPy
  passes per kernel tap (fwd+bwd of a 2x2 pool on 128x32x32x32: 4.95 -> 3.95 ms).

The NumPy path writes every window into an im2col matrix, and OpenBLAS copies that
matrix again into its packed panels before it multiplies. The channels-last forward
instead packs the weights once per call (:func:`pack_weights`: panels of output
channels, ``[kh][kw][c][width]``, read front to back) and runs a register tile of
output positions x vectors of output channels. Its sizes follow written rules (in
``_native_kernels.h``), not one processor's tuning: the tile from the vector register
count of the kernel set, the input-channel blocks and row bands from the L1/L2 sizes
the CPU reports (:func:`cache_sizes`); the channels-last weight gradient takes the same
register rule.

Measured on one core of an Intel Xeon @ 2.50GHz (Cascade Lake, AVX-512, L1d 32 KiB, L2
1 MiB), 2 cores shared with other jobs (load average 11-13), CPU time of the calling
thread, ``benchmarks/bench_kernels.py``: batch 32, 3x3, channels-last, GFLOP/s before ->
after these rules, and (in brackets) the fraction of NumPy's single-threaded sgemm peak
(101 GFLOP/s; for AVX2, 71 with OpenBLAS held to its AVX2 kernels):

| layer | forward AVX-512 | forward AVX2 | weight grad AVX-512 | weight grad AVX2 |
|---|---|---|---|---|
| 3->32 at 32x32 | 24 -> 39 (0.39) | 23 -> 27 (0.38) | 46 -> 41 (0.41) | 31 -> 31 (0.44) |
| 32->32 at 32x32 | 30 -> 80 (0.80) | 39 -> 50 (0.71) | 93 -> 90 (0.90) | 54 -> 51 (0.72) |
| 32->64 at 16x16 | 31 -> 70 (0.70) | 40 -> 51 (0.73) | 83 -> 80 (0.80) | 44 -> 47 (0.66) |
| 64->64 at 16x16 | 32 -> 76 (0.76) | 43 -> 56 (0.80) | 88 -> 84 (0.83) | 43 -> 50 (0.71) |

In a quieter moment (load 7) the AVX-512 forward of the last three measured 80-88
GFLOP/s (0.80-0.84); repeated runs vary by about 10 %.
The forward figures include the padding copy (and, for the first layer, the transpose
of its channel-first input). The stride-1 input gradient runs the forward kernel on the
flipped weights and moves with it (AVX-512 30-32 -> 65-73 GFLOP/s, AVX2 35-37 ->
41-52). The channel-first kernels of narrow layers (LeNet's, the ResNet stem) keep their
tiles: the same register rule applied to them measured no faster (0.3-0.4 of the peak
either way; their vectors run along output rows of 10-32 values). The kernels are
compiled for AVX-512 and for AVX2 with FMA, and the widest one the CPU runs is used.

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
    lib.cnnkit_conv_nhwc_f32.argtypes = [_P] + [_L] * 8 + [_P, _P, _P] + [_L] * 16
    lib.cnnkit_conv_packed_floats_f32.restype = _L
    lib.cnnkit_conv_packed_floats_f32.argtypes = [_L] * 5
    lib.cnnkit_conv_pack_f32.restype = None
    lib.cnnkit_conv_pack_f32.argtypes = [_P, _L, _P] + [_L] * 5 + [_P]
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


def _read_cache_sizes() -> dict[str, int]:
    """The per-core data cache sizes in bytes, ``{"L1": ..., "L2": ...}``.

    Read from ``/sys/devices/system/cpu/cpu0/cache`` (Linux), else from ``sysconf``;
    where neither says, 32 KiB and 1 MiB (common x86 sizes) are assumed.
    """
    found: dict[str, int] = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            path = os.path.join(base, entry)
            try:
                with open(os.path.join(path, "level")) as f:
                    level = int(f.read())
                with open(os.path.join(path, "type")) as f:
                    kind = f.read().strip()
                with open(os.path.join(path, "size")) as f:
                    text = f.read().strip().upper()
            except (OSError, ValueError):
                continue
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            digits = text.rstrip("KMG")
            if kind in ("Data", "Unified") and digits.isdigit() and level in (1, 2):
                found.setdefault(f"L{level}", int(digits) * scale)
    except OSError:
        pass
    for level, name in ((1, "SC_LEVEL1_DCACHE_SIZE"), (2, "SC_LEVEL2_CACHE_SIZE")):
        if f"L{level}" not in found and name in getattr(os, "sysconf_names", {}):
            try:
                size = os.sysconf(name)
            except (OSError, ValueError):
                size = 0
            if size > 0:
                found[f"L{level}"] = size
    found.setdefault("L1", 32 << 10)
    found.setdefault("L2", 1 << 20)
    return found


_CACHES = _read_cache_sizes()


def cache_sizes() -> dict[str, int]:
    """The data cache sizes (bytes) the kernels' blocks are sized for: ``L1``, ``L2``."""
    return dict(_CACHES)


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


class PackedWeights:
    """Convolution weights and biases packed for the channels-last forward kernel
    (:func:`pack_weights`): panels of output channels, each ``[kh][kw][c][width]``.

    The layout depends on the kernel set (vector width), which is recorded and checked.
    """

    __slots__ = ("array", "key", "level")

    def __init__(self, array: np.ndarray, level: int, key: tuple[int, ...]) -> None:
        self.array, self.level, self.key = array, level, key


def pack_weights(w: np.ndarray, bias: np.ndarray | None, groups: int) -> PackedWeights:
    """Pack ``w`` (and ``bias``) once for :func:`conv_nhwc` (one pass over the weights).

    Parameters
    ----------
    w : ndarray, float32, C-contiguous
        ``(OC, Cg, KH, KW)`` as PyTorch keeps them, or ``(G, KH*KW*Cg, OCg)`` with rows in
        ``(kh, kw, c)`` order (``conv._gemm_weight``); the latter needs ``w.shape[0] ==
        groups``.
    bias : ndarray, shape (OC,), float32, or None
    groups : int
    """
    if _conv is None:
        raise RuntimeError("cnnkit: the compiled convolution kernel is not available")
    if w.ndim == 4:
        oc, cg, kh, kw = w.shape
        ocg, oihw = oc // groups, 1
        ok = oc % groups == 0
    else:
        ok = w.ndim == 3 and w.shape[0] == groups
        _, k, ocg = w.shape if ok else (0, 0, 0)
        oihw, cg, kh, kw = 0, k, 1, 1  # rows (kh, kw, c) flattened: one tap of k channels
    if not ok or (bias is not None and bias.shape != (groups * ocg,)):
        raise ValueError(
            f"cnnkit native convolution: inconsistent shapes: weights {w.shape} (groups "
            f"{groups}), bias {None if bias is None else bias.shape}"
        )
    _require_f32((w,) + (() if bias is None else (bias,)), "convolution")
    size = _conv.cnnkit_conv_packed_floats_f32(groups, cg, ocg, kh, kw)
    dst = np.empty(size, dtype=np.float32)
    _conv.cnnkit_conv_pack_f32(w.ctypes.data, oihw, _ptr(bias), groups, cg, ocg, kh, kw,
                               dst.ctypes.data)  # fmt: skip
    return PackedWeights(dst, _level, (groups, kh * kw * cg, ocg))


def conv_nhwc(
    xp: np.ndarray,
    wk: np.ndarray | None,
    bias: np.ndarray | None,
    out: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    src: np.ndarray | None = None,
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    packed: PackedWeights | None = None,
) -> None:
    """``out = conv(xp, wk) + bias`` for the images of one chunk, channels-last.

    With ``src``, ``xp`` is filled first, image by image: ``src`` zero-padded by ``pads``
    (top, bottom, left, right), so that each image is still in cache when convolved.

    Parameters
    ----------
    xp : ndarray, shape (B, Hp, Wp, C), float32, C-contiguous
        The padded input.
    wk : ndarray, shape (G, KH*KW*Cg, OCg), float32, C-contiguous, or None
        The weights with rows in ``(kh, kw, c)`` order (``conv._gemm_weight``); None
        with ``packed``.
    bias : ndarray, shape (OC,), float32, or None
        Ignored with ``packed`` (which holds the bias).
    out : ndarray, shape (B, OH, OW, OC), float32, C-contiguous
        Written in full.
    kernel, stride, dilation : (int, int)
    src : ndarray, shape (B, C, H, W), float32, any strides; optional
    pads : (int, int, int, int)
    packed : PackedWeights, optional
        The weights and bias packed by :func:`pack_weights` (for several calls that share
        them, such as the chunks of one batch).

    The shapes are checked here, since the kernel reads and writes raw memory.
    """
    if packed is None:
        if wk is None:
            raise ValueError("cnnkit native convolution: neither weights nor packed weights")
        packed = pack_weights(wk, bias, wk.shape[0])
    elif packed.level != _level:
        raise ValueError("cnnkit native convolution: weights packed for another kernel set")
    b, oh, ow, g = _check(xp, packed.key, out, kernel, stride, dilation, None)
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
        xp.ctypes.data, packed.array.ctypes.data, out.ctypes.data, b, hp, wp, g, c // g,
        packed.key[2], *kernel, *stride, *dilation, oh, ow, _CACHES["L1"], _CACHES["L2"],
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
    wk: np.ndarray | tuple[int, int, int],
    out: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    bias: np.ndarray | None,
    contiguous: tuple[np.ndarray, ...] | None = None,
) -> tuple[int, int, int, int]:
    """``(B, OH, OW, G)`` after checking that the kernel stays inside every array (it
    reads and writes raw memory): consistent shapes (arrays indexed channels-last; ``wk``
    may be just the ``(G, K, OCg)`` shape of packed weights),
    C-contiguous (``contiguous``: the arrays as the kernel gets them) float32."""
    if _conv is None:
        raise RuntimeError("cnnkit: the compiled convolution kernel is not available")
    b, hp, wp, c = xp.shape
    w_shape = wk if isinstance(wk, tuple) else wk.shape
    g, k, ocg = w_shape
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
            f"{w_shape}, output {out.shape}, kernel {kernel}, stride {stride}, dilation {dilation}"
        )
    arrays = contiguous or (xp, out) + (() if isinstance(wk, tuple) else (wk,))
    _require_f32(arrays + (() if bias is None else (bias,)), "convolution")
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
