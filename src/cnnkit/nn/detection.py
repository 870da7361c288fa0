"""Detection losses: the YOLOv1 loss as a module (targets in torchvision's convention)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnkit.nn.module import Module
from cnnkit.tensor import Tensor


class YOLOv1Loss(Module):
    """The YOLOv1 loss (Redmon et al., 2016) of a head ``(N, S, S, B*5 + C)``.

    Responsible predictor: of the ``B`` predictors of the cell holding an object's
    centre, the one with the highest IoU with it. Coordinate terms on ``x, y`` (cell
    offsets) and ``sqrt w, sqrt h`` (weighted by ``lambda_coord``), objectness towards 1
    for the responsible predictor, a no-object term towards 0 for every other predictor
    (weighted by ``lambda_noobj``) and a cross-entropy class term per object cell; summed
    and divided by the batch size. See :mod:`cnnkit.functional.yolo` for the formula.

    Parameters
    ----------
    grid : int
        Cells per side ``S``.
    boxes_per_cell : int
        Predictors per cell ``B``.
    num_classes : int
        ``C``.
    lambda_coord, lambda_noobj : float
        Weights of the coordinate and no-object terms (the paper's 5 and 0.5).
    image_size : int or (h, w)
        Pixel size of the images the target boxes refer to.

    Call with ``(input, targets)``: ``input`` the head ``(N, S, S, B*5 + C)``;
    ``targets`` a list of ``N`` dicts with ``boxes`` ``(K, 4)`` pixel ``x1, y1, x2, y2``
    and ``labels`` ``(K,)`` (torchvision's detection convention). Returns a scalar.
    """

    def __init__(
        self,
        grid: int,
        boxes_per_cell: int,
        num_classes: int,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        image_size: int | Sequence[int] = 96,
    ) -> None:
        super().__init__()
        from cnnkit.detect.yolo import image_hw

        if grid < 1 or boxes_per_cell < 1 or num_classes < 1:
            raise ValueError(
                "YOLOv1Loss: grid, boxes_per_cell and num_classes must be >= 1; got "
                f"{grid}, {boxes_per_cell}, {num_classes}"
            )
        if lambda_coord < 0 or lambda_noobj < 0:
            raise ValueError(
                f"YOLOv1Loss: lambdas must be >= 0; got {lambda_coord}, {lambda_noobj}"
            )
        self.grid = int(grid)
        self.boxes_per_cell = int(boxes_per_cell)
        self.num_classes = int(num_classes)
        self.lambda_coord = float(lambda_coord)
        self.lambda_noobj = float(lambda_noobj)
        self.image_size = image_hw(image_size)

    def forward(self, input: Tensor, targets: Any) -> Tensor:
        from cnnkit.detect.yolo import encode_targets
        from cnnkit.functional.yolo import yolo_v1_loss

        s, d = self.grid, self.boxes_per_cell * 5 + self.num_classes
        if not isinstance(input, Tensor) or input.ndim != 4 or tuple(input.shape[1:]) != (s, s, d):
            got = tuple(input.shape) if hasattr(input, "shape") else type(input).__name__
            raise ValueError(
                f"YOLOv1Loss: expected input shaped (N, {s}, {s}, {d}) for grid {s}, "
                f"{self.boxes_per_cell} boxes per cell and {self.num_classes} classes; got {got}"
            )
        if isinstance(targets, dict) or len(targets) != input.shape[0]:
            n = "a dict" if isinstance(targets, dict) else f"{len(targets)} targets"
            raise ValueError(
                f"YOLOv1Loss: expected a list of {input.shape[0]} target dicts (one per "
                f"image); got {n}"
            )
        obj, tbox, tcls = encode_targets(targets, s, self.num_classes, self.image_size)
        return yolo_v1_loss(
            input, obj, tbox, tcls, self.boxes_per_cell, self.lambda_coord, self.lambda_noobj
        )

    def extra_repr(self) -> str:
        return (
            f"grid={self.grid}, boxes_per_cell={self.boxes_per_cell}, "
            f"num_classes={self.num_classes}, lambda_coord={self.lambda_coord:g}, "
            f"lambda_noobj={self.lambda_noobj:g}"
        )
