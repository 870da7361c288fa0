"""A small VGG-style network for 32x32 RGB images (CIFAR-10)."""

from __future__ import annotations

from collections.abc import Sequence

from cnnkit import nn
from cnnkit.tensor import Tensor


class SmallVGG(nn.Module):
    """Blocks of ``conv3x3-BN-ReLU-conv3x3-BN-ReLU-maxpool2-dropout``, then a classifier.

    With the defaults (widths 32, 64, 128 on 32x32x3 input) the model has 814,570
    parameters: convolutions 286,560 (no bias: BatchNorm follows), BatchNorm 896, and the
    classifier 527,114 (the 4x4x128 feature map feeds ``Linear(2048, 256)`` and
    ``Linear(256, 10)``).

    Parameters
    ----------
    num_classes : int
        Output logits.
    in_channels : int
        Input channels (3 for RGB).
    widths : sequence of int
        Channels of each block; each block halves the spatial size.
    dropout : float
        Dropout after each block and before the last layer.
    input_size : int
        Side of the square input (must be divisible by ``2 ** len(widths)``).

    Shapes: input ``(n, in_channels, input_size, input_size)``, output ``(n, num_classes)``.
    """

    _samplewise = True

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128),
        dropout: float = 0.3,
        input_size: int = 32,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if input_size % (2 ** len(widths)):
            raise ValueError(
                f"SmallVGG: input_size must be divisible by 2**{len(widths)}; got {input_size}"
            )
        self.config = {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "widths": widths,
            "dropout": dropout,
            "input_size": input_size,
            "hidden": hidden,
        }
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [
                nn.Conv2d(c, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(),
                nn.Conv2d(w, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c = w
        self.features = nn.Sequential(*layers)
        side = input_size // 2 ** len(widths)
        head: list[nn.Module] = [nn.Flatten(), nn.Linear(c * side * side, hidden), nn.ReLU()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(hidden, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
