"""LayerNorm and GroupNorm against PyTorch in float64: outputs, the gradients of input,
weight and bias, state_dict keys, gradcheck and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn as nn
from cnnkit.functional import norm as N
from tests.nn.test_layers import _x, assert_matches_torch

tnn = torch.nn


def _randomise(t_layer: torch.nn.Module) -> None:
    """Non-trivial affine parameters so their gradients and effect are seen."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in t_layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize(
    ("normalized", "shape"),
    [(7, (3, 7)), ((5, 3), (2, 4, 5, 3)), ([3, 5, 2], (2, 3, 5, 2)), (1, (4, 1)), (9, (9,))],
)
@pytest.mark.parametrize(("affine", "bias"), [(True, True), (True, False), (False, True)])
def test_layer_norm_matches_torch(normalized, shape, affine: bool, bias: bool) -> None:
    t = tnn.LayerNorm(normalized, elementwise_affine=affine, bias=bias).double()
    _randomise(t)
    c = nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias, dtype="float64")
    assert list(c.state_dict()) == list(t.state_dict())
    yc, _ = assert_matches_torch(t, c, _x(*shape) * 3 + 1)
    assert yc.shape == shape


def test_layer_norm_non_contiguous_eps_and_gradcheck() -> None:
    x = _x(4, 6, 5).transpose(0, 2, 1)  # (4, 5, 6), strided
    t = tnn.LayerNorm(6, eps=0.3).double()
    _randomise(t)
    assert_matches_torch(t, nn.LayerNorm(6, eps=0.3, dtype="float64"), x)
    c = nn.LayerNorm((5, 6), dtype="float64")
    c.load_state_dict({k: ck.tensor(np.random.default_rng(1).normal(size=(5, 6)))
                       for k in ("weight", "bias")})  # fmt: skip
    assert ck.gradcheck(
        lambda a, w, b: N.layer_norm(a, (5, 6), w, b),
        [ck.tensor(x, requires_grad=True), c.weight, c.bias],
    )


@pytest.mark.parametrize(
    ("groups", "channels", "shape"),
    [(2, 6, (3, 6, 5, 4)), (3, 3, (2, 3, 7)), (1, 4, (2, 4, 3, 3)), (4, 4, (5, 4)),
     (2, 4, (1, 4, 2, 3, 2))],
)  # fmt: skip
@pytest.mark.parametrize(("affine", "bias"), [(True, True), (True, False), (False, True)])
def test_group_norm_matches_torch(groups: int, channels: int, shape, affine: bool, bias) -> None:
    t = tnn.GroupNorm(groups, channels, affine=affine, bias=bias).double()
    _randomise(t)
    c = nn.GroupNorm(groups, channels, affine=affine, dtype="float64", bias=bias)
    assert list(c.state_dict()) == list(t.state_dict())
    assert_matches_torch(t, c, _x(*shape) * 2 - 0.5)


def test_group_norm_non_contiguous_and_gradcheck() -> None:
    x = _x(2, 5, 4, 6).transpose(0, 3, 2, 1)  # (2, 6, 4, 5), strided
    t = tnn.GroupNorm(3, 6, eps=1e-3).double()
    _randomise(t)
    c = nn.GroupNorm(3, 6, eps=1e-3, dtype="float64")
    assert_matches_torch(t, c, x)
    assert ck.gradcheck(
        lambda a, w, b: N.group_norm(a, 3, w, b),
        [ck.tensor(x[:, :, :2, :3], requires_grad=True), c.weight, c.bias],
    )


def test_norm_defaults_and_repr_match_torch() -> None:
    for t, c in [(tnn.LayerNorm((3, 4)), nn.LayerNorm((3, 4))),
                 (tnn.GroupNorm(2, 6), nn.GroupNorm(2, 6)),
                 (tnn.GroupNorm(3, 6, affine=False), nn.GroupNorm(3, 6, affine=False)),
                 (tnn.LayerNorm(5, bias=False), nn.LayerNorm(5, bias=False))]:  # fmt: skip
        assert repr(c) == repr(t)
        for name, p in t.named_parameters():
            assert np.array_equal(dict(c.named_parameters())[name].numpy(), p.detach().numpy())


def test_norm_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="GroupNorm: num_groups=4 must be positive and divide"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="LayerNorm: normalized_shape must be positive ints"):
        nn.LayerNorm((3, 0))
    with pytest.raises(ValueError, match=r"expected input of shape \(\*, 3, 4\)"):
        nn.LayerNorm((3, 4))(ck.zeros(2, 4, 3))
    with pytest.raises(ValueError, match=r"GroupNorm.*expects input \(N, 6, \*\)"):
        nn.GroupNorm(2, 6)(ck.zeros(2, 4, 3))
    with pytest.raises(ValueError, match=r"group_norm: num_groups=4 must be positive and divide"):
        N.group_norm(ck.zeros(2, 6, 3), 4)
    with pytest.raises(ValueError, match=r"layer_norm: expected weight of shape \(3,\)"):
        N.layer_norm(ck.zeros(2, 3), 3, ck.zeros(4))
    with pytest.raises(TypeError, match="layer_norm: expected a floating input"):
        N.layer_norm(ck.tensor(np.zeros((2, 3), np.int64)), 3)


def test_norms_keep_float32() -> None:
    x = _x(3, 4, 5, 6).astype(np.float32)
    for t, c in [(tnn.LayerNorm(6), nn.LayerNorm(6)), (tnn.GroupNorm(2, 4), nn.GroupNorm(2, 4))]:
        xc = ck.tensor(x, requires_grad=True)
        yc = c(xc)
        assert yc.dtype == np.float32
        yc.sum().backward()
        assert xc.grad.dtype == np.float32
        np.testing.assert_allclose(yc.numpy(), t(torch.tensor(x)).detach().numpy(), atol=1e-5)
