"""Shared fixtures: PyTorch as the reference oracle, float64 comparisons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch 2.13 is the reference oracle (pip install -e '.[test]')"
)
torch.set_num_threads(1)

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def assert_close(
    actual, expected, rtol: float = 1e-10, atol: float = 1e-12, what: str = ""
) -> None:
    """Compare a cnnkit tensor/array with a torch tensor/array, with a readable message."""
    a = (
        actual.numpy()
        if hasattr(actual, "numpy") and not isinstance(actual, np.ndarray)
        else actual
    )
    if hasattr(expected, "detach"):
        expected = expected.detach().numpy()
    a = np.asarray(getattr(a, "data", a))
    e = np.asarray(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=what)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def mnist_dir() -> Path:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST test set not found at {MNIST_DIR}")
    return MNIST_DIR
