"""Fast paths of the convolution: compiled kernels, channels-last memory, im2col in
chunks spread over worker threads.

:func:`forward` and :func:`backward` take the same arguments as the reference maths in
:mod:`cnnkit.functional.conv` (``conv2d_reference`` and ``conv2d_reference_backward``)
and return the same values; they choose, per call, among:

- the compiled kernels of :mod:`cnnkit.functional._native` (float32, where built and the
  CPU runs them): no im2col matrix at all;
- wide layers (``OC/groups >= 24``): channels-last (NHWC) memory, one GEMM per chunk of
  images written straight into the output (an ``(N, C, H, W)`` view of ``(N, H, W, C)``
  memory, like PyTorch's ``channels_last``);
- narrow layers: channel-first memory with row-extended im2col columns (stride 1).

Only the padded input is kept for backward (im2col is recomputed chunk by chunk).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnkit.functional import _native as native
from cnnkit.functional import _parallel as parallel
from cnnkit.functional._windows import (
    Pair,
    channels_last,
    col2im,
    is_channels_last,
    kernel_slice,
    unpad_hw,
    windows,
)
from cnnkit.functional.geometry import ConvGeometry, Pads

_CHUNK_ELEMENTS = 1 << 20  # im2col chunk size: about 4 MB of float32, cache friendly
_SPLIT_COPY_MIN = 1 << 17  # im2col chunks at least this big are copied by several threads
# Layers with at least this many output channels per group are "wide": they keep
# activations channels-last; narrower ones stay channel-first with row-extended columns
# (measured: channels-last im2col with a handful of channels copies runs of a few
# floats, which is slow).
_WIDE = 24
# ... and from 16 output channels when the layer also has 8 or more input channels per
# group (measured, 2 threads: the small ResNet's 16-channel stage 1.64 -> 1.49 s per
# step under load; LeNet's 6->16 layer stays channel-first, which is faster there)
_WIDE_MIN, _WIDE_MIN_IN = 16, 8


def _is_wide(oc: int, cg: int, groups: int) -> bool:
    """Whether a layer with ``oc`` output and ``cg`` input channels per group keeps its
    activations channels-last (see ``_WIDE``)."""
    ocg = oc // groups
    return ocg >= _WIDE or (ocg >= _WIDE_MIN and cg >= _WIDE_MIN_IN)


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


def _workers(n: int, macs: int) -> int:
    """Chunk worker threads for ``n`` images whose convolution takes ``macs``
    multiply-adds: one per BLAS thread when splitting pays (``parallel.split_workers``:
    the one-thread time saved is at least twice the measured hand-off), else one (one
    image: no threads, and no query of the BLAS thread count).

    Each worker copies its chunk's columns and runs the chunk's product on
    single-threaded BLAS, so the copies around the products use every core too. On 2
    cores this beats one sequence of chunks on 2-thread BLAS by about 25 % for a
    32->32 3x3 convolution forward (8.9 vs 11.5-12 ms, batch 128, 32x32).
    """
    return parallel.split_workers(macs, "macs") if n > 1 else 1


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
        self.nwork = _workers(n, n * self.p * self.k * max(oc, 1))
        # a chunk's columns and its output rows (``oc`` per position) stay in cache
        self.chunks = parallel.split(n, _chunk(n, self.g * self.k + oc, self.p), self.nwork)
        bsz = max(c1 - c0 for c0, c1 in self.chunks)
        shape = (g, bsz, *out_hw, kh, kw, self.cg)
        self.bufs = [np.empty(shape, dtype=xp.dtype) for _ in range(self.nwork)]

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
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, geom: ConvGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk one (grouped) GEMM ``cols (G, B*P, K) @ W (G, K, OCg)`` written straight
    into the channels-last output, the bias added while the rows are in cache; or, for
    float32, the compiled kernel on each worker's images."""
    pads, stride, dilation = geom.pads, geom.stride, geom.dilation
    g, out_hw = geom.groups, geom.out_hw
    n, oc = x.shape[0], w.shape[0]
    out = np.empty((n, *out_hw, oc), dtype=np.result_type(x, w))
    if native.usable(x, w, *(() if b is None else (b,))):  # compiled, no im2col
        # weights and bias packed once for all workers, straight from (OC, Cg, KH, KW)
        packed = native.pack_weights(
            np.ascontiguousarray(w), None if b is None else np.ascontiguousarray(b), g
        )
        c = x.shape[1]
        hp, wp = geom.padded_hw
        # each worker pads its images and convolves them one by one, in one call (an
        # input whose strides are not whole elements is padded by NumPy first)
        whole = all(st % x.itemsize == 0 for st in x.strides)
        xp = np.empty((n, hp, wp, c), dtype=x.dtype) if whole else _pad_nhwc(x, pads)
        src = x if whole else None
        nwork = _workers(n, geom.macs)

        def native_work(_t: int, c0: int, c1: int) -> None:
            native.conv_nhwc(
                xp[c0:c1], None, None, out[c0:c1], w.shape[2:], stride, dilation,
                None if src is None else src[c0:c1], pads, packed,
            )  # fmt: skip

        parallel.run(parallel.shares(n), native_work, nwork)  # one share per worker
        return out.transpose(0, 3, 1, 2), xp
    wk = _gemm_weight(w, g)
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

    parallel.run(win.chunks, work, win.nwork)
    return out.transpose(0, 3, 1, 2), xp


