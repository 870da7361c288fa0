"""Parallel wrappers: ``DataParallel`` (one CPU device) and ``DistributedDataParallel`` (MPI)."""

from cnnkit.nn.parallel.data_parallel import DataParallel
from cnnkit.nn.parallel.distributed import DistributedDataParallel

__all__ = ["DataParallel", "DistributedDataParallel"]
