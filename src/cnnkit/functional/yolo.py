"""The YOLOv1 loss (Redmon et al., 2016) as one op with an explicit forward and backward.

The network's head is ``p: (N, S, S, B*5 + C)``: per grid cell, ``B`` predictors of
``(tx, ty, tw, th, tc)`` followed by ``C`` class logits. The loss reads them as

- ``x = sigmoid(tx)``, ``y = sigmoid(ty)``: the box centre as an offset in its cell;
- ``sqrt_w = sigmoid(tw)``, ``sqrt_h = sigmoid(th)``: the square roots of the box
  width and height as fractions of the image (so ``w = sqrt_w ** 2``);
- ``c = sigmoid(tc)``: the objectness confidence;
- ``softmax(logits)``: the class probabilities of the cell.

A ground-truth object belongs to the cell holding its centre (one object per cell, as in
YOLOv1: when several centres share a cell, the largest box is kept). Of that cell's ``B``
predictors, the one whose decoded box has the highest IoU with the object is
*responsible* (the first one on ties). With ``R`` the responsible mask and ``O`` the cell
mask, summed over the batch and divided by ``N``::

    loss = lambda_coord * sum R [(x - x*)^2 + (y - y*)^2
                                 + (sqrt_w - sqrt(w*))^2 + (sqrt_h - sqrt(h*))^2]
         + sum R (c - 1)^2 + lambda_noobj * sum (1 - R) c^2
         + sum O CE(logits, class*)

The objectness target is 1 (not the predicted box's IoU, which would make the target a
function of the prediction); the class term is the cross-entropy of the cell's softmax
(the paper uses a squared error on the probabilities; cross-entropy trains faster).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.autograd import Function
from cnnkit.tensor import Tensor

__all__ = ["YOLOv1", "sigmoid", "yolo_v1_loss"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow for large ``|x|``."""
    return np.exp(-np.logaddexp(0, -x)).astype(x.dtype, copy=False)


def _iou_cxcywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise IoU of boxes ``(..., 4)`` given as centre and size (broadcasting)."""
    ax1, ay1 = a[..., 0] - a[..., 2] / 2, a[..., 1] - a[..., 3] / 2
    ax2, ay2 = a[..., 0] + a[..., 2] / 2, a[..., 1] + a[..., 3] / 2
    bx1, by1 = b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2
    bx2, by2 = b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    out = np.zeros(inter.shape, dtype=inter.dtype)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def decode_cells(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoids of the predictors and their boxes in image fractions.

    Parameters
    ----------
    raw : np.ndarray, shape (N, S, S, B, 5)
        ``tx, ty, tw, th, tc`` per predictor.

    Returns
    -------
    act : np.ndarray, shape (N, S, S, B, 5)
        ``x, y, sqrt_w, sqrt_h, c`` (all sigmoids).
    boxes : np.ndarray, shape (N, S, S, B, 4)
        ``cx, cy, w, h`` as fractions of the image's width and height.
    """
    s = raw.shape[1]
    act = sigmoid(raw)
    cols = np.arange(s, dtype=raw.dtype)[None, None, :, None]
    rows = np.arange(s, dtype=raw.dtype)[None, :, None, None]
    boxes = np.stack(
        [(cols + act[..., 0]) / s, (rows + act[..., 1]) / s, act[..., 2] ** 2, act[..., 3] ** 2],
        axis=-1,
    )
    return act, boxes


class YOLOv1(Function):
    """The YOLOv1 loss of ``p: (N, S, S, B*5 + C)`` given encoded targets.

    Inputs: ``p``; ``obj (N, S, S)`` bool (a cell holds an object); ``tbox (N, S, S, 4)``
    the object's ``cx, cy, w, h`` as image fractions; ``tcls (N, S, S)`` int64 class.
    Output: a scalar (the sum over the batch divided by ``N``).
    """

    def forward(
        self,
        p: np.ndarray,
        obj: np.ndarray,
        tbox: np.ndarray,
        tcls: np.ndarray,
        boxes_per_cell: int,
        lambda_coord: float,
        lambda_noobj: float,
    ) -> np.ndarray:
        n, s = p.shape[:2]
        nb = boxes_per_cell
        raw = p[..., : 5 * nb].reshape(n, s, s, nb, 5)
        act, pbox = decode_cells(raw)
        tb = tbox.astype(p.dtype, copy=False)
        iou = _iou_cxcywh(pbox, tb[..., None, :])  # (N, S, S, B)
        best = np.argmax(iou, axis=-1)
        resp = obj[..., None] & (np.arange(nb) == best[..., None])
        cols = np.arange(s, dtype=p.dtype)[None, None, :]
        rows = np.arange(s, dtype=p.dtype)[None, :, None]
        target = np.stack(
            [
                tb[..., 0] * s - cols,
                tb[..., 1] * s - rows,
                np.sqrt(tb[..., 2]),
                np.sqrt(tb[..., 3]),
            ],
            axis=-1,
        )[..., None, :]
        diff = act[..., :4] - target  # (N, S, S, B, 4)
        conf = act[..., 4]
        r = resp.astype(p.dtype)
        coord = lambda_coord * float(np.sum(r[..., None] * diff**2))
        objl = float(np.sum(r * (conf - 1) ** 2))
        noobj = lambda_noobj * float(np.sum((1 - r) * conf**2))
        logits = p[..., 5 * nb :]
        z = logits - logits.max(axis=-1, keepdims=True)
        logsum = np.log(np.exp(z).sum(axis=-1, keepdims=True))
        logp = z - logsum
        cls = np.take_along_axis(logp, tcls[..., None].astype(np.int64), axis=-1)[..., 0]
        clsl = -float(np.sum(np.where(obj, cls, 0)))
        if self.needs_input_grad[0]:
            self.save_for_backward(act, diff, r, np.exp(logp), obj, tcls)
            self.sizes = (n, lambda_coord, lambda_noobj)
        return np.asarray((coord + objl + noobj + clsl) / n, dtype=p.dtype)

    def backward(self, grad: np.ndarray) -> tuple[Any, ...]:
        act, diff, r, prob, obj, tcls = self.saved
        n, lambda_coord, lambda_noobj = self.sizes
        g = np.asarray(grad, dtype=act.dtype) / n
        dact = np.empty_like(act)
        dact[..., :4] = (2 * lambda_coord) * r[..., None] * diff
        conf = act[..., 4]
        dact[..., 4] = 2 * r * (conf - 1) + (2 * lambda_noobj) * (1 - r) * conf
        draw = dact * act * (1 - act)
        dlogits = prob.copy()
        np.put_along_axis(
            dlogits,
            tcls[..., None].astype(np.int64),
            np.take_along_axis(prob, tcls[..., None].astype(np.int64), axis=-1) - 1,
            axis=-1,
        )
        dlogits *= obj[..., None]
        shape = act.shape[:3]
        dp = np.concatenate([draw.reshape(*shape, -1), dlogits], axis=-1) * g
        return dp, None, None, None


def yolo_v1_loss(
    input: Tensor,
    obj: np.ndarray,
    tbox: np.ndarray,
    tcls: np.ndarray,
    boxes_per_cell: int = 2,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
) -> Tensor:
    """The YOLOv1 loss of a head ``input: (N, S, S, B*5 + C)`` given encoded targets
    (see :class:`YOLOv1` and :func:`cnnkit.detect.encode_targets`); a scalar Tensor."""
    return YOLOv1.apply(
        input,
        obj,
        tbox,
        tcls,
        boxes_per_cell=int(boxes_per_cell),
        lambda_coord=float(lambda_coord),
        lambda_noobj=float(lambda_noobj),
    )
