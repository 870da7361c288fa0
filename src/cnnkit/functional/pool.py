"""Max and average pooling (overlapping windows, padding, ceil mode) and adaptive pooling.

Pooling walks the ``KH * KW`` kernel taps, each a strided view over every window at
once, so the work is vectorised over batch, channels and positions with no im2col copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.autograd import Function
from cnnkit.functional import _native as native
from cnnkit.functional import _parallel as parallel
from cnnkit.functional._windows import (
    Pair,
    empty_like_layout,
    is_channels_last,
    pad_hw,
    to_layout,
    unpad_hw,
)
from cnnkit.functional.geometry import PoolGeometry, pool_geometry
from cnnkit.tensor import Tensor


def _setup(
    input: Tensor,
    kernel_size: int | Pair,
    stride: int | Pair | None,
    padding: int | Pair,
    dilation: int | Pair,
    ceil_mode: bool,
    where: str,
) -> PoolGeometry:
    if not isinstance(input, Tensor):
        raise TypeError(f"{where}: input must be a cnnkit Tensor; got {type(input).__name__}")
    if input.ndim not in (3, 4):
        raise ValueError(f"{where}: expected input (N, C, H, W) or (C, H, W); got {input.shape}")
    hw = tuple(input.shape[-2:])
    return pool_geometry(kernel_size, stride, padding, dilation, ceil_mode, hw, where)


def _reduce_windows(xp: np.ndarray, taps: tuple, op: np.ufunc, scale: Any = None) -> np.ndarray:
    """``op`` (``np.maximum``, ``np.add``) over the kernel taps of every window of ``xp``,
    times ``scale`` if given, in ``xp``'s memory layout; images split over the workers."""
    res = np.empty_like(xp[taps[0]])

    def part(a: int, z: int) -> None:  # images a:z
        b, xs = res[a:z], xp[a:z]
        np.copyto(b, xs[taps[0]])
        for sl in taps[1:]:
            op(b, xs[sl], out=b)
        if scale is not None:  # while the images are in cache
            np.multiply(b, scale, out=b)

    parallel.batches(len(xp), xp.size, part)
    return res


class MaxPool2d(Function):
    """Maximum over each window; backward routes the gradient to the (first) maximum.

    Forward is a running ``np.maximum`` over the ``KH*KW`` kernel taps (each a strided
    view of all windows). Backward walks the taps in row-major order and gives each
    window's gradient to the first tap equal to the maximum (ties go to the first
    maximum, as in PyTorch), so no argmax array is stored: only the input and output.
    """

    def forward(self, x: np.ndarray, geom: PoolGeometry) -> np.ndarray:
        fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        xp = pad_hw(x, geom.pads, fill)
        best = _reduce_windows(xp, geom.taps, np.maximum)
        if self.needs_input_grad[0]:
            self.save_for_backward(xp, best)
        self.geom, self.x_hw = geom, x.shape[2:]
        return best

    def backward(self, grad: np.ndarray) -> np.ndarray:
        xp, best = self.saved
        geom = self.geom
        taps, pads, disjoint = geom.taps, geom.pads, geom.disjoint
        cl = is_channels_last(best)
        grad = to_layout(grad, cl)
        if cl and native.usable(xp, grad) and is_channels_last(xp):  # compiled, one pass
            dxp = empty_like_layout(grad, xp.shape)
            xl, bl, gl, dl = (a.transpose(0, 2, 3, 1) for a in (xp, best, grad, dxp))

            def run(a: int, z: int) -> None:
                dl[a:z] = 0
                native.maxpool_backward_nhwc(
                    xl[a:z], bl[a:z], gl[a:z], dl[a:z], geom.kernel, geom.stride, geom.dilation
                )

            parallel.batches(len(xp), xp.size, run)
            return unpad_hw(dxp, pads, self.x_hw)
        # windows that tile the input exactly: every element is written once, no zeroing
        dxp = (np.empty_like if geom.covered else np.zeros_like)(xp, dtype=grad.dtype)
        nan = np.isnan(best) if best.dtype.kind == "f" else None
        if nan is not None and not nan.any():
            nan = None

        def part(a: int, z: int) -> None:  # images a:z
            xs, bs, gs, ds = xp[a:z], best[a:z], grad[a:z], dxp[a:z]
            open_ = np.ones_like(bs, dtype=bool)  # windows whose maximum is not found yet
            for i, sl in enumerate(taps):
                v = xs[sl]
                hit = v == bs
                if nan is not None:  # a NaN window's maximum is its first NaN
                    hit |= np.isnan(v) & nan[a:z]
                if i:
                    hit &= open_
                if i < len(taps) - 1:
                    open_ &= ~hit
                if disjoint:  # each input element belongs to one window: write, do not add
                    np.multiply(gs, hit, out=ds[sl])
                else:
                    ds[sl] += gs * hit

        parallel.batches(len(xp), xp.size, part)
        return unpad_hw(dxp, pads, self.x_hw)


