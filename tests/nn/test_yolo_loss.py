"""YOLOv1Loss: float64 gradcheck and a PyTorch re-implementation written from the paper.

The reference below loops over images, cells and predictors and states each term of
Redmon et al. (2016) as cnnkit documents it (sigmoid-activated x, y, sqrt w, sqrt h and
confidence; objectness target 1; cross-entropy class term; the largest box wins a
shared cell; the first predictor wins an IoU tie); autograd gives its gradient.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import nn
from cnnkit.detect import encode_targets
from cnnkit.inspect import gradcheck
from cnnkit.tensor import Tensor

torch = pytest.importorskip("torch")


def torch_yolo_loss(p, targets, s, nb, nc, size, lc=5.0, ln=0.5):
    n = p.shape[0]
    total = p.new_zeros(())
    for k in range(n):
        cells: dict[tuple[int, int], tuple[float, float, float, float, int]] = {}
        for box, lab in zip(targets[k]["boxes"], targets[k]["labels"], strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            cx, cy, w, h = (
                (x1 + x2) / 2 / size,
                (y1 + y2) / 2 / size,
                (x2 - x1) / size,
                (y2 - y1) / size,
            )
            key = (min(int(cy * s), s - 1), min(int(cx * s), s - 1))
            if key not in cells or w * h >= cells[key][2] * cells[key][3]:
                cells[key] = (cx, cy, w, h, int(lab))
        for i in range(s):
            for j in range(s):
                v = p[k, i, j]
                preds = [torch.sigmoid(v[5 * b : 5 * b + 5]) for b in range(nb)]
                resp = -1
                if (i, j) in cells:
                    cx, cy, w, h, lab = cells[(i, j)]
                    best = -1.0
                    for b, q in enumerate(preds):
                        pcx, pcy = (j + q[0]) / s, (i + q[1]) / s
                        pw, ph = q[2] ** 2, q[3] ** 2
                        iw = torch.min(
                            pcx + pw / 2, torch.tensor(cx + w / 2, dtype=p.dtype)
                        ) - torch.max(pcx - pw / 2, torch.tensor(cx - w / 2, dtype=p.dtype))
                        ih = torch.min(
                            pcy + ph / 2, torch.tensor(cy + h / 2, dtype=p.dtype)
                        ) - torch.max(pcy - ph / 2, torch.tensor(cy - h / 2, dtype=p.dtype))
                        inter = iw.clamp(min=0) * ih.clamp(min=0)
                        iou = float((inter / (pw * ph + w * h - inter)).detach())
                        if iou > best:
                            best, resp = iou, b
                    q = preds[resp]
                    tx, ty = cx * s - j, cy * s - i
                    total = total + lc * (
                        (q[0] - tx) ** 2
                        + (q[1] - ty) ** 2
                        + (q[2] - w**0.5) ** 2
                        + (q[3] - h**0.5) ** 2
                    )
                    total = total + (q[4] - 1) ** 2
                    total = total + torch.nn.functional.cross_entropy(
                        v[5 * nb :][None], torch.tensor([lab])
                    )
                for b, q in enumerate(preds):
                    if b != resp:
                        total = total + ln * q[4] ** 2
    return total / n


def random_targets(rng, n, size, nc, shared_cell=False):
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 5))
        xy = rng.uniform(0, size - 30, (k, 2))
        wh = rng.uniform(3, 30, (k, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        if shared_cell and k >= 2:  # two centres in one cell, different sizes
            boxes[1] = boxes[0] + np.array([1, 1, -1, -1])
        out.append({"boxes": boxes.astype(np.float32), "labels": rng.integers(0, nc, k)})
    return out


@pytest.mark.parametrize(("s", "nb", "nc", "size"), [(6, 2, 10, 96), (4, 3, 5, 64), (3, 1, 2, 48)])
def test_loss_and_gradient_match_torch(s: int, nb: int, nc: int, size: int) -> None:
    rng = np.random.default_rng(s * 10 + nb)
    n = 3
    p = rng.normal(0, 1.5, (n, s, s, nb * 5 + nc))
    targets = random_targets(rng, n, size, nc, shared_cell=True)
    loss = nn.YOLOv1Loss(s, nb, nc, image_size=size)
    x = Tensor(p, requires_grad=True)
    out = loss(x, targets)
    out.backward()
    pt = torch.tensor(p, requires_grad=True)
    ref = torch_yolo_loss(pt, targets, s, nb, nc, size)
    ref.backward()
    np.testing.assert_allclose(float(out.item()), float(ref.detach()), rtol=1e-10)
    np.testing.assert_allclose(x.grad.numpy(), pt.grad.numpy(), rtol=1e-8, atol=1e-12)
    # float32 follows float64 to float tolerance
    x32 = Tensor(p.astype(np.float32), requires_grad=True)
    out32 = loss(x32, targets)
    out32.backward()
    assert x32.grad.numpy().dtype == np.float32
    np.testing.assert_allclose(float(out32.item()), float(ref.detach()), rtol=1e-5)
    np.testing.assert_allclose(x32.grad.numpy(), pt.grad.numpy(), rtol=1e-3, atol=1e-5)


def test_gradcheck_float64() -> None:
    rng = np.random.default_rng(3)
    p = Tensor(rng.normal(0, 1.0, (2, 3, 3, 2 * 5 + 4)), requires_grad=True)
    targets = random_targets(rng, 2, 48, 4)
    loss = nn.YOLOv1Loss(3, 2, 4, lambda_coord=5.0, lambda_noobj=0.5, image_size=48)
    assert gradcheck(lambda t: loss(t, targets), [p])


def test_encode_targets_cells() -> None:
    # centre (30, 10) of a 96 image on a 6-grid: row 0, column 1
    obj, tbox, tcls = encode_targets(
        [{"boxes": np.array([[20.0, 0, 40, 20]]), "labels": np.array([7])}], 6, 10, 96
    )
    assert obj.sum() == 1 and obj[0, 0, 1]
    np.testing.assert_allclose(tbox[0, 0, 1], [30 / 96, 10 / 96, 20 / 96, 20 / 96])
    assert tcls[0, 0, 1] == 7


def test_bad_targets_and_shapes() -> None:
    loss = nn.YOLOv1Loss(6, 2, 10)
    x = Tensor(np.zeros((1, 6, 6, 20), np.float32))
    with pytest.raises(ValueError, match=r"x2 < x1"):
        loss(x, [{"boxes": np.array([[30.0, 0, 20, 10]]), "labels": np.array([1])}])
    with pytest.raises(ValueError, match="outside the 10 classes"):
        loss(x, [{"boxes": np.array([[0.0, 0, 20, 10]]), "labels": np.array([10])}])
    with pytest.raises(ValueError, match=r"expected input shaped \(N, 6, 6, 20\)"):
        loss(Tensor(np.zeros((1, 6, 6, 19), np.float32)), [{"boxes": [], "labels": []}])
    with pytest.raises(ValueError, match="list of 1 target dicts"):
        loss(x, [])
    with pytest.raises(TypeError, match="must be a dict"):
        loss(x, [np.zeros((1, 4))])
