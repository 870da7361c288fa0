"""Reading the loss curves: over-fitting, under-fitting, divergence, convergence.

The lecture's rule: a big gap between training and validation loss means
over-fitting (regularise: dropout, weight decay, more data); no gap with a high loss
means under-fitting (add capacity); a loss that grows or becomes NaN means the step
size is too large; a training loss still falling steeply means more epochs.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from cnnkit.train.history import History

VERDICTS = ("diverging", "overfitting", "underfitting", "not converged", "good fit")


@dataclass
class Diagnosis:
    """A verdict, a one-sentence explanation, and the figures behind it."""

    verdict: str
    explanation: str
    figures: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        figs = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.figures.items()
        )
        return f"{self.verdict}: {self.explanation}" + (f" ({figs})" if figs else "")


def _trend(values: list[float], window: int) -> float:
    """Mean relative change per epoch over the last ``window`` epochs (negative = falling)."""
    tail = values[-(window + 1) :]
    if len(tail) < 2 or tail[0] == 0:
        return 0.0
    return (tail[-1] - tail[0]) / abs(tail[0]) / (len(tail) - 1)


def diagnose(
    history: History,
    gap_tolerance: float = 0.25,
    acc_gap_tolerance: float = 0.08,
    plateau: float = 0.02,
    underfit_acc: float = 0.9,
    underfit_loss_ratio: float = 0.5,
) -> Diagnosis:
    """Classify a training run from its per-epoch losses (and accuracies if recorded).

    Parameters
    ----------
    history : History
        At least one epoch with ``train_loss``; ``val_loss``/accuracies are used if present.
    gap_tolerance : float
        Relative generalisation gap ``(val - train) / val`` above which the run over-fits.
    acc_gap_tolerance : float
        Train-minus-validation accuracy above which the run over-fits.
    plateau : float
        Relative per-epoch change of the training loss below which it counts as flat.
    underfit_acc : float
        Final training accuracy below which a flat, gap-free run under-fits.
    underfit_loss_ratio : float
        Without accuracies: a flat run whose final training loss is still above this
        fraction of its first-epoch loss under-fits.

    Returns
    -------
    Diagnosis
        ``verdict`` is one of ``diverging``, ``overfitting``, ``underfitting``,
        ``not converged``, ``good fit``.
    """
    if len(history) == 0:
        raise ValueError("diagnose: the history is empty (train for at least one epoch)")
    train = history["train_loss"]
    n = len(train)
    window = max(1, min(3, n // 3 if n >= 3 else n - 1))
    figs: dict[str, Any] = {"epochs": n, "final_train_loss": train[-1]}

    best_train = min((v for v in train if math.isfinite(v)), default=math.nan)
    if not all(math.isfinite(v) for v in train) or not math.isfinite(best_train):
        bad = next(i for i, v in enumerate(train) if not math.isfinite(v))
        figs["first_bad_epoch"] = int(history.records[bad].get("epoch", bad + 1))
        return Diagnosis(
            "diverging",
            f"the training loss became non-finite at epoch {figs['first_bad_epoch']}; "
            "lower the learning rate",
            figs,
        )
    if n >= 2 and train[-1] > max(train[0], 1e-12) * 1.1 and train[-1] > best_train * 1.5:
        figs["first_train_loss"] = train[0]
        figs["best_train_loss"] = best_train
        return Diagnosis(
            "diverging",
            f"the training loss rose from {train[0]:.4g} to {train[-1]:.4g}; "
            "the learning rate is too large",
            figs,
        )

    trend = _trend(train, window)
    figs["train_trend_per_epoch"] = trend
    has_val = "val_loss" in history
    has_acc = "train_acc" in history
    if has_acc and n >= 3:
        # A step size far too large often ends without NaN: the first steps blow the
        # weights up, the ReLUs die and the network collapses to a (near) constant output.
        # The accuracy then never moves and the loss sits near chance level, jittering as
        # the output biases overshoot. That is no lack of capacity, and raising the
        # learning rate (the underfitting advice) would make it worse. A learning rate
        # that is far too small also learns nothing, but its loss falls smoothly.
        acc_hist = history["train_acc"]
        gain = max(acc_hist) - acc_hist[0]
        blew_up = train[0] > 2 * statistics.median(train[1:])
        rise = max((train[i] - train[i - 1]) / max(train[i - 1], 1e-12) for i in range(2, n))
        if gain < 0.05 and max(acc_hist) < 0.5 and (blew_up or rise > 0.02):
            figs.update(accuracy_gain=gain, max_epoch_rise=rise, final_train_acc=acc_hist[-1])
            how = (
                f"the first epoch's loss ({train[0]:.4g}) blew up"
                if blew_up
                else f"the training loss jumps about (up to {rise:.1%} in an epoch)"
            )
            return Diagnosis(
                "diverging",
                f"{how} and the training accuracy never rose above {max(acc_hist):.1%}: "
                "the steps overshoot and the network has collapsed (dead units); "
                "lower the learning rate",
                figs,
            )
    if has_val:
        val = history["val_loss"]
        gap = val[-1] - train[-1]
        rel_gap = gap / abs(val[-1]) if val[-1] else 0.0
        best_val_epoch = min(range(n), key=lambda i: val[i] if math.isfinite(val[i]) else math.inf)
        val_rise = (val[-1] - val[best_val_epoch]) / abs(val[best_val_epoch] or 1.0)
        figs.update(
            final_val_loss=val[-1],
            gap=gap,
            relative_gap=rel_gap,
            best_val_epoch=best_val_epoch + 1,
            val_rise_since_best=val_rise,
        )
        acc_gap = math.nan
        if has_acc and "val_acc" in history:
            acc_gap = history["train_acc"][-1] - history["val_acc"][-1]
            figs["accuracy_gap"] = acc_gap
        # a gap must also be material against the scale of the problem: 5 % of the first
        # epoch's loss (0.12 nats for 10 classes), so a well-trained run's 0.03 is no alarm
        min_gap = max(0.02, 0.05 * abs(train[0]))
        figs["material_gap"] = min_gap
        if (rel_gap > gap_tolerance and gap > min_gap) or (
            math.isfinite(acc_gap) and acc_gap > acc_gap_tolerance
        ):
            why = (
                f"validation loss {val[-1]:.4g} is {rel_gap:.0%} above training loss "
                f"{train[-1]:.4g}"
            )
            if math.isfinite(acc_gap) and acc_gap > acc_gap_tolerance:
                why = f"training accuracy is {acc_gap:.1%} above validation accuracy"
            return Diagnosis(
                "overfitting",
                f"{why}: the model memorises the training set; add regularisation "
                "(dropout, weight decay, augmentation) or more data",
                figs,
            )
        if val_rise > 0.1 and best_val_epoch < n - 1 and trend < 0:
            return Diagnosis(
                "overfitting",
                f"validation loss rose {val_rise:.0%} since epoch {best_val_epoch + 1} while "
                "training loss kept falling; stop earlier or regularise",
                figs,
            )

    if n < 3:  # one or two epochs show no trend: nothing to call a plateau yet
        return Diagnosis(
            "not converged",
            f"only {n} epoch{'s' if n > 1 else ''}: too few to judge a trend; train for more "
            "epochs",
            figs,
        )
    flat = abs(trend) < plateau
    if has_acc:
        acc = history["train_acc"][-1]
        figs["final_train_acc"] = acc
        high = acc < underfit_acc
        level = f"training accuracy {acc:.1%}"
    else:
        ratio = train[-1] / train[0] if train[0] else 1.0
        figs["loss_ratio_to_first_epoch"] = ratio
        high = ratio > underfit_loss_ratio
        level = f"training loss {train[-1]:.4g} ({ratio:.0%} of the first epoch's)"
    if high and flat:
        return Diagnosis(
            "underfitting",
            f"{level} has plateaued with no generalisation gap: the model lacks capacity; "
            "add layers or filters, or train longer with a larger learning rate",
            figs,
        )
    # a falling loss at ~100% training accuracy is polishing, not a run cut short
    nearly_perfect = has_acc and history["train_acc"][-1] >= 0.99
    if trend < -plateau * 2.5 and not nearly_perfect:
        return Diagnosis(
            "not converged",
            f"the training loss is still falling {-trend:.1%} per epoch; train for more epochs",
            figs,
        )
    if high:
        return Diagnosis(
            "underfitting",
            f"{level} is still poor and improving only slowly: add capacity or raise "
            "the learning rate",
            figs,
        )
    if has_val:
        why = (
            f"training loss {train[-1]:.3g} and validation loss {figs['final_val_loss']:.3g} "
            f"are low and close together (gap {figs['gap']:.3g})"
        )
    else:
        why = f"the training loss {train[-1]:.3g} is low and no longer falling fast"
    return Diagnosis("good fit", why, figs)
