"""cnnkit against the best peer a user could pick instead, per workload (issue 15).

Peers: PyTorch 2.13 with NCHW tensors, PyTorch with ``channels_last`` tensors and model,
and, for inference, ONNX Runtime (as many intra-op threads as the others: 2 in
``make bench``) on the same network exported from PyTorch. All run in this process on
the same data with the same thread count; each repeat times every contender once, in
turn (interleaved), after a short pause, and the table reports medians. A ratio is the
best peer's seconds / cnnkit's (> 1: cnnkit faster).

Workloads: the small ResNet with BatchNorm (conv-BN-ReLU, stages 16/32/64, stride-2
stages with 1x1 conv+BN shortcuts, global average pool) training at batch 128 with SGD
momentum; LeNet-5 training at batch 32 with Adam and at batch 128 with SGD momentum;
the CIFAR-style plain net training and inference at batch 128.

Each workload also gets a peak-RSS ratio (cnnkit / PyTorch NCHW): each library runs a
few steps in a child process of its own, and the peak resident-memory growth over the
RSS once model and data exist is compared (``--no-rss`` skips it).

``python benchmarks/bench_peers.py`` prints the table (with the CPU model and the
kernel set); ``--json`` prints one JSON line (for ``run.py``).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import SETTLE_S, cifar_models, lenet_models, threads, timeit


def cpu_model() -> str:
    """The CPU's model name as the OS reports it (``lscpu``'s "Model name")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def resnet_models(ck: Any, torch: Any) -> tuple[Any, Any]:
    """cnnkit's SmallResNet and the same network in PyTorch, identical weights."""
    from cnnkit.models import SmallResNet

    tn = torch.nn

    class Block(tn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = tn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tn.BatchNorm2d(cout)
            self.relu = tn.ReLU()
            self.conv2 = tn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tn.BatchNorm2d(cout)
            if stride != 1 or cin != cout:
                self.shortcut = tn.Sequential(
                    tn.Conv2d(cin, cout, 1, stride, bias=False), tn.BatchNorm2d(cout)
                )
            else:
                self.shortcut = tn.Identity()

        def forward(self, x: Any) -> Any:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + self.shortcut(x))

    class Net(tn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = tn.Sequential(tn.Conv2d(3, 16, 3, 1, 1, bias=False), tn.BatchNorm2d(16),
                                      tn.ReLU())  # fmt: skip
            self.layers = tn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
            self.pool = tn.AdaptiveAvgPool2d(1)
            self.flatten = tn.Flatten()
            self.fc = tn.Linear(64, 10)

        def forward(self, x: Any) -> Any:
            return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))

    a, b = SmallResNet(), Net()
    b.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in a.state_dict().items()})
    return a, b


def _torch_variant(torch: Any, model: Any, channels_last: bool) -> Any:
    import copy

    m = copy.deepcopy(model)
    return m.to(memory_format=torch.channels_last) if channels_last else m


def _torch_x(torch: Any, x: np.ndarray, channels_last: bool) -> Any:
    t = torch.from_numpy(x)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def train_contenders(
    ck: Any, torch: Any, a: Any, b: Any, x: np.ndarray, y: np.ndarray, opt: str,
    only: str | None = None,
) -> dict[str, Callable[[], None]]:  # fmt: skip
    """One training step per contender (``opt``: ``'sgd'`` momentum 0.9, or ``'adam'``);
    with ``only``, that contender alone."""
    from cnnkit import nn, optim

    def ck_opt(params: Any) -> Any:
        return optim.SGD(params, lr=0.01, momentum=0.9) if opt == "sgd" else optim.Adam(params)

    def th_opt(params: Any) -> Any:
        if opt == "sgd":
            return torch.optim.SGD(params, lr=0.01, momentum=0.9)
        return torch.optim.Adam(params)

    xa, ya = ck.tensor(x), ck.tensor(y)
    oa, la = ck_opt(a.parameters()), nn.CrossEntropyLoss()

    def step_ck() -> None:
        oa.zero_grad()
        la(a(xa), ya).backward()
        oa.step()

    out = {"cnnkit": step_ck}
    for name, cl in (("torch NCHW", False), ("torch channels_last", True)):
        if only is not None and name != only:
            continue
        m = _torch_variant(torch, b, cl)
        xb, yb = _torch_x(torch, x, cl), torch.from_numpy(y)
        ob, lb = th_opt(m.parameters()), torch.nn.CrossEntropyLoss()

        def step(m: Any = m, xb: Any = xb, yb: Any = yb, ob: Any = ob, lb: Any = lb) -> None:
            ob.zero_grad()
            lb(m(xb), yb).backward()
            ob.step()

        out[name] = step
    return out


