"""``cnnkit.backends``: the switches PyTorch scripts set (``cudnn.benchmark``, ``mps``).

They are accepted and have no effect: cnnkit computes on the CPU with NumPy and its own
kernels.
"""

from cnnkit.backends import cudnn, mps

__all__ = ["cudnn", "mps"]
