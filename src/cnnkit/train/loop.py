"""The training loop: mini-batch SGD with monitoring, evaluation and prediction.

``fit`` is the lecture's recipe: initialise; for each epoch, for each random
mini-batch: forward, loss, backward, step against the averaged gradient; after each
epoch measure training and validation loss. Inference (``predict``) runs forward with
the trained parameters in eval mode without recording a graph.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit import backend, nn
from cnnkit.autograd import no_grad
from cnnkit.data import DataLoader, Dataset, TensorDataset
from cnnkit.optim import SGD, Optimizer
from cnnkit.tensor import Tensor
from cnnkit.train import data_parallel
from cnnkit.train.callbacks import Callback, TrainState
from cnnkit.train.history import History


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


def as_loader(
    data: Any, batch_size: int, shuffle: bool = False, seed: int | None = None
) -> DataLoader:
    """A DataLoader for a DataLoader, a Dataset, or an ``(inputs, targets)`` pair of arrays."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        data = TensorDataset(*(d.array if isinstance(d, Tensor) else np.asarray(d) for d in data))
    if not isinstance(data, Dataset) and not hasattr(data, "__getitem__"):
        raise TypeError(
            "expected a DataLoader, a Dataset or an (inputs, targets) tuple; "
            f"got {type(data).__name__}"
        )
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, seed=seed)


def _task(loss_fn: Any) -> str:
    """What 'accuracy' means for this loss: multiclass, binary (logits/probs) or none."""
    if isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
        return "multiclass"
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        return "binary_logits"
    if isinstance(loss_fn, nn.BCELoss):
        return "binary_probs"
    return "none"


def _correct(out: np.ndarray, target: np.ndarray, task: str) -> int:
    """Number of correct predictions in a batch."""
    if task == "multiclass":
        if target.ndim == out.ndim:  # class probabilities
            target = target.argmax(axis=1)
        return int((out.argmax(axis=1) == target).sum())
    if task == "binary_logits":
        return int(((out > 0) == (target > 0.5)).sum())
    if task == "binary_probs":
        return int(((out > 0.5) == (target > 0.5)).sum())
    return 0


def _count(out: np.ndarray, target: np.ndarray, task: str) -> int:
    """Number of predictions in a batch (samples, or elements for binary tasks)."""
    return out.shape[0] if task == "multiclass" else int(np.asarray(target).size)


