"""``cnnkit.nn.parallel``: data-parallel training over MPI (PyTorch's names)."""

from cnnkit.nn.parallel.distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
