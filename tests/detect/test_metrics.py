"""mean_average_precision: a hand-worked example and pycocotools as the reference.

pycocotools (a test-only dependency) evaluates COCO's AP: it matches each detection,
by decreasing score, to the best *unmatched* ground truth with IoU >= threshold, and
averages the precision envelope at 101 recall points. cnnkit computes VOC's
all-points AP (the exact area under the envelope) and, like the VOC kit, takes the
best-IoU ground truth even when it is already matched. With ground-truth boxes that do
not overlap (as in digit scenes) a detection can reach IoU >= 0.5 with at most one of
them, so the matchings are the same; the test checks that the precision-recall curves
agree exactly (through COCO's 101-point sampling of them) and that the two AP
definitions differ by no more than the 101-point sampling error.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from cnnkit.detect import average_precision, mean_average_precision


def _t(boxes, labels):
    return {"boxes": np.asarray(boxes, float).reshape(-1, 4), "labels": np.asarray(labels)}


def _p(boxes, scores, labels):
    return {**_t(boxes, labels), "scores": np.asarray(scores, float)}


def test_hand_worked_example() -> None:
    targets = [
        _t([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0]),
        _t([[0, 0, 10, 10], [30, 30, 40, 40]], [0, 1]),
        _t([[0, 0, 5, 5]], [3]),
    ]
    preds = [
        # 0.9 TP; 0.8 hits the same box (IoU 81/119 = 0.68) -> FP; 0.6 TP
        _p([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], [0.9, 0.8, 0.6], [0, 0, 0]),
        # 0.7 misses (FP); class 1 exact hit; class 2 has no ground truth
        _p([[50, 50, 60, 60], [30, 30, 40, 40], [0, 0, 9, 9]], [0.7, 0.5, 0.4], [0, 1, 2]),
        _p(np.zeros((0, 4)), [], []),
    ]
    r = mean_average_precision(preds, targets, num_classes=4)
    # class 0: TP FP FP TP of 3 objects: recall 1/3 1/3 1/3 2/3, precision 1 1/2 1/3 1/2;
    # envelope 1 up to recall 1/3, 1/2 up to 2/3: AP = 1/3 * 1 + 1/3 * 1/2 = 1/2
    np.testing.assert_allclose(r.ap[0], 0.5)
    assert r.ap[1] == 1.0
    assert np.isnan(r.ap[2])  # no ground truth: left out of the mean
    assert r.ap[3] == 0.0  # ground truth but never detected
    np.testing.assert_allclose(r.map, (0.5 + 1.0 + 0.0) / 3)
    np.testing.assert_array_equal(r.num_gt, [3, 1, 0, 1])
    np.testing.assert_array_equal(r.num_pred, [4, 1, 1, 0])
    assert "mAP" in r.table() and "n/a" in r.table()
    # at IoU 0.7 the 0.8 box (IoU 0.68) still is a duplicate, nothing changes for class 0
    assert mean_average_precision(preds, targets, 0.7, num_classes=4).ap[0] == pytest.approx(0.5)


def test_average_precision_envelope() -> None:
    # precision rises after a dip: the envelope takes the later, higher value
    ap = average_precision(np.array([0.25, 0.25, 0.5, 0.75]), np.array([1.0, 0.5, 2 / 3, 0.75]))
    np.testing.assert_allclose(ap, 0.25 * 1.0 + 0.25 * 0.75 + 0.25 * 0.75)


def test_bad_input_is_rejected() -> None:
    good = [_t([[0, 0, 1, 1]], [0])]
    with pytest.raises(ValueError, match="1 predictions but 2 targets"):
        mean_average_precision([_p([[0, 0, 1, 1]], [1.0], [0])], good * 2)
    with pytest.raises(ValueError, match="x2 < x1"):
        mean_average_precision([_p([[0, 0, 1, 1]], [1], [0])], [_t([[5, 0, 1, 1]], [0])])
    with pytest.raises(ValueError, match="outside the 10 classes"):
        mean_average_precision(
            [_p([[0, 0, 1, 1]], [1], [0])], [_t([[0, 0, 1, 1]], [12])], num_classes=10
        )
    with pytest.raises(ValueError, match="scores"):
        mean_average_precision([_p([[0, 0, 1, 1]], [1, 2], [0])], good)


def _random_scene(rng: np.random.Generator, n_classes: int) -> tuple[dict, dict]:
    """Disjoint ground truth (one box per occupied 25-pixel cell) and noisy detections:
    near hits, duplicates, wrong classes and pure misses."""
    cells = rng.permutation(16)[: rng.integers(0, 6)]
    gt, gl = [], []
    for c in cells:
        x0, y0 = (c % 4) * 25.0, (c // 4) * 25.0
        w, h = rng.uniform(8, 22, 2)
        x1, y1 = x0 + rng.uniform(0, 24 - w), y0 + rng.uniform(0, 24 - h)
        gt.append([x1, y1, x1 + w, y1 + h])
        gl.append(int(rng.integers(n_classes)))
    pb, ps, pl = [], [], []
    for b, l in zip(gt, gl, strict=True):
        for _ in range(rng.integers(0, 3)):
            jitter = rng.normal(0, 2.5, 4)
            q = np.array(b) + jitter
            q[2:] = np.maximum(q[2:], q[:2] + 1)
            pb.append(q)
            ps.append(rng.random())
            pl.append(l if rng.random() < 0.85 else int(rng.integers(n_classes)))
    for _ in range(rng.integers(0, 3)):
        xy = rng.uniform(0, 80, 2)
        pb.append([*xy, *(xy + rng.uniform(5, 20, 2))])
        ps.append(rng.random())
        pl.append(int(rng.integers(n_classes)))
    return _p(np.asarray(pb).reshape(-1, 4), ps, pl), _t(np.asarray(gt).reshape(-1, 4), gl)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pycocotools(seed: int) -> None:
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(seed)
    n_classes = 4
    scenes = [_random_scene(rng, n_classes) for _ in range(60)]
    preds, targets = [s[0] for s in scenes], [s[1] for s in scenes]
    ours = mean_average_precision(preds, targets, 0.5, num_classes=n_classes)

    def xywh(b):
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    anns, dets = [], []
    for k, (p, t) in enumerate(zip(preds, targets, strict=True)):
        for b, l in zip(t["boxes"], t["labels"], strict=True):
            w, h = xywh(b)[2:]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": k,
                    "category_id": int(l),
                    "bbox": xywh(b),
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for b, s, l in zip(p["boxes"], p["scores"], p["labels"], strict=True):
            dets.append({"image_id": k, "category_id": int(l), "bbox": xywh(b), "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": k} for k in range(len(targets))],
            "annotations": anns,
            "categories": [{"id": c} for c in range(n_classes)],
        }
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.params.maxDets = [100]
        ev.params.areaRng = [[0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    coco = ev.eval["precision"][0, :, :, 0, 0]  # (101 recall points, classes)
    rec_thrs = ev.params.recThrs
    for c in range(n_classes):
        assert ours.num_gt[c] > 0
        recall, precision = ours.curves[c]
        env = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, rec_thrs, side="left")
        sampled = np.where(at < len(env), env[np.minimum(at, len(env) - 1)], 0.0)
        # same matching, same curve: COCO's 101-point sampling of our curve is COCO's
        np.testing.assert_allclose(sampled, coco[:, c], atol=1e-12)
        # the two AP definitions differ by at most the width of one sampling step
        assert abs(ours.ap[c] - coco[:, c].mean()) <= 1.0 / 100 + 1e-9
