"""A multi-layer perceptron (fully connected layers only)."""

from __future__ import annotations

from collections.abc import Sequence

from cnnkit import nn
from cnnkit.tensor import Tensor


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU -> Dropout`` per hidden layer, then a linear head.

    Parameter count: ``sum((a + 1) * b)`` over consecutive layer widths, e.g.
    ``MLP(784, (256, 128), 10)`` has 235,146 parameters.

    Parameters
    ----------
    in_features : int
        Number of input values per sample (the input is flattened from dim 1).
    hidden : sequence of int
        Widths of the hidden layers (empty for a linear model).
    num_classes : int
        Output width.
    dropout : float
        Dropout probability after each hidden activation.

    Shapes: input ``(n, *)`` with ``prod(*) == in_features``, output ``(n, num_classes)``.
    """

    _samplewise = True

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (256, 128),
        num_classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        self.config = {
            "in_features": in_features,
            "hidden": hidden,
            "num_classes": num_classes,
            "dropout": dropout,
        }
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
