"""Boxes, intersection over union and non-maximum suppression (torchvision's names).

Boxes are ``(x1, y1, x2, y2)`` rows with ``0 <= x1 <= x2`` and ``0 <= y1 <= y2`` (pixel
coordinates, ends exclusive, so a box's area is ``(x2 - x1) * (y2 - y1)``). Inputs may
be NumPy arrays, nested lists or cnnkit Tensors; results are NumPy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "check_boxes",
    "nms",
]


def _array(x: Any, where: str, name: str) -> np.ndarray:
    """``x`` as a floating NumPy array (Tensors unwrapped)."""
    from cnnkit.tensor import Tensor

    a = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{where}: {name} must be numeric; got dtype {a.dtype}")
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def check_boxes(boxes: Any, where: str = "boxes", name: str = "boxes") -> np.ndarray:
    """Validate an ``(N, 4)`` array of ``x1, y1, x2, y2`` boxes and return it.

    Raises
    ------
    ValueError
        Wrong shape, a non-finite coordinate, or a box with ``x2 < x1`` or ``y2 < y1``;
        the message names the first bad row and its values.
    """
    b = _array(boxes, where, name)
    if b.ndim == 1 and b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{where}: {name} must be shaped (N, 4) as x1, y1, x2, y2; got {b.shape}")
    if b.size and not np.isfinite(b).all():
        k = int(np.argmax(~np.isfinite(b).all(axis=1)))
        raise ValueError(f"{where}: {name}[{k}] is not finite: {b[k].tolist()}")
    bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(
            f"{where}: {name}[{k}] = {b[k].tolist()} has x2 < x1 or y2 < y1; expected "
            "(x1, y1, x2, y2) with x1 <= x2 and y1 <= y2"
        )
    return b


def box_area(boxes: Any) -> np.ndarray:
    """Areas ``(x2 - x1) * (y2 - y1)`` of ``(N, 4)`` boxes, shape ``(N,)``."""
    b = check_boxes(boxes, "box_area")
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_convert(boxes: Any, in_fmt: str, out_fmt: str) -> np.ndarray:
    """Convert ``(N, 4)`` boxes between ``xyxy``, ``xywh`` (corner, size) and ``cxcywh``."""
    fmts = ("xyxy", "xywh", "cxcywh")
    if in_fmt not in fmts or out_fmt not in fmts:
        raise ValueError(f"box_convert: formats must be in {fmts}; got {in_fmt!r}, {out_fmt!r}")
    b = _array(boxes, "box_convert", "boxes").reshape(-1, 4)
    if in_fmt == "xywh":
        b = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
    elif in_fmt == "cxcywh":
        b = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)
    if out_fmt == "xywh":
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
    if out_fmt == "cxcywh":
        return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)
    return b


def box_iou(boxes1: Any, boxes2: Any) -> np.ndarray:
    """Intersection over union of every pair, as ``torchvision.ops.box_iou``.

    Parameters
    ----------
    boxes1 : (N, 4) array
    boxes2 : (M, 4) array
        ``x1, y1, x2, y2`` boxes.

    Returns
    -------
    np.ndarray, shape (N, M)
        ``area(a & b) / area(a | b)``; 0 where the union is empty (two empty boxes),
        where torchvision would give NaN.
    """
    a = check_boxes(boxes1, "box_iou", "boxes1")
    b = check_boxes(boxes2, "box_iou", "boxes2")
    dt = np.result_type(a.dtype, b.dtype)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros(inter.shape, dtype=dt)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _scores(scores: Any, n: int, where: str) -> np.ndarray:
    s = _array(scores, where, "scores")
    if s.shape != (n,):
        raise ValueError(f"{where}: scores must be shaped ({n},) like the boxes; got {s.shape}")
    if s.size and np.isnan(s).any():
        raise ValueError(f"{where}: scores contain NaN")
    return s


def nms(boxes: Any, scores: Any, iou_threshold: float) -> np.ndarray:
    """Non-maximum suppression, as ``torchvision.ops.nms``.

    Visits the boxes from the highest score down and discards every later box whose IoU
    with a kept box is greater than ``iou_threshold``.

    Parameters
    ----------
    boxes : (N, 4) array
        ``x1, y1, x2, y2`` boxes.
    scores : (N,) array
    iou_threshold : float
        Boxes overlapping a kept box with IoU ``> iou_threshold`` are discarded.

    Returns
    -------
    np.ndarray, int64, shape (K,)
        Indices of the kept boxes, by decreasing score; equal scores keep their input
        order (a stable sort, so results do not depend on the sorting algorithm).
    """
    b = check_boxes(boxes, "nms")
    s = _scores(scores, len(b), "nms")
    order = np.argsort(-s, kind="stable")
    if len(order) == 0:
        return np.zeros(0, dtype=np.int64)
    iou = box_iou(b[order], b[order])
    n = len(order)
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed[i + 1 :] |= iou[i, i + 1 :] > iou_threshold
    return order[np.asarray(keep, dtype=np.int64)].astype(np.int64)


def batched_nms(boxes: Any, scores: Any, idxs: Any, iou_threshold: float) -> np.ndarray:
    """Non-maximum suppression within each category, as ``torchvision.ops.batched_nms``.

    Boxes of different ``idxs`` never suppress each other.

    Parameters
    ----------
    boxes : (N, 4) array
    scores : (N,) array
    idxs : (N,) int array
        Category (class, or image) of each box.
    iou_threshold : float

    Returns
    -------
    np.ndarray, int64, shape (K,)
        Indices of the kept boxes, by decreasing score (ties: input order).
    """
    b = check_boxes(boxes, "batched_nms")
    s = _scores(scores, len(b), "batched_nms")
    ids = np.asarray(idxs.numpy() if hasattr(idxs, "numpy") else idxs)
    if ids.shape != (len(b),):
        raise ValueError(f"batched_nms: idxs must be shaped ({len(b)},); got {ids.shape}")
    keep = [
        np.flatnonzero(ids == c)[nms(b[ids == c], s[ids == c], iou_threshold)]
        for c in np.unique(ids)
    ]
    if not keep:
        return np.zeros(0, dtype=np.int64)
    kept = np.sort(np.concatenate(keep))
    return kept[np.argsort(-s[kept], kind="stable")].astype(np.int64)
