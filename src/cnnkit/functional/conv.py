"""Convolution (shared weights) and locally connected (unshared weights) layers.

Both read the input through a strided view of all windows (im2col, one copy into GEMM
layout) and do the arithmetic as BLAS matrix products; backward uses the same products
transposed and scatters window gradients back with :func:`col2im`.

For float32 convolutions the compiled kernels of :mod:`cnnkit.functional._native` take
the place of im2col and BLAS where they are built and the CPU runs them; the NumPy code
here is the fallback and the float64 path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnkit.autograd import Function
from cnnkit.functional import _native as native
from cnnkit.functional import _parallel as parallel
from cnnkit.functional._windows import (
    Pair,
    channels_last,
    col2im,
    kernel_slice,
    out_size,
    pad_hw,
    pair,
    unpad_hw,
    windows,
)
from cnnkit.tensor import Tensor

Pads = tuple[int, int, int, int]


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


def _spatial(
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


_CHUNK_ELEMENTS = 1 << 20  # im2col chunk size: about 4 MB of float32, cache friendly
_SPLIT_COPY_MIN = 1 << 17  # im2col chunks at least this big are copied by several threads
# Layers with at least this many output channels per group are "wide": they keep
# activations channels-last; narrower ones stay channel-first with row-extended columns
# (measured: channels-last im2col with a handful of channels copies runs of a few
# floats, which is slow).
_WIDE = 24


def _is_wide(oc: int, groups: int) -> bool:
    """Whether a layer keeps its activations channels-last (see ``_WIDE``)."""
    return oc // groups >= _WIDE


# The stride-1 input gradient as a convolution is a GEMM with C_in/groups outputs; with
# fewer BLAS runs at a fraction of its speed and W^T g + col2im is faster (measured).
_DX_CONV_MIN_ROWS = 16


def _dx_by_conv(cg: int, wide: bool, compiled: bool) -> bool:
    """Whether a stride-1 input gradient is computed as a convolution (else col2im).

    The convolution has ``cg`` output channels. On the NumPy path that is a GEMM with
    ``cg`` columns, slow below ``_DX_CONV_MIN_ROWS``. The compiled channel-first kernel
    (narrow layers) is fast for any count. The channels-last one fills vectors of 16
    channels, and below 4 col2im is faster (measured, batch 128, 32x32 fwd+bwd: 3->32
    channels 25.6 vs 28.2 ms, 8->32 32.2 vs 39.8, but 1->48 with 5x5 44.9 vs 18.4).
    """
    if cg >= _DX_CONV_MIN_ROWS:
        return True
    return compiled and (not wide or cg >= 4)


def _workers(n: int) -> int:
    """Chunk worker threads for ``n`` images: one per BLAS thread (one image: no threads,
    and no query of the BLAS thread count).

    Each worker copies its chunk's columns and runs the chunk's product on
    single-threaded BLAS, so the copies around the products use every core too. On 2
    cores this beats one sequence of chunks on 2-thread BLAS by about 25 % for a
    32->32 3x3 convolution forward (8.9 vs 11.5-12 ms, batch 128, 32x32).
    """
    return parallel.workers() if n > 1 else 1


def _chunk(n: int, k: int, p: int) -> int:
    """Images per im2col chunk: enough to give BLAS large products, few enough that the
    im2col buffer stays small (no giant im2col matrix for the whole batch)."""
    return max(1, min(n, _CHUNK_ELEMENTS // max(1, k * p)))


# --- wide layers: channels-last (NHWC) memory -------------------------------------------


def _pad_nhwc(x: np.ndarray, pads: Pads) -> np.ndarray:
    """Zero-padded ``(N, Hp, Wp, C)`` channels-last copy of ``(N, C, H, W)`` ``x``."""
    top, bottom, left, right = pads
    if not (top or bottom or left or right):
        return channels_last(x)
    n, c, h, w = x.shape
    hp, wp = h + top + bottom, w + left + right
    xp = np.empty((n, hp, wp, c), dtype=x.dtype)
    xp[:, :top] = 0
    xp[:, hp - bottom :] = 0
    xp[:, top : hp - bottom, :left] = 0
    xp[:, top : hp - bottom, wp - right :] = 0
    parallel.copy(xp[:, top : top + h, left : left + w], x.transpose(0, 2, 3, 1))
    return xp


class _Windows:
    """im2col for channels-last memory.

    A chunk of ``B`` images becomes, per group, the ``(B*OH*OW, KH*KW*Cg)`` matrix whose
    row ``(b, oh, ow)`` is the window at that output position in ``(kh, kw, c)`` order.
    With channels innermost a window row is ``KW*Cg`` contiguous values of the padded
    input (dilation 1), so im2col is one strided copy, and ``cols @ W`` is already the
    channels-last ``(B, OH, OW, OC)`` output: no transposes.
    """

    def __init__(
        self, xp: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair, g: int,
        oc: int = 0,
    ) -> None:  # fmt: skip
        n, _, _, c = xp.shape
        s0, s1, s2, s3 = xp.strides
        kh, kw = kernel
        self.g, self.cg, self.kernel, self.out_hw = g, c // g, kernel, out_hw
        self.p = out_hw[0] * out_hw[1]
        self.k = kh * kw * self.cg
        # all windows: (N, OH, OW, KH, KW, G, Cg), a read-only view of xp
        self.win = as_strided(
            xp,
            (n, *out_hw, kh, kw, g, self.cg),
            (s0, s1 * stride[0], s2 * stride[1], s1 * dilation[0], s2 * dilation[1],
             s3 * self.cg, s3),
            writeable=False,
        )  # fmt: skip
        self.nw = _workers(n)
        # a chunk's columns and its output rows (``oc`` per position) stay in cache
        self.chunks = parallel.split(n, _chunk(n, self.g * self.k + oc, self.p), self.nw)
        bsz = max(c1 - c0 for c0, c1 in self.chunks)
        shape = (g, bsz, *out_hw, kh, kw, self.cg)
        self.bufs = [np.empty(shape, dtype=xp.dtype) for _ in range(self.nw)]

    def cols(self, t: int, c0: int, c1: int) -> np.ndarray:
        """im2col of images ``c0:c1`` by worker ``t`` as ``(G, B*P, K)``."""
        dst = self.bufs[t][:, : c1 - c0]
        np.copyto(dst, self.win[c0:c1].transpose(5, 0, 1, 2, 3, 4, 6))
        return dst.reshape(self.g, -1, self.k)


def _gemm_weight(w: np.ndarray, g: int) -> np.ndarray:
    """``(OC, Cg, KH, KW)`` weights as ``(G, KH*KW*Cg, OCg)``, rows in im2col order."""
    oc, cg, kh, kw = w.shape
    w5 = w.reshape(g, oc // g, cg, kh, kw).transpose(0, 3, 4, 2, 1)
    return np.ascontiguousarray(w5).reshape(g, kh * kw * cg, oc // g)


def _forward_nhwc(
    x: np.ndarray, pads: Pads, w: np.ndarray, b: np.ndarray | None, stride: Pair,
    dilation: Pair, g: int, out_hw: Pair,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per chunk one (grouped) GEMM ``cols (G, B*P, K) @ W (G, K, OCg)`` written straight
    into the channels-last output, the bias added while the rows are in cache; or, for
    float32, the compiled kernel on each worker's images."""
    n, oc = x.shape[0], w.shape[0]
    wk = _gemm_weight(w, g)
    out = np.empty((n, *out_hw, oc), dtype=np.result_type(x, w))
    if native.usable(x, wk, *(() if b is None else (b,))):  # compiled, no im2col
        c = x.shape[1]
        hp, wp = x.shape[2] + pads[0] + pads[1], x.shape[3] + pads[2] + pads[3]
        # each worker pads its images and convolves them one by one, in one call (an
        # input whose strides are not whole elements is padded by NumPy first)
        whole = all(st % x.itemsize == 0 for st in x.strides)
        xp = np.empty((n, hp, wp, c), dtype=x.dtype) if whole else _pad_nhwc(x, pads)
        src = x if whole else None
        bc = None if b is None else np.ascontiguousarray(b)
        nw = _workers(n)

        def native_work(_t: int, c0: int, c1: int) -> None:
            native.conv_nhwc(
                xp[c0:c1], wk, bc, out[c0:c1], w.shape[2:], stride, dilation,
                None if src is None else src[c0:c1], pads,
            )  # fmt: skip

        parallel.run(parallel.shares(n), native_work, nw)  # one share per worker
        return out.transpose(0, 3, 1, 2), xp
    xp = _pad_nhwc(x, pads)
    win = _Windows(xp, w.shape[2:], stride, dilation, out_hw, g, oc)
    out2 = out.reshape(n * win.p, oc)

    def work(t: int, c0: int, c1: int) -> None:
        cols = win.cols(t, c0, c1)
        rows = out2[c0 * win.p : c1 * win.p]
        if g == 1:
            np.matmul(cols[0], wk[0], out=rows)
        else:
            np.copyto(rows.reshape(-1, g, oc // g), np.matmul(cols, wk).transpose(1, 0, 2))
        if b is not None:
            rows += b

    parallel.run(win.chunks, work, win.nw)
    return out.transpose(0, 3, 1, 2), xp


def _weight_grad_nhwc(g2: np.ndarray, xp: np.ndarray, meta: tuple) -> np.ndarray:
    """``dW = sum over chunks of cols^T @ g`` (per group), one GEMM per chunk."""
    _, _, w_shape, stride, _, dilation, g, out_hw = meta[:8]
    oc, cg, kh, kw = w_shape
    if native.usable(xp, g2):  # compiled, no im2col
        n = xp.shape[0]
        g4 = g2.reshape(n, *out_hw, oc)
        nw = _workers(n)
        dwks = [np.zeros((g, kh * kw * cg, oc // g), dtype=g2.dtype) for _ in range(nw)]

        def native_work(t: int, c0: int, c1: int) -> None:
            native.conv_weight_grad_nhwc(xp[c0:c1], g4[c0:c1], dwks[t], (kh, kw), stride, dilation)

        parallel.run(parallel.shares(n), native_work, nw)  # one share per worker
    else:
        dwks = _weight_grad_im2col(g2, xp, w_shape, stride, dilation, g, out_hw)
    dwk = dwks[0]
    for extra in dwks[1:]:
        dwk += extra
    # (G, KH, KW, Cg, OCg) -> (G, OCg, Cg, KH, KW)
    dw = dwk.reshape(g, kh, kw, cg, oc // g).transpose(0, 4, 3, 1, 2)
    return np.ascontiguousarray(dw).reshape(w_shape)


def _weight_grad_im2col(
    g2: np.ndarray, xp: np.ndarray, w_shape: tuple, stride: Pair, dilation: Pair, g: int,
    out_hw: Pair,
) -> list[np.ndarray]:  # fmt: skip
    """Per worker ``cols^T @ g`` summed over its chunks, as ``(G, KH*KW*Cg, OCg)``."""
    oc, _, kh, kw = w_shape
    win = _Windows(xp, (kh, kw), stride, dilation, out_hw, g, oc)
    dwks = [np.zeros((g, win.k, oc // g), dtype=g2.dtype) for _ in range(win.nw)]

    def work(t: int, c0: int, c1: int) -> None:
        gc = g2[c0 * win.p : c1 * win.p].reshape(-1, g, oc // g).transpose(1, 0, 2)
        dwks[t] += np.matmul(win.cols(t, c0, c1).transpose(0, 2, 1), gc)

    parallel.run(win.chunks, work, win.nw)
    return dwks


def _col2im_nhwc(g2: np.ndarray, w: np.ndarray, meta: tuple) -> np.ndarray:
    """``dcols = g @ W^T`` per chunk, scattered back by one strided add per kernel tap."""
    x_shape, xp_shape, w_shape, stride, pads, dilation, g, out_hw = meta[:8]
    oc, cg, kh, kw = w_shape
    n = xp_shape[0]
    p = out_hw[0] * out_hw[1]
    wkt = _gemm_weight(w, g).transpose(0, 2, 1)  # (G, OCg, K)
    dxp = np.zeros(xp_shape, dtype=g2.dtype)  # (N, Hp, Wp, C)
    nw = _workers(n)

    def work(_t: int, c0: int, c1: int) -> None:  # each chunk adds into its own images
        gc = g2[c0 * p : c1 * p].reshape(-1, g, oc // g).transpose(1, 0, 2)
        d7 = np.matmul(gc, wkt).reshape(g, c1 - c0, *out_hw, kh, kw, cg)
        dst = dxp[c0:c1].reshape(c1 - c0, *xp_shape[1:3], g, cg)
        for i in range(kh):
            for j in range(kw):
                sl = kernel_slice(i, j, stride, dilation, out_hw)[2:]
                dst[:, sl[0], sl[1]] += d7[:, :, :, :, i, j].transpose(1, 2, 3, 0, 4)

    parallel.run(parallel.split(n, _chunk(n, g * kh * kw * cg, p), nw), work, nw)
    top, _, left, _ = pads
    if xp_shape[1:3] != x_shape[2:]:
        dxp = np.ascontiguousarray(dxp[:, top : top + x_shape[2], left : left + x_shape[3]])
    return dxp.transpose(0, 3, 1, 2)


# --- narrow layers: channel-first (NCHW) memory, row-extended columns --------------------


class _Plan:
    """Where the im2col columns come from for one convolution geometry.

    Stride 1 uses *row-extended* columns: each output row is computed at all ``Wp``
    positions of a padded input row, so a kernel tap's columns are one contiguous run of
    ``OH * Wp`` values of the flattened image (a fast memcpy-like copy); the
    ``Wp - OW`` extra columns per row are dropped from the output (and get zero
    gradient). Other strides use the plain ``(OH, OW)`` windows.
    """

    def __init__(
        self, xp_shape: tuple[int, ...], kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair
    ) -> None:
        self.kernel, self.stride, self.dilation, self.out_hw = kernel, stride, dilation, out_hw
        self.hp, self.wp = xp_shape[2:]
        self.extended = stride == (1, 1)
        self.row = self.wp if self.extended else out_hw[1]  # columns per output row
        self.p = out_hw[0] * self.row  # columns per image
        self.slack = dilation[1] * (kernel[1] - 1) if self.extended else 0

    def cols(self, xp: np.ndarray, buf: np.ndarray, split: int = 1) -> np.ndarray:
        """Copy the windows of the chunk ``xp`` (B, C, Hp, Wp) into ``buf`` as the
        ``(C*KH*KW, B*p)`` im2col matrix (rows c, kh, kw; columns b, oh, ow).

        ``split > 1`` copies channel ranges in that many threads (for chunks processed
        one at a time, where BLAS has the cores for the product but the copy would not).
        """
        b, c = xp.shape[:2]
        kh, kw = self.kernel
        cols = buf[:, : b * self.p]
        if self.extended:
            it = xp.itemsize
            src = as_strided(
                xp,
                (c, kh, kw, b, self.p),
                (xp.strides[1], self.dilation[0] * self.wp * it, self.dilation[1] * it,
                 xp.strides[0], it),
            )  # fmt: skip
            dst = cols.reshape(c, kh, kw, b, self.p)
        else:
            win = windows(xp, self.kernel, self.stride, self.dilation, self.out_hw)
            src = win.transpose(1, 2, 3, 0, 4, 5)
            dst = cols.reshape(c, kh, kw, b, *self.out_hw)
        if split > 1 and c >= split and cols.size >= _SPLIT_COPY_MIN:
            parts = parallel.split(c, -(-c // split), split)
            parallel.run(parts, lambda _t, a, z: np.copyto(dst[a:z], src[a:z]), split, False)
        else:
            np.copyto(dst, src)
        return cols

    def grad_cols(self, grad: np.ndarray, gbuf: np.ndarray) -> np.ndarray:
        """The chunk's output gradient as ``(OC, B*p)`` in the column order of :meth:`cols`
        (zeros in the extra columns of the row-extended layout)."""
        b, oc = grad.shape[:2]
        gc = gbuf[:, : b * self.p]
        dst = gc.reshape(oc, b, self.out_hw[0], self.row)[..., : self.out_hw[1]]
        np.copyto(dst, grad.transpose(1, 0, 2, 3))
        return gc

    def output(self, res: np.ndarray, b: int) -> np.ndarray:
        """``(OC, B*p)`` GEMM result as ``(B, OC, OH, OW)``."""
        out = res.reshape(-1, b, self.out_hw[0], self.row)[..., : self.out_hw[1]]
        return out.transpose(1, 0, 2, 3)


def _pad_for(x: np.ndarray, pads: Pads, slack: int) -> np.ndarray:
    """Zero-padded C-contiguous copy of ``x`` whose buffer has ``slack`` finite elements
    after the end (row-extended im2col reads a few values past the last row)."""
    if not (slack or any(pads)) and x.flags.c_contiguous:
        return x
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    hp, wp = h + top + bottom, w + left + right
    size = n * c * hp * wp
    flat = np.empty(size + slack, dtype=x.dtype)
    flat[size:] = 0
    xp = flat[:size].reshape(n, c, hp, wp)
    if top or bottom or left or right:
        xp[:, :, :top] = 0
        xp[:, :, hp - bottom :] = 0
        xp[:, :, :, :left] = 0
        xp[:, :, :, wp - right :] = 0
    parallel.copy(xp[:, :, top : top + h, left : left + w], x)
    return xp


def _forward_nchw(
    x: np.ndarray, pads: Pads, w: np.ndarray, b: np.ndarray | None, stride: Pair,
    dilation: Pair, g: int, out_hw: Pair,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per chunk one (grouped) GEMM ``W (G, OCg, K) @ cols (G, K, B*p)``, chunks spread
    over worker threads."""
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    k = cg * kh * kw
    xp_shape = (n, c, h + pads[0] + pads[1], wd + pads[2] + pads[3])
    plan = _Plan(xp_shape, (kh, kw), stride, dilation, out_hw)
    xp = _pad_for(x, pads, plan.slack)
    nw = _workers(n)
    out = np.empty((n, oc, *out_hw), dtype=np.result_type(xp, w))
    if stride == (1, 1) and native.usable(xp, w, *(() if b is None else (b,))):
        wn = native.nchw_weight(w, g)
        bc = None if b is None else np.ascontiguousarray(b)

        def native_work(_t: int, c0: int, c1: int) -> None:
            native.conv_nchw(xp[c0:c1], wn, bc, out[c0:c1], (kh, kw), dilation)

        parallel.run(parallel.shares(n), native_work, nw)  # one share per worker
        return out, xp
    chunks = parallel.split(n, _chunk(n, c * kh * kw, plan.p), nw)
    bsz = max(c1 - c0 for c0, c1 in chunks)
    bufs = [np.empty((c * kh * kw, bsz * plan.p), dtype=xp.dtype) for _ in range(nw)]
    w3 = w.reshape(g, oc // g, k)
    split = parallel.workers() if nw == 1 and bufs[0].size >= _SPLIT_COPY_MIN else 1

    b4 = None if b is None else b.reshape(1, -1, 1, 1)

    def work(t: int, c0: int, c1: int) -> None:
        cols = plan.cols(xp[c0:c1], bufs[t], split)
        res = np.matmul(w3, cols.reshape(g, k, -1))  # (G, OCg, B*p)
        if b4 is not None and split == 1:  # the bias added in the same pass as the copy
            np.add(plan.output(res, c1 - c0), b4, out=out[c0:c1])
        else:
            parallel.copy(out[c0:c1], plan.output(res, c1 - c0), split)
            if b4 is not None:
                out[c0:c1] += b4

    parallel.run(chunks, work, nw)
    return out, xp


def _weight_grad_nchw(grad: np.ndarray, xp: np.ndarray, meta: tuple) -> np.ndarray:
    """``dW^T = sum over chunks of cols @ g^T`` (per group), one GEMM per chunk."""
    _, _, w_shape, stride, _, dilation, g, out_hw = meta[:8]
    n, c = xp.shape[:2]
    oc, cg, kh, kw = w_shape
    k = cg * kh * kw
    nw = _workers(n)
    if stride == (1, 1) and native.usable(xp, grad):  # compiled, no im2col
        gc = np.ascontiguousarray(grad)
        dws = [np.zeros(w_shape, dtype=grad.dtype) for _ in range(nw)]

        def native_work(t: int, c0: int, c1: int) -> None:
            native.conv_weight_grad_nchw(xp[c0:c1], gc[c0:c1], dws[t], (kh, kw), dilation, g)

        parallel.run(parallel.shares(n), native_work, nw)  # one share per worker
        for extra in dws[1:]:
            dws[0] += extra
        return dws[0]
    plan = _Plan(xp.shape, (kh, kw), stride, dilation, out_hw)
    chunks = parallel.split(n, _chunk(n, c * kh * kw, plan.p), nw)
    bsz = max(c1 - c0 for c0, c1 in chunks)
    bufs = [np.empty((c * kh * kw, bsz * plan.p), dtype=xp.dtype) for _ in range(nw)]
    gbufs = [np.zeros((oc, bsz * plan.p), dtype=grad.dtype) for _ in range(nw)]
    dwts = [np.zeros((g, k, oc // g), dtype=grad.dtype) for _ in range(nw)]
    split = parallel.workers() if nw == 1 and bufs[0].size >= _SPLIT_COPY_MIN else 1

    def work(t: int, c0: int, c1: int) -> None:
        cols = plan.cols(xp[c0:c1], bufs[t], split)
        gc = plan.grad_cols(grad[c0:c1], gbufs[t])
        m = cols.shape[1]
        gt = gc.reshape(g, oc // g, m).transpose(0, 2, 1)
        dwts[t] += np.matmul(cols.reshape(g, k, m), gt)

    parallel.run(chunks, work, nw)
    dwt = dwts[0]
    for extra in dwts[1:]:
        dwt += extra
    return np.ascontiguousarray(dwt.transpose(0, 2, 1)).reshape(w_shape)


def _col2im_nchw(grad: np.ndarray, w: np.ndarray, meta: tuple) -> np.ndarray:
    """``dcols = W^T g`` per chunk, scattered back by one add per kernel tap.

    Stride 1 works in the row-extended layout of :class:`_Plan`, where a tap's columns
    are one contiguous run of the padded image, so each add covers whole runs of
    ``OH*Wp`` values (the extra columns carry zero gradient); other strides use
    :func:`col2im` on plain columns.
    """
    x_shape, xp_shape, w_shape, stride, pads, dilation, g, out_hw = meta[:8]
    n = grad.shape[0]
    oc, cg, kh, kw = w_shape
    c = g * cg
    plan = _Plan(xp_shape, (kh, kw), stride, dilation, out_hw)
    nw = _workers(n)
    chunks = parallel.split(n, _chunk(n, c * kh * kw, plan.p), nw)
    bsz = max(c1 - c0 for c0, c1 in chunks)
    gbufs = [np.zeros((oc, bsz * plan.p), dtype=grad.dtype) for _ in range(nw)]
    w3t = w.reshape(g, oc // g, cg * kh * kw).transpose(0, 2, 1)
    dxp = (np.zeros if plan.extended else np.empty)(xp_shape, dtype=grad.dtype)
    run = plan.p - plan.slack  # the rest of a tap's run is extra columns only

    def work(t: int, c0: int, c1: int) -> None:
        b = c1 - c0
        gc = plan.grad_cols(grad[c0:c1], gbufs[t])
        dcols = np.matmul(w3t, gc.reshape(g, oc // g, -1))  # (G, K, B*p)
        if plan.extended:
            d5 = dcols.reshape(c, kh, kw, b, plan.p)
            flat = dxp[c0:c1].reshape(b, c, plan.hp * plan.wp)
            for i in range(kh):
                for j in range(kw):
                    off = i * dilation[0] * plan.wp + j * dilation[1]
                    flat[:, :, off : off + run] += d5[:, i, j, :, :run].transpose(1, 0, 2)
        else:
            d6 = dcols.reshape(c, kh, kw, b, *out_hw).transpose(3, 0, 1, 2, 4, 5)
            dxp[c0:c1] = col2im(d6, (b, *xp_shape[1:]), stride, dilation)

    parallel.run(chunks, work, nw)
    return unpad_hw(dxp, pads, x_shape[2:])


# --- both ----------------------------------------------------------------------------------


def _conv_forward(
    x: np.ndarray, pads: Pads, w: np.ndarray, b: np.ndarray | None, stride: Pair,
    dilation: Pair, groups: int, out_hw: Pair, wide: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The convolution in im2col chunks (no im2col matrix for the whole batch).

    Returns the ``(N, OC, OH, OW)`` output (a channels-last view for wide layers) and the
    padded input (``(N, Hp, Wp, C)`` for wide layers, ``(N, C, Hp, Wp)`` otherwise).
    ``wide`` overrides the choice of layout made from the output channels per group.
    """
    if wide is None:
        wide = _is_wide(w.shape[0], groups)
    fwd = _forward_nhwc if wide else _forward_nchw
    return fwd(x, pads, w, b, stride, dilation, groups, out_hw)


class Conv2d(Function):
    """2-D cross-correlation with groups: ``out[n, o] = sum_c w[o, c] * x[n, c] + b[o]``.

    The batch is processed in chunks of ``B`` images. With ``cols`` a chunk's im2col
    matrix per group (``K = Cg*KH*KW`` values per output position) and ``W`` the weights
    as a ``K x OCg`` matrix: forward ``out = cols @ W``; backward ``dW += cols^T @ g`` (one
    GEMM per chunk), ``db = sum g``, and ``dx`` either as a convolution of the padded
    gradient with the flipped kernel (stride 1) or as ``col2im(g @ W^T)``. Only the padded
    input is kept for backward (im2col is recomputed chunk by chunk), not the im2col
    matrix.

    For float32 the compiled kernels (:mod:`cnnkit.functional._native`) compute the
    forward, the stride-1 input gradient and the weight gradient without im2col.

    Wide layers (``OC/groups >= 24``) keep activations channels-last in memory: an
    ``(N, C, H, W)`` view of ``(N, H, W, C)`` data, like PyTorch's ``channels_last``, so
    the GEMM writes the output directly. Narrow layers use channel-first row-extended
    columns and spread chunks over worker threads.
    """

    version_checked = (1,)  # PyTorch keeps the weight even when x needs no gradient

    def forward(
        self,
        x: np.ndarray,
        w: np.ndarray,
        b: np.ndarray | None,
        stride: Pair,
        pads: Pads,
        dilation: Pair,
        groups: int,
        out_hw: Pair,
    ) -> np.ndarray:
        out, xp = _conv_forward(x, pads, w, b, stride, dilation, groups, out_hw)
        nx, nw, _ = self.needs_input_grad
        self.save_for_backward(xp if nw else None, w if nx else None)
        self.meta = (x.shape, xp.shape, w.shape, stride, pads, dilation, groups, out_hw)
        return out

    def infer(self, x: np.ndarray, w: np.ndarray, b: Any, out_hw: Pair, **_: Any) -> tuple:
        return (x.shape[0], w.shape[0], *out_hw), np.result_type(x, w)

    def backward(self, grad: np.ndarray) -> tuple:
        xp, w = self.saved
        w_shape, stride = self.meta[2:4]
        groups = self.meta[6]
        nx, nw, nb = self.needs_input_grad
        wide = _is_wide(w_shape[0], groups)
        dx = dw = db = None
        if wide:
            g2 = channels_last(grad).reshape(-1, w_shape[0])  # (N*OH*OW, OC)
            if nb:
                db = np.ones(g2.shape[0], dtype=g2.dtype) @ g2
            if nw:
                dw = _weight_grad_nhwc(g2, xp, self.meta)
        else:
            if nb:
                db = grad.sum(axis=(0, 2, 3))
            if nw:
                dw = _weight_grad_nchw(grad, xp, self.meta)
        if nx:
            if stride == (1, 1) and _dx_by_conv(w_shape[1], wide, native.usable(grad, w)):
                dx = self._input_grad_by_conv(grad, w, wide)
            elif wide:
                dx = _col2im_nhwc(g2, w, self.meta)
            else:
                dx = _col2im_nchw(grad, w, self.meta)
        return dx, dw, db

    def _input_grad_by_conv(self, grad: np.ndarray, w: np.ndarray, wide: bool) -> np.ndarray:
        """Stride 1: the input gradient is the output gradient convolved with the flipped
        kernel (input/output channels swapped per group), padded by the dilated kernel
        extent minus the forward padding on each side: ``dx[i] = sum_k g[i + top - d k] w[k]``.
        It uses the forward's memory layout (``wide``), which the gradient already has.
        """
        x_shape, _, w_shape, _, pads, dilation, g, _ = self.meta
        oc, cg, kh, kw = w_shape
        eh, ew = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
        gpads = (eh - pads[0], eh - pads[1], ew - pads[2], ew - pads[3])
        wt = w.reshape(g, oc // g, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
        wt = np.ascontiguousarray(wt).reshape(g * cg, oc // g, kh, kw)
        if min(gpads) >= 0:  # the usual case: padding no larger than the kernel extent
            return _conv_forward(grad, gpads, wt, None, (1, 1), dilation, g, x_shape[2:], wide)[0]
        full = (eh, eh, ew, ew)  # padding beyond the kernel: compute on the padded input
        hp = x_shape[2] + pads[0] + pads[1]
        wp = x_shape[3] + pads[2] + pads[3]
        dxp = _conv_forward(grad, full, wt, None, (1, 1), dilation, g, (hp, wp), wide)[0]
        return unpad_hw(dxp, pads, x_shape[2:])


def _check_float(t: Any, name: str, where: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{where}: {name} must be a cnnkit Tensor; got {type(t).__name__}")
    if t.dtype.kind != "f":
        raise TypeError(f"{where}: {name} must be floating point; got dtype {t.dtype}")


def _batched(input: Tensor, where: str, channels: int, weight_shape: tuple) -> tuple[Tensor, bool]:
    """Accept ``(N, C, H, W)`` or an unbatched ``(C, H, W)``; check the channel count."""
    _check_float(input, "input", where)
    unbatched = input.ndim == 3
    if input.ndim not in (3, 4) or input.shape[-3] != channels:
        raise ValueError(
            f"{where}: expected input (N, {channels}, H, W) for weight of shape "
            f"{tuple(weight_shape)}; got {tuple(input.shape)}"
        )
    return (input.unsqueeze(0) if unbatched else input), unbatched


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Pair = 1,
    padding: int | Pair | str = 0,
    dilation: int | Pair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation, as in PyTorch).

    Parameters
    ----------
    input : Tensor, shape (N, C_in, H, W) or (C_in, H, W)
    weight : Tensor, shape (C_out, C_in / groups, KH, KW)
    bias : Tensor, shape (C_out,), optional
    stride, dilation : int or (int, int)
    padding : int, (int, int), 'same' or 'valid'
    groups : int
        Split channels into ``groups`` independent convolutions (``groups == C_in`` is
        depthwise).

    Returns
    -------
    Tensor, shape (N, C_out, OH, OW) with ``OH = (H + 2P - D*(KH-1) - 1) // S + 1``.
    """
    where = "conv2d"
    _check_float(weight, "weight", where)
    if weight.ndim != 4:
        raise ValueError(
            f"{where}: expected weight (C_out, C_in/groups, KH, KW); got {tuple(weight.shape)}"
        )
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{where}: groups must be a positive int; got {groups!r}")
    oc, cg, kh, kw = weight.shape
    if oc % groups:
        raise ValueError(f"{where}: out_channels {oc} is not divisible by groups {groups}")
    x, unbatched = _batched(input, where, cg * groups, weight.shape)
    if x.dtype != weight.dtype:
        raise TypeError(
            f"{where}: input dtype {x.dtype} does not match weight dtype {weight.dtype}"
        )
    st = pair(stride, "stride", where, 1)
    dl = pair(dilation, "dilation", where, 1)
    pads = resolve_padding(padding, (kh, kw), st, dl, where)
    if bias is not None and tuple(bias.shape) != (oc,):
        raise ValueError(f"{where}: expected bias ({oc},); got {tuple(bias.shape)}")
    out_hw = _spatial(x.shape, (kh, kw), st, dl, pads, where)
    out = Conv2d.apply(
        x, weight, bias, stride=st, pads=pads, dilation=dl, groups=int(groups), out_hw=out_hw
    )
    return out.squeeze(0) if unbatched else out


class LocallyConnected2d(Function):
    """Convolution with a separate filter at every output location (unshared weights).

    With ``cols`` the ``(P, N, C*KH*KW)`` windows (P = OH*OW positions) and ``W`` as
    ``(P, OC, C*KH*KW)``: forward ``out_p = cols_p W_p^T`` for all p in one batched
    product; backward ``dW_p = g_p^T cols_p``, ``dcols_p = g_p W_p`` — vectorised over
    positions and batch like the forward.
    """

    version_checked = (1,)  # as Conv2d

    def forward(
        self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair, pads: Pads
    ) -> np.ndarray:
        n = x.shape[0]
        oh, ow, oc, c, kh, kw = w.shape
        xp = pad_hw(x, pads)
        win = windows(xp, (kh, kw), stride, (1, 1), (oh, ow), order="poskern")
        cols = win.transpose(2, 3, 0, 1, 4, 5).reshape(oh * ow, n, c * kh * kw)
        w3 = w.reshape(oh * ow, oc, c * kh * kw)
        out = np.matmul(cols, w3.transpose(0, 2, 1))  # (P, N, OC)
        out = np.ascontiguousarray(out.transpose(1, 2, 0)).reshape(n, oc, oh, ow)
        if b is not None:
            out += b
        nx, nw, _ = self.needs_input_grad
        self.save_for_backward(cols if nw else None, w3 if nx else None)
        self.meta = (x.shape, xp.shape, w.shape, stride, pads)
        return out

    def infer(self, x: np.ndarray, w: np.ndarray, b: Any, **_: Any) -> tuple:
        return (x.shape[0], w.shape[2], w.shape[0], w.shape[1]), np.result_type(x, w)

    def backward(self, grad: np.ndarray) -> tuple:
        cols, w3 = self.saved
        x_shape, xp_shape, w_shape, stride, pads = self.meta
        oh, ow, oc, c, kh, kw = w_shape
        n = grad.shape[0]
        nx, nw, nb = self.needs_input_grad
        gp = np.ascontiguousarray(grad.reshape(n, oc, oh * ow).transpose(2, 0, 1))  # (P,N,OC)
        dx = dw = db = None
        if nb:
            db = grad.sum(axis=0)
        if nw:
            dw = np.matmul(gp.transpose(0, 2, 1), cols).reshape(w_shape)
        if nx:
            dcols = np.matmul(gp, w3).reshape(oh, ow, n, c, kh, kw)
            dxp = col2im(dcols.transpose(2, 3, 4, 5, 0, 1), xp_shape, stride, (1, 1))
            dx = unpad_hw(dxp, pads, x_shape[2:])
        return dx, dw, db


def locally_connected2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Pair = 1,
    padding: int | Pair = 0,
) -> Tensor:
    """Locally connected layer: like :func:`conv2d` but every output location has its own
    filter (no weight sharing).

    ``out[n, o, i, j] = sum_{c,p,q} w[i, j, o, c, p, q] * xpad[n, c, i*S + p, j*S + q]
    + b[o, i, j]``.

    Parameters
    ----------
    input : Tensor, shape (N, C_in, H, W) or (C_in, H, W)
    weight : Tensor, shape (OH, OW, C_out, C_in, KH, KW)
    bias : Tensor, shape (C_out, OH, OW), optional
    stride, padding : int or (int, int)

    Returns
    -------
    Tensor, shape (N, C_out, OH, OW)
    """
    where = "locally_connected2d"
    _check_float(weight, "weight", where)
    if weight.ndim != 6:
        raise ValueError(
            f"{where}: expected weight (OH, OW, C_out, C_in, KH, KW); got {tuple(weight.shape)}"
        )
    oh, ow, oc, c, kh, kw = weight.shape
    x, unbatched = _batched(input, where, c, weight.shape)
    st = pair(stride, "stride", where, 1)
    pads = resolve_padding(padding, (kh, kw), st, (1, 1), where)
    got = _spatial(x.shape, (kh, kw), st, (1, 1), pads, where)
    if got != (oh, ow):
        raise ValueError(
            f"{where}: weight is for a {oh}x{ow} output but input {tuple(x.shape)} with "
            f"kernel {kh}x{kw}, stride {st}, padding {pads[::2]} gives {got[0]}x{got[1]}"
        )
    if bias is not None and tuple(bias.shape) != (oc, oh, ow):
        raise ValueError(f"{where}: expected bias ({oc}, {oh}, {ow}); got {tuple(bias.shape)}")
    out = LocallyConnected2d.apply(x, weight, bias, stride=st, pads=pads)
    return out.squeeze(0) if unbatched else out