def _weight_grad_nhwc(g2: np.ndarray, xp: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``dW = sum over chunks of cols^T @ g`` (per group), one GEMM per chunk."""
    w_shape, stride, dilation = geom.w_shape, geom.stride, geom.dilation
    g, out_hw = geom.groups, geom.out_hw
    oc, cg, kh, kw = w_shape
    if native.usable(xp, g2):  # compiled, no im2col
        n = xp.shape[0]
        g4 = g2.reshape(n, *out_hw, oc)
        nwork = _workers(n, geom.macs)
        dwks = [np.zeros((g, kh * kw * cg, oc // g), dtype=g2.dtype) for _ in range(nwork)]

        def native_work(t: int, c0: int, c1: int) -> None:
            native.conv_weight_grad_nhwc(xp[c0:c1], g4[c0:c1], dwks[t], (kh, kw), stride, dilation)

        parallel.run(parallel.shares(n), native_work, nwork)  # one share per worker
    else:
        dwks = _weight_grad_im2col(g2, xp, geom)
    dwk = dwks[0]
    for extra in dwks[1:]:
        dwk += extra
    # (G, KH, KW, Cg, OCg) -> (G, OCg, Cg, KH, KW)
    dw = dwk.reshape(g, kh, kw, cg, oc // g).transpose(0, 4, 3, 1, 2)
    return np.ascontiguousarray(dw).reshape(w_shape)


def _weight_grad_im2col(g2: np.ndarray, xp: np.ndarray, geom: ConvGeometry) -> list[np.ndarray]:
    """Per worker ``cols^T @ g`` summed over its chunks, as ``(G, KH*KW*Cg, OCg)``."""
    oc, g = geom.w_shape[0], geom.groups
    win = _Windows(xp, geom.kernel, geom.stride, geom.dilation, geom.out_hw, g, oc)
    dwks = [np.zeros((g, win.k, oc // g), dtype=g2.dtype) for _ in range(win.nwork)]

    def work(t: int, c0: int, c1: int) -> None:
        gc = g2[c0 * win.p : c1 * win.p].reshape(-1, g, oc // g).transpose(1, 0, 2)
        dwks[t] += np.matmul(win.cols(t, c0, c1).transpose(0, 2, 1), gc)

    parallel.run(win.chunks, work, win.nwork)
    return dwks


def _col2im_nhwc(g2: np.ndarray, w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``dcols = g @ W^T`` per chunk, scattered back by one strided add per kernel tap."""
    x_shape, stride, pads, dilation = geom.x_shape, geom.stride, geom.pads, geom.dilation
    g, out_hw = geom.groups, geom.out_hw
    oc, cg, kh, kw = geom.w_shape
    n, c = x_shape[:2]
    xp_shape = (n, *geom.padded_hw, c)
    p = out_hw[0] * out_hw[1]
    wkt = _gemm_weight(w, g).transpose(0, 2, 1)  # (G, OCg, K)
    dxp = np.zeros(xp_shape, dtype=g2.dtype)  # (N, Hp, Wp, C)
    nwork = _workers(n, geom.macs)

    def work(_t: int, c0: int, c1: int) -> None:  # each chunk adds into its own images
        gc = g2[c0 * p : c1 * p].reshape(-1, g, oc // g).transpose(1, 0, 2)
        d7 = np.matmul(gc, wkt).reshape(g, c1 - c0, *out_hw, kh, kw, cg)
        dst = dxp[c0:c1].reshape(c1 - c0, *xp_shape[1:3], g, cg)
        for i in range(kh):
            for j in range(kw):
                sl = kernel_slice(i, j, stride, dilation, out_hw)[2:]
                dst[:, sl[0], sl[1]] += d7[:, :, :, :, i, j].transpose(1, 2, 3, 0, 4)

    parallel.run(parallel.split(n, _chunk(n, g * kh * kw * cg, p), nwork), work, nwork)
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
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, geom: ConvGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk one (grouped) GEMM ``W (G, OCg, K) @ cols (G, K, B*p)``, chunks spread
    over worker threads."""
    pads, stride, dilation = geom.pads, geom.stride, geom.dilation
    g, out_hw = geom.groups, geom.out_hw
    n, c = x.shape[:2]
    oc, cg, kh, kw = w.shape
    k = cg * kh * kw
    xp_shape = (n, c, *geom.padded_hw)
    plan = _Plan(xp_shape, (kh, kw), stride, dilation, out_hw)
    xp = _pad_for(x, pads, plan.slack)
    nwork = _workers(n, geom.macs)
    out = np.empty((n, oc, *out_hw), dtype=np.result_type(xp, w))
    if stride == (1, 1) and native.usable(xp, w, *(() if b is None else (b,))):
        wn = native.nchw_weight(w, g)
        bc = None if b is None else np.ascontiguousarray(b)

        def native_work(_t: int, c0: int, c1: int) -> None:
            native.conv_nchw(xp[c0:c1], wn, bc, out[c0:c1], (kh, kw), dilation)

        parallel.run(parallel.shares(n), native_work, nwork)  # one share per worker
        return out, xp
    chunks = parallel.split(n, _chunk(n, c * kh * kw, plan.p), nwork)
    bsz = max(c1 - c0 for c0, c1 in chunks)
    bufs = [np.empty((c * kh * kw, bsz * plan.p), dtype=xp.dtype) for _ in range(nwork)]
    w3 = w.reshape(g, oc // g, k)
    split = parallel.workers() if nwork == 1 and bufs[0].size >= _SPLIT_COPY_MIN else 1

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

    parallel.run(chunks, work, nwork)
    return out, xp


def _weight_grad_nchw(grad: np.ndarray, xp: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``dW^T = sum over chunks of cols @ g^T`` (per group), one GEMM per chunk."""
    w_shape, stride, dilation = geom.w_shape, geom.stride, geom.dilation
    g, out_hw = geom.groups, geom.out_hw
    n, c = xp.shape[:2]
    oc, cg, kh, kw = w_shape
    k = cg * kh * kw
    nwork = _workers(n, geom.macs)
    if stride == (1, 1) and native.usable(xp, grad):  # compiled, no im2col
        gc = np.ascontiguousarray(grad)
        dws = [np.zeros(w_shape, dtype=grad.dtype) for _ in range(nwork)]

        def native_work(t: int, c0: int, c1: int) -> None:
            native.conv_weight_grad_nchw(xp[c0:c1], gc[c0:c1], dws[t], (kh, kw), dilation, g)

        parallel.run(parallel.shares(n), native_work, nwork)  # one share per worker
        for extra in dws[1:]:
            dws[0] += extra
        return dws[0]
    plan = _Plan(xp.shape, (kh, kw), stride, dilation, out_hw)
    chunks = parallel.split(n, _chunk(n, c * kh * kw, plan.p), nwork)
    bsz = max(c1 - c0 for c0, c1 in chunks)
    bufs = [np.empty((c * kh * kw, bsz * plan.p), dtype=xp.dtype) for _ in range(nwork)]
    gbufs = [np.zeros((oc, bsz * plan.p), dtype=grad.dtype) for _ in range(nwork)]
    dwts = [np.zeros((g, k, oc // g), dtype=grad.dtype) for _ in range(nwork)]
    split = parallel.workers() if nwork == 1 and bufs[0].size >= _SPLIT_COPY_MIN else 1

    def work(t: int, c0: int, c1: int) -> None:
        cols = plan.cols(xp[c0:c1], bufs[t], split)
        gc = plan.grad_cols(grad[c0:c1], gbufs[t])
        m = cols.shape[1]
        gt = gc.reshape(g, oc // g, m).transpose(0, 2, 1)
        dwts[t] += np.matmul(cols.reshape(g, k, m), gt)

    parallel.run(chunks, work, nwork)
    dwt = dwts[0]
    for extra in dwts[1:]:
        dwt += extra
    return np.ascontiguousarray(dwt.transpose(0, 2, 1)).reshape(w_shape)


def _col2im_nchw(grad: np.ndarray, w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``dcols = W^T g`` per chunk, scattered back by one add per kernel tap.

    Stride 1 works in the row-extended layout of :class:`_Plan`, where a tap's columns
    are one contiguous run of the padded image, so each add covers whole runs of
    ``OH*Wp`` values (the extra columns carry zero gradient); other strides use
    :func:`col2im` on plain columns.
    """
    x_shape, w_shape, stride, pads = geom.x_shape, geom.w_shape, geom.stride, geom.pads
    dilation, g, out_hw = geom.dilation, geom.groups, geom.out_hw
    n = grad.shape[0]
    xp_shape = (*x_shape[:2], *geom.padded_hw)
    oc, cg, kh, kw = w_shape
    c = g * cg
    plan = _Plan(xp_shape, (kh, kw), stride, dilation, out_hw)
    nwork = _workers(n, geom.macs)
    chunks = parallel.split(n, _chunk(n, c * kh * kw, plan.p), nwork)
    bsz = max(c1 - c0 for c0, c1 in chunks)
    gbufs = [np.zeros((oc, bsz * plan.p), dtype=grad.dtype) for _ in range(nwork)]
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

    parallel.run(chunks, work, nwork)
    return unpad_hw(dxp, pads, x_shape[2:])


# --- the selection: one forward, one backward ------------------------------------------


def forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, geom: ConvGeometry,
    wide: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The convolution by the fastest path for this layer (same values as
    ``conv2d_reference`` to rounding).

    Returns the ``(N, OC, OH, OW)`` output (a channels-last view for wide layers) and the
    padded input kept for backward (``(N, Hp, Wp, C)`` for wide layers, ``(N, C, Hp, Wp)``
    otherwise). ``wide`` overrides the choice of layout made from the output channels
    per group.
    """
    if wide is None:
        wide = _is_wide(w.shape[0], w.shape[1], geom.groups)
    return (_forward_nhwc if wide else _forward_nchw)(x, w, b, geom)


def backward(
    grad: np.ndarray, xp: np.ndarray, w: np.ndarray, geom: ConvGeometry,
    needs: tuple[bool, bool, bool],
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:  # fmt: skip
    """``(dx, dw, db)`` for the output gradient ``grad`` (``None`` where ``needs`` is
    False); ``xp`` is the padded input :func:`forward` returned."""
    need_x, need_w, need_b = needs
    oc, cg = geom.w_shape[:2]
    wide = _is_wide(oc, cg, geom.groups)
    dx = dw = db = None
    if wide:
        g2 = channels_last(grad).reshape(-1, oc)  # (N*OH*OW, OC)
        if need_b:
            db = np.ones(g2.shape[0], dtype=g2.dtype) @ g2
        if need_w:
            dw = _weight_grad_nhwc(g2, xp, geom)
    else:
        if need_b:
            db = grad.sum(axis=(0, 2, 3))
        if need_w:
            dw = _weight_grad_nchw(grad, xp, geom)
    if need_x:
        compiled = native.usable(grad, w)
        if geom.stride == (1, 1) and _dx_by_conv(cg, wide, compiled):
            dx = _input_grad_by_conv(grad, w, geom, wide)
        elif STRIDED_DX_BY_CONV and compiled and _dx_by_conv(cg, wide, compiled):
            dx = _input_grad_by_conv(_spread(grad, geom.stride), w, geom, wide)
        elif wide:
            dx = _col2im_nhwc(g2, w, geom)
        else:
            dx = _col2im_nchw(grad, w, geom)
    return dx, dw, db


# Strided layers' input gradient as a stride-1 convolution of the spread-out gradient
# on the compiled kernels (S*S times the multiply-adds of col2im's GEMM, but no im2col
# scatter: measured faster for the small ResNet's stride-2 layers)
STRIDED_DX_BY_CONV = True


def _spread(grad: np.ndarray, stride: Pair) -> np.ndarray:
    """``grad`` with ``stride - 1`` zero rows/columns between its values, in its layout:
    ``(N, C, (OH-1)*SH+1, (OW-1)*SW+1)``; a strided convolution's input gradient is the
    stride-1 one of this."""
    if stride == (1, 1):
        return grad
    n, c, oh, ow = grad.shape
    hu, wu = (oh - 1) * stride[0] + 1, (ow - 1) * stride[1] + 1
    if is_channels_last(grad):
        up = np.zeros((n, hu, wu, c), dtype=grad.dtype).transpose(0, 3, 1, 2)
    else:
        up = np.zeros((n, c, hu, wu), dtype=grad.dtype)
    up[:, :, :: stride[0], :: stride[1]] = grad
    return up


def _input_grad_by_conv(
    grad: np.ndarray, w: np.ndarray, geom: ConvGeometry, wide: bool
) -> np.ndarray:
    """Stride 1: the input gradient is the output gradient convolved with the flipped
    kernel (input/output channels swapped per group), padded by the dilated kernel
    extent minus the forward padding on each side: ``dx[i] = sum_k g[i + top - d k] w[k]``.
    It uses the forward's memory layout (``wide``), which the gradient already has.
    A strided layer passes its gradient spread out (:func:`_spread`): rows of the padded
    input past the last window get no gradient (extra bottom/right padding).
    """
    x_shape, pads, dilation, g = geom.x_shape, geom.pads, geom.dilation, geom.groups
    oc, cg, kh, kw = geom.w_shape
    eh, ew = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
    hp, wp = geom.padded_hw
    rest_h, rest_w = hp - grad.shape[2] - eh, wp - grad.shape[3] - ew  # 0 for stride 1
    gpads = (eh - pads[0], eh - pads[1] + rest_h, ew - pads[2], ew - pads[3] + rest_w)
    wt = w.reshape(g, oc // g, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    wt = np.ascontiguousarray(wt).reshape(g * cg, oc // g, kh, kw)
    if min(gpads) >= 0:  # the usual case: padding no larger than the kernel extent
        back = ConvGeometry(grad.shape, wt.shape, (1, 1), gpads, dilation, g, x_shape[2:])
        return forward(grad, wt, None, back, wide)[0]
    full = (eh, eh + rest_h, ew, ew + rest_w)  # padding beyond the kernel: whole padded input
    back = ConvGeometry(grad.shape, wt.shape, (1, 1), full, dilation, g, geom.padded_hw)
    dxp = forward(grad, wt, None, back, wide)[0]
    return unpad_hw(dxp, pads, x_shape[2:])
