"""LeNet-5 (LeCun et al., 1998) with ReLU and max pooling."""

from __future__ import annotations

from cnnkit import nn
from cnnkit.functional.conv import conv_output_size
from cnnkit.tensor import Tensor


class LeNet5(nn.Module):
    """LeNet-5: conv5x5(6) - pool2 - conv5x5(16) - pool2 - fc120 - fc84 - fc(classes).

    At 28x28 (MNIST) the first convolution pads by 2, which gives the classic 32x32
    geometry: 61,706 parameters and 416,520 multiply-accumulates per image
    (conv1 117,600, conv2 240,000, fully connected 58,920). At 32x32 no padding is
    used (same 61,706 parameters). Smaller inputs (the 8x8 embedded digits) pad the
    second convolution too so the feature map never vanishes.

    Parameters
    ----------
    num_classes : int
        Output logits.
    in_channels : int
        1 for grayscale, 3 for RGB.
    input_size : int
        Side of the square input image (8, 28 and 32 are typical).
    activation : {"relu", "tanh"}
        Nonlinearity after each hidden layer.
    dropout : float
        Dropout probability after each hidden fully connected layer (0 disables it).
    channels : (int, int)
        Filters of the two convolutions (the classic 6 and 16; wider nets need more).

    Shapes: input ``(n, in_channels, input_size, input_size)``, output ``(n, num_classes)``.
    """

    _samplewise = True

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        activation: str = "relu",
        dropout: float = 0.0,
        channels: tuple[int, int] = (6, 16),
    ) -> None:
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"LeNet5: activation must be 'relu' or 'tanh'; got {activation!r}")
        if input_size < 4:
            raise ValueError(f"LeNet5: input_size must be at least 4; got {input_size}")
        self.config = {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "input_size": input_size,
            "activation": activation,
            "dropout": dropout,
            "channels": list(channels),
        }
        c1, c2 = (int(c) for c in channels)
        act = nn.ReLU if activation == "relu" else nn.Tanh
        pad1 = 0 if input_size >= 32 else 2
        s1 = conv_output_size(input_size, 5, 1, pad1) // 2
        pad2 = 0 if s1 >= 10 else 2
        s2 = conv_output_size(s1, 5, 1, pad2) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=pad1),
            act(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=pad2),
            act(),
            nn.MaxPool2d(2),
        )
        head: list[nn.Module] = [nn.Flatten()]
        for a, b in ((c2 * s2 * s2, 120), (120, 84)):
            head += [nn.Linear(a, b), act()]
            if dropout > 0:
                head.append(nn.Dropout(dropout))
        head.append(nn.Linear(84, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
