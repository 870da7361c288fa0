"""Run directories: train a zoo model on a named data set and write everything down.

A run directory holds ``config.json`` (written last: its presence marks a finished
run), ``model.safetensors`` (weights, optimizer, history), ``checkpoints/`` (last and
best, for ``--resume``), ``history.csv``, ``curves.png``, ``diagnosis.txt`` and
``report.txt`` (test loss, accuracy, per-class report, confusion matrix). A run that
fails writes ``FAILED.txt`` with the reason instead of ``config.json``.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import backend, limits, nn
from cnnkit.io.atomic import atomic_write_text
from cnnkit.io.schema import Schema
from cnnkit.train import data_parallel
from cnnkit.train.callbacks import Callback
from cnnkit.train.claim import LOCK, claim

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


@dataclass
class DataSplits:
    """Train/validation/test datasets of one data spec, and what a model needs to know."""

    train: Any
    val: Any
    test: Any
    in_channels: int
    input_size: int
    num_classes: int
    classes: list[str]
    spec: str
    note: str = ""

    def config_fields(self) -> dict[str, Any]:
        """What a run's ``config.json`` records of its data (to rebuild the model)."""
        return {
            "in_channels": self.in_channels,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "classes": self.classes,
        }


def _shape_info(ds: Any) -> tuple[int, int]:
    """(channels, side) of the first sample of a dataset."""
    x, _ = ds[0]
    arr = np.asarray(x)
    if arr.ndim != 3:
        raise ValueError(f"expected samples shaped (channels, h, w); got {arr.shape}")
    if arr.shape[1] != arr.shape[2]:
        raise ValueError(
            f"expected square images (the zoo models take side x side inputs); got "
            f"{arr.shape[1]}x{arr.shape[2]} (height x width)"
        )
    return int(arr.shape[0]), int(arr.shape[-1])


_DATA_KINDS = ("digits", "mnist", "fashion", "cifar10", "folder", "digit-scenes")


def _unknown_data(spec: str) -> str:
    """The error for a data spec of no known kind, with the closest kind suggested."""
    import difflib

    kind, sep, path = spec.partition(":")
    close = difflib.get_close_matches(kind.lower(), _DATA_KINDS, n=1, cutoff=0.5)
    hint = f"did you mean {close[0] + sep + path!r}? " if close else ""
    return (
        f"unknown data {spec!r}; {hint}use digits, mnist:PATH, fashion:PATH, cifar10:PATH, "
        "folder:PATH or digit-scenes:PATH (detection)"
    )


