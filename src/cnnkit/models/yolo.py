"""TinyYOLO: the lecture's YOLO detector (Redmon et al., 2016), sized for digit scenes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit import nn
from cnnkit.autograd import no_grad
from cnnkit.tensor import Tensor


class TinyYOLO(nn.Module):
    """A small convolutional backbone ending in the YOLOv1 head ``(N, S, S, B*5 + C)``.

    One network looks at the whole image once: the last feature map has one position
    per grid cell, and a 1x1 convolution predicts, per cell, ``B`` boxes
    ``(x, y, sqrt w, sqrt h, confidence)`` (as logits, see :mod:`cnnkit.functional.yolo`)
    and ``C`` class logits. Train it with :class:`cnnkit.nn.YOLOv1Loss`; :meth:`detect`
    decodes boxes and applies per-class non-max suppression.

    The backbone is ``conv3x3-BN-ReLU`` blocks of ``widths``, the first
    ``min(len(widths) - 1, 4)`` followed by a 2x2 max pooling, so ``input_size`` must equal
    ``grid * 2 ** min(len(widths) - 1, 4)`` (96 for the defaults). With the defaults
    (widths 16, 32, 64, 64, 128, 128) the model has 284,676 parameters and 35.9 million
    multiply-accumulates per 96x96 scene; a cell's prediction sees 110x110 pixels
    (receptive field), the whole scene, as YOLO's global reasoning asks.

    Parameters
    ----------
    num_classes : int
    grid : int
        Cells per side ``S``.
    boxes_per_cell : int
        Predictors per cell ``B``.
    in_channels : int
    widths : sequence of int
        Channels of the convolution blocks.
    input_size : int
        Side of the square input in pixels.

    Shapes: input ``(N, in_channels, input_size, input_size)``, output
    ``(N, grid, grid, boxes_per_cell * 5 + num_classes)``.
    """

    _samplewise = True

    def __init__(
        self,
        num_classes: int = 10,
        grid: int = 6,
        boxes_per_cell: int = 2,
        in_channels: int = 1,
        widths: Sequence[int] = (16, 32, 64, 64, 128, 128),
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if num_classes < 1 or grid < 1 or boxes_per_cell < 1 or in_channels < 1 or not widths:
            raise ValueError(
                "TinyYOLO: num_classes, grid, boxes_per_cell, in_channels must be >= 1 and "
                f"widths non-empty; got {num_classes}, {grid}, {boxes_per_cell}, "
                f"{in_channels}, {widths}"
            )
        pools = max(0, min(len(widths) - 1, 4))
        side = grid * 2**pools
        if input_size is not None and int(input_size) != side:
            raise ValueError(
                f"TinyYOLO: input_size must be grid * 2**{pools} = {side} for grid {grid} and "
                f"{len(widths)} blocks; got {input_size}"
            )
        self.config = {
            "num_classes": int(num_classes),
            "grid": int(grid),
            "boxes_per_cell": int(boxes_per_cell),
            "in_channels": int(in_channels),
            "widths": widths,
            "input_size": side,
        }
        self.num_classes, self.grid, self.boxes_per_cell = (
            int(num_classes),
            int(grid),
            int(boxes_per_cell),
        )
        self.in_channels, self.input_size = int(in_channels), side
        layers: list[nn.Module] = []
        c = in_channels
        for k, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if k < pools:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, boxes_per_cell * 5 + num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x)).permute(0, 2, 3, 1)

    def check_images(self, images: Any) -> np.ndarray:
        """``images`` as a float32 ``(N, C, H, W)`` batch of this model's input size.

        Accepts an ``(N, C, H, W)`` array or Tensor, one ``(C, H, W)`` image, or a list of
        ``(C, H, W)`` images. Raises ValueError naming the expected and received shape.
        """
        if isinstance(images, Tensor):
            arr = images.numpy()
        elif isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("TinyYOLO.detect: empty image list; give at least one image")
            items = [im.numpy() if isinstance(im, Tensor) else np.asarray(im) for im in images]
            shapes = sorted({a.shape for a in items})
            if len(shapes) > 1:
                raise ValueError(f"TinyYOLO.detect: images of different shapes {shapes}")
            arr = np.stack(items)
        else:
            arr = np.asarray(images)
        if arr.ndim == 3:
            arr = arr[None]
        want = (self.in_channels, self.input_size, self.input_size)
        if arr.ndim != 4 or tuple(arr.shape[1:]) != want:
            raise ValueError(
                f"TinyYOLO.detect: expected images shaped (N, {want[0]}, {want[1]}, {want[2]}) "
                f"(channels, height, width); got {tuple(arr.shape)}"
            )
        if arr.shape[0] == 0:
            raise ValueError("TinyYOLO.detect: empty batch; give at least one image")
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"TinyYOLO.detect: images must be numeric; got {arr.dtype}")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def detect(
        self,
        images: Any,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 100,
        batch_size: int = 64,
    ) -> list[dict[str, np.ndarray]]:
        """Detect objects: decode the head and apply per-class non-max suppression.

        Parameters
        ----------
        images : array, Tensor or list of arrays
            ``(N, C, H, W)`` float images in [0, 1] (or one ``(C, H, W)`` image).
        conf_threshold : float
            Keep detections whose class-specific confidence is above this.
        iou_threshold : float
            Per-class NMS threshold.
        max_detections : int
            At most this many detections per image.
        batch_size : int
            Images per forward pass.

        Returns
        -------
        list of dict
            One per image, torchvision's convention: ``boxes`` float32 ``(K, 4)`` pixel
            ``x1, y1, x2, y2``; ``scores`` float32 ``(K,)`` (decreasing); ``labels``
            int64 ``(K,)``.
        """
        from cnnkit.detect.yolo import decode_predictions

        arr = self.check_images(images)
        was_training = self.training
        self.eval()
        heads = []
        try:
            with no_grad():
                for i in range(0, len(arr), batch_size):
                    heads.append(self(Tensor(arr[i : i + batch_size])).numpy())
        finally:
            self.train(was_training)
        return decode_predictions(
            np.concatenate(heads),
            self.boxes_per_cell,
            self.num_classes,
            self.input_size,
            conf_threshold,
            iou_threshold,
            max_detections,
        )
