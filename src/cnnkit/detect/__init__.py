"""Object detection: boxes, IoU, non-max suppression, YOLOv1 encoding/decoding, mAP.

Names and semantics follow ``torchvision.ops`` (``box_iou``, ``nms``, ``batched_nms``)
and torchvision's detection output convention (a list with one dict of ``boxes``,
``scores``, ``labels`` per image), so results compare with any mAP tool.
"""

from cnnkit.detect.boxes import batched_nms, box_area, box_convert, box_iou, check_boxes, nms
from cnnkit.detect.metrics import MAPResult, average_precision, mean_average_precision
from cnnkit.detect.yolo import check_targets, decode_predictions, encode_targets

__all__ = [
    "MAPResult",
    "average_precision",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "check_boxes",
    "check_targets",
    "decode_predictions",
    "encode_targets",
    "mean_average_precision",
    "nms",
]
