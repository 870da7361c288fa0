"""``cnnkit.backends``: the switches PyTorch scripts set (``cudnn.benchmark``, ``mps``).

They are accepted and have no effect: cnnkit computes on the CPU with NumPy and its own
kernels.
"""

from __future__ import annotations

from types import SimpleNamespace

__all__ = ["cudnn", "mps"]

cudnn = SimpleNamespace(benchmark=False, deterministic=False, enabled=True, is_available=lambda: False)
mps = SimpleNamespace(is_available=lambda: False, is_built=lambda: False)
