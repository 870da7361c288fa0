"""Padding layers: a constant border around the last two axes (PyTorch's names)."""

from __future__ import annotations

from cnnkit.functional.shape import pad
from cnnkit.nn._util import check_input
from cnnkit.nn.module import Module
from cnnkit.tensor import Tensor

Pad4 = tuple[int, int, int, int]


def _four(padding: int | tuple[int, ...], where: str) -> Pad4:
    """``(left, right, top, bottom)`` from an int or a 4-tuple, non-negative."""
    if isinstance(padding, bool) or not isinstance(padding, (int, tuple, list)):
        raise TypeError(
            f"{where}: padding must be an int or (left, right, top, bottom); "
            f"got {type(padding).__name__}"
        )
    four = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    if len(four) != 4 or not all(isinstance(p, int) and not isinstance(p, bool) for p in four):
        raise ValueError(f"{where}: padding must be an int or 4 ints; got {padding!r}")
    if min(four) < 0:
        raise ValueError(f"{where}: negative padding (cropping) is not supported; got {padding!r}")
    return four  # type: ignore[return-value]


class ConstantPad2d(Module):
    """Pad the last two axes with ``value``: ``padding`` is an int or
    ``(left, right, top, bottom)``.

    Input ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(..., H + top + bottom, W + left + right)``.
    """

    _samplewise = True

    def __init__(self, padding: int | tuple[int, int, int, int], value: float) -> None:
        super().__init__()
        self.padding = _four(padding, type(self).__name__)
        self.value = float(value)

    def forward(self, input: Tensor) -> Tensor:
        check_input(input, self, (3, 4), "(N, C, H, W) or (C, H, W)")
        return pad(input, self.padding, value=self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ZeroPad2d(ConstantPad2d):
    """Pad the last two axes with zeros (see :class:`ConstantPad2d`)."""

    def __init__(self, padding: int | tuple[int, int, int, int]) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"
