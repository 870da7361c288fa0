"""``cnnkit.cuda``: answers PyTorch scripts' CUDA questions (cnnkit has no GPU backend)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "device_count",
    "empty_cache",
    "is_available",
    "manual_seed",
    "manual_seed_all",
    "synchronize",
]


def is_available() -> bool:
    """Always False: cnnkit computes on the CPU."""
    return False


def device_count() -> int:
    """Always 0."""
    return 0


def manual_seed(seed: Any) -> None:
    """Accepted and ignored (there is no CUDA generator); seed with ``ck.manual_seed``."""


manual_seed_all = manual_seed


def synchronize(device: Any = None) -> None:
    """Nothing to wait for on the CPU."""


def empty_cache() -> None:
    """Nothing to release (there is no CUDA memory cache)."""
