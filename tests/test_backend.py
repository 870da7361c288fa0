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
def test_tune_malloc_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("CNNKIT_MALLOC_TUNING", "0")
    assert backend.tune_malloc() is False
    assert backend.malloc_tuned(True) is True and backend.malloc_tuned(False) is True


def test_import_leaves_the_allocator_and_blas_alone():
    """Importing cnnkit changes nothing in the process; a computation pins BLAS (and, when
    asked, tunes the allocator) only while it runs, and restores both afterwards."""
    code = """
import cnnkit.backend as b
calls = []
b.malloc_tuned = lambda on: calls.append(on) or True
from threadpoolctl import threadpool_info, threadpool_limits
import cnnkit as ck, cnnkit.nn as nn
assert calls == [], calls
nn.Linear(4, 3)(ck.randn(8, 4))
assert calls == [], calls  # off by default
ck.set_runtime(malloc_tuning=True)
blas = lambda: min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
with threadpool_limits(2, user_api="blas"):
    seen = []
    m = nn.Linear(4, 3)
    m.register_forward_hook(lambda *a: seen.append(blas()))
    out = nn.Sequential(m)(ck.randn(8, 4))
    assert seen == [1] and blas() == 2, (seen, blas())
assert calls == [True, False], calls
ck.set_runtime(malloc_tuning=False)
nn.Linear(4, 3)(ck.randn(8, 4))
assert calls == [True, False], calls
"""
    import subprocess

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