def load_data(spec: str, seed: int = 0, val_fraction: float = 0.1) -> DataSplits:
    """Datasets for a data spec: ``digits``, ``mnist:PATH``, ``fashion:PATH``,
    ``cifar10:PATH`` or ``folder:PATH``.

    MNIST-style folders holding only the t10k files (as the shared test set) are split
    into the first 8,000 images for training and the last 2,000 for testing.
    A fraction ``val_fraction`` of the training part is held out for validation.
    ``DataSplits.note`` says how the data was split, in words.
    """
    from cnnkit import data as D

    kind, _, path = spec.partition(":")
    kind = kind.lower()
    if kind not in ("digits", "mnist", "fashion", "fashionmnist", "cifar10", "folder"):
        raise ValueError(_unknown_data(spec))
    if kind != "digits" and not path:
        raise ValueError(f"data spec {spec!r} needs a path: {kind}:PATH")
    classes: list[str]
    t10k_only = False
    if kind == "digits":
        full_train = D.Digits(split="train")
        test = D.Digits(split="test")
    elif kind in ("mnist", "fashion", "fashionmnist"):
        cls = D.MNIST if kind == "mnist" else D.FashionMNIST
        root = Path(path)
        fetch = f"`cnnkit download {'mnist' if kind == 'mnist' else 'fashion'} --root {path}`"
        if not root.exists():
            raise FileNotFoundError(f"{kind}: no such folder {root}; fetch the files with {fetch}")
        has_train = any(root.glob("train-images-idx3-ubyte*")) or any(
            root.glob("*/train-images-idx3-ubyte*")
        )
        try:
            if has_train:
                full_train = cls(root, train=True)
                test = cls(root, train=False)
            else:
                t10k = cls(root, train=False)
                n = len(t10k)
                cut = round(n * 0.8)
                full_train = D.Subset(t10k, list(range(cut)))
                test = D.Subset(t10k, list(range(cut, n)))
                t10k_only = True
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{kind}: {root} does not hold the {cls.__name__} IDX files "
                f"({str(e).partition(': ')[2].partition(' (also')[0]}); fetch them with {fetch}"
            ) from None
    elif kind == "cifar10":
        full_train = D.CIFAR10(path, train=True)
        test = D.CIFAR10(path, train=False)
    elif kind == "folder":
        full = D.ImageFolder(path)
        n = len(full)
        n_test = max(1, round(0.15 * n))
        full_train, test = D.random_split(full, [n - n_test, n_test], seed=seed)
    else:
        raise ValueError(_unknown_data(spec))
    n = len(full_train)
    n_val = round(val_fraction * n) if val_fraction > 0 else 0
    if n_val:
        train, val = D.random_split(full_train, [n - n_val, n_val], seed=seed)
    else:
        train, val = full_train, None
    if n - n_val < 1 or len(test) < 1:
        raise ValueError(
            f"{spec}: too few images to split: {n - n_val} for training, {n_val} for "
            f"validation and {len(test)} for testing (each of training and testing needs one)"
        )
    base = _base(full_train)
    classes = [str(c) for c in getattr(base, "classes", [])]
    try:
        c, side = _shape_info(full_train)
    except ValueError as e:
        raise ValueError(f"{spec}: {e}") from None
    num_classes = len(classes) if classes else int(np.max(_targets(full_train))) + 1
    n_train, n_val, n_test = n - n_val, n_val, len(test)
    note = f"{n_train:,} training, {n_val:,} validation and {n_test:,} test images"
    if t10k_only:
        note = (
            f"only the {n + n_test:,} t10k images are in {path}: the first {n:,} split into "
            f"{n_train:,} training and {n_val:,} validation images, the last {n_test:,} for "
            "testing (add the train-* files for the full 60,000)"
        )
    return DataSplits(train, val, test, c, side, num_classes, classes, spec, f"{spec}: {note}")


def _base(ds: Any) -> Any:
    """The underlying dataset of (nested) subsets."""
    while hasattr(ds, "dataset"):
        ds = ds.dataset
    return ds


def _targets(ds: Any) -> np.ndarray:
    """All targets of a dataset (fast path through ``.targets`` where available)."""
    base = _base(ds)
    if hasattr(base, "targets") and not hasattr(ds, "indices"):
        return np.asarray(base.targets)
    return np.asarray(
        [int(np.asarray(getattr(ds[i][1], "data", ds[i][1]))) for i in range(len(ds))]
    )


def build_model(name: str, splits: DataSplits, **kwargs: Any) -> nn.Module:
    """A zoo model sized for the data (channels, image side, classes)."""
    from cnnkit.models import get_model

    key = name.lower()
    if key == "mlp":
        args = {"in_features": splits.in_channels * splits.input_size**2}
    elif key in ("smallresnet", "resnet"):
        args = {"in_channels": splits.in_channels}
    else:
        args = {"in_channels": splits.in_channels, "input_size": splits.input_size}
    args["num_classes"] = splits.num_classes
    args.update(kwargs)
    return get_model(name, **args)


def make_optimizer(name: str, params: Any, lr: float, weight_decay: float = 0.0) -> Any:
    """``sgd`` (momentum 0.9) or ``adam``."""
    from cnnkit import optim

    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay or 1e-2)
    raise ValueError(f"unknown optimizer {name!r}; use sgd, adam or adamw")


