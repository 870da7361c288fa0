"""TinyYOLO's goal figures for a trained run: mAP@0.5 on 1,000 test scenes and the time
to detect a batch of 50 scenes.

    python benchmarks/detect_yolo.py runs/yolo [--data digit-scenes:PATH]

The timing is the median of interleaved repeats, measured twice in child processes:
with this machine's environment and with ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE``
unset. On a machine shared with other work the times are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def measure(run: str, data: str | None, repeats: int) -> dict:
    import numpy as np

    from cnnkit.data.scenes import detection_collate
    from cnnkit.detect.run import evaluate_detection, load_detection_data
    from cnnkit.train.run import load_run

    cfg, model = load_run(run)
    spec = data or cfg["data"]
    splits = load_detection_data(
        spec, seed=int(cfg.get("seed", 0)), train_scenes=1, val_scenes=1, test_scenes=1000
    )
    result, _, _, _ = evaluate_detection(model, splits.test)
    images, _ = detection_collate([splits.test[i] for i in range(50)])
    model.detect(images)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.detect(images)
        times.append(time.perf_counter() - t0)
    return {
        "data": spec,
        "map": result.map,
        "ap": [float(a) for a in result.ap],
        "table": result.table(),
        "detect50_median_s": float(np.median(times)),
        "detect50_min_s": float(np.min(times)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--data", default=None)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.run, args.data, args.repeats)))
        return
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        cpu = "unknown CPU"
    print(f"CPU: {cpu}, {os.cpu_count()} cores (shared with other work: times are upper bounds)")
    for label, unset in (("this environment", False), ("OPENBLAS_* unset", True)):
        env = dict(os.environ)
        if unset:
            env.pop("OPENBLAS_CORETYPE", None)
            env.pop("OPENBLAS_L2_SIZE", None)
        cmd = [sys.executable, __file__, args.run, "--child", "--repeats", str(args.repeats)]
        if args.data:
            cmd += ["--data", args.data]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"[{label}] detect 50 scenes: median {r['detect50_median_s'] * 1000:.0f} ms "
            f"(min {r['detect50_min_s'] * 1000:.0f} ms)"
        )
        if not unset:
            print(f"mAP@0.5 {r['map']:.4f} on 1000 test scenes of {r['data']}\n{r['table']}")


if __name__ == "__main__":
    main()
