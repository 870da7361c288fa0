"""When work is split over threads: the threshold rule of ``_parallel.min_work``."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.functional import _parallel


@pytest.fixture
def calibration(monkeypatch):
    """A known calibration for two workers (restored afterwards)."""
    key = ("calibration", 2)
    monkeypatch.setitem(
        _parallel._state, key, {"dispatch_s": 50e-6, "element_s": 1e-9, "mac_s": 2e-11}
    )
    return _parallel._state[key]


def test_threshold_follows_the_measured_costs(calibration):
    # saved time T (1 - 1/2) must reach PAYBACK * hand-off: T = 2 * 2 * 50 us = 200 us
    want = _parallel.PAYBACK * 50e-6 / 0.5
    assert _parallel.min_work("elements", 2) == int(want / 1e-9)  # 200,000 elements
    assert _parallel.min_work("macs", 2) == int(want / 2e-11)  # 10 M multiply-adds
    calibration["dispatch_s"] = 1e-6  # a cheap hand-off: the lower bound holds
    assert _parallel.min_work("elements", 2) == _parallel._MIN_WORK_BOUNDS["elements"][0]
    calibration["dispatch_s"] = 1.0  # a very slow one: the upper bound holds
    assert _parallel.min_work("macs", 2) == _parallel._MIN_WORK_BOUNDS["macs"][1]


def test_one_worker_never_splits():
    assert _parallel.min_work("elements", 1) > 1 << 40


def test_fixed_threshold_overrides_and_restores(calibration):
    before = _parallel.min_work("elements", 2)
    with _parallel.min_work_fixed(elements=0):
        assert _parallel.min_work("elements", 2) == 0
        assert _parallel.min_work("macs", 2) == int(_parallel.PAYBACK * 50e-6 / 0.5 / 2e-11)
    assert _parallel.min_work("elements", 2) == before


def test_calibration_measures_positive_costs_once():
    cal = _parallel.calibrate(2)
    assert all(v > 0 for v in cal.values()), cal
    assert _parallel.calibrate(2) is cal  # measured once per worker count


@pytest.mark.parametrize(("size", "splits"), [(199_999, False), (200_000, True)])
def test_batches_splits_at_the_threshold(calibration, monkeypatch, size, splits):
    monkeypatch.setattr(_parallel, "workers", lambda: 2)
    calls = []

    def spy(chunks, work, nw, limit_blas=True):
        calls.append(nw)
        for c0, c1 in chunks:
            work(0, c0, c1)

    monkeypatch.setattr(_parallel, "run", spy)
    seen = np.zeros(8, bool)
    _parallel.batches(8, size, lambda a, z: seen.__setitem__(slice(a, z), True))
    assert seen.all()
    assert calls == ([2] if splits else [])