def make_scheduler(name: str, optimizer: Any, epochs: int) -> Any:
    """``none``, ``cosine`` (to 0 over the run), ``step`` (x0.1 at 50% and 75%) or
    ``plateau`` (x0.1 after 3 epochs without validation improvement)."""
    from cnnkit.optim import lr_scheduler as S

    if name == "none":
        return None
    if name == "cosine":
        return S.CosineAnnealingLR(optimizer, T_max=epochs)
    if name == "step":
        # distinct milestones: for short runs both may round to the same epoch, and
        # MultiStepLR would then apply x0.1 twice at once
        milestones = sorted({max(1, epochs // 2), max(1, 3 * epochs // 4)})
        return S.MultiStepLR(optimizer, milestones, 0.1)
    if name == "plateau":
        return S.ReduceLROnPlateau(optimizer, factor=0.1, patience=3)
    raise ValueError(f"unknown scheduler {name!r}; use none, cosine, step or plateau")


def augmented_loader(train: Any, side: int, channels: int, batch_size: int, seed: int) -> Any:
    """Shuffled training batches with random shifts (zero-pad by side/8, random crop) and,
    for colour images, random horizontal flips; seeded, and resumable exactly."""
    from cnnkit.data import DataLoader
    from cnnkit.data import transforms as T

    tfs: list[Any] = [T.RandomCrop(side, padding=max(1, side // 8), seed=seed + 1)]
    if channels == 3:
        tfs.append(T.RandomHorizontalFlip(seed=seed + 2))
    return DataLoader(train, batch_size=batch_size, shuffle=True, seed=seed,
                      transform=T.Compose(tfs))  # fmt: skip


MAX_EPOCHS = 1_000_000  # a config.json asking for more is corrupt, not ambitious
MAX_CHANNELS = 4096  # image channels a run's config.json may declare
_OPT_CLASSES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
_SCHEDULERS = ("none", "cosine", "step", "plateau")


def read_config(path: str | Path, finished: bool = True) -> dict[str, Any]:
    """A run's ``config.json`` (``finished``) or ``config.json.running``, validated:
    every field cnnkit relies on has the type and range cnnkit writes.

    Raises
    ------
    ValueError
        Not JSON, or a field missing or malformed (the message names the file and field).
    """
    from cnnkit.io.reading import read_regular_text

    path = Path(path)
    text = read_regular_text(path, "run configuration (JSON)")
    try:
        cfg = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    sc = Schema(path)
    sc.obj(cfg, "(top level)")
    sc.get(cfg, "model", "str")
    sc.get(cfg, "data", "str")
    sc.get(cfg, "in_channels", "int", min=1, max=MAX_CHANNELS, required=finished)
    side = sc.get(cfg, "input_size", "int", min=1, required=finished)
    if side is not None:
        limits.check(f"{path}: field 'input_size'", side * side, "MAX_IMAGE_PIXELS", "pixels")
    num_classes = sc.get(cfg, "num_classes", "int", min=1, required=False)
    classes = sc.get(cfg, "classes", "list", required=False, default=[])
    for i, c in enumerate(classes):
        sc.value(c, "str", f"classes[{i}]")
    if classes and num_classes is not None and len(classes) != num_classes:
        sc.fail("classes", f"{num_classes} names (field 'num_classes')", found=f"{len(classes)}")
    sc.get(cfg, "seed", "int", min=0, max=2**63 - 1, required=not finished)
    sc.get(cfg, "model_kwargs", "object|null", required=False)
    sc.get(cfg, "epochs", "int", min=1, max=MAX_EPOCHS, required=not finished)
    sc.get(cfg, "batch_size", "int", min=1, required=not finished)
    lr = sc.get(cfg, "lr", "number", required=not finished)
    if lr is not None and not lr > 0:
        sc.fail("lr", "a number > 0", lr)
    sc.get(cfg, "optimizer", "str", choices=tuple(_OPT_CLASSES), required=not finished)
    sc.get(cfg, "weight_decay", "number", min=0, required=not finished)
    sc.get(cfg, "scheduler", "str", choices=_SCHEDULERS, required=False)
    sc.get(cfg, "augment", "bool", required=False)
    sc.get(cfg, "tensorboard", "bool", required=False)
    sc.get(cfg, "world_size", "int", min=1, required=False)
    sc.get(cfg, "global_batch_size", "int", min=1, required=False)
    for key in ("test_loss", "train_seconds"):
        sc.get(cfg, key, "number|null", required=False, min=0)
    sc.get(cfg, "test_accuracy", "number|null", required=False, min=0, max=1)
    sc.get(cfg, "parameters", "int", required=False, min=0)
    sc.get(cfg, "diagnosis", "str|null", required=False)
    resumed = sc.get(cfg, "resumed", "list", required=False, default=[])
    for i, r in enumerate(resumed):
        r = sc.obj(r, f"resumed[{i}]")
        sc.get(r, "at_epoch", "int", f"resumed[{i}].at_epoch", min=0)
        sc.get(r, "epochs_before", "int", f"resumed[{i}].epochs_before", min=1)
    return cfg


def _finished_epochs(last: Path) -> int:
    """Epochs recorded in a run's last checkpoint (0 if there is none yet)."""
    from cnnkit.io.checkpoint import CheckpointError, read_header

    if not last.exists():
        return 0
    header, _ = read_header(last)
    train = (header.get("meta") or {}).get("train") or {}
    epoch = train.get("epoch", 0) if isinstance(train, dict) else 0
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= MAX_EPOCHS:
        raise CheckpointError(
            f"{last}: field 'meta.train.epoch': expected an integer from 0 to {MAX_EPOCHS}; "
            f"got {epoch!r}"
        )
    return epoch


def resumed_epochs(
    out: Path, cfg: dict[str, Any], finished: bool, epochs: int | None
) -> tuple[int, list[dict[str, int]]]:
    """The total epochs of a run resumed with ``--epochs epochs`` (None: its own), and
    its ``resumed`` record with this resume added when the total changes.

    An interrupted run continues to any total from what it finished on; a finished run
    (``config.json`` exists) only to a larger one: otherwise FileExistsError saying what
    to type.
    """
    done = _finished_epochs(out / "checkpoints" / "last.safetensors")
    old_epochs = int(cfg["epochs"])
    if finished and (epochs is None or epochs <= done):
        raise FileExistsError(_finished_hint(out, done, epochs))
    epochs = old_epochs if epochs is None else int(epochs)
    if epochs < done:
        raise ValueError(
            f"--resume: --epochs {epochs} is fewer than the {done} epochs {out} already finished"
        )
    resumes = list(cfg.get("resumed", []))
    if epochs != old_epochs:
        resumes.append({"at_epoch": done, "epochs_before": old_epochs})
    return epochs, resumes


# train_run's defaults: a resumed run given another value was asked for something else
_RESUME_DEFAULTS = {
    "model": "lenet5",
    "data": "digits",
    "batch_size": 64,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "seed": 0,
    "scheduler": "none",
    "augment": False,
}


@contextlib.contextmanager
def _from_config(path: Path | None, fields: str) -> Any:
    """Errors about settings read from ``path`` (a resumed run's config.json.running)
    name that file and its fields."""
    try:
        yield
    except (OSError, ValueError, TypeError) as e:
        if path is None:
            raise
        err = type(e) if isinstance(e, (FileNotFoundError, ValueError)) else ValueError
        raise err(f"{path}: field {fields!r}: {e}") from None


def _same_json(path: Path, value: Any) -> bool:
    """Whether the JSON file ``path`` holds ``value``."""
    from cnnkit.io.reading import read_regular_text

    try:
        return json.loads(read_regular_text(path)) == json.loads(json.dumps(value))
    except (OSError, ValueError):
        return False


def _check_resume_options(
    out: Path, cfg_path: Path, cfg: dict[str, Any], typed: bool = False, **given: Any
) -> None:
    """``--resume`` continues a run with its own settings: an option given with another
    value than the run's (``--lr 0.5`` for a run trained with 0.001) is an error naming
    both, not silently ignored. A value equal to the option's default counts as not
    given, unless ``typed`` (the command line says it was typed)."""
    for key, value in given.items():
        default = _RESUME_DEFAULTS[key]
        saved = cfg.get(key, default)
        if (value == default and not typed) or value == saved:
            continue
        flag = "--" + key.replace("_", "-")
        raise ValueError(
            f"--resume: {out} was trained with {flag} {saved!r} ({cfg_path.name}); it cannot "
            f"continue with {flag} {value!r}: leave the option out to continue with the run's "
            "own settings, or start a new run with another --out"
        )


class _Stretch(Callback):
    """On ``--resume`` with another ``--epochs``: the cosine and step schedules are
    recomputed for the new total (stretched), as if the run had been started with it;
    their learning rate for the next epoch is that schedule's value."""

    def __init__(self, epochs: int, scheduler: str) -> None:
        self.epochs, self.kind = epochs, scheduler

    def on_train_begin(self, state: Any) -> None:
        s = state.scheduler
        if s is None or self.kind not in ("cosine", "step"):
            return
        if self.kind == "cosine":
            s.T_max = self.epochs
        else:
            s.milestones = sorted({max(1, self.epochs // 2), max(1, 3 * self.epochs // 4)})
        lrs = s.get_lr() if self.kind == "cosine" else [
            base * s.gamma ** sum(m <= s.last_epoch for m in s.milestones) for base in s.base_lrs
        ]  # fmt: skip
        for group, lr in zip(state.optimizer.param_groups, lrs, strict=False):
            group["lr"] = lr
        s._last_lr = list(lrs)


@data_parallel.abort_on_error  # under mpiexec: a failing rank stops every rank
def train_run(
    out: str | Path,
    model: str = "lenet5",
    data: str = "digits",
    epochs: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
    model_kwargs: dict[str, Any] | None = None,
    verbose: bool = True,
    resume: bool = False,
    scheduler: str = "none",
    augment: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train a zoo model on a data spec and write a complete run directory.

    ``epochs`` defaults to 10 (to the interrupted run's own number with ``resume``).
    ``resume=True`` continues an interrupted run in ``out`` (one with
    ``config.json.running`` and ``checkpoints/last.safetensors`` but no ``config.json``)
    with its own settings, exactly as if it had not been interrupted; a finished run (with
    ``config.json``) continues only to a larger ``epochs`` (its schedule stretched, as
    for an interrupted run given another ``epochs``). ``callbacks`` are
    extra :class:`~cnnkit.train.callbacks.Callback` objects for ``fit``. ``tensorboard=True``
    also writes TensorBoard event files to ``out/tensorboard`` (see
    :class:`~cnnkit.train.tensorboard.TensorBoard`; needs tensorboardX), with the run's
    settings as HParams.

    Returns the run's summary (the content of ``config.json``).

    Started by ``mpiexec -n N``, every rank trains on its shard (global batch ``N x
    batch_size``) and only rank 0 writes the run directory; the other ranks return
    ``{"rank": r, "history": History}`` once training is done (see
    :mod:`cnnkit.train.data_parallel`).

    Raises
    ------
    FileNotFoundError, ValueError, pickle.UnpicklingError
        Bad data (the message names the file); nothing is written to ``out``.
    FileExistsError
        ``out`` is not empty (and neither ``resume`` nor ``overwrite``).
    TrainingError
        The loss became NaN or infinite: ``FAILED.txt`` names the epoch and batch, and
        the checkpoints of the finished epochs are kept.
    """
    from cnnkit import io
    from cnnkit.train.callbacks import CSVLogger, ModelCheckpoint
    from cnnkit.train.diagnosis import diagnose
    from cnnkit.train.loop import evaluate, fit
    from cnnkit.viz.curves import plot_history

    out = Path(out)
    rank, world_size = data_parallel.world()
    if resume and not out.is_dir():
        raise FileNotFoundError(f"--resume: {out} has no run to resume (no such directory)")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory (choose another --out)")
    created = not out.exists()
    # before any data is loaded: one run per directory (rank 0 holds it for all ranks)
    owned = claim(out, takeover=resume or overwrite) if rank == 0 else None
    started = False
    cfg_path = out / "config.json.running"
    try:
        if resume:
            finished = (out / CONFIG).exists()
            if finished:  # a finished run continues only to a larger --epochs
                cfg_path = out / CONFIG
            elif not cfg_path.exists():
                raise FileNotFoundError(
                    f"--resume: {out} has no run to resume ({cfg_path} missing)"
                )
            cfg = read_config(cfg_path, finished=False)
            if optimizer is not None and optimizer != cfg["optimizer"]:
                raise ValueError(
                    f"--resume: {out} was trained with the {_OPT_CLASSES[cfg['optimizer']]} "
                    f"optimizer ({cfg['optimizer']}); it cannot continue with "
                    f"{_OPT_CLASSES.get(optimizer, optimizer)} ({optimizer})"
                )
            _check_resume_options(out, cfg_path, cfg, model=model, data=data,
                                  batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                  seed=seed, scheduler=scheduler, augment=augment)  # fmt: skip
            epochs, resumes = resumed_epochs(out, cfg, finished, epochs)
            model, data = cfg["model"], cfg["data"]
            batch_size, lr, optimizer = cfg["batch_size"], cfg["lr"], cfg["optimizer"]
            weight_decay, seed = cfg["weight_decay"], cfg["seed"]
            scheduler, augment = cfg.get("scheduler", "none"), cfg.get("augment", False)
            model_kwargs = cfg.get("model_kwargs") or {}
            tensorboard = bool(cfg.get("tensorboard", tensorboard))
        elif (
            rank == 0
            and [p for p in out.iterdir() if not p.name.startswith(LOCK)]
            and not overwrite
        ):
            raise FileExistsError(_occupied(out))
        optimizer = optimizer or "adam"
        if epochs is None:
            epochs = 10
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {epochs}")
        backend.manual_seed(seed)
        with _from_config(cfg_path if resume else None, "data"):
            splits = load_data(data, seed=seed)
        if verbose and rank == 0:  # under mpiexec, once (every rank loads the same split)
            print(f"data: {splits.note}", flush=True)
        with _from_config(cfg_path if resume else None, "model, model_kwargs"):
            net = build_model(model, splits, **(model_kwargs or {}))
        opt = make_optimizer(optimizer, net.parameters(), lr, weight_decay)
        sched = make_scheduler(scheduler, opt, epochs)
        train_data: Any = splits.train
        if augment:
            train_data = augmented_loader(splits.train, splits.input_size, splits.in_channels,
                                          batch_size, seed)  # fmt: skip
        config: dict[str, Any] = {
            "model": model,
            "model_kwargs": model_kwargs or {},
            "data": data,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": optimizer,
            "weight_decay": weight_decay,
            "scheduler": scheduler,
            "augment": augment,
            "seed": seed,
            **splits.config_fields(),
        }
        if resume and resumes:
            config["resumed"] = resumes
        if world_size > 1:  # a record of the launch; a resumed run may use another N
            config.update(world_size=world_size, global_batch_size=world_size * batch_size)
        extra = [_Stretch(epochs, scheduler)] if resume else []
        extra += list(callbacks)
        if tensorboard:
            config["tensorboard"] = True
        data_parallel.barrier()  # every rank checked `out` before rank 0 writes to it
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            (out / "FAILED.txt").unlink(missing_ok=True)
            (out / CONFIG).unlink(missing_ok=True)  # an overwritten run is unfinished till the end
            running = out / "config.json.running"
            # a resume that changes nothing leaves the file as it was (should it fail later)
            if not (resume and _same_json(running, config)):
                atomic_write_text(running, json.dumps(config, indent=2))
            if tensorboard:
                from cnnkit.train.tensorboard import tensorboard_callback

                extra.append(tensorboard_callback(out, config, splits.test, fresh=not resume))
        ckpt = ModelCheckpoint(out / "checkpoints", monitor="val_loss")
        # interrupted before its first epoch ended: --resume starts it over, with its settings
        last = ckpt.last_path if resume and ckpt.last_path.exists() else None
        started = True
    finally:
        if not started and owned is not None:
            owned.release()
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()  # only if still empty
    t0 = time.perf_counter()
    try:
        history = fit(
            net,
            train_data,
            splits.val,
            loss=nn.CrossEntropyLoss(),
            optimizer=opt,
            epochs=epochs,
            batch_size=batch_size,
            scheduler=sched,
            callbacks=[ckpt, CSVLogger(out / "history.csv"), *extra],
            verbose=verbose,
            seed=seed,
            resume=last,
        )
        train_seconds = time.perf_counter() - t0
        if rank != 0:  # rank 0 evaluates and writes the run directory
            return {"rank": rank, "history": history}
        result = evaluate(net, splits.test, classes=splits.classes or None)
        verdict = diagnose(history)
        io.save(out / WEIGHTS, net, optimizer=opt, history=history, meta={"config": config})
        history.to_csv(out / "history.csv")
        plot_history(history, out / "curves.png", verdict, title=f"{model} on {data}")
        atomic_write_text(out / "diagnosis.txt", str(verdict) + "\n")
        cm = result.confusion_matrix
        report = (
            f"test loss {result.loss:.4f}\ntest accuracy {result.accuracy:.4f} "
            f"({len(result.targets):,} samples)\n\n{result.report}\n"
            f"confusion matrix (rows: true, columns: predicted)\n{cm}\n"
        )
        atomic_write_text(out / "report.txt", report)
        summary = dict(config)
        summary.update(
            test_loss=result.loss,
            test_accuracy=result.accuracy,
            train_seconds=train_seconds,
            diagnosis=verdict.verdict,
            parameters=sum(p.numel() for p in net.parameters()),
        )
        atomic_write_text(out / CONFIG, json.dumps(summary, indent=2))
        (out / "config.json.running").unlink(missing_ok=True)
    except BaseException as e:
        hint = f"continue with `{resume_command(out)}`\n"
        if ckpt.last_path.exists():
            hint = f"the checkpoints of the finished epochs are in {ckpt.dirpath}; {hint}"
        why = f"training did not finish: {type(e).__name__}: {e}\n{hint}"
        atomic_write_text(out / "FAILED.txt", f"{why}\n{traceback.format_exc()}")
        raise
    finally:
        if owned is not None:
            owned.release()
    summary["diagnosis_text"] = str(verdict)
    summary["report"] = report
    return summary


def resume_command(out: str | Path) -> str:
    """The command line that continues the interrupted run in ``out``."""
    import shlex

    return f"cnnkit train --resume --out {shlex.quote(str(out))}"


def _finished_hint(out: Path, done: int, epochs: int | None) -> str:
    """Why ``--resume`` does not continue the finished run in ``out``, and what does."""
    import shlex

    asked = "" if epochs is None else f" and --epochs {epochs} asks for no more"
    more = max(done, 1) * 2
    return (
        f"--resume: {out} is a finished run ({CONFIG} exists): it trained its {done} "
        f"epochs{asked}; to train it further give a larger total, e.g. `cnnkit train "
        f"--resume --epochs {more} --out {shlex.quote(str(out))}`"
    )


def _free_name(out: Path) -> Path:
    """``runs/x-2`` (or -3, ...): the first sibling of ``out`` that does not exist."""
    k = 2
    while (free := out.with_name(f"{out.name}-{k}")).exists():
        k += 1
    return free


def _occupied(out: Path) -> str:
    """Why ``out`` cannot take a new run, and what to do instead."""
    other = f"choose another --out (e.g. {_free_name(out)})"
    if (out / CONFIG).exists():
        return (
            f"{out} already exists and is not empty: it holds a finished run; train it "
            f"further with `{resume_command(out)} --epochs N` (N: a larger total), or {other}"
        )
    if (out / "config.json.running").exists():
        return (
            f"{out} already exists and is not empty: it holds an interrupted run; continue "
            f"it with `{resume_command(out)}`, or {other}"
        )
    return f"{out} already exists and is not empty; {other}"


def load_run(run: str | Path) -> tuple[dict[str, Any], nn.Module]:
    """The config and trained model of a finished run directory."""
    from cnnkit import io

    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run directory")
    cfg_path = run / CONFIG
    if not (cfg_path.exists() or cfg_path.is_symlink()):  # a link loop is named when read
        why = " (training did not finish: see FAILED.txt)" if (run / "FAILED.txt").exists() else ""
        raise FileNotFoundError(f"{run}: not a finished run directory: no {CONFIG}{why}")
    cfg = read_config(cfg_path, finished=True)
    if not ((run / WEIGHTS).exists() or (run / WEIGHTS).is_symlink()):
        raise FileNotFoundError(f"{run}: no weights file {WEIGHTS}")
    ckpt = io.load(run / WEIGHTS)
    assert ckpt.model is not None
    _check_model_fits(cfg, ckpt.model, cfg_path, run / WEIGHTS)
    return cfg, ckpt.model


def _check_model_fits(cfg: dict[str, Any], model: nn.Module, cfg_path: Path, weights: Path) -> None:
    """The image geometry and class count of ``config.json`` must be those of the model
    in the weights file: one forward pass of a blank image checks both."""
    from cnnkit.autograd import no_grad
    from cnnkit.tensor import Tensor

    c, side = cfg["in_channels"], cfg["input_size"]
    dtype = next((p.dtype for p in model.parameters()), np.dtype(np.float32))
    was_training = model.training
    model.eval()
    try:
        with no_grad(), np.errstate(all="ignore"):
            out = model(Tensor(np.zeros((1, c, side, side), dtype=dtype)))
    except Exception as e:  # the model's own message names the layer and the shapes
        raise ValueError(
            f"{cfg_path}: fields 'in_channels', 'input_size' ({c}x{side}x{side} images) do "
            f"not fit the model in {weights}: {' '.join(str(e).split())}"
        ) from None
    finally:
        model.train(was_training)
    n = cfg.get("num_classes")
    if cfg.get("task") != "detection" and n is not None and isinstance(out, Tensor):
        if out.ndim != 2 or out.shape[1] != n:
            want = out.shape[1] if out.ndim == 2 else f"outputs shaped {tuple(out.shape)[1:]}"
            raise ValueError(
                f"{cfg_path}: field 'num_classes': expected {want} (the outputs of the "
                f"model in {weights}); got {n}"
            )
