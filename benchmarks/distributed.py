"""`make bench` (distributed part): data-parallel training over MPI on this machine.

1. The CIFAR-style net (float32), one training step of global batch ``2b``: one process
   with 2 threads against ``mpiexec -n 2`` with 1 thread each (batch ``b`` per rank,
   DistributedDataParallel). Reported: img/s; the time a blocking ``Allreduce`` of the
   step's gradient buckets takes alone (the communication to hide); the time the step
   still waited for the reductions after the last rank's backward ended (exposed; the
   ranks' skew is not counted); hidden = 1 - exposed / communication. The
   configurations alternate (interleaved rounds, medians).
2. ``MPI_Allreduce`` of 1 KB ... 64 MB on 2 ranks, fitted by the ring model
   ``T = 2(P-1) alpha + 2(P-1)/P x bytes / beta`` (least squares, P = 2).
3. The cost model for P ranks on 10/25/100 Gb/s links: the per-rank batch from which
   the gradient's ring allreduce fits in the backward pass (measured here, 1 thread) of
   the CIFAR-style net and of cnnkit's SmallResNet.

Run as ``python benchmarks/distributed.py`` (it starts ``mpiexec`` itself); the machine
is shared, so every figure is a median and the machine's load is part of it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
LINKS_GBIT = (10, 25, 100)
NET_ALPHA = 10e-6  # assumed per-message latency of a network link (TCP/RoCE: ~5-50 us)
RANKS = (2, 8, 64)


def cifar_net() -> Any:
    from cnnkit import nn

    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4096, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip


def resnet() -> Any:
    from cnnkit.models import SmallResNet

    return SmallResNet(in_channels=3, num_classes=10)


def batch(n: int, seed: int = 0) -> tuple[Any, Any]:
    from cnnkit.tensor import Tensor

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
    return Tensor(x), Tensor(rng.integers(0, 10, n))


# ----------------------------------------------------------------- child processes
def child_train(per_rank: int, steps: int) -> dict[str, Any]:
    """One configuration's training steps (under mpiexec: DDP; alone: plain)."""
    from cnnkit import backend, nn, optim
    from cnnkit import distributed as dist

    backend.manual_seed(0)
    ranks = dist.launched_world_size()
    net = cifar_net()
    step_model = net
    ddp = None
    if ranks > 1:
        from cnnkit.nn.parallel import DistributedDataParallel

        dist.init_process_group("mpi")
        ddp = step_model = DistributedDataParallel(net)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x, y = batch(per_rank, seed=dist.get_rank() if ranks > 1 else 0)
    times, waits = [], []
    for i in range(steps + 2):
        if ranks > 1:
            dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_fn(step_model(x), y).backward()
        opt.step()
        if i >= 2:  # warm-up steps
            times.append(time.perf_counter() - t0)
            if ddp is not None:
                # exposed communication: from the last rank's end of backward until the
                # reductions finished (perf_counter is the system's monotonic clock, the
                # same in every process on one machine), so rank skew does not count
                t = np.array([ddp.last_backward_end, ddp.last_reduced])
                g = dist.process_group._current("bench")
                g.comm.Allreduce(g.MPI.IN_PLACE, t, op=g.MPI.MAX)
                waits.append(max(0.0, t[1] - t[0]))
            else:
                waits.append(0.0)
    out: dict[str, Any] = {"step_s": statistics.median(times), "wait_s": statistics.median(waits)}
    if ddp is not None:
        # the same buckets reduced with blocking Allreduce and nothing else running
        g = dist.process_group._current("bench")
        bufs = [b.buffer.copy() for b in ddp._buckets]
        comm = []
        for _ in range(15):
            dist.barrier()
            t0 = time.perf_counter()
            for buf in bufs:
                g.comm.Allreduce(g.MPI.IN_PLACE, buf, op=g.MPI.SUM)
            comm.append(time.perf_counter() - t0)
        out["comm_s"] = statistics.median(comm)
        out["buckets_mb"] = [round(n / 1e6, 3) for n in ddp.bucket_sizes]
        # a rank's step time is the slowest rank's: report rank 0 after a max-reduce
        arr = np.array([out["step_s"], out["wait_s"], out["comm_s"]])
        g.comm.Allreduce(g.MPI.IN_PLACE, arr, op=g.MPI.MAX)
        out["step_s"], out["wait_s"], out["comm_s"] = arr.tolist()
        if dist.get_rank() != 0:
            return {}
    return out


