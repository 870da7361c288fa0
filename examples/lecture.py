"""The lecture's comparison: fully connected vs locally connected vs convolutional layers
on a 200x200 grayscale image, counted by cnnkit (no memory used for the big layers).

    python examples/lecture.py

Every layer is built on ``device="meta"`` (shapes only, no weights allocated), so the
1.6-billion-parameter fully connected layer costs nothing; ``cnnkit.summary`` runs a
shapes-only forward pass to count the hidden units (outputs) and the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import cnnkit as ck
from cnnkit import nn

SIDE = 200  # a 200x200 grayscale image: 40,000 input pixels
INPUT = (1, 1, SIDE, SIDE)


@dataclass
class Row:
    """One line of the comparison table."""

    name: str
    layer: str
    units: int  # hidden units = output values
    fan_in: int  # input pixels each hidden unit sees
    weights: int
    biases: int
    params: int  # as counted by cnnkit.summary
    lecture: str  # the figure quoted in the lecture

    @property
    def float32_mb(self) -> float:
        return 4 * self.params / 1e6


def _row(name: str, layer: nn.Module, fan_in: int, lecture: str, flatten: bool = False) -> Row:
    model = nn.Sequential(nn.Flatten(), layer) if flatten else nn.Sequential(layer)
    s = ck.summary(model, INPUT)
    units = 1
    for d in s.rows[-1].output_shape[1:]:
        units *= int(d)
    weights = layer.weight.numel()
    biases = layer.bias.numel() if layer.bias is not None else 0
    assert weights + biases == s.total_params
    return Row(name, repr(layer), units, fan_in, weights, biases, s.total_params, lecture)


def comparison() -> list[Row]:
    """The five configurations of the lecture's argument, counted."""
    n = SIDE * SIDE
    return [
        _row(
            "fully connected",
            nn.Linear(n, n, device="meta"),
            n,
            "~1.6 billion",
            flatten=True,
        ),
        _row(
            "locally connected",
            nn.LocallyConnected2d(1, 100, SIDE, kernel_size=10, stride=10, device="meta"),
            100,
            "4 million",
        ),
        _row(
            "locally connected, sliding",
            nn.LocallyConnected2d(1, 1, SIDE, kernel_size=10, stride=1, padding=5, device="meta"),
            100,
            "(~4 million)",
        ),
        _row("convolution, 1 filter", nn.Conv2d(1, 1, 10, device="meta"), 100, "101"),
        _row(
            "convolution, 20 filters",
            nn.Conv2d(1, 20, 10, device="meta"),
            100,
            "2,020",
        ),
    ]


def format_rows(rows: list[Row]) -> str:
    """The comparison as an aligned text table."""
    head = ["network", "hidden units", "inputs/unit", "weights", "biases", "parameters",
            "float32", "lecture"]  # fmt: skip
    cells = [
        [r.name, f"{r.units:,}", f"{r.fan_in:,}", f"{r.weights:,}", f"{r.biases:,}",
         f"{r.params:,}", _size(r.float32_mb), r.lecture]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    right = {1, 2, 3, 4, 5, 6}

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(head))
    return "\n".join([line(head), rule, *(line(c) for c in cells)])


def _size(mb: float) -> str:
    return (
        f"{mb / 1000:,.1f} GB"
        if mb >= 1000
        else f"{mb:,.2f} MB"
        if mb >= 0.01
        else f"{mb * 1e6:,.0f} B"
    )


NOTES = """\
How each row is built (input: one 200x200 grayscale image, 40,000 pixels):

* fully connected: Linear(40000, 40000) on the flattened image. Every one of the 40,000
  hidden units sees all 40,000 pixels: 40,000 x 40,000 weights + 40,000 biases
  = 1,600,040,000 parameters (6.4 GB as float32; built on device="meta", so none of it
  is allocated).
* locally connected (the lecture's 4 million): each hidden unit sees only a 10x10 patch
  and has its own 100 weights (no sharing). To get exactly the lecture's 40,000 hidden
  units with non-padded 10x10 fields, the image is cut into 20x20 = 400 patches
  (stride 10) and each patch feeds 100 units (100 output channels):
  400 x 100 = 40,000 units, each with 100 weights -> 4,000,000 weights, plus one bias
  per unit (40,000) -> 4,040,000 parameters.
  LocallyConnected2d(1, 100, input_size=200, kernel_size=10, stride=10).
* locally connected, sliding: the other reading, one unit centred on every pixel
  (stride 1, zero padding 5): 201 x 201 = 40,401 units x 100 weights = 4,040,100
  weights + 40,401 biases. Same order: about 4 million either way.
* convolution: the 10x10 weights are shared by every position, so a filter has
  100 weights + 1 bias = 101 parameters whatever the image size (it still produces
  191 x 191 = 36,481 hidden units); twenty filters 20 x 101 = 2,020 parameters for
  20 x 36,481 = 729,620 hidden units.

Locality divides the fully connected weights by 400 (each unit sees 100 of 40,000 pixels);
weight sharing then divides the locally connected weights by 40,000 (one filter for all
positions): from 1.6 billion to 101 parameters."""


def main() -> None:
    rows = comparison()
    print("Parameters of one layer on a 200x200 grayscale image (counted by cnnkit.summary)")
    print()
    print(format_rows(rows))
    print()
    print(NOTES)


if __name__ == "__main__":
    main()
