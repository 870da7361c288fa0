"""One benchmark process: cnnkit against PyTorch on the same data, same thread count.

Prints JSON (with --json) or a table. Run through ``run.py`` to get both OpenBLAS
environments; see ``python benchmarks/bench_core.py --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def threads() -> int:
    """BLAS threads in use (OPENBLAS_NUM_THREADS, else all cores)."""
    return int(os.environ.get("OPENBLAS_NUM_THREADS") or os.cpu_count() or 1)


SETTLE_S = 0.1  # pause before each timing (see compare)


def timeit(fn: Callable[[], Any], min_time: float = 0.15) -> float:
    """Seconds per call: repeat until ``min_time`` has passed (after one warm-up call)."""
    fn()
    n = 0
    t0 = time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return dt / n


def compare(ck_fn: Callable, th_fn: Callable, repeats: int, min_time: float) -> dict[str, float]:
    """Interleaved repeats; medians of seconds per call for both libraries.

    Each timing starts after a short pause: PyTorch's OpenMP threads busy-wait for a
    while after its last op and would otherwise slow down whatever runs right after it
    (cnnkit's worker threads block when idle, so the effect was one-sided).
    """
    a, b = [], []
    for _ in range(repeats):
        time.sleep(SETTLE_S)
        a.append(timeit(ck_fn, min_time))
        time.sleep(SETTLE_S)
        b.append(timeit(th_fn, min_time))
    ta, tb = statistics.median(a), statistics.median(b)
    return {"cnnkit_s": ta, "torch_s": tb, "ratio": tb / ta}


def cifar_models(ck: Any, torch: Any) -> tuple[Any, Any]:
    """The CIFAR-style net in both libraries with identical weights."""
    from cnnkit import nn

    def spec(m: Any) -> Any:
        return m.Sequential(
            m.Conv2d(3, 32, 3, padding=1), m.ReLU(),
            m.Conv2d(32, 32, 3, padding=1), m.ReLU(), m.MaxPool2d(2),
            m.Conv2d(32, 64, 3, padding=1), m.ReLU(),
            m.Conv2d(64, 64, 3, padding=1), m.ReLU(), m.MaxPool2d(2),
            m.Flatten(), m.Linear(4096, 256), m.ReLU(), m.Linear(256, 10),
        )  # fmt: skip

    a, b = spec(nn), spec(torch.nn)
    b.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in a.state_dict().items()})
    return a, b


def lenet_models(ck: Any, torch: Any) -> tuple[Any, Any]:
    """LeNet-5 (28x28) in both libraries with identical weights."""
    from cnnkit.models import LeNet5

    a = LeNet5()
    tn = torch.nn
    b = tn.Sequential()
    b.features = tn.Sequential(
        tn.Conv2d(1, 6, 5, padding=2), tn.ReLU(), tn.MaxPool2d(2),
        tn.Conv2d(6, 16, 5), tn.ReLU(), tn.MaxPool2d(2),
    )  # fmt: skip
    b.classifier = tn.Sequential(
        tn.Flatten(), tn.Linear(400, 120), tn.ReLU(), tn.Linear(120, 84), tn.ReLU(),
        tn.Linear(84, 10),
    )  # fmt: skip
    b.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in a.state_dict().items()})
    return a, b


def train_step_fns(ck: Any, torch: Any, a: Any, b: Any, x: np.ndarray, y: np.ndarray):
    """One SGD-momentum training step in each library."""
    from cnnkit import nn, optim

    oa = optim.SGD(a.parameters(), lr=0.01, momentum=0.9)
    ob = torch.optim.SGD(b.parameters(), lr=0.01, momentum=0.9)
    la, lb = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    xa, ya = ck.tensor(x), ck.tensor(y)
    xb, yb = torch.from_numpy(x), torch.from_numpy(y)

    def step_a() -> None:
        oa.zero_grad()
        la(a(xa), ya).backward()
        oa.step()

    def step_b() -> None:
        ob.zero_grad()
        lb(b(xb), yb).backward()
        ob.step()

    return step_a, step_b


def infer_fns(ck: Any, torch: Any, a: Any, b: Any, x: np.ndarray):
    """Inference (eval, no graph) in each library."""
    a.eval()
    b.eval()
    xa, xb = ck.tensor(x), torch.from_numpy(x)

    def run_a() -> None:
        with ck.no_grad():
            a(xa)

    def run_b() -> None:
        with torch.no_grad():
            b(xb)

    return run_a, run_b


def op_fns(ck: Any, torch: Any, name: str, rng: np.random.Generator):
    """Forward+backward of one op in each library."""
    import cnnkit.nn.functional as F

    tf = torch.nn.functional
    if name.startswith("conv"):
        _, n, c, hw, co, k, s = name.split(":")
        n, c, hw, co, k, s = map(int, (n, c, hw, co, k, s))
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((co, c, k, k)) * 0.1).astype(np.float32)
        bias = np.zeros(co, np.float32)
        fa = lambda xx, ww, bb: F.conv2d(xx, ww, bb, stride=s, padding=k // 2)  # noqa: E731
        fb = lambda xx, ww, bb: tf.conv2d(xx, ww, bb, stride=s, padding=k // 2)  # noqa: E731
        args = (x, w, bias)
    elif name in ("maxpool", "avgpool"):
        x = rng.standard_normal((128, 32, 32, 32)).astype(np.float32)
        fa = (
            (lambda xx: F.max_pool2d(xx, 2))
            if name == "maxpool"
            else (lambda xx: F.avg_pool2d(xx, 2))
        )
        fb = (
            (lambda xx: tf.max_pool2d(xx, 2))
            if name == "maxpool"
            else (lambda xx: tf.avg_pool2d(xx, 2))
        )
        args = (x,)
    elif name == "linear":
        x = rng.standard_normal((128, 4096)).astype(np.float32)
        w = (rng.standard_normal((256, 4096)) * 0.01).astype(np.float32)
        bias = np.zeros(256, np.float32)
        fa, fb, args = F.linear, tf.linear, (x, w, bias)
    elif name == "cross_entropy":
        x = rng.standard_normal((128, 10)).astype(np.float32)
        t = rng.integers(0, 10, 128)

        def fa(xx):
            return F.cross_entropy(xx, ck.tensor(t))

        def fb(xx):
            return tf.cross_entropy(xx, torch.from_numpy(t))

        args = (x,)
    else:
        raise ValueError(name)
    ta = [ck.tensor(a, requires_grad=True) for a in args]
    tb = [torch.from_numpy(a.copy()).requires_grad_() for a in args]

    def run_a() -> None:
        out = fa(*ta)
        out.backward(ck.ones_like(out))
        for t in ta:
            t.grad = None

    def run_b() -> None:
        out = fb(*tb)
        out.backward(torch.ones_like(out))
        for t in tb:
            t.grad = None

    return run_a, run_b


def best_of(fn: Callable[[], Any], repeats: int, min_time: float) -> float:
    """The shortest of ``repeats`` timings of ``fn`` (seconds per call), each after a
    pause: for peak throughputs, where noise only ever slows a run down."""
    times = []
    for _ in range(repeats):
        time.sleep(SETTLE_S)
        times.append(timeit(fn, min_time))
    return min(times)


def sgemm_gflops(min_time: float, repeats: int = 1) -> float:
    """NumPy float32 matmul throughput at a conv-like shape (GFLOP/s), best of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, 576)).astype(np.float32)
    b = rng.standard_normal((576, 64)).astype(np.float32)
    big_a = rng.standard_normal((2048, 2048)).astype(np.float32)
    t1 = best_of(lambda: a @ b, repeats, min_time)
    t2 = best_of(lambda: big_a @ big_a, repeats, min_time)
    return max(2 * 4096 * 576 * 64 / t1, 2 * 2048**3 / t2) / 1e9


