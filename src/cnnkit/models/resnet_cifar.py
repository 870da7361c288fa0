"""ResNet-20/32/44/56/110 for CIFAR-10 (He et al., 2016, section 4.2), option A shortcuts.

The module names are those of the widely used PyTorch re-implementation of the paper's
CIFAR networks (``conv1``, ``bn1``, ``layer1..3`` of blocks with ``conv1``, ``bn1``,
``conv2``, ``bn2``, ``shortcut``, then ``linear``), so its published checkpoints load
with :func:`cnnkit.io.load_torch_state_dict` and ``model.load_state_dict`` without
renaming (pass ``strip_prefix="module."`` for checkpoints saved from ``DataParallel``).
"""

from __future__ import annotations

from typing import Any

from cnnkit import nn
from cnnkit.nn import functional as F
from cnnkit.nn import init
from cnnkit.tensor import Tensor


class ShortcutA(nn.Module):
    """Option A: subsample by ``stride`` and zero-pad the new channels (no parameters).

    Shapes: input ``(n, c_in, h, w)``, output ``(n, c_out, ceil(h/stride), ceil(w/stride))``
    with the ``c_out - c_in`` extra channels split evenly before and after the input's.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels or (out_channels - in_channels) % 2:
            raise ValueError(
                f"ShortcutA: out_channels - in_channels must be even and >= 0; got "
                f"{in_channels} -> {out_channels}"
            )
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = (self.out_channels - self.in_channels) // 2
        return F.pad(x, (0, 0, 0, 0, extra, extra)) if extra else x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class CifarBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with 3x3 convolutions.

    The shortcut is the identity, or :class:`ShortcutA` where the shape changes.
    """

    _samplewise = True

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = ShortcutA(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """The CIFAR ResNet of depth ``6n + 2``: a 3x3 conv with 16 filters, three stages of
    ``n`` blocks at 16, 32, 64 filters (stride 2 into stages 2 and 3), global average
    pooling and a linear layer.

    Shapes: input ``(n, in_channels, h, w)`` (32x32 in the paper), output
    ``(n, num_classes)``. ResNet-20 has 269,722 parameters (0.27M, as in table 6).
    ``input_size`` is accepted for symmetry with the other zoo models and unused (any
    side of at least 4 works: the pooling before ``linear`` is global).
    """

    _samplewise = True

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"ResNetCIFAR: depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110); got {depth}"
            )
        self.config = {"depth": depth, "num_classes": num_classes, "in_channels": in_channels}
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        planes = 16
        self.layer1 = self._stage(planes, 16, n, 1)
        self.layer2 = self._stage(16, 32, n, 2)
        self.layer3 = self._stage(32, 64, n, 2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # the paper's initialisation (He et al., 2015)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                init.kaiming_normal_(m.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [CifarBlock(in_planes, planes, stride)]
        layers += [CifarBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, (out.shape[2], out.shape[3]))
        return self.linear(out.flatten(1))

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any:
        """As :meth:`Module.load_state_dict`; a missing ``num_batches_tracked`` (checkpoints
        from PyTorch before 0.4.1 have none) is taken as 0, as PyTorch's BatchNorm does."""
        state = dict(state_dict)
        for k, v in self.state_dict().items():
            if k.endswith("num_batches_tracked") and k not in state:
                state[k] = v.numpy() * 0
        return super().load_state_dict(state, strict=strict)


def resnet_cifar(depth: int = 20, num_classes: int = 10, in_channels: int = 3) -> ResNetCIFAR:
    """ResNet-``depth`` for CIFAR (``depth`` = 20, 32, 44, 56, 110, ... = 6n + 2).

    Parameters
    ----------
    depth : int
        Number of weighted layers, ``6n + 2``.
    num_classes : int
        Output logits.
    in_channels : int
        Input channels (3 for CIFAR-10).

    Returns
    -------
    ResNetCIFAR
        Input ``(n, in_channels, 32, 32)``, output ``(n, num_classes)``.
    """
    return ResNetCIFAR(depth, num_classes, in_channels)
