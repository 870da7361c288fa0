"""Plain-loop reference convolutions: the second oracle next to PyTorch.

Every function loops over every index, one multiply-add at a time, so that each
line can be checked by eye against the textbook formula. They are slow on
purpose; use them on small arrays only.

Padding is given as an int, a pair ``(ph, pw)`` or a quadruple
``(top, bottom, left, right)`` (the last one is what ``padding='same'`` with an
even kernel needs).
"""

from __future__ import annotations

import numpy as np


def pair(v) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(1, 2) -> (1, 2)``."""
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def quad(padding) -> tuple[int, int, int, int]:
    """Padding as ``(top, bottom, left, right)``."""
    if isinstance(padding, int | np.integer):
        p = int(padding)
        return p, p, p, p
    if len(padding) == 2:
        ph, pw = int(padding[0]), int(padding[1])
        return ph, ph, pw, pw
    top, bottom, left, right = (int(v) for v in padding)
    return top, bottom, left, right


def same_padding(kernel, dilation=1) -> tuple[int, int, int, int]:
    """PyTorch's ``padding='same'`` (stride 1): total ``d*(k-1)``, the extra one goes last."""
    kh, kw = pair(kernel)
    dh, dw = pair(dilation)
    th, tw = dh * (kh - 1), dw * (kw - 1)
    return th // 2, th - th // 2, tw // 2, tw - tw // 2


def pad_zeros(x: np.ndarray, padding) -> np.ndarray:
    """Zero-pad the last two axes of ``x`` (N, C, H, W) with a loop."""
    top, bottom, left, right = quad(padding)
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + top + bottom, w + left + right), dtype=x.dtype)
    for a in range(n):
        for b in range(c):
            for i in range(h):
                for j in range(w):
                    out[a, b, i + top, j + left] = x[a, b, i, j]
    return out


def unpad(xp: np.ndarray, padding, h: int, w: int) -> np.ndarray:
    """Inverse of :func:`pad_zeros`: cut the padded border away."""
    top, _, left, _ = quad(padding)
    return xp[:, :, top : top + h, left : left + w].copy()


def out_size(size: int, pad_total: int, kernel: int, stride: int, dilation: int) -> int:
    """``floor((size + pads - d*(k-1) - 1) / s) + 1``."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """Cross-correlation with PyTorch's conv2d semantics.

    ``x``: (N, C, H, W); ``w``: (OC, C // groups, KH, KW); ``b``: (OC,) or None.
    """
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    top, bottom, left, right = quad(padding)
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    assert c == cg * groups and oc % groups == 0
    ocg = oc // groups
    xp = pad_zeros(x, (top, bottom, left, right))
    oh = out_size(h, top + bottom, kh, sh, dh)
    ow = out_size(wd, left + right, kw, sw, dw)
    out = np.zeros((n, oc, oh, ow), dtype=np.float64)
    for a in range(n):
        for o in range(oc):
            g = o // ocg
            for i in range(oh):
                for j in range(ow):
                    total = 0.0 if b is None else float(b[o])
                    for ci in range(cg):
                        c_in = g * cg + ci
                        for p in range(kh):
                            for q in range(kw):
                                total += (
                                    w[o, ci, p, q] * xp[a, c_in, i * sh + p * dh, j * sw + q * dw]
                                )
                    out[a, o, i, j] = total
    return out


def conv2d_backward(x, w, grad, has_bias=True, stride=1, padding=0, dilation=1, groups=1):
    """Gradients ``(dx, dw, db)`` of :func:`conv2d` for upstream gradient ``grad``.

    Each output element ``out[a, o, i, j]`` received ``w * xpad`` products; walk the
    same loops and send ``grad[a, o, i, j]`` back along each product.
    ``db`` is None when ``has_bias`` is False.
    """
    sh, sw = pair(stride)
    dh, dw_ = pair(dilation)
    pads = quad(padding)
    n, _, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    ocg = oc // groups
    xp = pad_zeros(x, pads)
    dxp = np.zeros_like(xp, dtype=np.float64)
    dw = np.zeros(w.shape, dtype=np.float64)
    db = np.zeros(oc, dtype=np.float64)
    _, _, oh, ow = grad.shape
    for a in range(n):
        for o in range(oc):
            g = o // ocg
            for i in range(oh):
                for j in range(ow):
                    gout = grad[a, o, i, j]
                    db[o] += gout
                    for ci in range(cg):
                        c_in = g * cg + ci
                        for p in range(kh):
                            for q in range(kw):
                                r, s = i * sh + p * dh, j * sw + q * dw_
                                dw[o, ci, p, q] += gout * xp[a, c_in, r, s]
                                dxp[a, c_in, r, s] += gout * w[o, ci, p, q]
    dx = unpad(dxp, pads, h, wd)
    return dx, dw, (db if has_bias else None)


def locally_connected2d(x, w, b=None, stride=1, padding=0) -> np.ndarray:
    """Unshared convolution: a separate filter for every output location.

    ``x``: (N, C, H, W); ``w``: (OH, OW, OC, C, KH, KW); ``b``: (OC, OH, OW) or None.
    ``out[n, o, i, j] = sum_{c,p,q} w[i, j, o, c, p, q] * xpad[n, c, i*sh + p, j*sw + q]
    + b[o, i, j]``.
    """
    sh, sw = pair(stride)
    pads = quad(padding)
    n, c, _, _ = x.shape
    oh, ow, oc, cw, kh, kw = w.shape
    assert c == cw
    xp = pad_zeros(x, pads)
    out = np.zeros((n, oc, oh, ow), dtype=np.float64)
    for a in range(n):
        for o in range(oc):
            for i in range(oh):
                for j in range(ow):
                    total = 0.0 if b is None else float(b[o, i, j])
                    for ci in range(c):
                        for p in range(kh):
                            for q in range(kw):
                                total += w[i, j, o, ci, p, q] * xp[a, ci, i * sh + p, j * sw + q]
                    out[a, o, i, j] = total
    return out


def locally_connected2d_backward(x, w, grad, has_bias=True, stride=1, padding=0):
    """Gradients ``(dx, dw, db)`` of :func:`locally_connected2d`."""
    sh, sw = pair(stride)
    pads = quad(padding)
    n, c, h, wd = x.shape
    oh, ow, oc, _, kh, kw = w.shape
    xp = pad_zeros(x, pads)
    dxp = np.zeros_like(xp, dtype=np.float64)
    dw = np.zeros(w.shape, dtype=np.float64)
    db = np.zeros((oc, oh, ow), dtype=np.float64)
    for a in range(n):
        for o in range(oc):
            for i in range(oh):
                for j in range(ow):
                    gout = grad[a, o, i, j]
                    db[o, i, j] += gout
                    for ci in range(c):
                        for p in range(kh):
                            for q in range(kw):
                                r, s = i * sh + p, j * sw + q
                                dw[i, j, o, ci, p, q] += gout * xp[a, ci, r, s]
                                dxp[a, ci, r, s] += gout * w[i, j, o, ci, p, q]
    dx = unpad(dxp, pads, h, wd)
    return dx, dw, (db if has_bias else None)
