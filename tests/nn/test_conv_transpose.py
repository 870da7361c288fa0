"""ConvTranspose2d (nn and functional) against PyTorch: float64 outputs and every
gradient on awkward geometries, float32 through the fast paths, output_size, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn as nn
from cnnkit.functional.conv import conv_transpose2d
from tests.conftest import assert_close
from tests.nn.test_layers import _x, assert_matches_torch

CASES = [
    dict(in_channels=3, out_channels=5, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1,
         groups=2),
    dict(in_channels=3, out_channels=5, kernel_size=(2, 3), stride=(2, 3), padding=(1, 0),
         output_padding=(1, 2)),
    dict(in_channels=2, out_channels=3, kernel_size=3, dilation=2, bias=False),
    dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=2, dilation=3,
         output_padding=2),
    dict(in_channels=6, out_channels=6, kernel_size=4, stride=2, padding=1, groups=6),
    dict(in_channels=2, out_channels=2, kernel_size=1, stride=3, output_padding=2),
]  # fmt: skip


@pytest.mark.parametrize("kwargs", CASES)
@pytest.mark.parametrize("hw", [(5, 4), (1, 3)])
def test_conv_transpose2d_matches_torch(kwargs: dict, hw) -> None:
    t = torch.nn.ConvTranspose2d(**kwargs)
    c = nn.ConvTranspose2d(**kwargs, dtype="float64")
    assert c.weight.shape == tuple(t.weight.shape)
    assert list(c.state_dict()) == list(t.state_dict())
    yc, yt = assert_matches_torch(t, c, _x(2, kwargs["in_channels"], *hw))
    assert yc.shape == tuple(yt.shape)


def test_conv_transpose2d_unbatched_and_non_contiguous() -> None:
    t = torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1)
    c = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, dtype="float64")
    assert_matches_torch(t, c, _x(3, 5, 6))
    assert_matches_torch(t, c, _x(2, 6, 5, 3).transpose(0, 3, 2, 1))


WIDE = dict(in_channels=64, out_channels=48, kernel_size=3, stride=2, padding=1, output_padding=1)


@pytest.mark.parametrize("kwargs", [CASES[1], CASES[4], WIDE])
def test_conv_transpose2d_float32_fast_paths(kwargs: dict) -> None:
    rng = np.random.default_rng(0)
    t = torch.nn.ConvTranspose2d(**kwargs)
    c = nn.ConvTranspose2d(**kwargs)
    c.load_state_dict(t.state_dict())
    x = rng.normal(size=(3, kwargs["in_channels"], 6, 5)).astype(np.float32)
    xt, xc = torch.tensor(x, requires_grad=True), ck.tensor(x, requires_grad=True)
    yt, yc = t(xt), c(xc)
    assert yc.dtype == np.float32
    g = rng.normal(size=tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.tensor(g))
    yc.backward(ck.tensor(g))
    pairs = [(yc, yt, "out"), (xc.grad, xt.grad, "dx"), (c.weight.grad, t.weight.grad, "dw"),
             (c.bias.grad, t.bias.grad, "db")]  # fmt: skip
    for a, b, what in pairs:
        scale = float(np.abs(b.detach().numpy()).max())
        assert_close(a, b, rtol=0, atol=2e-6 * scale, what=what)


def test_conv_transpose2d_gradcheck_and_output_size() -> None:
    x = ck.tensor(_x(1, 2, 3, 2), requires_grad=True)
    w = ck.tensor(_x(2, 3, 2, 3, seed=1), requires_grad=True)
    b = ck.tensor(_x(3, seed=2), requires_grad=True)
    assert ck.gradcheck(lambda a, k, c: conv_transpose2d(a, k, c, 2, (1, 0), (1, 0)), [x, w, b])
    t = torch.nn.ConvTranspose2d(2, 3, 3, stride=3, padding=1).double()
    c = nn.ConvTranspose2d(2, 3, 3, stride=3, padding=1, dtype="float64")
    c.load_state_dict(t.state_dict())
    xn = _x(2, 2, 4, 5)
    for size in [(10, 13), (12, 15), (2, 3, 11, 14)]:
        yt = t(torch.tensor(xn), output_size=size)
        assert_close(c(ck.tensor(xn), output_size=size), yt)
    with pytest.raises(ValueError, match=r"output_size \(13, 13\) is not reachable"):
        c(ck.tensor(xn), output_size=(13, 13))


def test_conv_transpose2d_repr_and_default_init() -> None:
    kw = dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1,
              output_padding=1, groups=2, bias=False, dilation=2)  # fmt: skip
    assert repr(nn.ConvTranspose2d(**kw)) == repr(torch.nn.ConvTranspose2d(**kw))
    ck.manual_seed(0)
    w = nn.ConvTranspose2d(16, 8, 3).weight.numpy()
    bound = 1 / np.sqrt(8 * 9)  # fan_in = weight.size(1) * KH * KW, as PyTorch
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.9 * bound


def test_conv_transpose2d_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ConvTranspose2d: output_padding"):
        nn.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="ConvTranspose2d: groups=2 must divide"):
        nn.ConvTranspose2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"expects input \(N, 3, H, W\)"):
        nn.ConvTranspose2d(3, 4, 3)(ck.zeros(1, 2, 5, 5))
    with pytest.raises(ValueError, match="conv_transpose2d: output size"):
        conv_transpose2d(ck.zeros(1, 1, 1, 1), ck.zeros(1, 1, 1, 1), padding=1)
    with pytest.raises(TypeError, match="conv_transpose2d: input dtype float32 does not match"):
        conv_transpose2d(ck.zeros(1, 1, 3, 3), ck.tensor(np.zeros((1, 1, 2, 2))))
