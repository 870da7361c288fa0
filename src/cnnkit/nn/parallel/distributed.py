"""DistributedDataParallel: one model replica per rank, gradients averaged in buckets.

How a training step runs on P ranks (each with its own shard of the data):

1. Construction checks that every rank has the same parameters (names, shapes,
   dtypes) and copies rank 0's parameters and buffers to all ranks.
2. The parameters are grouped into buckets of about ``bucket_cap_mb`` (the first one
   smaller, 1 MB, so communication starts early), in *reverse* registration order: the
   last layers' gradients are the first to be complete in backward.
3. In backward, a per-parameter hook
   (:meth:`~cnnkit.tensor.Tensor.register_post_accumulate_grad_hook`) counts the
   finished gradients; when a bucket is complete its gradients are copied into one flat
   buffer and a non-blocking ``MPI_Iallreduce`` (sum) starts, while backward goes on
   with the earlier layers. Buckets start in bucket order on every rank (MPI requires
   the same order of collectives everywhere).
4. When the last bucket started, the reductions are waited for, divided by P and copied
   back into ``.grad``: every rank then holds the gradient of the mean loss over the
   global batch (when each rank's loss is the mean over its equally sized batch).

MPICH advances a non-blocking collective only inside MPI calls. While reductions are in
flight a helper thread therefore tests them every ~0.1 ms (it sleeps in between and
NumPy releases the GIL in its heavy work, so it costs little); without
``MPI_THREAD_MULTIPLE`` every hook tests them instead, which drives them less often.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from cnnkit import autograd
from cnnkit.nn.module import Module
from cnnkit.tensor import Tensor

#: PyTorch options that change nothing on CPUs over MPI (accepted so scripts run as is)
_ACCEPTED = frozenset(
    {
        "check_reduction",
        "gradient_as_bucket_view",
        "static_graph",
        "init_sync",
        "mixed_precision",
        "delay_all_reduce_named_params",
        "param_to_hook_all_reduce",
        "device_mesh",
        "skip_all_reduce_unused_params",
    }
)
_FIRST_BUCKET_MB = 1.0  # PyTorch's first bucket is small, so the first reduction starts early


class _Bucket:
    """Parameters reduced together, and their flat buffer."""

    def __init__(self, index: int, params: list[tuple[str, Tensor]]) -> None:
        self.index = index
        self.names = [n for n, _ in params]
        self.params = [p for _, p in params]
        self.dtype = self.params[0].dtype
        sizes = [p.numel() for p in self.params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.buffer = np.zeros(int(self.offsets[-1]), dtype=self.dtype)
        self.ready: set[int] = set()  # positions in self.params
        self.request: Any = None

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes)


class DistributedDataParallel(Module):
    """Data-parallel training over the default process group (PyTorch's DDP).

    Parameters
    ----------
    module : Module
        The model; the same architecture on every rank.
    device_ids, output_device, dim : ignored
        Accepted for PyTorch compatibility (CPU only, batch dimension 0), as are
        ``check_reduction``, ``gradient_as_bucket_view``, ``static_graph`` and
        PyTorch's other tuning options; an unknown keyword is a ``TypeError``.
    broadcast_buffers : bool
        Copy rank 0's buffers (batch-norm running statistics) to every rank at the
        start of each forward that records a graph.
    process_group : None
        The default group (the only one).
    bucket_cap_mb : float, optional
        Target bucket size in MB (default 4; the first bucket is 1 MB).
    find_unused_parameters : bool
        After each forward, find the parameters the output does not depend on and count
        them as ready (their bucket is reduced with zeros for them); without it, a
        parameter that gets no gradient leaves its bucket waiting, which the next
        forward reports as an error naming it.

    Notes
    -----
    ``forward`` returns ``module(*inputs)``; ``state_dict()`` keys carry the
    ``module.`` prefix as in PyTorch. :meth:`no_sync` skips the reduction (gradient
    accumulation); the first backward outside it reduces the accumulated gradients.

    Raises
    ------
    RuntimeError
        No process group is initialised.
    ValueError
        The ranks' models differ (the message names the first differing parameter).
    """

    def __init__(
        self,
        module: Module,
        device_ids: Any = None,
        output_device: Any = None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group: Any = None,
        bucket_cap_mb: float | None = None,
        find_unused_parameters: bool = False,
        **torch_options: Any,
    ) -> None:
        from cnnkit import distributed as dist

        super().__init__()
        unknown = sorted(set(torch_options) - _ACCEPTED)
        if unknown:
            raise TypeError(
                f"DistributedDataParallel: unexpected keyword arguments {unknown}; PyTorch's "
                f"{sorted(_ACCEPTED)} are accepted and have no effect here"
            )
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel: expected a Module; got {type(module).__name__}"
            )
        if not dist.is_initialized():
            raise RuntimeError(
                "DistributedDataParallel: the default process group has not been initialized; "
                "call cnnkit.distributed.init_process_group('mpi') first"
            )
        cap = 4.0 if bucket_cap_mb is None else float(bucket_cap_mb)
        if not cap > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be > 0; got {cap}")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.bucket_cap_mb = cap
        self.world_size = dist.get_world_size()
        self.rank = dist.get_rank()
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        _check_same_model(module)
        self._sync_state()
        object.__setattr__(self, "_buckets", _make_buckets(named, cap))
        object.__setattr__(self, "_where", {})  # id(param) -> (bucket, position)
        for b in self._buckets:
            for i, p in enumerate(b.params):
                self._where[id(p)] = (b, i)
        object.__setattr__(
            self,
            "_handles",
            [p.register_post_accumulate_grad_hook(self._grad_ready) for _, p in named],
        )
        from mpi4py import MPI

        threaded = MPI.Query_thread() == MPI.THREAD_MULTIPLE and self.world_size > 1
        object.__setattr__(self, "_progress", _Progress() if threaded else None)
        self._require_sync = True
        self._hooks_fired = False
        self._armed = False  # a forward that will be followed by a reducing backward
        self._next = 0  # next bucket to start
        #: of the last step: ``time.perf_counter()`` when the last bucket started (this
        #: rank's backward is done) and when all reductions had finished
        self.last_backward_end = self.last_reduced = 0.0

    # ------------------------------------------------------------------ set-up
    def _sync_state(self) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        from cnnkit import distributed as dist

        for p in self.module.parameters():
            dist.broadcast(p, 0)
        for b in self.module.buffers():
            if b is not None:
                dist.broadcast(b, 0)

    def remove_hooks(self) -> None:
        """Detach from the module's parameters (the module trains alone again)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # ------------------------------------------------------------------ running
    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        from cnnkit import distributed as dist

        self._check_previous_step()
        grad_on = autograd.is_grad_enabled()
        if grad_on and self.broadcast_buffers:
            for b in self.module.buffers():
                if b is not None:
                    dist.broadcast(b, 0)
        out = self.module(*inputs, **kwargs)
        self._armed = grad_on and self._require_sync
        if self._armed:
            self._reset()
            if self.find_unused_parameters:
                self._mark_unused(out)
        return out

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Forward and backward inside this block do not reduce gradients (they
        accumulate in ``.grad``); the next step outside it reduces the sum."""
        prev = self._require_sync
        self._require_sync = False
        try:
            yield
        finally:
            self._require_sync = prev

    def _reset(self) -> None:
        self._hooks_fired = False
        for b in self._buckets:
            b.ready.clear()
            b.request = None
        self._next = 0

    def _mark_unused(self, out: Any) -> None:
        roots = [t for t in (out if isinstance(out, (tuple, list)) else (out,))
                 if isinstance(t, Tensor) and t.requires_grad]  # fmt: skip
        reached: set[int] = set()
        for r in roots:
            reached.update(id(t) for t in autograd._topological_order(r))
        for b in self._buckets:
            for i, p in enumerate(b.params):
                if id(p) not in reached:
                    b.ready.add(i)
        self._launch_ready()

    def _check_previous_step(self) -> None:
        if not (self._armed and self._hooks_fired):
            return  # no backward after the last forward, or its reduction is complete
        missing = [n for b in self._buckets for i, n in enumerate(b.names) if i not in b.ready]
        self._armed = False
        self._reset()
        raise RuntimeError(
            "DistributedDataParallel: the reduction of the last backward pass did not finish: "
            f"parameters {missing[:8]}{' ...' if len(missing) > 8 else ''} received no "
            "gradient; pass find_unused_parameters=True if the model does not use all of "
            "its parameters in every forward"
        )

    def _grad_ready(self, param: Tensor) -> None:
        """Per-parameter hook: the gradient is complete; start full buckets in order."""
        if not self._armed:
            return
        self._hooks_fired = True
        b, i = self._where[id(param)]
        b.ready.add(i)
        self._launch_ready()

    def _launch_ready(self) -> None:
        from cnnkit import distributed as dist

        g = dist.process_group._current("DistributedDataParallel")
        buckets = self._buckets
        if self._progress is None:
            for b in buckets[: self._next]:  # drive MPI's progress on the ones in flight
                if b.request is not None and b.request is not _DONE and b.request.Test():
                    b.request = _DONE
        while self._next < len(buckets) and len(buckets[self._next].ready) == len(
            buckets[self._next].params
        ):
            b = buckets[self._next]
            for k, p in enumerate(b.params):
                a, z = b.offsets[k], b.offsets[k + 1]
                if p.grad is None:
                    b.buffer[a:z] = 0
                else:
                    b.buffer[a:z] = p.grad.numpy().reshape(-1)
            b.request = g.comm.Iallreduce(g.MPI.IN_PLACE, b.buffer, op=g.MPI.SUM)
            if self._progress is not None:
                self._progress.submit(b)
            self._next += 1
        if self._next == len(buckets):
            self._finish()

    def _finish(self) -> None:
        from cnnkit import distributed as dist
        from cnnkit.distributed.process_group import wait_request

        t0 = time.perf_counter()
        what = "DistributedDataParallel: allreduce of the gradient buckets"
        if self._progress is not None:
            self._progress.wait_all(dist.process_group._current(what).timeout, what)
        for b in self._buckets:
            if b.request is not _DONE:
                wait_request(b.request, what)
        self.last_backward_end, self.last_reduced = t0, time.perf_counter()
        scale = 1.0 / self.world_size
        for b in self._buckets:
            b.buffer *= scale
            for k, p in enumerate(b.params):
                a, z = b.offsets[k], b.offsets[k + 1]
                p.grad = Tensor._wrap(b.buffer[a:z].reshape(p.shape).copy(), False)
        self._armed = False
        self._next = 0

    # ------------------------------------------------------------------ info
    @property
    def bucket_sizes(self) -> list[int]:
        """Bytes per bucket, in reduction order."""
        return [b.nbytes for b in self._buckets]

    def extra_repr(self) -> str:
        return (
            f"world_size={self.world_size}, buckets={len(self._buckets)} "
            f"({', '.join(f'{n / 1e6:.2f} MB' for n in self.bucket_sizes)})"
        )


class _Progress:
    """A helper thread that tests the reductions in flight until none is left."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._pending: list[_Bucket] = []
        self._running = False

    def submit(self, bucket: _Bucket) -> None:
        with self._cv:
            self._pending.append(bucket)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="cnnkit-ddp-progress", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._cv:
                for b in self._pending:
                    if b.request.Test():
                        b.request = _DONE
                self._pending = [b for b in self._pending if b.request is not _DONE]
                if not self._pending:
                    self._running = False
                    self._cv.notify_all()
                    return
            time.sleep(1e-4)

    def wait_all(self, timeout: float, what: str) -> None:
        from cnnkit import distributed as dist

        deadline = time.monotonic() + timeout
        with self._cv:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    g = dist.process_group._current(what)
                    raise dist.DistributedTimeoutError(
                        f"{what}: rank {g.rank} of {g.size} waited {timeout:g} s for the other "
                        "ranks and gave up: a rank has died, hangs, or took a different code path"
                    )
                self._cv.wait(min(left, 0.05))


class _Done:
    """Stands for a request that completed while being tested."""


_DONE = _Done()


def _make_buckets(named: list[tuple[str, Tensor]], cap_mb: float) -> list[_Bucket]:
    """Reverse registration order, split by dtype and at ~``cap_mb`` (first bucket 1 MB)."""
    buckets: list[_Bucket] = []
    current: list[tuple[str, Tensor]] = []
    size = 0
    limit = min(_FIRST_BUCKET_MB, cap_mb) * 1e6
    for name, p in reversed(named):
        if current and (p.dtype != current[0][1].dtype or size >= limit):
            buckets.append(_Bucket(len(buckets), current))
            current, size = [], 0
            limit = cap_mb * 1e6
        current.append((name, p))
        size += p.numel() * p.dtype.itemsize
    if current:
        buckets.append(_Bucket(len(buckets), current))
    return buckets


def _check_same_model(module: Module) -> None:
    """Every rank has the parameters and buffers of rank 0 (names, shapes, dtypes)."""
    from cnnkit import distributed as dist

    mine = [[n, list(p.shape), str(p.dtype)] for n, p in module.named_parameters()]
    mine += [[n, list(b.shape), str(b.dtype)] for n, b in module.named_buffers() if b is not None]
    every: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    ref = every[0]
    for r, theirs in enumerate(every[1:], 1):
        if theirs == ref:
            continue
        names = {e[0] for e in ref} ^ {e[0] for e in theirs}
        for k in range(max(len(ref), len(theirs))):
            a = ref[k] if k < len(ref) else None
            b = theirs[k] if k < len(theirs) else None
            if a != b:
                what = a[0] if a is not None else b[0]
                if b is not None and a is not None and a[0] != b[0] and names:
                    what = sorted(names)[0]
                    a = next((e for e in ref if e[0] == what), None)
                    b = next((e for e in theirs if e[0] == what), None)
                raise ValueError(
                    f"DistributedDataParallel: the models differ between ranks at parameter "
                    f"{what!r}: rank 0 has {_describe(a)}, rank {r} has {_describe(b)}; every "
                    "rank must build the same model"
                )


def _describe(entry: Any) -> str:
    if entry is None:
        return "no such parameter"
    return f"shape {tuple(entry[1])} ({entry[2]})"
