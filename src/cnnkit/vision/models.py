"""``cnnkit.vision.models``: torchvision's ResNets (architecture only, no pretrained weights).

``torchvision.models.resnet18(num_classes=10)`` becomes ``cnnkit.vision.models.resnet18(...)``
with the same module tree, names and initialisation as torchvision's, so state dicts
interchange key for key: ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1``..``layer4``
(each a Sequential of ``BasicBlock`` / ``Bottleneck`` with ``conv1``, ``bn1``, ``conv2``,
``bn2``[, ``conv3``, ``bn3``] and a ``downsample`` Sequential(conv 1x1, BatchNorm)),
``avgpool`` and ``fc``. Scripts that swap parts (``model.fc = nn.Linear(
model.fc.in_features, 10)``, ``model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)``,
``model.maxpool = nn.Identity()``) work as with torchvision.

cnnkit has no network access at run time and ships no ImageNet weights: ``weights`` (or
the legacy ``pretrained=True``) other than ``None`` raises a ValueError; load a state dict
saved by PyTorch with ``cnnkit.load`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cnnkit.nn as nn
from cnnkit.tensor import Tensor

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and an identity (or ``downsample``) shortcut: x ``(n, c, h, w)``."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride here, as torchvision's "ResNet V1.5"), 1x1 expand by 4."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet: x ``(n, 3, h, w)`` -> logits ``(n, num_classes)``.

    Parameters
    ----------
    block : type
        :class:`BasicBlock` or :class:`Bottleneck`.
    layers : list of int
        Blocks in each of the four stages.
    num_classes : int
        Outputs of ``fc``.
    zero_init_residual : bool
        Start each block's last BatchNorm at weight 0 (each block begins as the identity).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"ResNet: layers must be four positive block counts, got {layers}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        return self.fc(x.flatten(1))


def _resnet(
    name: str,
    block: type[BasicBlock] | type[Bottleneck],
    layers: list[int],
    weights: Any,
    progress: bool,
    kwargs: dict[str, Any],
) -> ResNet:
    pretrained = kwargs.pop("pretrained", False)
    if weights is not None or pretrained:
        got = weights if weights is not None else f"pretrained={pretrained!r}"
        raise ValueError(
            f"vision.models.{name}: cnnkit ships no pretrained weights (got weights={got!r}); "
            f"build it with weights=None and load a state dict saved by PyTorch with "
            f"cnnkit.load(path) instead"
        )
    unknown = set(kwargs) - {"num_classes", "zero_init_residual"}
    if unknown:
        raise TypeError(f"vision.models.{name}: unexpected arguments {sorted(unknown)}")
    return ResNet(block, layers, **kwargs)


def _builder(name: str, block: type[BasicBlock] | type[Bottleneck], layers: list[int]) -> Callable:
    def build(*, weights: Any = None, progress: bool = True, **kwargs: Any) -> ResNet:
        return _resnet(name, block, layers, weights, progress, kwargs)

    build.__name__ = build.__qualname__ = name
    depth = name[len("resnet") :]
    build.__doc__ = (
        f"ResNet-{depth} as torchvision builds it (``weights=None`` only; ``num_classes``, "
        f"``zero_init_residual``): x ``(n, 3, h, w)`` -> ``(n, num_classes)``."
    )
    return build


resnet18 = _builder("resnet18", BasicBlock, [2, 2, 2, 2])
resnet34 = _builder("resnet34", BasicBlock, [3, 4, 6, 3])
resnet50 = _builder("resnet50", Bottleneck, [3, 4, 6, 3])
resnet101 = _builder("resnet101", Bottleneck, [3, 4, 23, 3])
resnet152 = _builder("resnet152", Bottleneck, [3, 8, 36, 3])
