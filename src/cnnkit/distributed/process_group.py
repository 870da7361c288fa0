"""The default process group (MPI's ``COMM_WORLD``) and the collectives on it."""

from __future__ import annotations

import contextlib
import enum
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np

from cnnkit.tensor import Tensor

#: PyTorch's default collective timeout for CPU backends.
DEFAULT_TIMEOUT = timedelta(minutes=30)

#: Variables an MPI launcher sets in every process it starts, holding the world size:
#: MPICH's and Intel MPI's Hydra and Slurm's PMI-2 (``PMI_SIZE``), Open MPI
#: (``OMPI_COMM_WORLD_SIZE``).
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


class DistributedError(RuntimeError):
    """A collective or the process group cannot do what was asked."""


class DistributedTimeoutError(DistributedError, TimeoutError):
    """A collective did not complete within the process group's timeout (a rank died,
    hangs, or took a different code path)."""


class ReduceOp(enum.Enum):
    """Reduction of :func:`all_reduce` (PyTorch's ``ReduceOp``; ``AVG`` divides the sum
    by the world size)."""

    SUM = "sum"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    AVG = "avg"


class _Group:
    """The state of the default process group."""

    def __init__(self, comm: Any, mpi: Any, timeout: float) -> None:
        self.comm = comm
        self.MPI = mpi
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())
        self.timeout = timeout
        self.prev_hook: Any = None


_group: _Group | None = None


