"""YOLOv1 targets and predictions: ground-truth boxes to grid cells, and back to boxes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit.detect.boxes import batched_nms, check_boxes

__all__ = ["check_targets", "decode_predictions", "encode_targets", "image_hw"]


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of an int or ``(h, w)`` image size."""
    if isinstance(image_size, (int, np.integer)):
        hw = (int(image_size), int(image_size))
    else:
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (h, w); got {image_size!r}")
        hw = (int(image_size[0]), int(image_size[1]))
    if min(hw) < 1:
        raise ValueError(f"image_size must be positive; got {image_size!r}")
    return hw


def _np(x: Any) -> np.ndarray:
    from cnnkit.tensor import Tensor

    return x.numpy() if isinstance(x, Tensor) else np.asarray(x)


def check_targets(
    targets: Sequence[dict[str, Any]], num_classes: int, where: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validated ``(boxes (K, 4), labels (K,))`` of each target dict.

    Raises
    ------
    TypeError, ValueError
        A target that is not a dict with ``boxes`` and ``labels``, boxes with
        ``x2 < x1``, a non-integer label or one outside ``0..num_classes - 1``; the
        message names the image and the box.
    """
    if isinstance(targets, dict):
        raise TypeError(f"{where}: targets must be a list of dicts (one per image); got a dict")
    out = []
    for k, t in enumerate(targets):
        if not isinstance(t, dict) or "boxes" not in t or "labels" not in t:
            raise TypeError(
                f"{where}: targets[{k}] must be a dict with 'boxes' and 'labels'; "
                f"got {type(t).__name__}"
            )
        boxes = check_boxes(_np(t["boxes"]), where, f"targets[{k}]['boxes']")
        labels = _np(t["labels"])
        if labels.shape != (len(boxes),):
            raise ValueError(
                f"{where}: targets[{k}]['labels'] must be shaped ({len(boxes)},) like its "
                f"boxes; got {labels.shape}"
            )
        if labels.size and labels.dtype.kind not in "iu":
            if labels.dtype.kind != "f" or not np.all(labels == np.round(labels)):
                raise TypeError(
                    f"{where}: targets[{k}]['labels'] must be integers; got {labels.dtype}"
                )
        labels = labels.astype(np.int64)
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            j = int(np.argmax(bad))
            raise ValueError(
                f"{where}: targets[{k}]['labels'][{j}] = {int(labels[j])} is outside the "
                f"{num_classes} classes (expected 0..{num_classes - 1})"
            )
        out.append((boxes, labels))
    return out


def encode_targets(
    targets: Sequence[dict[str, Any]],
    grid: int,
    num_classes: int,
    image_size: int | Sequence[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign each ground-truth box to the grid cell holding its centre (YOLOv1).

    Parameters
    ----------
    targets : list of dict
        One per image: ``boxes`` ``(K, 4)`` pixel ``x1, y1, x2, y2``, ``labels`` ``(K,)``.
    grid : int
        Cells per side ``S``.
    num_classes : int
    image_size : int or (h, w)
        The images' size in pixels (boxes are divided by it).

    Returns
    -------
    obj : np.ndarray, bool, shape (N, S, S)
        The cell holds an object (when several centres share a cell: the largest box).
    tbox : np.ndarray, float64, shape (N, S, S, 4)
        The object's ``cx, cy, w, h`` as fractions of the image width and height.
    tcls : np.ndarray, int64, shape (N, S, S)
        The object's class (0 in empty cells).

    Raises
    ------
    ValueError
        Bad targets (see :func:`check_targets`) or a box centre outside the image.
    """
    h, w = image_hw(image_size)
    checked = check_targets(targets, num_classes, "encode_targets")
    n = len(checked)
    obj = np.zeros((n, grid, grid), dtype=bool)
    tbox = np.zeros((n, grid, grid, 4))
    tcls = np.zeros((n, grid, grid), dtype=np.int64)
    for k, (boxes, labels) in enumerate(checked):
        if not len(boxes):
            continue
        b = boxes.astype(np.float64)
        cx = (b[:, 0] + b[:, 2]) / (2 * w)
        cy = (b[:, 1] + b[:, 3]) / (2 * h)
        outside = (cx < 0) | (cx > 1) | (cy < 0) | (cy > 1)
        if outside.any():
            j = int(np.argmax(outside))
            raise ValueError(
                f"encode_targets: targets[{k}]['boxes'][{j}] = {b[j].tolist()} has its centre "
                f"outside the {w}x{h} image"
            )
        bw, bh = (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h
        cols = np.minimum((cx * grid).astype(np.int64), grid - 1)
        rows = np.minimum((cy * grid).astype(np.int64), grid - 1)
        # smallest first, so the largest box of a shared cell is written last and kept
        for j in np.argsort(bw * bh, kind="stable"):
            obj[k, rows[j], cols[j]] = True
            tbox[k, rows[j], cols[j]] = (cx[j], cy[j], bw[j], bh[j])
            tcls[k, rows[j], cols[j]] = labels[j]
    return obj, tbox, tcls


def decode_predictions(
    pred: Any,
    boxes_per_cell: int,
    num_classes: int,
    image_size: int | Sequence[int],
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
) -> list[dict[str, np.ndarray]]:
    """Boxes, scores and labels from a YOLOv1 head, after per-class non-max suppression.

    The score of class ``c`` for a predictor is its confidence times the cell's class
    probability (YOLOv1's class-specific confidence); every (predictor, class) pair
    scoring above ``conf_threshold`` is a candidate.

    Parameters
    ----------
    pred : array or Tensor, shape (N, S, S, B*5 + C)
        Raw head outputs (see :mod:`cnnkit.functional.yolo` for their meaning).
    boxes_per_cell, num_classes : int
    image_size : int or (h, w)
        Pixel size of the images; boxes are returned in pixels, clipped to the image.
    conf_threshold : float
        Keep candidates with a score ``> conf_threshold``.
    iou_threshold : float
        Per-class NMS threshold (see :func:`cnnkit.detect.batched_nms`).
    max_detections : int
        At most this many detections per image (the highest scores).

    Returns
    -------
    list of dict
        One per image: ``boxes`` float32 ``(K, 4)`` pixel ``x1, y1, x2, y2``, ``scores``
        float32 ``(K,)`` in decreasing order, ``labels`` int64 ``(K,)``.
    """
    from cnnkit.functional.yolo import decode_cells

    p = _np(pred)
    nb, nc = int(boxes_per_cell), int(num_classes)
    if p.ndim != 4 or p.shape[1] != p.shape[2] or p.shape[3] != nb * 5 + nc:
        raise ValueError(
            f"decode_predictions: expected a head shaped (N, S, S, {nb * 5 + nc}) for "
            f"{nb} boxes per cell and {nc} classes; got {p.shape}"
        )
    h, w = image_hw(image_size)
    n, s = p.shape[0], p.shape[1]
    p = p.astype(np.float64)
    act, cells = decode_cells(p[..., : 5 * nb].reshape(n, s, s, nb, 5))
    logits = p[..., 5 * nb :]
    prob = np.exp(logits - logits.max(axis=-1, keepdims=True))
    prob /= prob.sum(axis=-1, keepdims=True)
    scores = act[..., 4][..., None] * prob[:, :, :, None, :]  # (N, S, S, B, C)
    xyxy = np.stack(
        [
            np.clip((cells[..., 0] - cells[..., 2] / 2) * w, 0, w),
            np.clip((cells[..., 1] - cells[..., 3] / 2) * h, 0, h),
            np.clip((cells[..., 0] + cells[..., 2] / 2) * w, 0, w),
            np.clip((cells[..., 1] + cells[..., 3] / 2) * h, 0, h),
        ],
        axis=-1,
    ).reshape(n, -1, 4)
    scores = scores.reshape(n, -1, nc)
    out = []
    for k in range(n):
        box_i, cls_i = np.nonzero(scores[k] > conf_threshold)
        b, sc = xyxy[k][box_i], scores[k][box_i, cls_i]
        keep = batched_nms(b, sc, cls_i, iou_threshold)[: max(0, int(max_detections))]
        out.append(
            {
                "boxes": b[keep].astype(np.float32).reshape(-1, 4),
                "scores": sc[keep].astype(np.float32),
                "labels": cls_i[keep].astype(np.int64),
            }
        )
    return out