def infer_contenders(
    ck: Any, torch: Any, a: Any, b: Any, x: np.ndarray, only: str | None = None
) -> dict[str, Callable[[], None]]:
    """Inference (eval mode, no graph) per contender, ONNX Runtime included; with
    ``only``, that contender alone."""
    a.eval()
    b.eval()
    xa = ck.tensor(x)

    def run_ck() -> None:
        with ck.no_grad():
            a(xa)

    out = {"cnnkit": run_ck}
    for name, cl in (("torch NCHW", False), ("torch channels_last", True)):
        if only is not None and name != only:
            continue
        m = _torch_variant(torch, b, cl)
        xb = _torch_x(torch, x, cl)

        def run(m: Any = m, xb: Any = xb) -> None:
            with torch.no_grad():
                m(xb)

        out[name] = run
    if only is not None:
        return out
    try:
        import warnings

        import onnxruntime as ort

        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(b, (torch.from_numpy(x),), buf, dynamo=False,
                              input_names=["x"], dynamic_axes={"x": {0: "n"}})  # fmt: skip
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads()  # 2 in make bench
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
        out["onnxruntime"] = lambda: sess.run(None, {"x": x})
    except ImportError:
        pass
    return out


def race(fns: dict[str, Callable[[], None]], repeats: int, min_time: float) -> dict[str, Any]:
    """Interleaved repeats; median seconds per call of each contender and the ratio of
    the best peer's to cnnkit's."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            time.sleep(SETTLE_S)
            times[k].append(timeit(fn, min_time))
    med = {k: statistics.median(v) for k, v in times.items()}
    peers = {k: v for k, v in med.items() if k != "cnnkit"}
    best = min(peers, key=peers.get)
    return {"seconds": med, "best_peer": best, "ratio": peers[best] / med["cnnkit"]}


WORKLOADS = {
    "resnet_train": ("ResNet-BN training, b128, SGD momentum", 1.0),
    "lenet_adam32": ("LeNet-5 training, b32, Adam", 1.0),
    "cifar_infer": ("CIFAR-style net inference, b128", 1.0),
    "cifar_train": ("CIFAR-style net training, b128", 1.0),
    "lenet_train": ("LeNet-5 training, b128, SGD momentum", 1.0),
}


def contenders(
    name: str, ck: Any, torch: Any, only: str | None = None
) -> dict[str, Callable[[], None]]:
    """The contenders of one workload (same seed, data and weights every time); with
    ``only``, that contender alone (``"cnnkit"`` or ``"torch NCHW"``, for the RSS child)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 3, 32, 32)).astype(np.float32)
    xl = rng.standard_normal((128, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    ck.manual_seed(0)
    if name == "resnet_train":
        fns = train_contenders(ck, torch, *resnet_models(ck, torch), x, y, "sgd", only)
    elif name == "lenet_adam32":
        fns = train_contenders(ck, torch, *lenet_models(ck, torch), xl[:32], y[:32], "adam", only)
    elif name == "lenet_train":
        fns = train_contenders(ck, torch, *lenet_models(ck, torch), xl, y, "sgd", only)
    elif name == "cifar_train":
        fns = train_contenders(ck, torch, *cifar_models(ck, torch), x, y, "sgd", only)
    else:
        fns = infer_contenders(ck, torch, *cifar_models(ck, torch), x, only)
    return fns


_RSS_STEPS = 5


def rss_child(name: str, who: str) -> None:
    """In a fresh process: build one contender of a workload, reset the peak-RSS mark,
    run it a few times and print the peak resident-memory growth in KiB."""
    import torch

    import cnnkit as ck

    torch.set_num_threads(threads())
    fn = contenders(name, ck, torch, who)[who]

    def status_kib(key: str) -> int:
        # /proc values, not ru_maxrss: Linux carries the parent's peak into ru_maxrss
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"no {key} in /proc/self/status")

    try:  # "5" resets VmHWM to the current RSS (Linux): setup's peaks do not count
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    base = status_kib("VmRSS")
    for _ in range(_RSS_STEPS):
        fn()
    print(status_kib("VmHWM") - base)


def peak_rss(name: str, lib: str) -> float:
    """Peak resident-memory growth (MiB) of a few steps of workload ``name`` run by
    ``lib`` (``"cnnkit"``, or ``"torch"``: PyTorch NCHW) in a child process of its own,
    measured from the RSS once the model and data exist."""
    import subprocess

    who = "cnnkit" if lib == "cnnkit" else "torch NCHW"
    out = subprocess.run([sys.executable, __file__, "--rss-child", name, who],
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        sys.exit(f"RSS child ({name}, {who}) failed:\n{out.stderr[-3000:]}")
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def run_envs(args: Any) -> None:
    """The table for ``make bench``: one child process per environment."""
    import os
    import subprocess

    base = {k: v for k, v in os.environ.items() if k != "CNNKIT_NATIVE"}
    unset = {k: v for k, v in base.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    envs = {
        "vars unset": unset,
        "unset, AVX2 kernels": {**unset, "CNNKIT_NATIVE": "avx2"},
        "machine env": base,
    }
    extra = ["--repeats", str(args.repeats), "--min-time", str(args.min_time)]
    if args.only:
        extra += ["--only", args.only]
    results = {}
    for i, (name, env) in enumerate(envs.items()):
        rss = [] if i == 0 and not args.no_rss else ["--no-rss"]  # memory: measured once
        out = subprocess.run([sys.executable, __file__, "--json", *extra, *rss], env=env,
                             capture_output=True, text=True)  # fmt: skip
        if out.returncode != 0:
            sys.exit(f"benchmark child failed:\n{out.stderr[-3000:]}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    first = next(iter(results.values()))
    print(f"cnnkit / best peer (> 1: cnnkit faster); CPU: {first['cpu']}; threads: "
          f"{first['threads']}; medians of {args.repeats} interleaved repeats; machine "
          f"env: OPENBLAS_CORETYPE={base.get('OPENBLAS_CORETYPE')}, "
          f"OPENBLAS_L2_SIZE={base.get('OPENBLAS_L2_SIZE')}")  # fmt: skip
    rss_head = "peak RSS ck/torch"
    head = f"{'work':42s}" + "".join(f"{k:>22s}" for k in envs) + f"{'goal':>7s}{rss_head:>19s}"
    print(head)
    print("-" * len(head))
    for name, (title, goal) in WORKLOADS.items():
        cells = []
        for res in results.values():
            row = res["rows"].get(name)
            cells.append(f"{row['ratio']:.2f} ({row['best_peer'][:13]})" if row else "-")
        row = first["rows"].get(name) or {}
        rss = f"{row['rss_ratio']:.2f} (<= 1.5)" if "rss_ratio" in row else "-"
        print(f"{title:42s}" + "".join(f"{c:>22s}" for c in cells) + f"{goal:>7.1f}{rss:>19s}")
    cells = []
    for res in results.values():
        g = res["rows"].get("gemm")
        cells.append(
            f"{g['conv_gflops']:.0f}/{g['sgemm_gflops']:.0f}={g['ratio']:.2f}" if g else "-"
        )
    print(f"{'conv fwd GFLOP/s / sgemm peak':42s}" + "".join(f"{c:>22s}" for c in cells))
    for name, row in first["rows"].items():
        if "rss_mib" in row:
            print(f"peak RSS growth, {WORKLOADS[name][0]}: cnnkit {row['rss_mib']['cnnkit']:.0f}"
                  f" MiB, torch NCHW {row['rss_mib']['torch']:.0f} MiB")  # fmt: skip
    for k, res in results.items():
        print(f"[{k}] kernels {res['isa']}: " + "; ".join(
            f"{n}: " + ", ".join(f"{c} {t * 1e3:.1f} ms" for c, t in r["seconds"].items())
            for n, r in res["rows"].items() if n != "gemm"))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--only", default="", help="comma-separated subset of workloads")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--envs",
        action="store_true",
        help="run in child processes: OpenBLAS vars unset (widest kernels), unset with "
        "CNNKIT_NATIVE=avx2, and this machine's environment; one table",
    )
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS children")
    p.add_argument("--rss-child", nargs=2, metavar=("WORKLOAD", "CONTENDER"),
                   help=argparse.SUPPRESS)  # fmt: skip
    args = p.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child)
        return
    if args.envs:
        run_envs(args)
        return

    import torch
    from bench_core import conv_gflops, sgemm_gflops

    import cnnkit as ck
    from cnnkit.functional import _native

    torch.set_num_threads(threads())
    only = set(filter(None, args.only.split(",")))
    r, m = args.repeats, args.min_time
    rows: dict[str, Any] = {}
    for name in WORKLOADS:
        if only and name not in only:
            continue
        rows[name] = race(contenders(name, ck, torch), r, m)
        if not args.no_rss:
            ra, rb = peak_rss(name, "cnnkit"), peak_rss(name, "torch")
            rows[name]["rss_mib"] = {"cnnkit": ra, "torch": rb}
            rows[name]["rss_ratio"] = ra / rb
    if not only or "gemm" in only:
        conv = conv_gflops(ck, m, channels_last=True, repeats=r)
        peak = sgemm_gflops(m, repeats=r)
        rows["gemm"] = {"conv_gflops": conv, "sgemm_gflops": peak, "ratio": conv / peak}
    info = {"cpu": cpu_model(), "threads": threads(), "isa": _native.isa()}
    if args.json:
        print(json.dumps({**info, "rows": rows}))
        return
    print(f"CPU: {info['cpu']}; threads: {info['threads']}; cnnkit kernels: {info['isa']}")
    for name, row in rows.items():
        if name == "gemm":
            print(f"conv fwd {row['conv_gflops']:.0f} GFLOP/s of sgemm peak "
                  f"{row['sgemm_gflops']:.0f}: {row['ratio']:.2f}")  # fmt: skip
            continue
        secs = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in row["seconds"].items())
        rss = ""
        if "rss_mib" in row:
            mib = row["rss_mib"]
            rss = (f"; peak RSS cnnkit/torch {row['rss_ratio']:.2f} ({mib['cnnkit']:.0f} vs "
                   f"{mib['torch']:.0f} MiB)")  # fmt: skip
        print(f"{WORKLOADS[name][0]:42s} {row['ratio']:.2f} vs {row['best_peer']}  ({secs}){rss}")


if __name__ == "__main__":
    main()
