"""`make bench`: cnnkit against PyTorch on the CPU, as throughput ratios.

Runs ``bench_core.py`` in child processes: with this machine's environment; with
``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` unset (an ordinary machine; the targets
refer to it); unset with glibc's allocator defaults; and unset with cnnkit's compiled
convolution kernels turned off (``CNNKIT_NATIVE=0``: what the NumPy path alone does).
A ratio is cnnkit throughput / PyTorch throughput (> 1: faster).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

TARGETS = {
    "cifar_train": ("CIFAR-net training step (b128)", 1.0),
    "cifar_infer": ("CIFAR-net inference (b128)", 1.2),
    "lenet_train": ("LeNet5 training step (b128)", 0.8),
    "cifar_b1": ("CIFAR-net batch-1 latency", 0.8),
    "lenet_b1": ("LeNet5 batch-1 latency", 0.8),
    "gemm_eff": ("conv fwd GEMM efficiency", 0.7),
    "gemm_eff_cl": ("  same, input channels-last (in a net)", None),
    "rss": ("peak RSS training (cnnkit/torch)", 1.5),
}


def run_env(
    unset: bool, extra: list[str], malloc_default: bool = False, numpy_only: bool = False
) -> dict:
    """Run one benchmark child; ``unset`` drops the two OpenBLAS variables;
    ``malloc_default`` (the column's old name) now means the opposite of the default:
    the child calls ``ck.tune_malloc()``, cnnkit's allocator settings for the whole
    process (cnnkit leaves the allocator alone unless asked; PyTorch, in the same
    process, profits too);
    ``numpy_only`` turns cnnkit's compiled kernels off."""
    env = dict(os.environ)
    env.pop("CNNKIT_NATIVE", None)
    if unset:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    if malloc_default:
        env["CNNKIT_BENCH_TUNE_MALLOC"] = "1"
    if numpy_only:
        env["CNNKIT_NATIVE"] = "0"
    cmd = [sys.executable, str(HERE / "bench_core.py"), "--json", *extra]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=HERE.parent)
    if out.returncode != 0:
        sys.exit(f"benchmark child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def label(name: str) -> str:
    """Row label."""
    if name in TARGETS:
        return TARGETS[name][0]
    if name.startswith("conv:"):
        _, n, c, hw, co, k, s = name.split(":")
        return f"conv2d {c}->{co} {k}x{k}/s{s} {hw}px b{n}"
    return f"{name} fwd+bwd"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--only", default="")
    args = p.parse_args()
    extra = ["--repeats", str(args.repeats), "--min-time", str(args.min_time)]
    if args.only:
        extra += ["--only", args.only]
    here = os.environ.get("OPENBLAS_CORETYPE"), os.environ.get("OPENBLAS_L2_SIZE")
    results = {
        "machine env": run_env(False, extra),
        "OpenBLAS vars unset": run_env(True, extra),
        "unset, ck.tune_malloc()": run_env(True, extra, malloc_default=True),
        "unset, NumPy path only": run_env(True, extra, numpy_only=True),
    }
    native = results["OpenBLAS vars unset"].get("native")
    print(
        f"cnnkit / PyTorch throughput ratios (> 1 = cnnkit faster); "
        f"threads={results['machine env']['threads']}; machine env: "
        f"OPENBLAS_CORETYPE={here[0]}, OPENBLAS_L2_SIZE={here[1]}.\n"
        "'+tune_malloc': vars unset and ck.tune_malloc() (cnnkit's allocator settings for "
        "the whole process,\nPyTorch profits too); the other columns keep glibc's "
        "defaults.\n"
        "'NumPy only': vars unset and CNNKIT_NATIVE=0, cnnkit without its compiled "
        f"convolution kernels (in the other columns they are {'on' if native else 'OFF'})."
    )
    head = (
        f"{'work':40s} {'machine env':>12s} {'vars unset':>12s} {'+tune_malloc':>12s} "
        f"{'NumPy only':>12s} {'target':>8s} {'met':>4s}"
    )
    print(head)
    print("-" * len(head))
    names = list(results["OpenBLAS vars unset"]["rows"])
    for name in names:
        vals = [results[k]["rows"].get(name, {}).get("ratio") for k in results]
        tgt = TARGETS.get(name, ("", None))[1]
        unset = vals[1]
        met = ""
        if tgt is not None and unset is not None:
            met = "yes" if (unset <= tgt if name == "rss" else unset >= tgt) else "no"
        cells = [f"{v:12.2f}" if v is not None else f"{'-':>12s}" for v in vals]
        tcell = f"{('<=' if name == 'rss' else '>=') + format(tgt, '.1f'):>8s}" if tgt else " " * 8
        print(f"{label(name):40s} {' '.join(cells)} {tcell} {met:>4s}")
    print()
    for k, res in results.items():
        rows = res["rows"]
        extra_bits = []
        for name in ("cifar_train", "cifar_infer", "lenet_train"):
            if name in rows:
                torch_img_s = 128 / rows[name]["torch_s"]
                extra_bits.append(
                    f"{name}: cnnkit {rows[name]['img_s']:.0f} img/s, torch {torch_img_s:.0f} img/s"
                )
        if "gemm_eff" in rows:
            g = rows["gemm_eff"]
            extra_bits.append(
                f"conv fwd {g['conv_gflops']:.0f} GFLOP/s of sgemm {g['sgemm_gflops']:.0f}"
            )
        if "rss" in rows:
            extra_bits.append(
                f"peak RSS growth cnnkit {rows['rss']['cnnkit_mib']:.0f} MiB, "
                f"torch {rows['rss']['torch_mib']:.0f} MiB"
            )
        print(f"[{k}] " + "; ".join(extra_bits))


if __name__ == "__main__":
    main()
