"""A small trained LeNet-5 run on the embedded digits, shared by the viz tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnkit.train.run import train_run


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run directory: LeNet-5, 5 epochs on 8x8 digits (~2 s, ~90% test accuracy)."""
    out = tmp_path_factory.mktemp("viz") / "run"
    summary = train_run(out, epochs=5, lr=3e-3, verbose=False)
    assert summary["test_accuracy"] > 0.7, summary["test_accuracy"]
    return out
