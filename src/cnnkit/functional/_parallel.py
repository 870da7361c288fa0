"""Worker threads: batch chunks (and whole-module batch shares) in parallel, each with
single-threaded BLAS.

Convolution spends much of its time in copies (im2col, col2im) that NumPy runs on one
core, while BLAS only parallelises the matrix products. Splitting the batch into chunks
and giving each core its own chunk (NumPy releases the GIL in copies and products)
keeps every core busy for the whole op. The number of workers follows the BLAS thread
setting (``OPENBLAS_NUM_THREADS``, ``threadpoolctl``), so ``threadpool_limits(1)``
makes everything serial.

While cnnkit computes (a module's forward, a backward pass, or one chunked op) BLAS is
held at one thread (:func:`computing`): OpenBLAS threads busy-wait for a while
after every multi-threaded product, and a spinning BLAS thread next to the chunk
workers halves their speed (measured: a CIFAR-net training step took 159 ms with BLAS
toggled per op, 100 ms with BLAS held at one thread, 118 ms with no chunk workers).
The same scope applies cnnkit's allocator settings (:func:`cnnkit.backend.malloc_tuned`).
Both end with the outermost scope; :func:`set_runtime` switches them off.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np

_lock = threading.Lock()
_state: dict[str, Any] = {}
_local = threading.local()  # .serial: this thread runs one share of a split batch

_RUNTIME = {  # what the compute scope does; defaults from the environment
    "malloc_tuning": os.environ.get("CNNKIT_MALLOC_TUNING", "0") == "1",
    "blas_pinning": os.environ.get("CNNKIT_BLAS_PINNING", "1") != "0",
    "batch_split": os.environ.get("CNNKIT_BATCH_SPLIT", "1") != "0",
}


def set_runtime(
    malloc_tuning: bool | None = None,
    blas_pinning: bool | None = None,
    batch_split: bool | None = None,
) -> dict[str, bool]:
    """Choose what cnnkit does to the process while it computes; ``None`` keeps a setting.

    Parameters
    ----------
    malloc_tuning : bool, optional
        Apply glibc allocator settings that keep freed large blocks for reuse during
        each computation, restoring glibc's defaults after it
        (:func:`cnnkit.backend.malloc_tuned`; default off, ``CNNKIT_MALLOC_TUNING=1``).
        Measured on a LeNet-5 training step (batch 128, one thread): 24 ms scoped like
        this, 21.6 ms with glibc's defaults, 18 ms with the settings kept for the whole
        process (:func:`cnnkit.tune_malloc`): each restore lets glibc return the freed
        heap to the system, and the next step faults it in again.
    blas_pinning : bool, optional
        Hold BLAS at one thread during each computation, cnnkit's worker threads doing the
        parallel work (default on, ``CNNKIT_BLAS_PINNING=0``).
    batch_split : bool, optional
        Run a whole model on one share of the batch per core where every layer treats
        samples independently (default on, ``CNNKIT_BATCH_SPLIT=0``).

    Returns
    -------
    dict
        The settings now in force.
    """
    for name, value in (("malloc_tuning", malloc_tuning), ("blas_pinning", blas_pinning),
                        ("batch_split", batch_split)):  # fmt: skip
        if value is not None:
            if not isinstance(value, bool):
                raise TypeError(f"set_runtime: {name} must be a bool; got {value!r}")
            _RUNTIME[name] = value
    return dict(_RUNTIME)


def runtime_setting(name: str) -> bool:
    """One of the settings of :func:`set_runtime`."""
    return _RUNTIME[name]


def _controllers() -> tuple[Any, list[Any]]:
    """The threadpoolctl controller for BLAS and its library controllers (made once)."""
    with _lock:
        if "ctl" not in _state:
            try:
                from threadpoolctl import ThreadpoolController

                ctl = ThreadpoolController().select(user_api="blas")
                libs = list(ctl.lib_controllers)
            except Exception:  # threadpoolctl missing or unable to inspect: stay serial
                ctl, libs = None, []
            _state["ctl"] = (ctl, libs)
        return _state["ctl"]


def _blas_threads(libs: list[Any]) -> int:
    counts = [lib.get_num_threads() for lib in libs]
    return max(1, min(counts)) if counts else 1


def workers() -> int:
    """Parallel chunk workers to use: the BLAS thread count set by the user (1 means
    serial), also inside :func:`computing`, where BLAS itself runs on one thread."""
    if getattr(_local, "serial", False):
        return 1
    if _state.get("depth"):
        return _state["workers"]
    return _blas_threads(_controllers()[1])


class _ComputeScope:
    """The context manager :func:`computing` returns (stateless: the depth and what the
    outermost scope changed live in ``_state``, so one instance serves every use). A class
    rather than a generator: modules enter it on every call, and nested entries, the
    common case, only count."""

    __slots__ = ()

    def __enter__(self) -> None:
        _, libs = _controllers()  # (made once; takes the lock itself)
        with _lock:
            depth = _state.get("depth", 0)
            _state["depth"] = depth + 1
            if depth:
                return
            saved = [lib.get_num_threads() for lib in libs]
            _state["saved"] = saved if _RUNTIME["blas_pinning"] else [1] * len(libs)
            _state["workers"] = max(1, min(saved)) if saved else 1
            for lib, n in zip(libs, _state["saved"], strict=True):
                if n != 1:
                    lib.set_num_threads(1)
            if _RUNTIME["malloc_tuning"]:
                from cnnkit.backend import malloc_process_wide, malloc_tuned

                _state["malloc"] = not malloc_process_wide()
                if _state["malloc"]:
                    malloc_tuned(True)
            else:
                _state["malloc"] = False

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"]:
                return
            _, libs = _state["ctl"]
            for lib, n in zip(libs, _state["saved"], strict=True):
                if n != 1:
                    lib.set_num_threads(n)
            if _state["malloc"]:
                from cnnkit.backend import malloc_tuned

                malloc_tuned(False)


_SCOPE = _ComputeScope()


def computing() -> _ComputeScope:
    """The scope of one cnnkit computation: BLAS held at one thread (:func:`workers` keeps
    reporting the user's thread count, which the chunk workers use instead) and the
    allocator tuned, as :func:`set_runtime` says. Nested uses are free; the user's BLAS
    setting and glibc's allocator defaults are restored when the outermost one ends."""
    return _SCOPE


def _pool(n: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _state.get("pool")
        if pool is None or _state.get("pool_size", 0) < n:
            pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="cnnkit-chunk")
            _state["pool"], _state["pool_size"] = pool, n
        return pool


def split(n: int, size: int, parts: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` chunks of at most ``size`` covering ``range(n)``, their
    number a multiple of ``parts`` when possible so workers get equal shares."""
    count = -(-n // max(1, size))
    if parts > 1 and n >= parts:
        count = -(-count // parts) * parts
    count = min(count, n) if n else 0
    step = -(-n // count) if count else 0
    return [(c0, min(n, c0 + step)) for c0 in range(0, n, step)] if step else []


def run(
    chunks: list[tuple[int, int]],
    work: Callable[[int, int, int], None],
    nw: int,
    limit_blas: bool = True,
) -> None:
    """Call ``work(worker, start, stop)`` for every chunk; with ``nw > 1`` worker ``t`` takes
    chunks ``t, t + nw, ...`` in its own thread, BLAS limited to one thread meanwhile
    (unless ``limit_blas`` is False: for work without matrix products)."""
    if nw <= 1 or len(chunks) <= 1:
        for c0, c1 in chunks:
            work(0, c0, c1)
        return
    err = np.geterr()  # the caller's floating-point error handling (np.errstate is per thread)

    def loop(t: int) -> None:
        with np.errstate(**err):
            for c0, c1 in chunks[t::nw]:
                work(t, c0, c1)

    with computing() if limit_blas else contextlib.nullcontext():
        futures = [_pool(nw).submit(loop, t) for t in range(nw)]
        wait(futures)  # all of them, also when one fails: none may outlive the call
        for f in futures:
            f.result()


# ------------------------------------------------------------ when threads pay
# Splitting work over ``nw`` workers saves ``(1 - 1/nw)`` of its one-thread time and costs
# one hand-off to the pool and back. Work is split only when the time saved is at least
# PAYBACK times that hand-off, both measured once per process on first use (the rule,
# not a constant for one CPU): see :func:`min_work`.
PAYBACK = 2.0
# bounds on the measured thresholds: a measurement taken under a burst of load must not
# switch the threads off (or on for tiny arrays) for the life of the process
_MIN_WORK_BOUNDS = {"elements": (1 << 12, 1 << 20), "macs": (1 << 16, 1 << 25)}
_min_work_override: dict[str, int] = {}


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    import time

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def calibrate(nw: int) -> dict[str, float]:
    """Measure, once per worker count, what :func:`min_work` needs: the seconds of one
    hand-off of (empty) work to ``nw`` pool threads and back, of one element of a
    streaming float32 pass into a new array (a ReLU of 2 MB) and of one float32
    multiply-add in a matrix product, each on one thread (medians of short repeats,
    about 10-30 ms in all)."""
    key = ("calibration", nw)
    with _lock:
        got = _state.get(key)
    if got is not None:
        return got
    if threading.current_thread().name.startswith("cnnkit-chunk"):
        # inside a pool thread a hand-off to the same pool could wait on itself: assume
        # the upper bounds (no split) until a caller thread measures
        return {"dispatch_s": 1.0, "element_s": 1e-9, "mac_s": 1e-11}
    noop = [(i, i + 1) for i in range(nw)]
    run(noop, lambda _t, _a, _z: None, nw, False)  # start the threads
    dispatch = _median_time(lambda: run(noop, lambda _t, _a, _z: None, nw, False), 15)
    src = np.ones(1 << 19, np.float32)  # larger than a core's L2: streamed from memory
    element = _median_time(lambda: np.maximum(src, 0), 9) / src.size  # a new output, as ops
    a = np.ones((64, 256), np.float32)
    b = np.ones((256, 64), np.float32)
    with computing():  # one BLAS thread, as the split work runs
        mac = _median_time(lambda: a @ b, 9) / (64 * 256 * 64)
    got = {"dispatch_s": dispatch, "element_s": element, "mac_s": mac}
    with _lock:
        _state[key] = got
    return got


def min_work(kind: str = "elements", nw: int | None = None) -> int:
    """The least work worth splitting over ``nw`` workers (default :func:`workers`):
    ``kind`` ``"elements"`` (elements a streaming pass touches) or ``"macs"``
    (multiply-adds of matrix products). It is the work whose one-thread time ``T``
    satisfies ``T (1 - 1/nw) = PAYBACK * hand-off``, from :func:`calibrate`, within
    fixed bounds; one worker never splits."""
    if kind in _min_work_override:
        return _min_work_override[kind]
    nw = workers() if nw is None else nw
    if nw <= 1:
        return 1 << 62
    cal = calibrate(nw)
    unit = cal["element_s" if kind == "elements" else "mac_s"]
    need = PAYBACK * cal["dispatch_s"] / ((1.0 - 1.0 / nw) * max(unit, 1e-13))
    lo, hi = _MIN_WORK_BOUNDS[kind]
    return int(min(max(need, lo), hi))


def split_workers(size: int, kind: str = "elements") -> int:
    """Workers to split work of ``size`` (``kind`` as in :func:`min_work`) over: 1 when it
    is not worth it. Sizes under the lowest possible threshold answer at once, without
    asking BLAS for its thread count."""
    if size < _MIN_WORK_BOUNDS[kind][0] and kind not in _min_work_override:
        return 1
    nw = workers()
    return nw if nw > 1 and size >= min_work(kind, nw) else 1


@contextlib.contextmanager
def min_work_fixed(**kinds: int) -> Any:
    """Replace :func:`min_work`'s measured thresholds meanwhile (``elements=0`` splits
    everything: for tests of the threaded paths, whatever this CPU measured)."""
    prev = dict(_min_work_override)
    _min_work_override.update(kinds)
    try:
        yield
    finally:
        _min_work_override.clear()
        _min_work_override.update(prev)


def copy(dst: np.ndarray, src: Any, nw: int | None = None) -> None:
    """``dst[...] = src`` with the first axis split over worker threads when large
    (NumPy copies on one core; the memory bus of a small machine has room for two)."""
    nw = split_workers(dst.size) if nw is None else nw
    if nw <= 1 or dst.shape[0] < nw or dst.size < min_work("elements", nw):
        np.copyto(dst, src)
        return
    src = np.broadcast_to(src, dst.shape) if np.ndim(src) != dst.ndim else src
    parts = split(dst.shape[0], -(-dst.shape[0] // nw), nw)
    run(parts, lambda _t, a, z: np.copyto(dst[a:z], src[a:z]), nw, False)


def contiguous(src: np.ndarray, nw: int | None = None) -> np.ndarray:
    """A C-contiguous copy of ``src``, made by :func:`copy` (threads for large arrays)."""
    dst = np.empty(src.shape, dtype=src.dtype)
    copy(dst, src, nw)
    return dst


def batches(
    n: int,
    size: int,
    fn: Callable[[int, int], None],
    blas: bool = False,
    kind: str = "elements",
) -> None:
    """Call ``fn(start, stop)`` over ``range(n)`` (a first axis), split among the workers
    when the work's ``size`` (``kind``: elements touched, or ``"macs"``, multiply-adds) is
    at least :func:`min_work`, else at once. ``blas``: ``fn`` runs matrix products (one
    BLAS thread each)."""
    nw = split_workers(size, kind) if n > 1 else 1
    if nw <= 1:
        fn(0, n)
        return
    run(split(n, -(-n // nw), nw), lambda _t, a, z: fn(a, z), nw, blas)


def shares(n: int) -> list[tuple[int, int]]:
    """One ``(start, stop)`` share of ``range(n)`` per worker."""
    nw = workers()
    return split(n, -(-n // nw), nw)


def run_shares(count: int, fn: Callable[[int], Any]) -> list[Any]:
    """``[fn(0), ..., fn(count - 1)]``, each call in a worker thread of its own that
    computes serially inside (:func:`workers` is 1 there)."""
    results: list[Any] = [None] * count

    def one(i: int) -> None:
        with serial():
            results[i] = fn(i)

    run([(i, i + 1) for i in range(count)], lambda _t, i, _z: one(i), count)
    return results


@contextlib.contextmanager
def serial() -> Any:
    """Compute in this thread only (no worker threads, no batch split) meanwhile: for
    code that reads the recorded graph op by op, such as the ONNX export."""
    prev = getattr(_local, "serial", False)
    _local.serial = True
    try:
        yield
    finally:
        _local.serial = prev