def is_mpi_available() -> bool:
    """Whether mpi4py can be imported (the ``[mpi]`` extra is installed)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def is_available() -> bool:
    """Whether distributed training is available (PyTorch's name): mpi4py is installed."""
    return is_mpi_available()


def launched_world_size() -> int:
    """The number of processes an MPI launcher started this process with (1 when it was
    not started by ``mpiexec``/``mpirun``/``srun``). Reads the launcher's environment
    only, so it does not start MPI."""
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


def _import_mpi(where: str) -> Any:
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(
            f"{where}: MPI is not available ({e}); install the extra: pip install 'cnnkit[mpi]' "
            "(mpi4py and MPICH, which brings mpiexec)"
        ) from None
    return MPI


def _seconds(timeout: timedelta | float | None, where: str = "init_process_group") -> float:
    if timeout is None:
        return DEFAULT_TIMEOUT.total_seconds()
    sec = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not sec > 0:
        raise ValueError(f"{where}: timeout must be positive; got {timeout!r}")
    return sec


def init_process_group(
    backend: str | None = "mpi",
    init_method: str | None = None,
    timeout: timedelta | float | None = None,
    world_size: int = -1,
    rank: int = -1,
) -> None:
    """Join the default process group: every process started by ``mpiexec``.

    Parameters
    ----------
    backend : str
        ``"mpi"`` (the only one; ``None`` means ``"mpi"``).
    init_method : str, optional
        Accepted for PyTorch compatibility; only ``None`` and ``"env://"`` (MPI's
        launcher provides the world).
    timeout : timedelta or float (seconds), optional
        How long any collective may wait for the other ranks (default 30 minutes).
    world_size, rank : int
        When given (not -1), checked against what the MPI launcher says.

    Raises
    ------
    ValueError
        An unsupported backend, or ``world_size``/``rank`` disagreeing with MPI's.
    RuntimeError
        The default group is already initialised.
    ImportError
        mpi4py is not installed.

    Notes
    -----
    Outside ``mpiexec`` this is a world of one process (rank 0): MPI starts as a
    singleton. PyTorch's ``env://`` initialisation would wait for ``WORLD_SIZE`` peers
    instead. With more than one process, an uncaught exception prints the failing rank's
    traceback and aborts the whole job (see :func:`abort_on_error`).
    """
    global _group
    name = "mpi" if backend is None else str(backend).lower()
    if name != "mpi":
        raise ValueError(
            f"init_process_group: backend {backend!r} is not supported; cnnkit trains on CPUs "
            "over MPI: use backend='mpi' and start the processes with mpiexec"
        )
    if init_method not in (None, "env://"):
        raise ValueError(
            f"init_process_group: init_method {init_method!r} is not supported with the MPI "
            "backend (the MPI launcher provides the world); leave it unset"
        )
    if _group is not None:
        raise RuntimeError("init_process_group: trying to initialize the default process group "
                           "twice (call destroy_process_group() first)")  # fmt: skip
    seconds = _seconds(timeout)
    MPI = _import_mpi("init_process_group")
    group = _Group(MPI.COMM_WORLD, MPI, seconds)
    if world_size != -1 and world_size != group.size:
        raise ValueError(
            f"init_process_group: world_size={world_size}, but MPI started {group.size} "
            "processes (mpiexec -n N sets it; leave world_size unset)"
        )
    if rank != -1 and rank != group.rank:
        raise ValueError(
            f"init_process_group: rank={rank}, but MPI gave this process rank {group.rank} "
            "(leave rank unset)"
        )
    _group = group
    if group.size > 1:
        group.prev_hook = sys.excepthook
        sys.excepthook = _abort_hook


def init_from_environment(timeout: timedelta | float | None = None) -> bool:
    """Initialise the default group if this process was started by an MPI launcher with
    more than one process (used by ``fit`` and ``cnnkit train``); returns whether a
    group of more than one process is now active.

    Raises
    ------
    ImportError
        Started by ``mpiexec -n N`` (N > 1) but mpi4py is not installed: N independent
        copies would each train alone and overwrite each other's files.
    """
    if _group is None:
        n = launched_world_size()
        if n <= 1:
            return False
        _import_mpi(f"this process was started by an MPI launcher with {n} processes, but")
        if timeout is None and os.environ.get("CNNKIT_DIST_TIMEOUT"):
            raw = os.environ["CNNKIT_DIST_TIMEOUT"]
            try:
                timeout = float(raw)
            except ValueError:
                raise ValueError(
                    f"CNNKIT_DIST_TIMEOUT must be a number of seconds; got {raw!r}"
                ) from None
        init_process_group("mpi", timeout=timeout)
    return _current("init_from_environment").size > 1


def is_initialized() -> bool:
    """Whether the default process group is initialised."""
    return _group is not None


def destroy_process_group(group: Any = None) -> None:
    """Leave the default process group (MPI itself is finalised at interpreter exit)."""
    global _group
    if _group is None:
        return
    if _group.prev_hook is not None and sys.excepthook is _abort_hook:
        sys.excepthook = _group.prev_hook
    _group = None


def _current(where: str) -> _Group:
    if _group is None:
        raise RuntimeError(
            f"{where}: the default process group has not been initialized; call "
            "cnnkit.distributed.init_process_group('mpi') first"
        )
    return _group


def get_rank(group: Any = None) -> int:
    """This process's rank in ``[0, world_size)``."""
    return _current("get_rank").rank


def get_world_size(group: Any = None) -> int:
    """The number of processes in the default group."""
    return _current("get_world_size").size


# ------------------------------------------------------------------------ waiting
class Work:
    """A collective in flight (``async_op=True``); :meth:`wait` completes it."""

    def __init__(self, request: Any, what: str, finish: Any = None) -> None:
        self._request = request
        self._what = what
        self._finish = finish
        self._done = False

    def is_completed(self) -> bool:
        """Whether the operation finished (drives MPI's progress engine once)."""
        if not self._done and self._request.Test():
            self._complete()
        return self._done

    def wait(self, timeout: timedelta | float | None = None) -> bool:
        """Block until the operation finished (at most the group's timeout).

        Raises
        ------
        DistributedTimeoutError
            The other ranks did not take part within the timeout.
        """
        if not self._done:
            seconds = _current("Work.wait").timeout
            if timeout is not None:
                seconds = _seconds(timeout, "Work.wait")
            wait_request(self._request, self._what, seconds)
            self._complete()
        return True

    def _complete(self) -> None:
        self._done = True
        if self._finish is not None:
            self._finish()
            self._finish = None


def wait_request(request: Any, what: str, timeout: float | None = None) -> None:
    """Wait for an MPI request, polling, and raise a clear error after ``timeout``.

    MPI's own ``Wait`` blocks forever when a peer is gone; polling ``Test`` with short
    sleeps also leaves the CPU to the other ranks on a machine with few cores.
    """
    group = _current(what)
    limit = group.timeout if timeout is None else timeout
    if request.Test():
        return
    start = time.monotonic()
    pause = 0.0
    spins = 0
    while not request.Test():
        spins += 1
        if spins > 50:
            pause = min(2e-3, pause * 1.5 if pause else 2e-5)
            time.sleep(pause)
        if time.monotonic() - start > limit:
            raise DistributedTimeoutError(
                f"{what}: rank {group.rank} of {group.size} waited {limit:g} s for the other "
                "ranks and gave up: a rank has died, hangs, or took a different code path "
                "(the timeout is init_process_group(timeout=...), CNNKIT_DIST_TIMEOUT for "
                "cnnkit train)"
            )


# ------------------------------------------------------------------- collectives
_OPS = {ReduceOp.SUM: "SUM", ReduceOp.PRODUCT: "PROD", ReduceOp.MIN: "MIN", ReduceOp.MAX: "MAX",
        ReduceOp.AVG: "SUM"}  # fmt: skip


def _array(tensor: Any, where: str) -> np.ndarray:
    if isinstance(tensor, Tensor):
        return tensor.numpy()
    if isinstance(tensor, np.ndarray):
        return tensor
    raise TypeError(f"{where}: expected a Tensor or a NumPy array; got {type(tensor).__name__}")


def all_reduce(
    tensor: Tensor | np.ndarray, op: ReduceOp = ReduceOp.SUM, group: Any = None,
    async_op: bool = False,
) -> Work | None:  # fmt: skip
    """Reduce ``tensor`` over all ranks, in place: afterwards every rank holds the result.

    Parameters
    ----------
    tensor : Tensor or np.ndarray, any shape
        This rank's values; overwritten by the reduction.
    op : ReduceOp
        ``SUM`` (default), ``PRODUCT``, ``MIN``, ``MAX`` or ``AVG``.
    async_op : bool
        Return a :class:`Work` to ``wait()`` on instead of waiting here.
    """
    g = _current("all_reduce")
    if not isinstance(op, ReduceOp):
        raise TypeError(f"all_reduce: op must be a cnnkit.distributed.ReduceOp; got {op!r}")
    arr = _array(tensor, "all_reduce")
    work_buf = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)

    def finish() -> None:
        if op is ReduceOp.AVG:
            np.divide(work_buf, g.size, out=work_buf, casting="unsafe")
        if work_buf is not arr:
            arr[...] = work_buf

    req = g.comm.Iallreduce(g.MPI.IN_PLACE, work_buf, op=getattr(g.MPI, _OPS[op]))
    work = Work(req, "all_reduce", finish)
    if async_op:
        return work
    work.wait()
    return None


