"""MiniInception: a small GoogLeNet (Szegedy et al., 2015) - branches concatenated.

An Inception block looks at its input through four branches side by side - a 1x1
convolution, a 1x1 reduction then a 3x3, a 1x1 reduction then a 5x5, and a 3x3 max pool
then a 1x1 projection - and concatenates their outputs along the channels. The graph is
a DAG: the block's input feeds four branches and backward sums their four gradients.
Branch names follow torchvision's GoogLeNet (``branch1`` .. ``branch4``).
"""

from __future__ import annotations

from cnnkit import nn
from cnnkit.tensor import Tensor, cat


class ConvBNReLU(nn.Module):
    """``relu(bn(conv(x)))`` without a conv bias (BatchNorm has its own shift)."""

    _samplewise = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """One Inception block ("Inception module with dimension reductions", fig. 2b).

    Shapes: input ``(n, in_channels, h, w)``, output
    ``(n, ch1x1 + ch3x3 + ch5x5 + pool_proj, h, w)``.
    """

    _samplewise = True

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = ConvBNReLU(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(
            ConvBNReLU(in_channels, ch3x3red, 1), ConvBNReLU(ch3x3red, ch3x3, 3, padding=1)
        )
        self.branch3 = nn.Sequential(
            ConvBNReLU(in_channels, ch5x5red, 1), ConvBNReLU(ch5x5red, ch5x5, 5, padding=2)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), ConvBNReLU(in_channels, pool_proj, 1)
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return cat(branches, dim=1)


class MiniInception(nn.Module):
    """A small GoogLeNet: a 3x3 stem, two Inception blocks, a 2x2 max pool, a third block,
    global average pooling, dropout and a linear classifier.

    With the defaults (1 input channel, 10 classes) it has 21,578 parameters; any
    input of at least 2x2 works (the pooling before the classifier is global).

    Parameters
    ----------
    num_classes : int
    in_channels : int
    input_size : int, optional
        Accepted for symmetry with the other zoo models (the CLI passes it); unused.
    dropout : float
        Dropout before the classifier (GoogLeNet used 0.4).

    Shapes: input ``(n, in_channels, h, w)``, output ``(n, num_classes)``.
    """

    _samplewise = True

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.config = {"num_classes": num_classes, "in_channels": in_channels, "dropout": dropout}
        self.stem = ConvBNReLU(in_channels, 16, 3, padding=1)
        self.inception_a = Inception(16, 8, 8, 16, 4, 4, 4)  # -> 32 channels
        self.inception_b = Inception(32, 16, 16, 24, 4, 12, 12)  # -> 64
        self.pool = nn.MaxPool2d(2)
        self.inception_c = Inception(64, 24, 16, 32, 8, 16, 16)  # -> 88
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.inception_c.out_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.inception_b(self.inception_a(self.stem(x)))
        x = self.inception_c(self.pool(x))
        return self.fc(self.dropout(self.flatten(self.avgpool(x))))
