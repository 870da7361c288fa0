"""Detection run directories: train TinyYOLO on digit scenes and write everything down.

The directory has the files of a classification run (``config.json``, ``model.safetensors``,
``checkpoints/``, ``history.csv``, ``curves.png``, ``diagnosis.txt``, ``report.txt``) plus
``detections.png``; ``config.json`` and the checkpoint's metadata say
``"task": "detection"`` so tools can tell the kinds of runs apart.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import backend, nn
from cnnkit.io.atomic import atomic_write_text
from cnnkit.train.claim import LOCK, claim
from cnnkit.train.run import DataSplits

__all__ = [
    "DETECTION_DEFAULTS",
    "evaluate_detection",
    "is_detection",
    "load_detection_data",
    "train_detection_run",
]

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TASK = "detection"
DETECTION_MODELS = ("tinyyolo", "yolo")
#: Defaults of ``cnnkit train --model tinyyolo``: mAP@0.5 0.98 on the 1,000 test scenes
#: after 446 CPU-seconds (4-8 minutes on an idle 2-core machine; see the README).
DETECTION_DEFAULTS: dict[str, Any] = {
    "epochs": 5,
    "batch_size": 32,
    "lr": 2e-3,
    "optimizer": "adam",
    "scheduler": "cosine",
    "train_scenes": 8000,
    "val_scenes": 500,
    "test_scenes": 1000,
}
#: Detections scoring below this are dropped before mAP is computed (as VOC/COCO
#: evaluations do: a low threshold so the precision-recall curve is complete).
EVAL_CONF_THRESHOLD = 0.01


def is_detection(model: str | None = None, data: str | None = None) -> bool:
    """Whether a model name or data spec asks for a detection run."""
    key = (model or "").lower().replace("-", "").replace("_", "")
    return key in DETECTION_MODELS or (data or "").lower().startswith("digit-scenes")


def load_detection_data(
    spec: str,
    seed: int = 0,
    train_scenes: int = 8000,
    val_scenes: int = 500,
    test_scenes: int = 1000,
) -> DataSplits:
    """Datasets for ``digit-scenes:PATH`` (a folder of MNIST IDX files).

    Training scenes use digits 0-7,999 (seed ``seed``), validation scenes other
    compositions of the same digits (seed ``seed + 1``), test scenes digits 8,000-9,999
    (seed ``seed``), which training never sees.
    """
    from cnnkit.data.scenes import DigitScenes

    kind, _, path = spec.partition(":")
    if kind.lower() != "digit-scenes":
        raise ValueError(f"detection runs need data digit-scenes:PATH; got {spec!r}")
    if not path:
        raise ValueError(f"data spec {spec!r} needs a path: digit-scenes:PATH (MNIST IDX folder)")
    train = DigitScenes(path, "train", n=train_scenes, seed=seed)
    val = DigitScenes(
        images=train.digits, labels=train.digit_labels, split="train", n=val_scenes, seed=seed + 1
    )
    test = DigitScenes(
        images=train.digits, labels=train.digit_labels, split="test", n=test_scenes, seed=seed
    )
    return DataSplits(train, val, test, 1, train.size, train.num_classes, train.classes, spec)


def _loader(ds: Any, batch_size: int, shuffle: bool, seed: int) -> Any:
    from cnnkit.data import DataLoader
    from cnnkit.data.scenes import detection_collate

    return DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, seed=seed, collate_fn=detection_collate
    )


def evaluate_detection(
    model: Any,
    dataset: Any,
    iou_threshold: float = 0.5,
    conf_threshold: float = EVAL_CONF_THRESHOLD,
    batch_size: int = 100,
) -> tuple[Any, list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], float]:
    """mAP of ``model`` on a scene dataset.

    Returns
    -------
    (MAPResult, predictions, targets, seconds of detection)
    """
    from cnnkit.data.scenes import detection_collate
    from cnnkit.detect.metrics import mean_average_precision

    preds: list[dict[str, np.ndarray]] = []
    targets: list[dict[str, np.ndarray]] = []
    seconds = 0.0
    for start in range(0, len(dataset), batch_size):
        images, tg = detection_collate(
            [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        )
        t0 = time.perf_counter()
        preds.extend(model.detect(images, conf_threshold=conf_threshold))
        seconds += time.perf_counter() - t0
        targets.extend(tg)
    classes = getattr(dataset, "classes", None)
    result = mean_average_precision(
        preds, targets, iou_threshold, num_classes=model.num_classes, classes=classes
    )
    return result, preds, targets, seconds


def _report(
    result: Any,
    n: int,
    detect_seconds: float,
    at_default: Any,
    wall: float,
    cpu: float,
    seen: int,
    epochs: str = "",
) -> str:
    return (
        f"mAP@0.5 {result.map:.4f} on {n:,} test scenes (digits never seen in training; "
        f"detections scoring > {EVAL_CONF_THRESHOLD} after per-class NMS at IoU 0.45)\n"
        f"mAP@0.5 with model.detect's default conf_threshold 0.25: {at_default.map:.4f}\n"
        f"detection time: {1000 * detect_seconds / max(n, 1):.2f} ms per scene (batches of 100)\n"
        f"training{epochs}: {seen:,} scenes in {wall:.0f} s of wall time "
        f"({seen / max(wall, 1e-9):.0f} scenes/s) and {cpu:.0f} CPU-seconds (all threads; "
        "on an idle machine with k cores "
        "the wall time is about CPU-seconds / k or more)\n\n"
        f"per-class average precision (VOC all-points interpolation, IoU >= 0.5)\n"
        f"{result.table()}\n"
    )


def train_detection_run(
    out: str | Path,
    model: str = "tinyyolo",
    data: str = "digit-scenes:../shared/data/mnist",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    optimizer: str | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
    scheduler: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    verbose: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    train_scenes: int | None = None,
    test_scenes: int | None = None,
    val_scenes: int | None = None,
) -> dict[str, Any]:
    """Train TinyYOLO on digit scenes and write a complete run directory.

    Settings left ``None`` take :data:`DETECTION_DEFAULTS` (``train_scenes``,
    ``val_scenes`` and ``test_scenes``: the numbers of scenes). ``resume=True`` continues an
    interrupted run in ``out`` with its own settings.

    Returns
    -------
    dict
        The run's summary (the content of ``config.json``), plus ``report``.

    Raises
    ------
    FileExistsError, FileNotFoundError, ValueError
        As :func:`cnnkit.train.run.train_run`.
    """
    from cnnkit import io
    from cnnkit.detect.draw import plot_detections
    from cnnkit.models import TinyYOLO
    from cnnkit.train.callbacks import CSVLogger, ModelCheckpoint
    from cnnkit.train.diagnosis import diagnose
    from cnnkit.train.loop import fit
    from cnnkit.train.run import _Stretch, make_optimizer, make_scheduler
    from cnnkit.viz.curves import plot_history

    out = Path(out)
    d = DETECTION_DEFAULTS
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory (choose another --out)")
    created = not out.exists()
    # one run per directory, claimed before any data is loaded (as train_run does)
    owned = claim(out, takeover=resume or overwrite)
    try:
        resumes: list[dict[str, int]] = []
        if resume:
            from cnnkit.io.schema import Schema
            from cnnkit.train.run import read_config, resumed_epochs

            # an interrupted run continues; a finished one only to a larger --epochs
            finished = (out / CONFIG).exists()
            cfg_path = out / (CONFIG if finished else "config.json.running")
            if not cfg_path.exists():
                raise FileNotFoundError(
                    f"--resume: {out} has no run to resume ({cfg_path} missing)"
                )
            cfg = read_config(cfg_path, finished=False)  # the fields of every run, validated
            sc = Schema(cfg_path)
            for key in ("train_scenes", "test_scenes", "val_scenes"):
                sc.get(cfg, key, "int", min=1)
            sc.get(cfg, "scheduler", "str")
            epochs, resumes = resumed_epochs(out, cfg, finished, epochs)
            model, data, batch_size, lr = cfg["model"], cfg["data"], cfg["batch_size"], cfg["lr"]
            optimizer, weight_decay, seed = cfg["optimizer"], cfg["weight_decay"], cfg["seed"]
            scheduler, train_scenes = cfg["scheduler"], cfg["train_scenes"]
            test_scenes, val_scenes = cfg["test_scenes"], cfg["val_scenes"]
            model_kwargs = cfg.get("model_kwargs") or {}
        elif any(not p.name.startswith(LOCK) for p in out.iterdir()) and not overwrite:
            raise FileExistsError(f"{out} already exists and is not empty (choose another --out)")
        if model.lower().replace("-", "").replace("_", "") not in DETECTION_MODELS:
            raise ValueError(f"detection runs train tinyyolo; got --model {model!r}")
        epochs = d["epochs"] if epochs is None else int(epochs)
        batch_size = d["batch_size"] if batch_size is None else int(batch_size)
        lr = d["lr"] if lr is None else float(lr)
        optimizer = optimizer or d["optimizer"]
        scheduler = scheduler or d["scheduler"]
        train_scenes = d["train_scenes"] if train_scenes is None else int(train_scenes)
        test_scenes = d["test_scenes"] if test_scenes is None else int(test_scenes)
        val_scenes = d["val_scenes"] if val_scenes is None else int(val_scenes)
        if min(epochs, batch_size, train_scenes, val_scenes, test_scenes) < 1:
            raise ValueError(
                "epochs, batch size and the numbers of train, validation and test scenes must be "
                f">= 1; got {epochs}, {batch_size}, {train_scenes}, {val_scenes}, {test_scenes}"
            )
        backend.manual_seed(seed)
        splits = load_detection_data(data, seed, train_scenes, val_scenes, test_scenes)
        kwargs = dict(model_kwargs or {})
        net = TinyYOLO(num_classes=splits.num_classes, in_channels=splits.in_channels, **kwargs)
        if net.input_size != splits.input_size:
            raise ValueError(
                f"TinyYOLO takes {net.input_size}x{net.input_size} images; the scenes are "
                f"{splits.input_size}x{splits.input_size}"
            )
        loss = nn.YOLOv1Loss(
            net.grid, net.boxes_per_cell, net.num_classes, image_size=splits.input_size
        )
        opt = make_optimizer(optimizer, net.parameters(), lr, weight_decay)
        sched = make_scheduler(scheduler, opt, epochs)
        config: dict[str, Any] = {
            "task": TASK,
            "model": model,
            "model_kwargs": kwargs,
            "data": data,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": optimizer,
            "weight_decay": weight_decay,
            "scheduler": scheduler,
            "augment": False,
            "seed": seed,
            "train_scenes": train_scenes,
            "val_scenes": val_scenes,
            "test_scenes": test_scenes,
            **splits.config_fields(),
            "grid": net.grid,
            "boxes_per_cell": net.boxes_per_cell,
        }
        if resumes:
            config["resumed"] = resumes
        out.mkdir(parents=True, exist_ok=True)
        (out / "FAILED.txt").unlink(missing_ok=True)
        (out / CONFIG).unlink(missing_ok=True)
        atomic_write_text(out / "config.json.running", json.dumps(config, indent=2))
        ckpt = ModelCheckpoint(out / "checkpoints", monitor="val_loss")
        last = ckpt.last_path if resume and ckpt.last_path.exists() else None
        if resume and last is None:
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt.last_path}")
        from cnnkit.train.run import _finished_epochs

        # a resumed run's times cover only the epochs it runs now: so does its count
        done_before = _finished_epochs(last) if last is not None else 0
        t0, cpu0 = time.perf_counter(), time.process_time()
        try:
            history = fit(
                net,
                _loader(splits.train, batch_size, True, seed),
                _loader(splits.val, 100, False, seed),
                loss=loss,
                optimizer=opt,
                epochs=epochs,
                scheduler=sched,
                # a resumed run given another --epochs: its schedule stretched to the total
                callbacks=[ckpt, CSVLogger(out / "history.csv")]
                + ([_Stretch(epochs, scheduler)] if resume else []),
                verbose=verbose,
                resume=last,
            )
            train_seconds = time.perf_counter() - t0
            train_cpu_seconds = time.process_time() - cpu0
            seen = len(splits.train) * (len(history) - done_before)
            result, _, targets, det_seconds = evaluate_detection(net, splits.test)
            at_default, _, _, _ = evaluate_detection(net, splits.test, conf_threshold=0.25)
            verdict = diagnose(history)
            io.save(
                out / WEIGHTS,
                net,
                optimizer=opt,
                history=history,
                meta={"config": config, "task": TASK},
            )
            history.to_csv(out / "history.csv")
            plot_history(history, out / "curves.png", verdict, title=f"{model} on {data}")
            atomic_write_text(out / "diagnosis.txt", str(verdict) + "\n")
            report = _report(
                result,
                len(splits.test),
                det_seconds,
                at_default,
                train_seconds,
                train_cpu_seconds,
                seen,
                f" (epochs {done_before + 1}-{len(history)}, resumed)" if done_before else "",
            )
            atomic_write_text(out / "report.txt", report)
            shown = list(range(min(16, len(splits.test))))
            images = np.stack([splits.test[i][0] for i in shown])
            shown_preds = net.detect(images)
            plot_detections(
                images,
                shown_preds,
                out / "detections.png",
                targets=[targets[i] for i in shown],
                classes=splits.classes,
                title=f"TinyYOLO on test scenes (mAP@0.5 {result.map:.3f} on "
                f"{len(splits.test):,}): predictions red, ground truth green dashed",
            )
            summary = dict(config)
            summary.update(
                test_map=result.map,
                test_ap={
                    c: (None if np.isnan(a) else float(a))
                    for c, a in zip(splits.classes, result.ap, strict=True)
                },
                test_map_conf_0_25=at_default.map,
                detect_ms_per_scene=1000 * det_seconds / len(splits.test),
                train_seconds=train_seconds,
                train_cpu_seconds=train_cpu_seconds,
                train_images_per_second=seen / max(train_seconds, 1e-9),
                diagnosis=verdict.verdict,
                parameters=sum(p.numel() for p in net.parameters()),
            )
            atomic_write_text(out / CONFIG, json.dumps(summary, indent=2))
            (out / "config.json.running").unlink(missing_ok=True)
        except BaseException as e:
            hint = ""
            if ckpt.last_path.exists():
                hint = (
                    f"the checkpoints of the finished epochs are in {ckpt.dirpath}; continue with "
                    f"`cnnkit train --resume --out {out}`\n"
                )
            why = f"training did not finish: {type(e).__name__}: {e}\n{hint}"
            atomic_write_text(out / "FAILED.txt", f"{why}\n{traceback.format_exc()}")
            raise
        summary["diagnosis_text"] = str(verdict)
        summary["report"] = report
        return summary
    finally:
        owned.release()
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if nothing was written
