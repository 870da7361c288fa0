"""box_iou, nms, batched_nms against straightforward PyTorch re-implementations.

torchvision is not available (its CPU wheel does not import next to the CPU torch), so
the references below are written here from torchvision's documented semantics: IoU
``inter / union``; NMS visits boxes by decreasing score and drops those with IoU
``> iou_threshold`` to a kept box; batched NMS offsets each category's boxes so that
categories never overlap (torchvision's own trick, a different algorithm from ours).
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.detect import batched_nms, box_convert, box_iou, nms
from cnnkit.tensor import Tensor

torch = pytest.importorskip("torch")


def torch_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def torch_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> torch.Tensor:
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = []
    while order.numel():
        i = order[0]
        keep.append(int(i))
        iou = torch_box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][iou <= thr]
    return torch.tensor(keep, dtype=torch.int64)


def torch_batched_nms(boxes, scores, idxs, thr):
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    offsets = idxs.to(boxes.dtype) * (boxes.max() + 1)
    return torch_nms(boxes + offsets[:, None], scores, thr)


def random_boxes(rng: np.random.Generator, n: int, grid: bool = False) -> np.ndarray:
    """Boxes on a coarse integer grid (many ties and duplicates) or continuous ones."""
    if grid:
        xy = rng.integers(0, 6, size=(n, 2)) * 4.0
        wh = rng.integers(1, 4, size=(n, 2)) * 4.0
    else:
        xy = rng.uniform(0, 50, size=(n, 2))
        wh = rng.uniform(1, 30, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("seed", range(4))
def test_box_iou_matches_torch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 13, grid=seed % 2 == 0), random_boxes(rng, 7)
    want = torch_box_iou(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(box_iou(a, b), want, rtol=1e-12, atol=1e-12)
    assert box_iou(a, np.zeros((0, 4))).shape == (13, 0)
    assert box_iou(Tensor(a.astype(np.float32)), b[:2]).shape == (13, 2)


def test_box_iou_hand_worked() -> None:
    # 10x10 squares shifted by 5 in x: intersection 50, union 150
    np.testing.assert_allclose(
        box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]]), [[1 / 3, 0.0]]
    )
    # two empty boxes: torchvision gives 0/0 = NaN; cnnkit 0
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7])
def test_nms_matches_torch(seed: int, thr: float) -> None:
    rng = np.random.default_rng(seed)
    grid = seed % 2 == 0
    boxes = random_boxes(rng, 40, grid=grid)
    # grid seeds: scores with many ties (and duplicate boxes, IoU exactly 1)
    scores = rng.integers(0, 5, 40).astype(np.float64) if grid else rng.random(40)
    keep = nms(boxes, scores, thr)
    want = torch_nms(torch.tensor(boxes), torch.tensor(scores), thr).numpy()
    assert keep.dtype == np.int64
    np.testing.assert_array_equal(keep, want)
    idxs = rng.integers(0, 3, 40)
    got = batched_nms(boxes, scores, idxs, thr)
    ref = torch_batched_nms(torch.tensor(boxes), torch.tensor(scores), torch.tensor(idxs), thr)
    np.testing.assert_array_equal(got, ref.numpy())


def test_nms_empty_and_single() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5).shape == (0,)
    np.testing.assert_array_equal(nms([[0, 0, 1, 1]], [0.3], 0.5), [0])


def test_nms_threshold_is_strict() -> None:
    # IoU exactly 1/3: kept at threshold 1/3 (only IoU > threshold suppresses)
    boxes = [[0, 0, 10, 10], [5, 0, 15, 10]]
    np.testing.assert_array_equal(nms(boxes, [0.9, 0.8], 1 / 3), [0, 1])
    np.testing.assert_array_equal(nms(boxes, [0.9, 0.8], 0.3), [0])


def test_bad_boxes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"boxes\[1\].*x2 < x1"):
        nms([[0, 0, 1, 1], [5, 0, 2, 3]], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou(np.zeros((3, 5)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="scores must be shaped"):
        nms([[0, 0, 1, 1]], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        nms([[0, 0, 1, 1]], [np.nan], 0.5)


def test_box_convert_round_trip() -> None:
    b = np.array([[1.0, 2.0, 5.0, 10.0]])
    np.testing.assert_allclose(box_convert(b, "xyxy", "cxcywh"), [[3, 6, 4, 8]])
    np.testing.assert_allclose(box_convert(b, "xyxy", "xywh"), [[1, 2, 4, 8]])
    np.testing.assert_allclose(box_convert(box_convert(b, "xyxy", "cxcywh"), "cxcywh", "xyxy"), b)