def _avg_divisor(
    size: int, k: int, s: int, p: int, n_out: int, count_include_pad: bool
) -> np.ndarray:
    """Per-output-row divisor along one axis, by PyTorch's rule: windows are clipped to
    ``size + p`` for the include-pad count and to the input for the exclude-pad count."""
    start = np.arange(n_out) * s - p
    end = np.minimum(start + k, size + p)
    if count_include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


class AvgPool2d(Function):
    """Mean over each window; backward spreads ``g / divisor`` over the window."""

    def forward(
        self,
        x: np.ndarray,
        geom: PoolGeometry,
        count_include_pad: bool,
        divisor_override: int | None,
    ) -> np.ndarray:
        h, w = x.shape[2:]
        kernel, stride, pads, out = geom.kernel, geom.stride, geom.pads, geom.out_hw
        xp = pad_hw(x, pads, 0.0)
        if divisor_override is not None:
            inv = np.full((1, 1), 1.0 / divisor_override)
        else:
            dh = _avg_divisor(h, kernel[0], stride[0], pads[0], out[0], count_include_pad)
            dw = _avg_divisor(w, kernel[1], stride[1], pads[2], out[1], count_include_pad)
            inv = 1.0 / np.outer(dh, dw)
        inv = inv.astype(x.dtype)
        if np.all(inv == inv.flat[0]):
            inv = inv.flat[0]  # one divisor for all windows: a scalar multiply
        acc = _reduce_windows(xp, geom.taps, np.add, inv)
        self.channels_last = is_channels_last(acc)
        self.geom, self.x_hw, self.xp_shape, self.inv = geom, (h, w), xp.shape, inv
        return acc

    def backward(self, grad: np.ndarray) -> np.ndarray:
        geom, inv = self.geom, self.inv
        grad = to_layout(grad, self.channels_last)
        dxp = empty_like_layout(grad, self.xp_shape)

        def part(a: int, z: int) -> None:  # images a:z
            gs, ds = grad[a:z] * inv, dxp[a:z]
            if not geom.covered:  # windows that tile the input write every element once
                ds[...] = 0
            for sl in geom.taps:
                if geom.disjoint:  # each input element belongs to one window: write, do not add
                    np.copyto(ds[sl], gs)
                else:
                    ds[sl] += gs

        parallel.batches(len(dxp), dxp.size, part)
        return unpad_hw(dxp, geom.pads, self.x_hw)


def _unbatched(input: Tensor, fn, *args, **kwargs) -> Tensor:
    if input.ndim == 3:
        return fn.apply(input.unsqueeze(0), *args, **kwargs).squeeze(0)
    return fn.apply(input, *args, **kwargs)