def conv_gflops(ck: Any, min_time: float, channels_last: bool = False, repeats: int = 1) -> float:
    """cnnkit conv2d forward throughput on the CIFAR net's 3rd layer (GFLOP/s), best of
    ``repeats`` (measured like :func:`sgemm_gflops`).

    ``channels_last``: the input is laid out as a wide convolution's output (and as the
    layer gets it inside the CIFAR net), ``(N, C, H, W)`` over ``(N, H, W, C)`` memory.
    """
    import cnnkit.nn.functional as F

    rng = np.random.default_rng(0)
    x = ck.tensor(rng.standard_normal((128, 32, 16, 16)).astype(np.float32))
    if channels_last:
        x = ck.tensor(np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1))).permute(0, 3, 1, 2)
    w = ck.tensor(rng.standard_normal((64, 32, 3, 3)).astype(np.float32))
    with ck.no_grad():
        t = best_of(lambda: F.conv2d(x, w, padding=1), repeats, min_time)
    return 2 * 128 * 64 * 16 * 16 * 32 * 9 / t / 1e9


_RSS_CHILD = """
import sys
import numpy as np
lib, threads = sys.argv[1], int(sys.argv[2])
if lib == "torch":
    import torch
    torch.set_num_threads(threads)
    nn, optim = torch.nn, torch.optim
    as_t = torch.from_numpy
else:
    import cnnkit as ck
    from cnnkit import nn, optim
    as_t = ck.tensor
net = nn.Sequential(
    nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
    nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
    nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(4096, 256), nn.ReLU(), nn.Linear(256, 10),
)
opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
rng = np.random.default_rng(0)
x = as_t(rng.standard_normal((128, 3, 32, 32)).astype(np.float32))
y = as_t(rng.integers(0, 10, 128))
def status_kib(key):
    # /proc values, not ru_maxrss: Linux carries the parent's peak into ru_maxrss on exec
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
base = status_kib("VmRSS")
for _ in range(5):
    opt.zero_grad()
    loss_fn(net(x), y).backward()
    opt.step()
print(status_kib("VmHWM") - base)
"""


