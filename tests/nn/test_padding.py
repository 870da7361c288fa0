"""ZeroPad2d and ConstantPad2d against PyTorch: values, input gradient, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn as nn
from tests.nn.test_layers import _x, assert_matches_torch


@pytest.mark.parametrize("padding", [1, (0, 2, 3, 1), (2, 0, 0, 1)])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (3, 1, 7)])
def test_zero_pad2d_matches_torch(padding, shape) -> None:
    yc, yt = assert_matches_torch(torch.nn.ZeroPad2d(padding), nn.ZeroPad2d(padding), _x(*shape))
    assert yc.shape == tuple(yt.shape)


@pytest.mark.parametrize("value", [0.0, -1.5, 3.25])
def test_constant_pad2d_matches_torch(value: float) -> None:
    x = _x(2, 3, 5, 4).transpose(0, 1, 3, 2)[:, :, 1:]  # non-contiguous
    assert_matches_torch(
        torch.nn.ConstantPad2d((1, 2, 0, 3), value), nn.ConstantPad2d((1, 2, 0, 3), value), x
    )


def test_zero_pad2d_state_dict_and_repr() -> None:
    m = nn.ZeroPad2d((1, 2, 3, 4))
    assert m.state_dict() == {}
    assert repr(m) == repr(torch.nn.ZeroPad2d((1, 2, 3, 4)))


def test_pad2d_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ZeroPad2d: padding must be an int or 4 ints"):
        nn.ZeroPad2d((1, 2))
    with pytest.raises(ValueError, match="ZeroPad2d: negative padding"):
        nn.ZeroPad2d(-1)
    with pytest.raises(TypeError, match="ConstantPad2d: padding must be an int"):
        nn.ConstantPad2d(1.5, 0.0)
    with pytest.raises(ValueError, match=r"ZeroPad2d.*expects input \(N, C, H, W\)"):
        nn.ZeroPad2d(1)(ck.zeros(3, 4))
    with pytest.raises(TypeError, match="expects a cnnkit Tensor"):
        nn.ZeroPad2d(1)(np.zeros((1, 1, 2, 2)))