def max_pool2d(
    input: Tensor,
    kernel_size: int | Pair,
    stride: int | Pair | None = None,
    padding: int | Pair = 0,
    dilation: int | Pair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """2-D max pooling (PyTorch semantics; ``stride`` defaults to ``kernel_size``).

    Parameters
    ----------
    input : Tensor, shape (N, C, H, W) or (C, H, W)
    kernel_size, stride, padding, dilation : int or (int, int)
        Padding is implicit ``-inf`` and at most half the (dilated) kernel.
    ceil_mode : bool
        Round the output size up (a last partial window is kept if it starts inside
        the input or the left padding).

    Returns
    -------
    Tensor, shape (N, C, OH, OW)
    """
    if return_indices:
        raise NotImplementedError("max_pool2d: return_indices=True is not supported")
    geom = _setup(input, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    return _unbatched(input, MaxPool2d, geom=geom)


def avg_pool2d(
    input: Tensor,
    kernel_size: int | Pair,
    stride: int | Pair | None = None,
    padding: int | Pair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """2-D average pooling (PyTorch semantics, including its ceil-mode divisor rule).

    Parameters
    ----------
    input : Tensor, shape (N, C, H, W) or (C, H, W)
    kernel_size, stride, padding : int or (int, int)
    ceil_mode : bool
    count_include_pad : bool
        Count the zero padding in the divisor.
    divisor_override : int, optional
        Divide every window sum by this instead.

    Returns
    -------
    Tensor, shape (N, C, OH, OW)
    """
    if divisor_override is not None and divisor_override == 0:
        raise ValueError("avg_pool2d: divisor_override must be non-zero")
    geom = _setup(input, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    if input.dtype.kind != "f":
        raise TypeError(f"avg_pool2d: expected a floating input; got {input.dtype}")
    return _unbatched(
        input,
        AvgPool2d,
        geom=geom,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
    )


def _adaptive_matrix(size: int, n_out: int, dtype: np.dtype) -> np.ndarray:
    """``(n_out, size)`` averaging matrix; row i averages ``[i*size//n, ceil((i+1)*size/n))``."""
    m = np.zeros((n_out, size), dtype=dtype)
    for i in range(n_out):
        a = (i * size) // n_out
        b = -((-(i + 1) * size) // n_out)
        m[i, a:b] = 1.0 / (b - a)
    return m


class AdaptiveAvgPool2d(Function):
    """Adaptive average pooling as two small matrix products: ``out = A_h x A_w^T``."""

    def forward(self, x: np.ndarray, ah: np.ndarray, aw: np.ndarray) -> np.ndarray:
        self.mats = (ah, aw)
        return ah @ (x @ aw.T)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        ah, aw = self.mats
        return ah.T @ (grad @ aw)


def adaptive_avg_pool2d(input: Tensor, output_size: int | tuple[int | None, int | None]) -> Tensor:
    """Average pooling to a fixed output size (PyTorch's window rule).

    Parameters
    ----------
    input : Tensor, shape (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
        ``None`` keeps that input size.

    Returns
    -------
    Tensor, shape (N, C, output_size[0], output_size[1])
    """
    if input.ndim not in (3, 4):
        raise ValueError(
            f"adaptive_avg_pool2d: expected input (N, C, H, W) or (C, H, W); got {input.shape}"
        )
    h, w = input.shape[-2:]
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    oh = h if output_size[0] is None else int(output_size[0])
    ow = w if output_size[1] is None else int(output_size[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be positive; got {output_size}")
    ah = _adaptive_matrix(h, oh, input.dtype)
    aw = _adaptive_matrix(w, ow, input.dtype)
    return AdaptiveAvgPool2d.apply(input, ah, aw)


def _adaptive_bounds(size: int, n_out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows: ``[floor(i*size/n), ceil((i+1)*size/n))``."""
    return [((i * size) // n_out, -((-(i + 1) * size) // n_out)) for i in range(n_out)]


class AdaptiveMaxPool2d(Function):
    """Max over PyTorch's adaptive windows; the gradient goes to each window's (first) maximum."""

    def forward(self, x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
        n, c, h, w = x.shape
        oh, ow = out_hw
        out = np.empty((n, c, oh, ow), dtype=x.dtype)
        self.argmax = np.empty((n, c, oh, ow), dtype=np.int64)  # flat index into (h, w)
        self.x_shape = x.shape
        for i, (h0, h1) in enumerate(_adaptive_bounds(h, oh)):
            for j, (w0, w1) in enumerate(_adaptive_bounds(w, ow)):
                win = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
                k = win.argmax(axis=2)
                out[:, :, i, j] = np.take_along_axis(win, k[..., None], 2)[..., 0]
                kh, kw = np.divmod(k, w1 - w0)
                self.argmax[:, :, i, j] = (h0 + kh) * w + (w0 + kw)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        n, c, h, w = self.x_shape
        gx = np.zeros((n * c, h * w), dtype=grad.dtype)
        rows = np.repeat(np.arange(n * c), grad.shape[2] * grad.shape[3])
        np.add.at(gx, (rows, self.argmax.reshape(-1)), grad.reshape(-1))
        return gx.reshape(self.x_shape)


def adaptive_max_pool2d(
    input: Tensor, output_size: int | tuple[int | None, int | None], return_indices: bool = False
) -> Tensor:
    """Max pooling to a fixed output size (PyTorch's window rule).

    Parameters
    ----------
    input : Tensor, shape (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
        ``None`` keeps that input size.

    Returns
    -------
    Tensor, shape (N, C, output_size[0], output_size[1])
    """
    if return_indices:
        raise NotImplementedError("adaptive_max_pool2d: return_indices=True is not supported")
    if input.ndim not in (3, 4):
        raise ValueError(
            f"adaptive_max_pool2d: expected input (N, C, H, W) or (C, H, W); got {input.shape}"
        )
    h, w = input.shape[-2:]
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    oh = h if size[0] is None else int(size[0])
    ow = w if size[1] is None else int(size[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"adaptive_max_pool2d: output_size must be positive; got {output_size}")
    return _unbatched(input, AdaptiveMaxPool2d, out_hw=(oh, ow))
