"""What ``fit`` and ``cnnkit train`` do differently when started by ``mpiexec -n N``.

Under an MPI launcher with more than one process (or after
``init_process_group`` in a world of more than one), ``fit``:

* shards the training data with a :class:`~cnnkit.data.DistributedSampler` (same seed
  on every rank, ``set_epoch`` every epoch); each rank takes ``batch_size`` samples per
  step, so the global batch is ``N x batch_size`` (printed; the learning rate is not
  scaled);
* trains through :class:`~cnnkit.nn.parallel.DistributedDataParallel` (rank 0's
  initial weights everywhere; averaged gradients);
* sums the training loss and accuracy counts over the ranks, and evaluates the
  validation data sharded without padding (rank ``r`` takes samples ``r, r + N, ...``),
  summing losses and counts, so the validation figures are those of the whole set;
* shows the progress bar and epoch lines, and runs the callbacks (checkpoints, CSV,
  early stopping), on rank 0 only; rank 0's ``state.stop`` is sent to every rank.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from cnnkit import distributed as dist

F = TypeVar("F", bound=Callable[..., Any])


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process, joining the MPI world first when it was
    started by ``mpiexec -n N`` with N > 1; ``(0, 1)`` when alone."""
    if dist.init_from_environment() or (dist.is_initialized() and dist.get_world_size() > 1):
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def abort_on_error(fn: F) -> F:
    """Decorator: an exception escaping ``fn`` in a world of several processes aborts
    every rank (see :func:`cnnkit.distributed.abort_on_error`), printing the rank's
    traceback, or for an error in the user's input (a file, an option, a diverged loss:
    the errors ``cnnkit`` reports in one line) its message alone."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import pickle

        from cnnkit.io.checkpoint import CheckpointError
        from cnnkit.train.loop import TrainingError

        user_errors = (OSError, ValueError, pickle.UnpicklingError, CheckpointError, TrainingError)
        with dist.abort_on_error(brief=user_errors):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def barrier() -> None:
    """Wait for every rank (nothing to do when alone)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


class DataParallelFit:
    """The data-parallel side of one ``fit`` call (see the module docstring)."""

    def __init__(self, model: Any, loader: Any) -> None:
        from cnnkit.data import DataLoader, DistributedSampler

        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, DistributedSampler):
            self.loader = loader
        else:
            if sampler is not None:
                raise ValueError(
                    "fit: in a distributed run the training DataLoader must have no sampler "
                    f"or a DistributedSampler; got {type(sampler).__name__}"
                )
            seed = loader.seed
            if seed is None:  # every rank must shuffle alike: rank 0 draws the seed
                seed = int(loader._rng.integers(0, 2**31 - 1))
            seed = int(dist.broadcast_object(seed))
            sampler = DistributedSampler(loader.dataset, self.world_size, self.rank,
                                         shuffle=loader.shuffle, seed=seed,
                                         drop_last=loader.drop_last)  # fmt: skip
            self.loader = DataLoader(loader.dataset, batch_size=loader.batch_size,
                                     drop_last=loader.drop_last, seed=seed,
                                     transform=loader.transform, collate_fn=loader.collate_fn,
                                     sampler=sampler)  # fmt: skip
        self.sampler = sampler
        self.model = model
        self.ddp: Any = None

    def start(self) -> Any:
        """Wrap the model (after a resumed checkpoint was loaded); returns the module to
        call in training steps."""
        from cnnkit.nn.parallel import DistributedDataParallel

        self.ddp = DistributedDataParallel(self.model)
        return self.ddp

    def describe(self) -> str:
        b = self.loader.batch_size
        text = (
            f"distributed: {self.world_size} ranks over MPI, batch size {b} per rank, global "
            f"batch {self.world_size} x {b} = {self.world_size * b} (the learning rate is not "
            f"scaled); each rank trains on {len(self.sampler)} of {len(self.loader.dataset)} "
            "samples per epoch"
        )
        return text + _oversubscription_hint()

    def set_epoch(self, epoch: int) -> None:
        """Use the shard order of ``epoch`` (1-based, as ``fit`` counts)."""
        self.sampler.set_epoch(epoch - 1)

    @staticmethod
    def sum(*values: float) -> list[float]:
        """Each value summed over the ranks."""
        arr = np.array(values, dtype=np.float64)
        dist.all_reduce(arr)
        return arr.tolist()

    def evaluate(self, model: Any, data: Any, loss_fn: Any, batch_size: int) -> Any:
        """Validation over every rank's share of ``data`` (no padding); returns
        ``(loss, accuracy or None)`` of the whole set."""
        from cnnkit.data import DataLoader, Subset
        from cnnkit.train.loop import as_loader, evaluate

        loader = as_loader(data, batch_size)
        ds = loader.dataset
        shard = Subset(ds, list(range(self.rank, len(ds), self.world_size)))
        loss_sum = seen = correct = counted = 0.0
        acc_known = 0.0
        if len(shard):
            part = DataLoader(shard, batch_size=loader.batch_size, transform=loader.transform,
                              collate_fn=loader.collate_fn)  # fmt: skip
            res = evaluate(model, part, loss=loss_fn, report=False)
            seen = float(len(shard))
            loss_sum = res.loss * seen
            counted = float(len(res.targets))
            if res.accuracy is not None:
                acc_known = 1.0
                correct = float(round(res.accuracy * counted))
        loss_sum, seen, correct, counted, acc_known = self.sum(
            loss_sum, seen, correct, counted, acc_known
        )
        accuracy = correct / counted if acc_known and counted else None
        return loss_sum / max(seen, 1.0), accuracy

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank."""
        return bool(dist.broadcast_object(bool(flag)))

    def close(self) -> None:
        if self.ddp is not None:
            self.ddp.remove_hooks()


def _oversubscription_hint() -> str:
    """A note when the ranks on this machine run more threads than it has cores."""
    import os

    from cnnkit.functional import _parallel

    local = os.environ.get("MPI_LOCALNRANKS") or os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
    cores = os.cpu_count() or 1
    if not (local and local.isdigit()):
        return ""
    threads = _parallel.workers()
    if int(local) * threads <= cores:
        return ""
    return (
        f"\nnote: {local} ranks on this machine x {threads} threads each > {cores} cores; "
        "export OPENBLAS_NUM_THREADS=1 (or fewer ranks) so they do not compete"
    )


def prepare(model: Any, loader: Any) -> DataParallelFit | None:
    """A :class:`DataParallelFit` when this process is one of several; else ``None``."""
    _, size = world()
    if size <= 1:
        return None
    return DataParallelFit(model, loader)
