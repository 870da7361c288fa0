"""Convolution (shared weights), its transpose, and locally connected (unshared
weights) layers.

The maths of each op reads here. A convolution is im2col plus a matrix product: the
input is seen through a strided view of all its windows, copied into GEMM layout once,
and multiplied by the weights; backward uses the same products transposed and scatters
window gradients back with :func:`col2im`. That reference path
(:func:`conv2d_reference`, :func:`conv2d_reference_backward`) is what float64 (and so
gradcheck) runs, and the oracle the fast paths are tested against.

float32 convolutions run the fast paths of :mod:`cnnkit.functional._fast.conv`
(compiled kernels, channels-last memory, chunks over worker threads) through one
forward and one backward with the reference's signature; :func:`_path` is the one
place that chooses.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from cnnkit.autograd import Function
from cnnkit.functional._fast import conv as fast
from cnnkit.functional._windows import Pair, col2im, pad_hw, pair, unpad_hw, windows
from cnnkit.functional.geometry import (
    ConvGeometry,
    Pads,
    conv_output_size,
    resolve_padding,
    spatial_output,
)
from cnnkit.tensor import Tensor

__all__ = [
    "Conv2d",
    "ConvGeometry",
    "ConvTranspose2d",
    "LocallyConnected2d",
    "conv2d",
    "conv2d_reference",
    "conv2d_reference_backward",
    "conv_output_size",
    "conv_transpose2d",
    "locally_connected2d",
    "resolve_padding",
]


def _im2col(xp: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``(N, G, Cg*KH*KW, OH*OW)``: every window of the padded input as a column."""
    n = xp.shape[0]
    cols = windows(xp, geom.kernel, geom.stride, geom.dilation, geom.out_hw)
    return np.ascontiguousarray(cols).reshape(n, geom.groups, -1, geom.positions)


