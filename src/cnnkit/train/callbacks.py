"""Callbacks for :func:`cnnkit.train.fit`: checkpoints, early stopping, CSV logging, TensorBoard."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit import backend
from cnnkit.train.history import History


@dataclass
class TrainState:
    """What a callback can see and change during ``fit`` (set ``stop`` to end training)."""

    model: Any
    optimizer: Any
    loss: Any
    loader: Any
    scheduler: Any = None
    history: History = field(default_factory=History)
    epochs: int = 0
    epoch: int = 0
    stop: bool = False

    def resume_meta(self) -> dict[str, Any]:
        """Everything beyond weights and optimizer state needed to continue exactly."""
        meta: dict[str, Any] = {"epoch": self.epoch, "rng": backend.get_rng_state()}
        if hasattr(self.loader, "state_dict"):
            meta["loader"] = self.loader.state_dict()
        if self.scheduler is not None and hasattr(self.scheduler, "state_dict"):
            meta["scheduler"] = self.scheduler.state_dict()
        return meta


class Callback:
    """Hooks called by ``fit``; override the ones you need."""

    def on_train_begin(self, state: TrainState) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        """Called after every epoch with that epoch's metrics."""

    def on_train_end(self, state: TrainState) -> None:
        """Called once at the end, also when training stops with an error."""


def _better(value: float, best: float, mode: str, min_delta: float) -> bool:
    """Whether ``value`` improves on ``best`` by more than ``min_delta``."""
    if not math.isfinite(value):
        return False
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta


def _check_mode(mode: str, where: str) -> None:
    """Validate a min/max mode argument."""
    if mode not in ("min", "max"):
        raise ValueError(f"{where}: mode must be 'min' or 'max'; got {mode!r}")


def _monitored(record: dict[str, Any], monitor: str, where: str) -> float:
    """The monitored metric of an epoch, falling back from val_* to train_*."""
    if monitor in record:
        return float(record[monitor])
    fallback = monitor.replace("val_", "train_")
    if fallback in record:
        return float(record[fallback])
    raise ValueError(f"{where}: metric {monitor!r} is not recorded; have {sorted(record)}")


class ModelCheckpoint(Callback):
    """Write ``last.safetensors`` after every epoch and ``best.safetensors`` on improvement.

    Each file holds weights, optimizer state, history, the data order and the random
    generator state, so ``fit(..., resume=path)`` continues exactly. Files are written
    atomically: a crash keeps the previous good checkpoint.

    Parameters
    ----------
    dirpath : str or Path
        Folder for the checkpoint files.
    monitor : str
        Metric deciding "best" (``val_loss`` by default; ``train_loss`` when no
        validation data is given).
    mode : {"min", "max"}
        Whether lower or higher is better.
    """

    def __init__(
        self,
        dirpath: str | Path,
        monitor: str = "val_loss",
        mode: str = "min",
        save_best: bool = True,
        save_last: bool = True,
        meta: dict[str, Any] | None = None,
    ) -> None:
        _check_mode(mode, "ModelCheckpoint")
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.mode = mode
        self.save_best = save_best
        self.save_last = save_last
        self.meta = dict(meta or {})
        self.best = math.inf if mode == "min" else -math.inf

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.safetensors"

    @property
    def best_path(self) -> Path:
        return self.dirpath / "best.safetensors"

    def on_train_begin(self, state: TrainState) -> None:
        for rec in state.history:  # resumed run: remember the best so far
            try:
                v = _monitored(rec, self.monitor, "ModelCheckpoint")
            except ValueError:
                continue
            if _better(v, self.best, self.mode, 0.0):
                self.best = v

    def _save(self, path: Path, state: TrainState) -> None:
        from cnnkit.io import save

        meta = dict(self.meta)
        meta["train"] = state.resume_meta()
        save(path, state.model, optimizer=state.optimizer, history=state.history, meta=meta)

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        if self.save_last:
            self._save(self.last_path, state)
        if self.save_best:
            value = _monitored(record, self.monitor, "ModelCheckpoint")
            if _better(value, self.best, self.mode, 0.0):
                self.best = value
                self._save(self.best_path, state)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` the model gets the weights of its best epoch back.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "min",
        restore_best_weights: bool = False,
    ) -> None:
        _check_mode(mode, "EarlyStopping")
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0; got {patience}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.restore_best_weights = restore_best_weights
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0
        self.best_epoch = 0
        self.stopped_epoch = 0
        self._best_state: dict[str, Any] | None = None

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        value = _monitored(record, self.monitor, "EarlyStopping")
        if _better(value, self.best, self.mode, self.min_delta):
            self.best = value
            self.best_epoch = state.epoch
            self.wait = 0
            if self.restore_best_weights:
                self._best_state = {
                    k: copy.deepcopy(v.numpy()) for k, v in state.model.state_dict().items()
                }
        else:
            self.wait += 1
            if self.wait > self.patience:
                state.stop = True
                self.stopped_epoch = state.epoch

    def on_train_end(self, state: TrainState) -> None:
        if self.restore_best_weights and self._best_state is not None and self.stopped_epoch:
            state.model.load_state_dict(self._best_state)


class CSVLogger(Callback):
    """Rewrite the history as CSV after every epoch (atomically)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        state.history.to_csv(self.path)


def __getattr__(name: str) -> Any:
    """``TensorBoard`` lives in :mod:`cnnkit.train.tensorboard` (it imports this module)."""
    if name == "TensorBoard":
        from cnnkit.train.tensorboard import TensorBoard

        return TensorBoard
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