def peak_rss(lib: str) -> float:
    """Peak resident-memory growth (MiB) of 5 CIFAR-net training steps in a fresh process
    that imports only that library (growth over the RSS once model and data exist)."""
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, lib, str(threads())],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--only", default="", help="comma-separated subset of rows")
    args = p.parse_args()

    import torch

    import cnnkit as ck

    torch.set_num_threads(threads())
    if os.environ.get("CNNKIT_BENCH_TUNE_MALLOC") == "1":
        ck.tune_malloc()  # for the whole process, as a user may ask for
    rng = np.random.default_rng(0)
    rows: dict[str, dict[str, float]] = {}
    only = set(filter(None, args.only.split(",")))

    def want(name: str) -> bool:
        return not only or name in only

    r, m = args.repeats, args.min_time
    x = rng.standard_normal((128, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    if want("cifar_train") or want("cifar_infer") or want("cifar_b1"):
        a, b = cifar_models(ck, torch)
        if want("cifar_train"):
            rows["cifar_train"] = compare(*train_step_fns(ck, torch, a, b, x, y), r, m)
            rows["cifar_train"]["img_s"] = 128 / rows["cifar_train"]["cnnkit_s"]
        if want("cifar_infer"):
            rows["cifar_infer"] = compare(*infer_fns(ck, torch, a, b, x), r, m)
            rows["cifar_infer"]["img_s"] = 128 / rows["cifar_infer"]["cnnkit_s"]
        if want("cifar_b1"):
            rows["cifar_b1"] = compare(*infer_fns(ck, torch, a, b, x[:1]), r, m)
    xl = rng.standard_normal((128, 1, 28, 28)).astype(np.float32)
    if want("lenet_train") or want("lenet_b1"):
        a, b = lenet_models(ck, torch)
        if want("lenet_train"):
            rows["lenet_train"] = compare(*train_step_fns(ck, torch, a, b, xl, y), r, m)
            rows["lenet_train"]["img_s"] = 128 / rows["lenet_train"]["cnnkit_s"]
        if want("lenet_b1"):
            rows["lenet_b1"] = compare(*infer_fns(ck, torch, a, b, xl[:1]), r, m)
    for op in (
        "conv:128:3:32:32:3:1",
        "conv:128:32:32:32:3:1",
        "conv:128:32:16:64:3:1",
        "conv:128:64:16:64:3:2",
        "conv:128:16:28:32:5:1",
        "maxpool",
        "avgpool",
        "linear",
        "cross_entropy",
    ):
        if want(op):
            rows[op] = compare(*op_fns(ck, torch, op, rng), r, m)
    if want("gemm_eff"):
        # the convolutions first: after a multi-threaded np.matmul, OpenBLAS's threads
        # busy-wait for a while and take a core from whatever runs next
        conv = conv_gflops(ck, m, repeats=r)
        conv_cl = conv_gflops(ck, m, channels_last=True, repeats=r)
        peak = sgemm_gflops(m, repeats=r)
        for name, gf in (("gemm_eff", conv), ("gemm_eff_cl", conv_cl)):
            rows[name] = {"conv_gflops": gf, "sgemm_gflops": peak, "ratio": gf / peak}
    if want("rss"):
        ra, rb = peak_rss("cnnkit"), peak_rss("torch")
        rows["rss"] = {"cnnkit_mib": ra, "torch_mib": rb, "ratio": ra / rb}
    if args.json:
        from cnnkit.functional import _native

        print(json.dumps({"threads": threads(), "native": _native.available(), "rows": rows}))
    else:
        for k, v in rows.items():
            print(f"{k:28s} " + "  ".join(f"{kk}={vv:.4g}" for kk, vv in v.items()))


if __name__ == "__main__":
    main()
