"""The array namespace and dtype policy.

Every op is written against ``xp`` (NumPy today); a CuPy namespace can be swapped
in behind the same name. Floating tensors default to float32; float64 is used on
request (gradcheck runs in float64).
"""

from __future__ import annotations

from typing import Any

import numpy as np

xp = np

_default_dtype: np.dtype = np.dtype(np.float32)
_rng: np.random.Generator = np.random.default_rng()


def get_default_dtype() -> np.dtype:
    """Return the dtype used for new floating tensors and parameters (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype: Any) -> None:
    """Set the dtype for new floating tensors and parameters (float32 or float64)."""
    global _default_dtype
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"set_default_dtype: expected float32 or float64; got {dt}")
    _default_dtype = dt


def resolve_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype for a user-given dtype, ``None`` meaning the default float dtype."""
    return _default_dtype if dtype is None else np.dtype(dtype)


def manual_seed(seed: int) -> np.random.Generator:
    """Seed the global generator used for initialisation, dropout and shuffling."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def default_rng() -> np.random.Generator:
    """The global random generator (seeded by :func:`manual_seed`)."""
    return _rng


def get_rng_state() -> dict:
    """The global generator's state as a JSON-able dict (for exact resumption)."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore the global generator's state saved by :func:`get_rng_state`."""
    _rng.bit_generator.state = state


def check_device(device: Any, where: str) -> str:
    """Validate a ``device=`` argument; 'cpu' and 'meta' are known."""
    name = "cpu" if device is None else str(device)
    if name not in ("cpu", "meta"):
        raise ValueError(f"{where}: device must be 'cpu' or 'meta'; got {device!r}")
    return name


class MetaArray(np.ndarray):
    """Values-free array of the 'meta' device: a shape and a dtype, no storage.

    Made by :func:`meta_array` as a zero-stride view of one element, so a
    40,000 x 40,000 weight costs nothing. Ops on meta tensors only infer shapes.
    """


def meta_array(shape: tuple[int, ...], dtype: Any) -> MetaArray:
    """A meta array of ``shape`` and ``dtype`` (no memory is allocated)."""
    return np.broadcast_to(np.zeros((), dtype=np.dtype(dtype)), tuple(shape)).view(MetaArray)


def is_meta(a: Any) -> bool:
    """Whether ``a`` (an array or a Tensor) lives on the 'meta' device."""
    if isinstance(a, np.ndarray):  # (an ndarray's own .data is its buffer)
        return isinstance(a, MetaArray)
    return isinstance(getattr(a, "array", None), MetaArray)


_GLIBC_DEFAULTS = {"mmap": 128 * 1024, "trim": 128 * 1024}
_malloc_state: dict[str, Any] = {}


def _mallopt() -> Any:
    """glibc's ``mallopt`` (``None`` off Linux/glibc), looked up once."""
    if "fn" not in _malloc_state:
        import ctypes
        import ctypes.util
        import sys

        fn = None
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
            except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
                fn = None
        _malloc_state["fn"] = fn
    return _malloc_state["fn"]


def malloc_tuned(on: bool) -> bool:
    """Switch glibc's allocator between cnnkit's settings (``on``) and glibc's defaults.

    By default glibc serves allocations above a threshold with ``mmap`` and unmaps them
    on ``free``, so every fresh activation of a training step page-faults its memory in
    again; a step allocates and frees hundreds of megabytes. cnnkit's settings raise the
    mmap threshold to its maximum (32 MiB) and the trim threshold, so freed memory is
    reused (about 10 % faster training steps; peak memory unchanged), and make worker
    threads share the main heap (one arena): a thread's own arena is made of 64 MiB heaps
    that are unmapped when empty, which cost a CIFAR-net training step split over two
    threads 10,800 page faults and 10-30 % of its time.

    cnnkit applies them only when asked: for the whole process by :func:`tune_malloc`, or
    only while it computes (``ck.set_runtime(malloc_tuning=True)``, then restoring glibc's
    defaults afterwards (mmap and trim thresholds 128 KiB, up to 8 arenas
    per core; glibc's dynamic mmap threshold stays off once set)). Returns whether the
    allocator is glibc's (False elsewhere: nothing is done).
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    if on:
        mallopt(m_mmap_threshold, 32 * 1024 * 1024)
        mallopt(m_trim_threshold, 1024 * 1024 * 1024)
        mallopt(m_arena_max, 1)
    else:
        import os

        mallopt(m_mmap_threshold, _GLIBC_DEFAULTS["mmap"])
        mallopt(m_trim_threshold, _GLIBC_DEFAULTS["trim"])
        mallopt(m_arena_max, 8 * (os.cpu_count() or 1))
    return True


def tune_malloc() -> bool:
    """Apply cnnkit's allocator settings (:func:`malloc_tuned`) to the whole process from
    now on, also outside cnnkit's computations (only when called; ``import cnnkit`` does
    not): the fastest choice for a training script (a LeNet-5 step 21.6 -> 18 ms), which
    also speeds up other libraries in the process. Returns whether they were applied
    (False off glibc, or with ``CNNKIT_MALLOC_TUNING=0``)."""
    import os

    if os.environ.get("CNNKIT_MALLOC_TUNING", "1") == "0":
        return False
    _malloc_state["process_wide"] = True
    return malloc_tuned(True)


def malloc_process_wide() -> bool:
    """Whether :func:`tune_malloc` made the allocator settings process-wide."""
    return bool(_malloc_state.get("process_wide"))
