"""Detection quality: average precision per class and its mean (PASCAL VOC style)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.detect.boxes import box_iou, check_boxes
from cnnkit.detect.yolo import check_targets

__all__ = ["MAPResult", "average_precision", "mean_average_precision"]


@dataclass
class MAPResult:
    """Mean average precision and its per-class parts.

    Attributes
    ----------
    map : float
        Mean of ``ap`` over the classes that have ground truth.
    ap : np.ndarray, shape (C,)
        Average precision per class; NaN for a class without ground-truth boxes.
    num_gt, num_pred : np.ndarray, shape (C,)
        Ground-truth boxes and predictions per class.
    iou_threshold : float
    classes : list of str
    curves : dict of int to (np.ndarray, np.ndarray)
        ``(recall, precision)`` after each prediction of a class, by decreasing score.
    """

    map: float
    ap: np.ndarray
    num_gt: np.ndarray
    num_pred: np.ndarray
    iou_threshold: float
    classes: list[str] = field(default_factory=list)
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def table(self) -> str:
        """The per-class AP as a text table, ending with the mean."""
        names = self.classes or [str(c) for c in range(len(self.ap))]
        width = max(5, *(len(n) for n in names))
        lines = [
            f"{'class':>{width}}  {'AP@' + format(self.iou_threshold, 'g'):>7}  "
            f"{'objects':>7}  {'detections':>10}"
        ]
        for name, ap, ng, npred in zip(names, self.ap, self.num_gt, self.num_pred, strict=True):
            text = "    n/a" if np.isnan(ap) else f"{ap:7.4f}"
            lines.append(f"{name:>{width}}  {text}  {int(ng):7d}  {int(npred):10d}")
        lines.append(
            f"{'mAP':>{width}}  {self.map:7.4f}  {int(self.num_gt.sum()):7d}  "
            f"{int(self.num_pred.sum()):10d}"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"mAP@{self.iou_threshold:g} {self.map:.4f}\n" + self.table()


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-points interpolated AP: the area under the precision envelope.

    The envelope at recall ``r`` is the highest precision at any recall ``>= r``;
    ``AP = sum_i (r_{i+1} - r_i) * envelope(r_{i+1})`` over the points where recall
    changes (PASCAL VOC since 2010).

    Parameters
    ----------
    recall, precision : np.ndarray, shape (K,)
        Cumulative recall (non-decreasing) and precision after each of the ``K``
        detections, by decreasing score.
    """
    r = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    i = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[i + 1] - r[i]) * p[i + 1]))


def _np(x: Any) -> np.ndarray:
    from cnnkit.tensor import Tensor

    return x.numpy() if isinstance(x, Tensor) else np.asarray(x)


def mean_average_precision(
    preds: Sequence[dict[str, Any]],
    targets: Sequence[dict[str, Any]],
    iou_threshold: float = 0.5,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
) -> MAPResult:
    """Per-class average precision (VOC all-points interpolation) and their mean.

    For each class, the predictions of all images are visited by decreasing score
    (ties: image order, then order within the image); a prediction is a true positive
    when its highest-IoU ground-truth box of the same class in the same image has
    ``IoU >= iou_threshold`` and was not matched before, else a false positive (as the
    VOC development kit, which does not fall back to a second-best box).

    Parameters
    ----------
    preds : list of dict
        One per image: ``boxes`` ``(K, 4)`` pixel ``x1, y1, x2, y2``, ``scores`` ``(K,)``,
        ``labels`` ``(K,)`` (the output of ``model.detect``).
    targets : list of dict
        One per image: ``boxes`` ``(M, 4)``, ``labels`` ``(M,)``.
    iou_threshold : float
    num_classes : int, optional
        Default: one more than the largest label seen.
    classes : sequence of str, optional
        Class names for the report.

    Returns
    -------
    MAPResult
        ``map`` is the mean over classes with ground truth (NaN when there is none).

    Raises
    ------
    ValueError
        Different numbers of predictions and targets, boxes with ``x2 < x1``, labels
        outside the classes, or scores of the wrong shape.
    """
    if len(preds) != len(targets):
        raise ValueError(
            f"mean_average_precision: {len(preds)} predictions but {len(targets)} targets "
            "(one dict per image each)"
        )
    if not 0 <= iou_threshold <= 1:
        raise ValueError(
            f"mean_average_precision: iou_threshold must be in [0, 1]; got {iou_threshold}"
        )
    if num_classes is None:
        seen = [
            _np(d["labels"])
            for d in (*preds, *targets)
            if isinstance(d, dict) and "labels" in d and np.size(d["labels"])
        ]
        num_classes = max((int(a.max()) + 1 for a in seen), default=1)
        if classes is not None:
            num_classes = max(num_classes, len(classes))
    where = "mean_average_precision"
    gts = check_targets(targets, num_classes, where)
    dets = check_targets(preds, num_classes, where)
    scores = []
    for k, (d, (boxes, _)) in enumerate(zip(preds, dets, strict=True)):
        if "scores" not in d:
            raise TypeError(f"{where}: preds[{k}] has no 'scores'")
        s = _np(d["scores"]).astype(np.float64).reshape(-1)
        if s.shape != (len(boxes),):
            raise ValueError(
                f"{where}: preds[{k}]['scores'] must be shaped ({len(boxes)},); got {s.shape}"
            )
        scores.append(s)
    ap = np.full(num_classes, np.nan)
    num_gt = np.zeros(num_classes, dtype=np.int64)
    num_pred = np.zeros(num_classes, dtype=np.int64)
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for c in range(num_classes):
        gt_c = [check_boxes(b[l == c], where) for b, l in gts]
        num_gt[c] = sum(len(g) for g in gt_c)
        img, box, score = [], [], []
        for k, ((b, l), s) in enumerate(zip(dets, scores, strict=True)):
            m = l == c
            img.extend([k] * int(m.sum()))
            box.append(b[m])
            score.append(s[m])
        num_pred[c] = len(img)
        if num_gt[c] == 0:
            continue
        if not img:
            ap[c] = 0.0
            continue
        img_a = np.asarray(img)
        box_a = np.concatenate(box).reshape(-1, 4)
        order = np.argsort(-np.concatenate(score), kind="stable")
        matched = [np.zeros(len(g), dtype=bool) for g in gt_c]
        tp = np.zeros(len(order))
        for rank, j in enumerate(order):
            g = gt_c[img_a[j]]
            if not len(g):
                continue
            iou = box_iou(box_a[j : j + 1], g)[0]
            best = int(np.argmax(iou))
            if iou[best] >= iou_threshold and not matched[img_a[j]][best]:
                matched[img_a[j]][best] = True
                tp[rank] = 1
        ctp = np.cumsum(tp)
        recall = ctp / num_gt[c]
        precision = ctp / np.arange(1, len(order) + 1)
        ap[c] = average_precision(recall, precision)
        curves[c] = (recall, precision)
    valid = ~np.isnan(ap)
    mean = float(ap[valid].mean()) if valid.any() else float("nan")
    names = list(classes) if classes is not None else [str(c) for c in range(num_classes)]
    return MAPResult(mean, ap, num_gt, num_pred, float(iou_threshold), names, curves)
