"""A small residual network: the computational graph as a DAG in practice."""

from __future__ import annotations

from collections.abc import Sequence

from cnnkit import nn
from cnnkit.functional.activation import add_relu
from cnnkit.nn.container import bn_relu_fusable, conv_bn
from cnnkit.tensor import Tensor


class BasicBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` (He et al., 2016).

    The shortcut is the identity, or a 1x1 strided convolution with BatchNorm when the
    shape changes. The input tensor feeds two branches that merge in the addition, so
    backward accumulates two gradients into it.

    Shapes: input ``(n, in_channels, h, w)``, output ``(n, out_channels, h/stride, w/stride)``.
    """

    _samplewise = True

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if bn_relu_fusable(self.bn1, self.relu):  # the same maths, fewer passes over memory
            out = conv_bn(self.conv1, self.bn1, x, relu=True)  # (folded in inference)
            out = conv_bn(self.conv2, self.bn2, out)
            return add_relu(out, self.shortcut(x))
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A stem conv, stages of :class:`BasicBlock` (stride 2 between stages), global pool, fc.

    With the defaults (widths 16, 32, 64; one block per stage; 3 input channels) the
    model has 78,042 parameters.

    Parameters
    ----------
    num_classes : int
        Output logits.
    in_channels : int
        Input channels.
    widths : sequence of int
        Channels per stage.
    blocks_per_stage : int
        Residual blocks in each stage.

    Shapes: input ``(n, in_channels, h, w)`` (any size >= 4), output ``(n, num_classes)``.
    """

    _samplewise = True

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64),
        blocks_per_stage: int = 1,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        self.config = {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "widths": widths,
            "blocks_per_stage": blocks_per_stage,
        }
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        c = widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks_per_stage):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(c, w, stride))
                c = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))