def fit(
    model: nn.Module,
    train_data: Any,
    val_data: Any = None,
    *,
    loss: Any = None,
    optimizer: Optimizer | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    shuffle: bool = True,
    scheduler: Any = None,
    callbacks: Sequence[Callback] = (),
    verbose: bool = True,
    seed: int | None = None,
    resume: Any = None,
) -> History:
    """Train ``model`` with mini-batch gradient descent and return the per-epoch history.

    Parameters
    ----------
    model : Module
        Network mapping a batch ``(n, ...)`` to outputs ``(n, ...)``.
    train_data, val_data : DataLoader, Dataset or (inputs, targets)
        Training data (shuffled every epoch when ``shuffle``) and optional validation data.
    loss : Module, optional
        Loss module; default ``nn.CrossEntropyLoss()``.
    optimizer : Optimizer, optional
        Default ``SGD(model.parameters(), lr=0.01, momentum=0.9)``.
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    batch_size : int
        Mini-batch size when the data is not already a DataLoader.
    scheduler : LR scheduler, optional
        Stepped once per epoch (``ReduceLROnPlateau`` with the validation loss, or the
        training loss without validation data).
    callbacks : sequence of Callback
        ``ModelCheckpoint``, ``EarlyStopping``, ``CSVLogger``, ...
    verbose : bool
        Show a tqdm progress bar with the running loss and print an epoch summary.
    seed : int, optional
        Seed for the loader's shuffling when the data is not already a DataLoader.
    resume : str or Path or Checkpoint, optional
        A checkpoint written by ``ModelCheckpoint``: restores weights, optimizer state,
        history, data order and the random generator, and continues after its epoch.

    Notes
    -----
    Started by ``mpiexec -n N`` (N > 1), ``fit`` trains data parallel: each rank takes a
    shard of the data and ``batch_size`` samples per step (global batch ``N x
    batch_size``), gradients are averaged, metrics are reduced over the ranks, and only
    rank 0 shows progress and runs the callbacks (see :mod:`cnnkit.train.data_parallel`).

    Returns
    -------
    History
        ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``lr``, ``time`` per epoch.

    Raises
    ------
    TrainingError
        When the loss becomes NaN or infinite (naming the epoch and batch); checkpoints
        already written are kept.
    """
    if epochs < 1:
        raise ValueError(f"fit: epochs must be >= 1; got {epochs}")
    loader = as_loader(train_data, batch_size, shuffle=shuffle, seed=seed)
    val_loader = as_loader(val_data, max(batch_size, 256)) if val_data is not None else None
    loss_fn = loss if loss is not None else nn.CrossEntropyLoss()
    if optimizer is None:
        optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
    task = _task(loss_fn)
    par = data_parallel.prepare(model, loader)
    if par is not None:
        loader = par.loader
        verbose = verbose and par.rank == 0
        callbacks = callbacks if par.rank == 0 else ()
    state = TrainState(
        model=model,
        optimizer=optimizer,
        loss=loss_fn,
        loader=loader,
        scheduler=scheduler,
        history=History(),
        epochs=epochs,
    )
    if resume is not None:
        _restore(state, resume)
    step_model = model if par is None else par.start()
    if par is not None and verbose:
        print(par.describe(), flush=True)
    for cb in callbacks:
        cb.on_train_begin(state)
    try:
        from tqdm.auto import tqdm

        while state.epoch < epochs and not state.stop:
            state.epoch += 1
            model.train()
            if par is not None:
                par.set_epoch(state.epoch)
            t0 = time.perf_counter()
            total = 0.0
            seen = correct = counted = 0
            bar = tqdm(
                loader,
                desc=f"epoch {state.epoch}/{epochs}",
                disable=not verbose,
                leave=False,
                dynamic_ncols=True,
            )
            for b, (x, y) in enumerate(bar, 1):
                out = step_model(x)
                l = loss_fn(out, y)
                value = float(l.item())
                if not math.isfinite(value):
                    raise TrainingError(_nonfinite_message(value, x, y, state.epoch, b, loader,
                                                           optimizer, model))  # fmt: skip
                optimizer.zero_grad()
                l.backward()
                optimizer.step()
                n = x.shape[0]
                total += value * n
                seen += n
                if task != "none":
                    correct += _correct(out.array, y.array, task)
                    counted += _count(out.array, y.array, task)
                if verbose and (b % 5 == 0 or b == len(loader)):
                    bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
            bar.close()
            if par is not None:
                total, seen, correct, counted = par.sum(total, seen, correct, counted)
            if seen == 0:
                raise ValueError(
                    f"fit: the training loader yielded no batch in epoch {state.epoch} "
                    f"({_describe_loader(loader)}); with drop_last=True a data set smaller "
                    "than one batch gives none: lower batch_size or set drop_last=False"
                )
            record: dict[str, Any] = {"epoch": state.epoch, "train_loss": total / max(seen, 1)}
            if task != "none":
                record["train_acc"] = correct / max(counted, 1)
            if val_loader is not None and par is not None:
                val_loss, val_acc = par.evaluate(model, val_loader, loss_fn, batch_size)
                record["val_loss"] = val_loss
                if val_acc is not None:
                    record["val_acc"] = val_acc
            elif val_loader is not None:
                res = evaluate(model, val_loader, loss=loss_fn, report=False)
                record["val_loss"] = res.loss
                if res.accuracy is not None:
                    record["val_acc"] = res.accuracy
            record["lr"] = float(optimizer.param_groups[0]["lr"])
            record["time"] = time.perf_counter() - t0
            if scheduler is not None:
                if type(scheduler).__name__ == "ReduceLROnPlateau":
                    scheduler.step(record.get("val_loss", record["train_loss"]))
                else:
                    scheduler.step()
            state.history.append(record)
            if verbose:
                print(_epoch_line(record, epochs), flush=True)
            for cb in callbacks:
                cb.on_epoch_end(state, record)
            if par is not None:
                state.stop = par.agree(state.stop)
    finally:
        for cb in callbacks:
            cb.on_train_end(state)
        if par is not None:
            par.close()
    return state.history