def conv2d_reference(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, geom: ConvGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """``out[n, g] = W[g] @ cols[n, g] + b``, with ``W[g]`` the ``(OCg, Cg*KH*KW)``
    weights of group ``g`` and ``cols`` the im2col matrix of the padded input.

    Returns the ``(N, OC, OH, OW)`` output and the padded input (kept for backward).
    """
    xp = pad_hw(x, geom.pads)
    oc, cg, kh, kw = geom.w_shape
    w3 = w.reshape(geom.groups, oc // geom.groups, cg * kh * kw)
    out = np.matmul(w3, _im2col(xp, geom)).reshape(x.shape[0], oc, *geom.out_hw)
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out, xp


def conv2d_reference_backward(
    grad: np.ndarray, xp: np.ndarray, w: np.ndarray, geom: ConvGeometry,
    needs: tuple[bool, bool, bool],
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:  # fmt: skip
    """``db = sum g``, ``dW[g] = sum_n g[n, g] @ cols[n, g]^T`` and
    ``dx = unpad(col2im(W[g]^T @ g[n, g]))`` (``None`` where ``needs`` is False)."""
    n = grad.shape[0]
    oc, cg, kh, kw = geom.w_shape
    groups = geom.groups
    g4 = grad.reshape(n, groups, oc // groups, geom.positions)
    need_x, need_w, need_b = needs
    dx = dw = db = None
    if need_b:
        db = grad.sum(axis=(0, 2, 3))
    if need_w:
        cols = _im2col(xp, geom)
        dw = np.matmul(g4, cols.transpose(0, 1, 3, 2)).sum(axis=0).reshape(geom.w_shape)
    if need_x:
        w3t = w.reshape(groups, oc // groups, cg * kh * kw).transpose(0, 2, 1)
        dcols = np.matmul(w3t, g4)  # (N, G, Cg*KH*KW, P)
        d6 = dcols.reshape(n, groups * cg, kh, kw, *geom.out_hw)
        dxp = col2im(d6, (n, groups * cg, *geom.padded_hw), geom.stride, geom.dilation)
        dx = unpad_hw(dxp, geom.pads, geom.x_shape[2:])
    return dx, dw, db


_REFERENCE = SimpleNamespace(forward=conv2d_reference, backward=conv2d_reference_backward)

#: dtypes that take the fast paths; everything else (float64) runs the reference maths
FAST_DTYPES = frozenset({np.dtype(np.float32)})


def _path(dtype: np.dtype) -> Any:
    """The one choice between the reference maths and the fast paths (same signatures)."""
    return fast if dtype in FAST_DTYPES else _REFERENCE


class Conv2d(Function):
    """2-D cross-correlation with groups: ``out[n, o] = sum_c w[o, c] * x[n, c] + b[o]``.

    With ``cols`` the im2col matrix of the padded input (``K = Cg*KH*KW`` rows, one
    column per output position) and ``W`` the ``(OC, K)`` weights per group: forward
    ``out = W @ cols + b``; backward ``dW = sum g @ cols^T``, ``db = sum g``,
    ``dx = col2im(W^T @ g)``. Only the padded input is kept for backward.

    float64 runs exactly these equations (:func:`conv2d_reference`); float32 runs the
    fast paths (:mod:`cnnkit.functional._fast.conv`), whose wide layers return
    channels-last views.
    """

    version_checked = (1,)  # PyTorch keeps the weight even when x needs no gradient

    def forward(
        self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, geom: ConvGeometry
    ) -> np.ndarray:
        self.path = _path(x.dtype)
        out, xp = self.path.forward(x, w, b, geom)
        need_x, need_w, _ = self.needs_input_grad
        self.save_for_backward(xp if need_w else None, w if need_x else None)
        self.geom = geom
        return out

    def infer(self, x: np.ndarray, w: np.ndarray, b: Any, geom: ConvGeometry) -> tuple:
        return (x.shape[0], w.shape[0], *geom.out_hw), np.result_type(x, w)

    def backward(self, grad: np.ndarray) -> tuple:
        xp, w = self.saved
        return self.path.backward(grad, xp, w, self.geom, self.needs_input_grad)


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
    out_hw = spatial_output(x.shape, (kh, kw), st, dl, pads, where)
    geom = ConvGeometry(tuple(x.shape), tuple(weight.shape), st, pads, dl, int(groups), out_hw)
    out = Conv2d.apply(x, weight, bias, geom=geom)
    return out.squeeze(0) if unbatched else out


class ConvTranspose2d(Function):
    """Transposed convolution: the adjoint of the convolution ``conv`` described by
    ``geom`` (whose input is this op's output and whose output is this op's input).

    Forward is ``conv``'s input gradient applied to ``x`` (``col2im(W^T @ x)``, cropped
    by the padding), plus the bias. Backward: ``dx = conv(g)`` (the convolution's
    forward on the output gradient), ``dW`` is ``conv``'s weight gradient with ``g`` as
    its input and ``x`` as its output gradient, ``db = sum g``. The same reference and
    fast paths as :class:`Conv2d` run each step.
    """

    version_checked = (1,)

    def forward(
        self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, geom: ConvGeometry
    ) -> np.ndarray:
        self.path = _path(x.dtype)
        out = self.path.backward(x, None, w, geom, (True, False, False))[0]
        if b is not None:
            out = out + b.reshape(1, -1, 1, 1)
        self.save_for_backward(x if self.needs_input_grad[1] else None, w)
        self.geom = geom
        return out

    def infer(self, x: np.ndarray, w: np.ndarray, b: Any, geom: ConvGeometry) -> tuple:
        return geom.x_shape, np.result_type(x, w)

    def backward(self, grad: np.ndarray) -> tuple:
        x, w = self.saved
        need_x, need_w, need_b = self.needs_input_grad
        dx = dw = db = None
        if need_x or need_w:
            # the convolution of the output gradient: dx, and its padded input for dW
            conv_out, gp = self.path.forward(grad, w, None, self.geom)
            dx = conv_out if need_x else None
            if need_w:
                dw = self.path.backward(x, gp, w, self.geom, (False, True, False))[1]
        if need_b:
            db = grad.sum(axis=(0, 2, 3))
        return dx, dw, db


def conv_transpose_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0,
    dilation: int = 1,
) -> int:  # fmt: skip
    """Output length of a transposed convolution:
    ``(H - 1) * S - 2P + D * (K - 1) + output_padding + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Pair = 1,
    padding: int | Pair = 0,
    output_padding: int | Pair = 0,
    groups: int = 1,
    dilation: int | Pair = 1,
) -> Tensor:
    """2-D transposed convolution ("deconvolution"), PyTorch's argument order.

    Parameters
    ----------
    input : Tensor, shape (N, C_in, H, W) or (C_in, H, W)
    weight : Tensor, shape (C_in, C_out / groups, KH, KW)
    bias : Tensor, shape (C_out,), optional
    stride, dilation : int or (int, int)
    padding : int or (int, int)
        Rows/columns removed from each border of the full output.
    output_padding : int or (int, int)
        Rows/columns added at the bottom/right (smaller than the stride or the dilation),
        to reach the sizes a strided convolution maps to the same output size.
    groups : int

    Returns
    -------
    Tensor, shape (N, C_out, OH, OW) with
    ``OH = (H - 1) * S - 2P + D * (KH - 1) + output_padding + 1``.
    """
    where = "conv_transpose2d"
    _check_float(weight, "weight", where)
    if weight.ndim != 4:
        raise ValueError(
            f"{where}: expected weight (C_in, C_out/groups, KH, KW); got {tuple(weight.shape)}"
        )
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{where}: groups must be a positive int; got {groups!r}")
    cin, cog, kh, kw = weight.shape
    if cin % groups:
        raise ValueError(f"{where}: in_channels {cin} is not divisible by groups {groups}")
    x, unbatched = _batched(input, where, cin, weight.shape)
    if x.dtype != weight.dtype:
        raise TypeError(
            f"{where}: input dtype {x.dtype} does not match weight dtype {weight.dtype}"
        )
    st = pair(stride, "stride", where, 1)
    dl = pair(dilation, "dilation", where, 1)
    pd = pair(padding, "padding", where)
    op = pair(output_padding, "output_padding", where)
    for i in range(2):
        if op[i] >= max(st[i], dl[i]):
            raise ValueError(
                f"{where}: output_padding {op} must be smaller than the stride {st} or the "
                f"dilation {dl} in each dimension"
            )
    n, _, h, w = x.shape
    out_hw = tuple(
        conv_transpose_output_size((h, w)[i], (kh, kw)[i], st[i], pd[i], op[i], dl[i])
        for i in range(2)
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"{where}: output size {out_hw} is not positive for input {tuple(x.shape)}, "
            f"kernel {kh}x{kw}, stride {st}, padding {pd}, dilation {dl}"
        )
    oc = cog * groups
    if bias is not None and tuple(bias.shape) != (oc,):
        raise ValueError(f"{where}: expected bias ({oc},); got {tuple(bias.shape)}")
    # the convolution whose input gradient this is: (N, C_out, OH, OW) -> (N, C_in, H, W)
    pads = (pd[0], pd[0], pd[1], pd[1])
    geom = ConvGeometry((n, oc, *out_hw), tuple(weight.shape), st, pads, dl, int(groups), (h, w))
    out = ConvTranspose2d.apply(x, weight, bias, geom=geom)
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
    got = spatial_output(x.shape, (kh, kw), st, (1, 1), pads, where)
    if got != (oh, ow):
        raise ValueError(
            f"{where}: weight is for a {oh}x{ow} output but input {tuple(x.shape)} with "
            f"kernel {kh}x{kw}, stride {st}, padding {pads[::2]} gives {got[0]}x{got[1]}"
        )
    if bias is not None and tuple(bias.shape) != (oc, oh, ow):
        raise ValueError(f"{where}: expected bias ({oc}, {oh}, {ow}); got {tuple(bias.shape)}")
    out = LocallyConnected2d.apply(x, weight, bias, stride=st, pads=pads)
    return out.squeeze(0) if unbatched else out
