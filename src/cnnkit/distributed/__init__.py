"""Process groups over MPI and their collectives (PyTorch's ``torch.distributed`` names).

cnnkit's data-parallel training runs on a real MPI implementation through mpi4py (the
optional extra ``pip install 'cnnkit[mpi]'`` brings mpi4py and MPICH, whose wheel puts
``mpiexec`` into the environment). Start N processes with ``mpiexec -n N python
script.py``; each calls :func:`init_process_group` and then uses the collectives below
on :class:`~cnnkit.tensor.Tensor` values in place, as with ``torch.distributed``.

Differences from PyTorch, on purpose:

* ``backend="mpi"`` is the only backend (``nccl`` needs GPUs, ``gloo`` is PyTorch's own
  socket protocol); the world comes from the MPI launcher, so ``init_method``,
  ``MASTER_ADDR`` and ``MASTER_PORT`` are not needed.
* Outside ``mpiexec``, :func:`init_process_group` gives a world of one process (rank 0)
  instead of waiting for peers, so the same script runs on a laptop unchanged.
* Every collective waits at most ``timeout`` (default 30 minutes, as PyTorch's); a rank
  that died or hangs is reported by :class:`DistributedTimeoutError` naming the
  operation, instead of the job hanging.
* While a group of more than one process is initialised, an uncaught exception on any
  rank prints that rank's traceback and calls ``MPI.COMM_WORLD.Abort`` (a raising rank
  would otherwise leave the others waiting in a collective).
"""

from cnnkit.distributed.process_group import (
    DistributedError,
    DistributedTimeoutError,
    ReduceOp,
    Work,
    abort_on_error,
    all_gather_object,
    all_reduce,
    barrier,
    broadcast,
    broadcast_object,
    destroy_process_group,
    get_rank,
    get_world_size,
    init_from_environment,
    init_process_group,
    is_available,
    is_initialized,
    is_mpi_available,
    launched_world_size,
)

__all__ = [
    "DistributedError",
    "DistributedTimeoutError",
    "ReduceOp",
    "Work",
    "abort_on_error",
    "all_gather_object",
    "all_reduce",
    "barrier",
    "broadcast",
    "broadcast_object",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_from_environment",
    "init_process_group",
    "is_available",
    "is_initialized",
    "is_mpi_available",
    "launched_world_size",
]