def child_allreduce(sizes: list[int], repeats: int) -> dict[str, Any]:
    """Blocking Allreduce time (float32 sum) per message size: the median over 9
    batches of back-to-back calls (as OSU's benchmark: a barrier, then a timed loop)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    res = {}
    for n in sizes:
        buf = np.ones(n // 4, dtype=np.float32)
        reps = max(2, min(repeats, int(1e8 // max(n, 1))))
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)  # warm-up
        ts = []
        for _ in range(9):
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            ts.append((time.perf_counter() - t0) / reps)
        t = np.array([statistics.median(ts)])
        comm.Allreduce(MPI.IN_PLACE, t, op=MPI.MAX)
        res[str(n)] = float(t[0])
    return res if comm.Get_rank() == 0 else {}


def child_backward(name: str, n: int, repeats: int) -> dict[str, Any]:
    """Median forward+backward and backward-only seconds per sample (this thread count)."""
    from cnnkit import backend, nn

    backend.manual_seed(0)
    net = cifar_net() if name == "cifar" else resnet()
    x, y = batch(n)
    loss_fn = nn.CrossEntropyLoss()
    bwd = []
    for _ in range(repeats + 1):
        loss = loss_fn(net(x), y)
        t0 = time.perf_counter()
        loss.backward()
        bwd.append(time.perf_counter() - t0)
        net.zero_grad()
    grad_bytes = sum(p.numel() * p.dtype.itemsize for p in net.parameters())
    return {"bwd_per_sample_s": statistics.median(bwd[1:]) / n, "grad_bytes": grad_bytes}


# ----------------------------------------------------------------- the parent
def _env(threads: int, unset: bool) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    if unset:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    for k in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE"):
        env.pop(k, None)
    return env


def _mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def run_child(args: list[str], ranks: int, threads: int, unset: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    if ranks > 1:
        cmd = [_mpiexec(), "-n", str(ranks), *cmd]
    out = subprocess.run(cmd, env=_env(threads, unset), capture_output=True, text=True,
                         timeout=900, cwd=HERE.parent)  # fmt: skip
    if out.returncode != 0:
        sys.exit(f"benchmark child failed ({' '.join(cmd)}):\n{out.stderr[-3000:]}")
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def fit_ring(measured: dict[str, float], p: int = 2) -> tuple[float, float, list[str]]:
    """Least-squares ``alpha`` (s) and ``beta`` (bytes/s) of
    ``T = 2(p-1) alpha + 2(p-1)/p n / beta``, weighted by 1/T (relative errors); points
    off the first fit by more than 3x (a rank descheduled by the machine's load) are
    left out of the second fit and returned."""
    keys = list(measured)
    n = np.array([float(k) for k in keys])
    t = np.array([measured[k] for k in keys])
    keep = np.ones(len(keys), bool)
    for _ in range(2):
        a = np.stack([np.full_like(n, 2 * (p - 1)), 2 * (p - 1) / p * n], axis=1) / t[:, None]
        coef, *_ = np.linalg.lstsq(a[keep], np.ones(int(keep.sum())), rcond=None)
        alpha, inv_beta = max(float(coef[0]), 0.0), max(float(coef[1]), 1e-15)
        ratio = ring_time(n, p, alpha, 1.0 / inv_beta) / t
        keep = (ratio > 1 / 3) & (ratio < 3)
    return alpha, 1.0 / inv_beta, [k for k, ok in zip(keys, keep, strict=True) if not ok]


def ring_time(nbytes: Any, p: int, alpha: float, beta: float) -> Any:
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes / beta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--per-rank", type=int, default=64, help="batch per rank (default 64)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "train":
            res = child_train(int(rest[0]), int(rest[1]))
        elif kind == "allreduce":
            res = child_allreduce([int(s) for s in rest[1:]], int(rest[0]))
        else:
            res = child_backward(rest[0], int(rest[1]), int(rest[2]))
        if res:
            print(json.dumps(res), flush=True)
        return

    b, steps = args.per_rank, args.steps
    cpu = _cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; load average {load:.1f} at the start "
          "(other jobs on the machine move every figure; they are medians)")  # fmt: skip
    env_note = (f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}, "
                f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}")  # fmt: skip
    print(f"machine env: {env_note}")
    configs = {
        "1 rank x 2 threads": (1, 2, 2 * b),
        "2 ranks x 1 thread": (2, 1, b),
    }
    table: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for unset in (False, True):
        label = "OpenBLAS vars unset" if unset else "machine env"
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in configs}
        for _ in range(args.rounds):
            for name, (ranks, threads, per) in configs.items():
                runs[name].append(run_child(["train", str(per), str(steps)], ranks, threads,
                                            unset))  # fmt: skip
        table[label] = runs
    print(f"\nCIFAR-style net, float32, SGD momentum, global batch {2 * b} per step "
          f"({args.rounds} interleaved rounds x {steps} steps; medians):")  # fmt: skip
    head = (f"{'env':20s} {'configuration':20s} {'img/s':>7s} {'step ms':>8s} "
            f"{'allreduce ms':>13s} {'exposed ms':>11s} {'hidden':>7s}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for label, runs in table.items():
        for name, rs in runs.items():
            step = statistics.median(r["step_s"] for r in rs)
            cells = f"{2 * b / step:7.0f} {step * 1e3:8.1f}"
            if "comm_s" in rs[0]:
                comm = statistics.median(r["comm_s"] for r in rs)
                wait = statistics.median(r["wait_s"] for r in rs)
                cells += f" {comm * 1e3:13.1f} {wait * 1e3:11.1f} {max(0.0, 1 - wait / comm):7.0%}"
            else:
                cells += f" {'-':>13s} {'-':>11s} {'-':>7s}"
            print(f"{label:20s} {name:20s} {cells}")
    any_ddp = next(iter(table.values()))["2 ranks x 1 thread"][0]
    print(f"gradient buckets (MB, reduction order): {any_ddp['buckets_mb']}")

    # ----- allreduce sweep and the ring model
    sizes = [2**k for k in range(10, 27, 2 if args.quick else 1)]
    ar = run_child(["allreduce", "50" if args.quick else "200", *map(str, sizes)], 2, 1)
    alpha, beta, outliers = fit_ring(ar)
    print(f"\nMPI_Allreduce on 2 ranks (shared memory, MPICH), float32 sum, median; ring model "
          f"fit: alpha = {alpha * 1e6:.1f} us, beta = {beta / 1e9:.2f} GB/s "
          "(* = off the model by > 3x, left out of the fit)")  # fmt: skip
    print(f"{'bytes':>10s} {'measured us':>12s} {'model us':>10s} {'model/measured':>15s}")
    for k, t in ar.items():
        m = ring_time(float(k), 2, alpha, beta)
        star = " *" if k in outliers else ""
        print(f"{_size(int(k)):>10s} {t * 1e6:12.1f} {m * 1e6:10.1f} {m / t:15.2f}{star}")

    # ----- cost model: per-rank batch at which the allreduce hides behind backward
    nets = {}
    for name in ("cifar", "resnet"):
        nets[name] = run_child(["backward", name, "32", "5"], 1, 1)
    print(f"\nCost model: ring allreduce of the gradient, T = 2(P-1) x {NET_ALPHA * 1e6:.0f} us + "
          "2(P-1)/P x bytes / bandwidth; it hides behind backward when T <= b x (backward "
          "time per sample, measured here on 1 thread), i.e. from a per-rank batch b* = T / "
          "(backward per sample):")  # fmt: skip
    head = f"{'net':16s} {'grad MB':>8s} {'bwd ms/img':>11s} {'link':>9s} " + " ".join(
        f"{'T ms P=' + str(p):>10s} {'b*':>5s}" for p in RANKS
    )
    print(head)
    print("-" * len(head))
    for name, info in nets.items():
        label = "CIFAR-style net" if name == "cifar" else "SmallResNet"
        for gbit in LINKS_GBIT:
            bw = gbit * 1e9 / 8
            cells = []
            for p in RANKS:
                t = ring_time(info["grad_bytes"], p, NET_ALPHA, bw)
                cells.append(f"{t * 1e3:10.2f} {t / info['bwd_per_sample_s']:5.1f}")
            print(f"{label:16s} {info['grad_bytes'] / 1e6:8.2f} "
                  f"{info['bwd_per_sample_s'] * 1e3:11.2f} {str(gbit) + ' Gb/s':>9s} "
                  + " ".join(cells))  # fmt: skip


def _size(n: int) -> str:
    for unit, div in (("MB", 2**20), ("KB", 2**10)):
        if n >= div:
            return f"{n // div} {unit}"
    return f"{n} B"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
