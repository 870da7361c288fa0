"""The detection side of the command line: ``cnnkit train`` / ``evaluate`` for TinyYOLO
runs and ``cnnkit detect RUN scene.png ... --out boxes.json --draw out.png``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["detect_args", "load_scene", "run_detect", "run_evaluate", "run_train"]


def run_train(args: argparse.Namespace) -> int:
    """``cnnkit train --model tinyyolo --data digit-scenes:PATH --out DIR``."""
    from cnnkit.cli import CLIError
    from cnnkit.detect.run import train_detection_run

    if args.augment:
        raise CLIError(
            "--augment is for classification; detection scenes are drawn at random "
            "(positions, scales, digits) already"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        s = train_detection_run(
            args.out,
            model=args.model,
            data=args.data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            optimizer=args.optimizer,
            weight_decay=args.weight_decay,
            seed=args.seed,
            scheduler=args.scheduler,
            verbose=not args.quiet,
            resume=args.resume,
        )
    print(s["report"], end="")
    print(f"diagnosis: {s['diagnosis_text']}")
    print(f"trained in {s['train_seconds']:.0f} s ({s['train_images_per_second']:.0f} scenes/s)")
    print(f"run directory: {args.out}")
    return 0


def run_evaluate(args: argparse.Namespace, cfg: dict[str, Any], model: Any) -> int:
    """``cnnkit evaluate RUN`` for a detection run: mAP@0.5 and per-class AP."""
    from cnnkit.detect.run import evaluate_detection, load_detection_data

    data = load_detection_data(
        args.data or cfg["data"],
        seed=int(cfg.get("seed", 0)),
        train_scenes=1,
        val_scenes=1,
        test_scenes=int(cfg.get("test_scenes", 1000)),
    )
    result, _, _, seconds = evaluate_detection(model, data.test)
    print(
        f"mAP@0.5 {result.map:.4f} on {len(data.test):,} test scenes of {data.spec} "
        f"({1000 * seconds / len(data.test):.2f} ms per scene)"
    )
    print(result.table())
    return 0


def detect_args(p: argparse.ArgumentParser) -> None:
    """Arguments of ``cnnkit detect``."""
    p.add_argument("run", help="a detection run directory (cnnkit train --model tinyyolo)")
    p.add_argument("images", nargs="+", help="scene images (png, ...), of the run's size")
    p.add_argument("--out", help="write the detections as JSON to this file")
    p.add_argument("--draw", help="write the scenes with their boxes to this PNG")
    p.add_argument("--conf", type=float, default=0.25, help="score threshold (default 0.25)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")


def load_scene(path: str | Path, channels: int, size: int) -> np.ndarray:
    """An image file as float32 ``(channels, size, size)`` in [0, 1], without resizing.

    Raises
    ------
    CLIError
        Missing or unreadable file, or an image of another size or channel count (the
        message names the file, the expected and the received geometry).
    """
    from PIL import Image, UnidentifiedImageError

    from cnnkit.cli import CLIError

    path = Path(path)
    if not path.is_file():
        raise CLIError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            im.load()
            bands = len(im.getbands())
            if im.mode in ("P",):  # palette: its colours decide
                im = im.convert("RGB")
                rgb = np.asarray(im)
                bands = 1 if (rgb == rgb[..., :1]).all() else 3
                im = im.convert("L") if bands == 1 else im
            elif im.mode in ("I", "I;16", "F"):
                bands = 1
            w, h = im.size
            if (h, w) != (size, size):
                raise CLIError(
                    f"{path}: expected a {size}x{size} scene (the run's input size); got "
                    f"{w}x{h} pixels"
                )
            if bands != channels:
                want = "1-channel grayscale" if channels == 1 else f"{channels}-channel"
                raise CLIError(
                    f"{path}: expected a {want} image; got {bands} channels (mode {im.mode})"
                )
            if im.mode in ("I", "I;16"):
                arr = np.asarray(im, dtype=np.float64) / 65535.0
            elif im.mode == "F":
                arr = np.asarray(im, dtype=np.float64)
            else:
                arr = np.asarray(im.convert("L" if channels == 1 else "RGB"), np.float64) / 255
    except (UnidentifiedImageError, OSError) as e:
        raise CLIError(f"{path}: not an image Pillow can read ({e})") from None
    arr = arr.astype(np.float32)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def run_detect(args: argparse.Namespace) -> int:
    """``cnnkit detect RUN scene.png ... [--out boxes.json] [--draw out.png]``."""
    from cnnkit.cli import CLIError
    from cnnkit.detect.draw import plot_detections
    from cnnkit.io.atomic import atomic_write_text
    from cnnkit.train.run import load_run

    if not 0 <= args.conf <= 1:
        raise CLIError(f"--conf must be in [0, 1]; got {args.conf}")
    if not 0 <= args.iou <= 1:
        raise CLIError(f"--iou must be in [0, 1]; got {args.iou}")
    cfg, model = load_run(args.run)
    if cfg.get("task") != "detection" or not hasattr(model, "detect"):
        raise CLIError(
            f"{args.run}: not a detection run (train one with --model tinyyolo); "
            "use `cnnkit predict` for classifiers"
        )
    images = np.stack([load_scene(p, cfg["in_channels"], cfg["input_size"]) for p in args.images])
    preds = model.detect(images, conf_threshold=args.conf, iou_threshold=args.iou)
    classes = cfg.get("classes") or [str(c) for c in range(model.num_classes)]
    results = []
    for path, p in zip(args.images, preds, strict=True):
        dets = [
            {
                "box": [round(float(v), 2) for v in b],
                "score": round(float(s), 4),
                "label": int(l),
                "class": classes[int(l)],
            }
            for b, s, l in zip(p["boxes"], p["scores"], p["labels"], strict=True)
        ]
        results.append({"image": str(path), "detections": dets})
        found = ", ".join(f"{d['class']} {d['score']:.2f}" for d in dets) or "nothing"
        print(f"{path}: {found}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    if args.draw:
        Path(args.draw).parent.mkdir(parents=True, exist_ok=True)
        plot_detections(
            images,
            preds,
            args.draw,
            classes=classes,
            titles=[Path(p).name for p in args.images],
            cols=min(4, len(images)),
        )
        print(f"wrote {args.draw}")
    return 0
