"""nn.init.orthogonal_ and trunc_normal_: orthogonality, gain, shapes, the truncated
distribution's moments against the closed form, reproducibility, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cnnkit as ck
import cnnkit.nn as nn
from cnnkit.nn import init


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (9, 4), (6, 2, 3, 3), (2, 40)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_is_semi_orthogonal(shape, gain: float) -> None:
    t = ck.zeros(*shape, dtype="float64")
    assert init.orthogonal_(t, gain=gain) is t
    m = t.numpy().reshape(shape[0], -1) / gain
    small = min(m.shape)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)


def test_orthogonal_is_random_seeded_and_float32() -> None:
    ck.manual_seed(3)
    a = init.orthogonal_(ck.zeros(4, 6)).numpy()
    ck.manual_seed(3)
    b = init.orthogonal_(ck.zeros(4, 6)).numpy()
    c = init.orthogonal_(ck.zeros(4, 6)).numpy()
    assert a.dtype == np.float32 and np.array_equal(a, b) and not np.allclose(a, c)
    g = ck.Generator().manual_seed(1)
    d = init.orthogonal_(ck.zeros(4, 6), generator=g).numpy()
    assert np.array_equal(
        d, init.orthogonal_(ck.zeros(4, 6), generator=ck.Generator().manual_seed(1)).numpy()
    )
    # uniformly distributed (Haar): the diagonal of 3x3 draws averages 0, not a fixed sign
    diag = np.array([np.diag(init.orthogonal_(ck.zeros(3, 3, dtype="float64")).numpy())
                     for _ in range(400)])  # fmt: skip
    assert np.abs(diag.mean(axis=0)).max() < 0.1


def test_orthogonal_weight_of_a_layer_and_errors() -> None:
    lin = nn.Linear(8, 5)
    init.orthogonal_(lin.weight, gain=init.calculate_gain("relu"))
    w = lin.weight.numpy().astype(np.float64)
    np.testing.assert_allclose(w @ w.T, 2 * np.eye(5), atol=1e-5)
    with pytest.raises(ValueError, match="orthogonal_: only tensors with 2 or more dimensions"):
        init.orthogonal_(ck.zeros(4))


def _truncated_moments(mean, std, a, b) -> tuple[float, float]:
    """Mean and variance of N(mean, std^2) truncated to [a, b] (closed form)."""
    al, be = (a - mean) / std, (b - mean) / std
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) if math.isfinite(z) else 0.0  # noqa: E731
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    zmass = cdf(be) - cdf(al)
    m = (pdf(al) - pdf(be)) / zmass
    tail = (al * pdf(al) if math.isfinite(al) else 0.0) - (
        be * pdf(be) if math.isfinite(be) else 0.0
    )
    var = 1 + tail / zmass - m * m
    return mean + std * m, std * std * var


@pytest.mark.parametrize(
    ("mean", "std", "a", "b"),
    [(0.0, 1.0, -2.0, 2.0), (0.0, 0.02, -0.04, 0.04), (1.0, 2.0, 0.5, 6.0),
     (0.0, 1.0, 1.0, math.inf), (0.0, 1.0, -3.5, -1.0)],
)  # fmt: skip
def test_trunc_normal_bounds_and_moments(mean, std, a, b) -> None:
    ck.manual_seed(0)
    t = init.trunc_normal_(ck.zeros(200, 500, dtype="float64"), mean, std, a, b)
    v = t.numpy()
    assert v.min() >= a and v.max() <= b
    m, var = _truncated_moments(mean, std, a, b)
    n = v.size
    assert abs(v.mean() - m) < 5 * math.sqrt(var / n)
    assert abs(v.var() - var) < 0.02 * var
    assert len(np.unique(v)) == n  # no clamping onto the bounds


def test_trunc_normal_errors_and_dtype() -> None:
    assert init.trunc_normal_(ck.zeros(3, 4), std=0.02).dtype == np.float32
    with pytest.raises(ValueError, match="trunc_normal_: expected a < b"):
        init.trunc_normal_(ck.zeros(3), a=1.0, b=1.0)
    with pytest.raises(ValueError, match="trunc_normal_: std must be positive"):
        init.trunc_normal_(ck.zeros(3), std=0.0)
    with pytest.raises(ValueError, match="holds only"):
        init.trunc_normal_(ck.zeros(3), a=8.0, b=9.0)
