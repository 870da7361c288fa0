"""``cnnkit.accelerator``: PyTorch's device-agnostic accelerator queries; there is none."""

from __future__ import annotations

__all__ = ["current_accelerator", "device_count", "is_available"]


def is_available() -> bool:
    """Always False: cnnkit computes on the CPU."""
    return False


def current_accelerator(check_available: bool = False) -> None:
    """None, as PyTorch answers on a machine without an accelerator."""
    return None


def device_count() -> int:
    """Always 0."""
    return 0