def _describe_loader(loader: Any) -> str:
    """'N samples, batch_size B, drop_last D' as far as the loader tells."""
    parts = []
    ds = getattr(loader, "dataset", None)
    if ds is not None:
        with contextlib.suppress(TypeError):
            parts.append(f"{len(ds):,} samples")
    for key in ("batch_size", "drop_last"):
        if hasattr(loader, key):
            parts.append(f"{key}={getattr(loader, key)}")
    return ", ".join(parts) or type(loader).__name__


def _bad_values(a: Any) -> str:
    """'' or 'NaN' / 'inf' / 'NaN and inf' for the floating values of ``a``."""
    arr = np.asarray(a.array if isinstance(a, Tensor) else a)
    if arr.dtype.kind not in "fc":
        return ""
    kinds = []
    if np.isnan(arr).any():
        kinds.append("NaN")
    if np.isinf(arr).any():
        kinds.append("inf")
    return " and ".join(kinds)


def _nonfinite_message(
    value: float, x: Any, y: Any, epoch: int, b: int, loader: Any, optimizer: Any, model: Any
) -> str:
    """Why the loss is not finite: bad inputs/targets, bad weights, or (else) divergence."""
    where = f"fit: the loss became {value} at epoch {epoch}, batch {b} of {len(loader)}"
    tail = "; checkpoints already written are kept"
    bad = [f"the inputs hold {k}" for k in [_bad_values(x)] if k]
    bad += [f"the targets hold {k}" for k in [_bad_values(y)] if k]
    if bad:
        return f"{where}: {' and '.join(bad)} (clean the data set){tail}"
    weights = [n for n, p in model.named_parameters() if _bad_values(p)]
    if weights and b == 1 and epoch == 1:
        return f"{where}: the model's parameters hold NaN/inf ({', '.join(weights[:3])}){tail}"
    return (
        f"{where}; the inputs and targets are finite, so training diverged: lower the "
        f"learning rate (lr={optimizer.param_groups[0]['lr']:g}){tail}"
    )


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One-line epoch summary."""
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record['train_loss']:.4f}"]
    if "train_acc" in record:
        parts.append(f"acc {record['train_acc']:.2%}")
    if "val_loss" in record:
        parts.append(f"val_loss {record['val_loss']:.4f}")
    if "val_acc" in record:
        parts.append(f"val_acc {record['val_acc']:.2%}")
    parts.append(f"{record['time']:.1f}s")
    return " | ".join(parts)


def _restore(state: TrainState, resume: Any) -> None:
    """Load a ModelCheckpoint file into the training state."""
    from cnnkit.io import Checkpoint, load

    ckpt = resume if isinstance(resume, Checkpoint) else load(resume, model=state.model)
    from cnnkit.io.checkpoint import CheckpointError

    if ckpt.optimizer_state is None and state.optimizer is not None:
        # continuing without the momentum/moment buffers would silently change the run
        raise CheckpointError(
            f"{ckpt.path}: field 'optimizer': expected the optimizer state of a training "
            f"checkpoint ({type(state.optimizer).__name__}); got none"
        )
    if ckpt.optimizer_state is not None:
        ckpt.restore_optimizer(state.optimizer)  # another optimizer class: an error naming both
    state.history = ckpt.history if ckpt.history is not None else History()
    from cnnkit.io.schema import Schema

    sc = Schema(ckpt.path, CheckpointError)
    train = sc.get(ckpt.meta, "train", "object", "meta.train", required=False, default={})
    state.epoch = sc.get(train, "epoch", "int", "meta.train.epoch", required=False,
                         default=len(state.history), min=0)  # fmt: skip
    parts: list[tuple[str, Any]] = [("rng", backend.set_rng_state)]
    if hasattr(state.loader, "load_state_dict"):
        parts.append(("loader", state.loader.load_state_dict))
    if state.scheduler is not None:
        parts.append(("scheduler", state.scheduler.load_state_dict))
    for key, restore in parts:
        if key not in train:
            continue
        value = sc.get(train, key, "object", f"meta.train.{key}")
        try:
            restore(value)
        except Exception as e:  # the state comes from the file: any failure is the file's
            raise CheckpointError(
                f"{ckpt.path}: field 'meta.train.{key}': cannot restore it "
                f"({type(e).__name__}: {e})"
            ) from None


@dataclass
class EvalResult:
    """Loss, accuracy and (for classification) per-class figures on a data set."""

    loss: float
    accuracy: float | None
    predictions: np.ndarray
    targets: np.ndarray
    confusion_matrix: np.ndarray | None = None
    report: str = ""
    classes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"loss {self.loss:.4f}"
        if self.accuracy is not None:
            head += f", accuracy {self.accuracy:.2%} ({len(self.targets):,} samples)"
        return head + ("\n" + self.report if self.report else "")


def evaluate(
    model: nn.Module,
    data: Any,
    loss: Any = None,
    batch_size: int = 256,
    report: bool = True,
    classes: Sequence[str] | None = None,
) -> EvalResult:
    """Loss and accuracy of ``model`` on ``data`` (eval mode, no graph).

    With ``report=True`` and a classification loss, also scikit-learn's classification
    report (precision, recall, F1 per class) and the confusion matrix.
    """
    loader = as_loader(data, batch_size)
    loss_fn = loss if loss is not None else nn.CrossEntropyLoss()
    task = _task(loss_fn)
    was_training = model.training
    model.eval()
    total = 0.0
    seen = correct = counted = 0
    preds: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    try:
        with no_grad():
            for x, y in loader:
                out = model(x)
                total += float(loss_fn(out, y).item()) * x.shape[0]
                seen += x.shape[0]
                if task != "none":
                    correct += _correct(out.array, y.array, task)
                    counted += _count(out.array, y.array, task)
                if task == "multiclass":
                    preds.append(out.array.argmax(axis=1))
                    targets.append(y.array if y.ndim == 1 else y.array.argmax(axis=1))
                elif task.startswith("binary"):
                    thr = 0.0 if task == "binary_logits" else 0.5
                    preds.append((out.array > thr).astype(np.int64).ravel())
                    targets.append((y.array > 0.5).astype(np.int64).ravel())
                elif isinstance(y, Tensor):  # detection targets stay a list of dicts
                    preds.append(out.array)
                    targets.append(y.array)
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate: the data set is empty")
    p = np.concatenate(preds) if preds else np.empty(0)
    t = np.concatenate(targets) if targets else np.empty(0)
    result = EvalResult(
        loss=total / seen,
        accuracy=correct / counted if task != "none" else None,
        predictions=p,
        targets=t,
    )
    if report and task != "none":
        from sklearn.metrics import classification_report, confusion_matrix

        labels = sorted(set(np.unique(t).tolist()) | set(np.unique(p).tolist()))
        names = list(classes) if classes is not None else [str(i) for i in labels]
        if classes is not None:
            labels = list(range(len(names)))
        result.confusion_matrix = confusion_matrix(t, p, labels=labels)
        result.report = classification_report(
            t, p, labels=labels, target_names=names, digits=4, zero_division=0
        )
        result.classes = names
    return result


def predict(
    model: nn.Module,
    inputs: Any,
    batch_size: int = 256,
    probabilities: bool = True,
) -> np.ndarray:
    """Outputs of ``model`` for ``inputs`` in batches (eval mode, no graph).

    Parameters
    ----------
    inputs : array, Tensor, Dataset or DataLoader
        ``(n, ...)`` inputs (a Dataset's targets are ignored).
    probabilities : bool
        Apply softmax over dim 1 to the outputs (for a classifier's logits).

    Returns
    -------
    np.ndarray, shape (n, num_outputs)
    """
    if isinstance(inputs, (np.ndarray, Tensor, list)):
        arr = inputs.array if isinstance(inputs, Tensor) else np.asarray(inputs)
        batches: Iterable[Any] = (
            Tensor(arr[i : i + batch_size]) for i in range(0, len(arr), batch_size)
        )
    else:
        batches = (x for x, _ in as_loader(inputs, batch_size))
    was_training = model.training
    model.eval()
    outs = []
    try:
        with no_grad():
            for x in batches:
                out = model(x)
                if probabilities:
                    out = out.softmax(dim=1)
                outs.append(out.array)
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.empty((0,))
