"""Throughput of cnnkit's compiled convolution kernels against the machine's sgemm peak.

For each 3x3 layer of the CIFAR-style net (3->32 and 32->32 at 32x32, 32->64 and 64->64
at 16x16; batch 32 on one thread) and each kernel set the CPU runs (AVX-512, AVX2), it
times the channels-last forward, weight gradient and input gradient (a stride-1
convolution with the flipped kernel) as cnnkit's conv2d runs them, and prints GFLOP/s and
the fraction of NumPy's single-threaded float32 matmul peak. Timings are best of
interleaved repeats of the calling thread's CPU time (noise only ever slows a run
down); the CPU model, cache sizes and load average are printed beside them, since the
machine may be shared.

    python benchmarks/bench_kernels.py [--repeats 5] [--min-time 0.2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(__file__))

LAYERS = [  # (name, C_in, C_out, H = W, kernel, padding)
    ("conv1 3->32 @32", 3, 32, 32, 3, 1),
    ("conv2 32->32 @32", 32, 32, 32, 3, 1),
    ("conv3 32->64 @16", 32, 64, 16, 3, 1),
    ("conv4 64->64 @16", 64, 64, 16, 3, 1),
    # narrow layers (channel-first kernels): the small ResNet's stem, LeNet-5's 2nd conv
    ("stem 3->16 @32", 3, 16, 32, 3, 1),
    ("lenet 6->16 5x5 @14", 6, 16, 14, 5, 0),
]
BATCH = 32


def cpu_line() -> str:
    """CPU model, caches as the kernels see them, and the load average."""
    from cnnkit.functional import _native as native

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    caches = native.cache_sizes() if hasattr(native, "cache_sizes") else {}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{model}; caches {caches}; load average {load:.2f} on {os.cpu_count()} CPUs"


def timeit(fn: Callable[[], Any], min_time: float) -> float:
    """CPU seconds of this thread per call, over at least ``min_time`` of them: everything
    runs on the calling thread here (one thread), and CPU time leaves out the time slices
    other processes take on a shared machine (their cache traffic still counts)."""
    fn()
    n, t0 = 0, time.thread_time()
    while True:
        fn()
        n += 1
        dt = time.thread_time() - t0
        if dt >= min_time:
            return dt / n


def sgemm_peak(min_time: float) -> Callable[[], None]:
    """A single-threaded float32 matmul big enough to reach BLAS's peak."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    return lambda: a @ a


_CHILD = """
import sys, time
import numpy as np
a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
best = float("inf")
for _ in range(int(sys.argv[1])):
    a @ a
    n, t0 = 0, time.thread_time()
    while time.thread_time() - t0 < float(sys.argv[2]):
        a @ a
        n += 1
    best = min(best, (time.thread_time() - t0) / n)
print(2 * 1024**3 / best / 1e9)
"""


def avx2_sgemm_peak(repeats: int, min_time: float) -> float | None:
    """NumPy's single-threaded sgemm with OpenBLAS held to its AVX2 (Haswell) kernels:
    the peak the AVX2 convolution kernels are measured against (None where OpenBLAS
    does not take ``OPENBLAS_CORETYPE``)."""
    import subprocess

    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("OPENBLAS_L2_SIZE", None)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(repeats), str(min_time)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def layer_fns(cin: int, cout: int, hw: int, k: int, pad: int) -> dict[str, Callable[[], None]]:
    """Forward, weight gradient and input gradient of one layer through cnnkit's
    selection (channels-last input for wide layers, as inside the net)."""
    from cnnkit.functional._fast import conv as fast
    from cnnkit.functional.geometry import ConvGeometry

    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, hw, hw, cin)).astype(np.float32).transpose(0, 3, 1, 2)
    w = (rng.standard_normal((cout, cin, k, k)) * 0.1).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    ohw = hw + 2 * pad - k + 1
    geom = ConvGeometry(x.shape, w.shape, (1, 1), (pad,) * 4, (1, 1), 1, (ohw, ohw))
    if not fast._is_wide(cout, cin, 1):  # narrow layers run channel-first
        x = np.ascontiguousarray(x)
    out, xp = fast.forward(x, w, b, geom)
    grad = np.empty_like(out)
    grad[...] = out
    return {
        "forward": lambda: fast.forward(x, w, b, geom),
        "weight grad": lambda: fast.backward(grad, xp, w, geom, (False, True, False)),
        "input grad": lambda: fast.backward(grad, xp, w, geom, (True, False, False)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.2)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--layers", default="", help="only layers whose name contains this")
    args = ap.parse_args()

    from cnnkit.functional import _native as native

    sets = native.supported()
    if not sets:
        sys.exit("bench_kernels: the compiled kernels are not available here")
    before = native.isa()
    layers = [spec for spec in LAYERS if args.layers in spec[0]]
    print(cpu_line())
    rows: dict[str, Any] = {}
    with threadpool_limits(1):
        fns: dict[tuple[str, ...], Callable[[], None]] = {("sgemm",): sgemm_peak(args.min_time)}
        for name, cin, cout, hw, k, pad in layers:
            for op, fn in layer_fns(cin, cout, hw, k, pad).items():
                for isa in sets:
                    fns[(isa, name, op)] = fn
        times: dict[tuple[str, ...], list[float]] = {k: [] for k in fns}
        for _ in range(args.repeats):  # interleaved: every entry once per round
            for key, fn in fns.items():
                if len(key) > 1:
                    native.select(key[0])
                times[key].append(timeit(fn, args.min_time))
    native.select(before)
    peak = 2 * 1024**3 / min(times[("sgemm",)]) / 1e9
    peaks = {isa: peak for isa in sets}
    print(f"sgemm peak (NumPy float32 1024^3, 1 thread): {peak:.0f} GFLOP/s")
    if "avx2" in sets and len(sets) > 1:
        p2 = avx2_sgemm_peak(args.repeats, args.min_time)
        if p2:
            peaks["avx2"] = p2
            print(f"sgemm peak with OpenBLAS's AVX2 kernels (OPENBLAS_CORETYPE=Haswell): "
                  f"{p2:.0f} GFLOP/s; the avx2 column's fractions are of this one")  # fmt: skip
    print(f"{'layer':18} {'op':12} " + " ".join(f"{s:>18}" for s in sets))
    for name, cin, cout, hw, k, pad in layers:
        ohw = hw + 2 * pad - k + 1
        flops = 2 * BATCH * ohw * ohw * cout * cin * k * k
        for op in ("forward", "weight grad", "input grad"):
            cells = []
            for isa in sets:
                gf = flops / min(times[(isa, name, op)]) / 1e9
                rows[f"{isa} {name} {op}"] = gf
                cells.append(f"{gf:7.0f} ({gf / peaks[isa]:4.2f} pk)")
            print(f"{name:18} {op:12} " + " ".join(f"{c:>18}" for c in cells))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_line(), "sgemm_peak": peaks, "gflops": rows}, f, indent=1)


if __name__ == "__main__":
    main()