def broadcast(
    tensor: Tensor | np.ndarray, src: int = 0, group: Any = None, async_op: bool = False
) -> Work | None:
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every other rank (in place)."""
    g = _current("broadcast")
    if not 0 <= src < g.size:
        raise ValueError(f"broadcast: src must be a rank in [0, {g.size}); got {src}")
    arr = _array(tensor, "broadcast")
    work_buf = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)

    def finish() -> None:
        if work_buf is not arr:
            arr[...] = work_buf

    work = Work(g.comm.Ibcast(work_buf, root=src), "broadcast", finish)
    if async_op:
        return work
    work.wait()
    return None


def barrier(group: Any = None, async_op: bool = False) -> Work | None:
    """Wait until every rank reached this call."""
    g = _current("barrier")
    work = Work(g.comm.Ibarrier(), "barrier")
    if async_op:
        return work
    work.wait()
    return None


def _gather_bytes(payload: bytes, where: str) -> list[bytes]:
    """Every rank's bytes, in rank order (sizes first, then one Allgatherv)."""
    g = _current(where)
    sizes = np.zeros(g.size, dtype=np.int64)
    mine = np.array([len(payload)], dtype=np.int64)
    wait_request(g.comm.Iallgather(mine, sizes), where)
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    displ = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    src = np.frombuffer(payload, dtype=np.uint8) if payload else np.empty(0, np.uint8)
    req = g.comm.Iallgatherv(src, [out, (sizes.tolist(), displ.tolist()), g.MPI.BYTE])
    wait_request(req, where)
    return [out[a : a + n].tobytes() for a, n in zip(displ.tolist(), sizes.tolist(), strict=True)]


def all_gather_object(object_list: list[Any], obj: Any, group: Any = None) -> None:
    """Fill ``object_list`` (length world size) with every rank's ``obj``.

    Objects travel as JSON (no pickle): numbers, strings, lists, dicts, bools, None.
    """
    g = _current("all_gather_object")
    if len(object_list) != g.size:
        raise ValueError(
            f"all_gather_object: object_list must have world_size={g.size} entries; "
            f"got {len(object_list)}"
        )
    parts = _gather_bytes(json.dumps(obj).encode(), "all_gather_object")
    object_list[:] = [json.loads(p.decode()) for p in parts]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (JSON-able values; no pickle)."""
    g = _current("broadcast_object")
    data = json.dumps(obj).encode() if g.rank == src else b""
    n = np.array([len(data)], dtype=np.int64)
    wait_request(g.comm.Ibcast(n, root=src), "broadcast_object")
    buf = np.frombuffer(data, np.uint8).copy() if g.rank == src else np.empty(int(n[0]), np.uint8)
    wait_request(g.comm.Ibcast(buf, root=src), "broadcast_object")
    return json.loads(buf.tobytes().decode())


# ------------------------------------------------------------------------ failure
def _report_and_abort(exc_type: Any, exc: BaseException, tb: Any, brief: bool = False) -> None:
    g = _group
    who = f"rank {g.rank} of {g.size}" if g is not None else "a rank"
    if brief:  # an error in what the user gave (a file, an option): its message says it
        sys.stderr.write(f"[cnnkit.distributed] {who} stopped: {exc}\n")
    else:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(f"[cnnkit.distributed] {who} failed:\n{text}")
    sys.stderr.write(f"[cnnkit.distributed] {who}: aborting all ranks (MPI.COMM_WORLD.Abort)\n")
    sys.stderr.flush()
    sys.stdout.flush()
    if g is not None:
        g.MPI.COMM_WORLD.Abort(1)


def _abort_hook(exc_type: Any, exc: BaseException, tb: Any) -> None:
    _report_and_abort(exc_type, exc, tb)


@contextlib.contextmanager
def abort_on_error(brief: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Inside a group of more than one process: an exception escaping the block prints
    this rank's traceback and aborts every rank (``MPI.COMM_WORLD.Abort``), so no rank
    is left waiting in a collective. Exceptions of the ``brief`` types (errors in the
    user's input, whose message says what is wrong) print their message alone. Outside
    such a group it changes nothing."""
    try:
        yield
    except BaseException as e:
        if _group is not None and _group.size > 1 and not isinstance(e, SystemExit):
            _report_and_abort(type(e), e, e.__traceback__, isinstance(e, brief))
        raise
