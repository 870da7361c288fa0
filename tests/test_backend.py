"""backend: dtype policy, seeding, meta arrays and the allocator setting."""

import sys

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import backend


def test_default_dtype_round_trip():
    assert backend.get_default_dtype() == np.float32
    backend.set_default_dtype("float64")
    try:
        assert ck.tensor([1.0]).dtype == np.float64
    finally:
        backend.set_default_dtype(np.float32)
    with pytest.raises(TypeError, match="float32 or float64"):
        backend.set_default_dtype("int32")


def test_rng_state_restores_the_same_draws():
    ck.manual_seed(3)
    state = backend.get_rng_state()
    a = backend.default_rng().random(4)
    backend.set_rng_state(state)
    np.testing.assert_array_equal(backend.default_rng().random(4), a)


def test_meta_array_has_shape_but_no_storage():
    m = backend.meta_array((40_000, 40_000), np.float32)
    assert m.shape == (40_000, 40_000) and m.dtype == np.float32
    assert m.strides == (0, 0) and backend.is_meta(m) and backend.is_meta(ck.Tensor(m))
    assert not backend.is_meta(np.zeros(2))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tune_malloc_applies_and_can_be_turned_off(monkeypatch):
    assert backend.tune_malloc() is True
    monkeypatch.setenv("CNNKIT_MALLOC_TUNING", "0")
    assert backend.tune_malloc() is False
