"""Reading the loss curves: over-fitting, under-fitting, divergence, convergence.

The lecture's slide: a *big* gap between training and validation means over-fitting
(regularise: dropout, weight decay, augmentation, more data); *no* gap with a high
error means under-fitting (add capacity); a *small* gap at a low error is the ideal.
Two more cases sit beside it: a loss that grows or becomes NaN means the steps are too
large (diverging), and a training loss that is still clearly falling means the run was
cut short (not converged).

Single epochs are noisy (a validation set of a few hundred images moves its loss by a
few per cent from one epoch to the next), so every measure here is taken over several
epochs and compared with the epoch-to-epoch noise:

* the **gap**: training minus validation accuracy and validation minus training loss,
  each averaged over the last ``window`` epochs; the loss gap is judged against the
  loss scale of the problem (the first epoch's loss, near chance level), not against
  the training loss (which goes to 0 on an easy problem, making any ratio huge);
* the **validation trend**: the lowest validation loss of the last ``patience`` epochs
  (so every one of them has risen: one or two noisy epochs do not count) against its
  best value, which must lie at least ``patience`` epochs back; the rise must exceed
  ``noise_factor`` times the noise and 5 % of the best value;
* whether training **still improves**: a least-squares line through the logarithm of
  the training loss over the last ``max(5, n // 3)`` epochs (a loss falling
  exponentially is straight there, so a short steep run is not mistaken for noise); it
  improves when the line falls faster than ``plateau`` per epoch and its slope is more
  than ``noise_factor`` standard errors below zero (the scatter around the line).

The noise of the validation loss is estimated over the second half of the run from its
differences,
which a smooth trend barely touches: for independent noise of standard deviation ``s``,
``x[i+1] - x[i]`` (less its median, the local slope) has standard deviation ``sqrt(2) s``
and ``x[i+1] - 2 x[i] + x[i-1]`` has ``sqrt(6) s``; the median absolute value of a
normal variable is 0.6745 times its standard deviation. The larger of the two estimates
is used (both are rough on 15 epochs). The best validation epoch is the minimum of a
noisy curve, so it is compared as the mean of itself and its two neighbours.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from cnnkit.train.history import History

VERDICTS = ("diverging", "overfitting", "underfitting", "not converged", "good fit")

ADVICE = {
    "diverging": "lower the learning rate (by 3-10x) or clip the gradients",
    "overfitting": (
        "add regularisation (dropout, weight decay, augmentation), get more data, or stop "
        "at the best validation epoch (a run directory keeps it in checkpoints/best.safetensors)"
    ),
    "underfitting": (
        "add capacity (more filters or layers), train longer, or raise the learning rate"
    ),
    "not converged": "train for more epochs (or with a larger learning rate)",
    "good fit": "nothing to fix; more data or a larger model may still gain a little",
}


@dataclass
class Diagnosis:
    """A verdict, a sentence with the figures behind it, and advice.

    Attributes
    ----------
    verdict : str
        One of :data:`VERDICTS`.
    explanation : str
        The evidence, then the advice (``"<evidence>; <advice>"``).
    figures : dict
        The measures the verdict was drawn from (named as in the module docstring).
    advice : str
        What to do about it (also the tail of ``explanation``).
    """

    verdict: str
    explanation: str
    figures: dict[str, Any] = field(default_factory=dict)
    advice: str = ""

    def __str__(self) -> str:
        return f"{self.verdict}: {self.explanation}"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def noise_level(values: list[float], relative: bool = False) -> float:
    """Epoch-to-epoch noise (a standard deviation) of a curve, from the first and second
    differences of its second half (at least 5 epochs of it); 0.0 with fewer than 3 values.

    Parameters
    ----------
    values : list of float
        One value per epoch.
    relative : bool
        Measure on the logarithm of the (positive) values: the noise as a fraction of the
        level. A loss falling exponentially is a straight line there, so the steep start
        of a short run is not mistaken for noise.

    Returns
    -------
    float
        The larger of ``median(|d - median(d)|) / (0.6745 * sqrt(2))`` with
        ``d = x[i+1] - x[i]`` and ``median(|x[i+1] - 2 x[i] + x[i-1]|) / (0.6745 * sqrt(6))``.
    """
    tail = [v for v in values[-max(5, len(values) // 2) :] if math.isfinite(v)]
    if relative:
        tail = [math.log(v) for v in tail if v > 0]
    if len(tail) < 3:
        return 0.0
    d1 = [tail[i + 1] - tail[i] for i in range(len(tail) - 1)]
    mid = statistics.median(d1)
    from_d1 = statistics.median(abs(d - mid) for d in d1) / (0.6745 * math.sqrt(2))
    d2 = [abs(tail[i + 1] - 2 * tail[i] + tail[i - 1]) for i in range(1, len(tail) - 1)]
    from_d2 = statistics.median(d2) / (0.6745 * math.sqrt(6))
    return max(from_d1, from_d2)


def _slope(values: list[float]) -> float:
    """Least-squares slope of ``values`` against 0, 1, 2, ... (change per epoch)."""
    m = len(values)
    if m < 2:
        return 0.0
    xbar = (m - 1) / 2
    ybar = _mean(values)
    num = sum((i - xbar) * (v - ybar) for i, v in enumerate(values))
    return num / sum((i - xbar) ** 2 for i in range(m))


def _log_trend(values: list[float]) -> tuple[float, float]:
    """Least-squares slope of ``log(values)`` per epoch, and its t statistic (slope over
    its standard error; -inf for a perfect fall, 0.0 with under 3 positive values)."""
    ys = [math.log(v) for v in values if v > 0 and math.isfinite(v)]
    m = len(ys)
    if m < 2:
        return 0.0, 0.0
    slope = _slope(ys)
    if m < 3:
        return slope, 0.0
    xbar, ybar = (m - 1) / 2, _mean(ys)
    resid = [y - ybar - slope * (i - xbar) for i, y in enumerate(ys)]
    s2 = sum(r * r for r in resid) / (m - 2)
    se = math.sqrt(s2 / sum((i - xbar) ** 2 for i in range(m)))
    if se == 0:
        return slope, -math.inf if slope < 0 else (math.inf if slope > 0 else 0.0)
    return slope, slope / se


def _times(a: float, b: float) -> str:
    """How ``a`` compares with ``b`` in words whose arithmetic is right."""
    if b <= 0:
        return "above"
    r = a / b
    if r >= 9.95:
        return f"{r:.0f} times"
    if r >= 1.995:
        return f"{r:.1f} times"
    return f"{r - 1:.0%} above" if r >= 1 else f"{1 - r:.0%} below"


def _pct(v: float) -> float:
    """An accuracy as percent rounded to 0.1, so sums of shown numbers add up."""
    return round(100 * v, 1)


def _gap_points(train_pct: float, val_pct: float) -> str:
    """'a gap of 2.7 points' / 'no gap: validation 2.2 points higher' (percent inputs)."""
    gap = round(train_pct - val_pct, 1)
    if gap > 0:
        return f"a gap of {gap:.1f} points"
    if gap == 0:
        return "no gap"
    return f"no gap: validation {-gap:.1f} points higher"


def _sig(v: float) -> float:
    """A loss rounded to 3 significant digits (the value shown in sentences)."""
    return float(f"{v:.3g}")


def diagnose(
    history: History,
    window: int = 3,
    patience: int = 3,
    noise_factor: float = 2.5,
    acc_gap_big: float = 0.05,
    loss_gap_big: float = 0.1,
    plateau: float = 0.02,
    underfit_acc: float = 0.9,
    underfit_loss_ratio: float = 0.5,
) -> Diagnosis:
    """Classify a training run from its per-epoch losses (and accuracies if recorded).

    Parameters
    ----------
    history : History
        At least one epoch with ``train_loss``; ``val_loss``, ``train_acc`` and
        ``val_acc`` are used where present.
    window : int
        Epochs averaged for the final levels and gaps (the last ``window``).
    patience : int
        The validation loss must have had its best value at least this many epochs
        ago, and have stayed above it, before a rise counts.
    noise_factor : float
        A rise or fall counts only beyond this many times the curve's epoch-to-epoch
        noise (see :func:`noise_level`).
    acc_gap_big : float
        Training-minus-validation accuracy (a fraction) above which the gap is big.
    loss_gap_big : float
        Validation-minus-training loss, as a fraction of the first epoch's loss, above
        which the gap is big.
    plateau : float
        Relative fall of the training loss per epoch below which training has stopped
        improving.
    underfit_acc : float
        Training accuracy below which the error is high (with accuracies).
    underfit_loss_ratio : float
        Without accuracies: a final training loss above this fraction of the first
        epoch's loss is high.

    Returns
    -------
    Diagnosis
        ``verdict`` is one of ``diverging``, ``overfitting``, ``underfitting``,
        ``not converged``, ``good fit``; ``explanation`` a sentence with its numbers and
        the advice.

    Raises
    ------
    ValueError
        An empty history, or a history without ``train_loss``.
    """
    if len(history) == 0:
        raise ValueError("diagnose: the history is empty (train for at least one epoch)")
    if "train_loss" not in history and not any("train_loss" in r for r in history.records):
        raise ValueError(f"diagnose: the history has no train_loss column ({history.columns})")
    if window < 1 or patience < 1:
        raise ValueError(f"diagnose: window and patience must be >= 1; got {window}, {patience}")
    train = history["train_loss"]
    n = len(train)
    epoch_no = [int(r.get("epoch", i + 1)) for i, r in enumerate(history.records)]
    figs: dict[str, Any] = {"epochs": n, "final_train_loss": train[-1]}

    def verdict(name: str, evidence: str) -> Diagnosis:
        return Diagnosis(name, f"{evidence}; {ADVICE[name]}", figs, ADVICE[name])

    # 1. diverging: a non-finite loss, a training loss that climbs, or a collapsed network
    for key in ("train_loss", "val_loss"):
        col = history[key] if key in history else []
        bad = [i for i, v in enumerate(col) if not math.isfinite(v)]
        if key == "val_loss" and bad and bad[-1] != n - 1:
            bad = []  # a lone NaN validation epoch that recovered is not divergence
        if bad:
            figs["first_bad_epoch"] = epoch_no[bad[0]]
            what = "training" if key == "train_loss" else "validation"
            return verdict(
                "diverging", f"the {what} loss became non-finite at epoch {epoch_no[bad[0]]}"
            )
    scale = max(train[0], history["val_loss"][0] if "val_loss" in history else 0.0)
    scale = scale if scale > 0 else 1.0
    figs["loss_scale"] = scale
    noise_train = noise_level(train)
    best_t = min(range(n), key=train.__getitem__)
    if n >= 2 and train[-1] > train[0] * 1.1 and train[-1] > train[best_t] * 1.5:
        figs.update(first_train_loss=train[0], best_train_loss=train[best_t])
        return verdict(
            "diverging",
            f"the training loss rose from {train[0]:.3g} (epoch {epoch_no[0]}) to "
            f"{train[-1]:.3g} (epoch {epoch_no[-1]})",
        )
    if n - 1 - best_t >= patience:
        now_t = _mean(train[-patience:])
        rise_t = now_t - train[best_t]
        if rise_t > max(noise_factor * noise_train, 0.25 * scale):
            figs.update(best_train_loss=train[best_t], train_rise=rise_t)
            return verdict(
                "diverging",
                f"the training loss rose from its best {train[best_t]:.3g} at epoch "
                f"{epoch_no[best_t]} to {now_t:.3g} (mean of the last {patience} epochs), "
                f"{rise_t / scale:.0%} of the first epoch's loss",
            )
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
                f"the first epoch's loss ({train[0]:.3g}) blew up"
                if blew_up
                else f"the training loss jumps about (up to {rise:.1%} in an epoch)"
            )
            return verdict(
                "diverging",
                f"{how} and the training accuracy never rose above {max(acc_hist):.1%}: "
                "the steps overshoot and the network has collapsed (dead units)",
            )

    if n < 3:  # one or two epochs show no trend and no stable gap
        return verdict(
            "not converged",
            f"only {n} epoch{'s' if n > 1 else ''}, too few to judge a trend or a gap",
        )

    # 2. the measures: levels and gaps over the last `window` epochs
    k = min(window, n)
    train_now = _mean(train[-k:])
    figs["train_loss_last"] = train_now
    has_val = "val_loss" in history
    has_val_acc = has_acc and "val_acc" in history
    acc_gap = math.nan
    if has_acc:
        tacc = _pct(_mean(history["train_acc"][-k:]))
        figs["train_acc_last"] = tacc / 100
    if has_val_acc:
        vacc = _pct(_mean(history["val_acc"][-k:]))
        acc_gap = (tacc - vacc) / 100
        figs.update(val_acc_last=vacc / 100, accuracy_gap=acc_gap)
    if has_val:
        val = history["val_loss"]
        val_now = _mean(val[-k:])
        loss_gap = val_now - train_now
        figs.update(val_loss_last=val_now, loss_gap=loss_gap, loss_gap_of_scale=loss_gap / scale)
        noise_val = noise_level(val)
        best_v = min(range(n), key=val.__getitem__)
        since = n - 1 - best_v
        figs.update(val_noise=noise_val, best_val_epoch=epoch_no[best_v], val_best=val[best_v])
    suffix = "" if k == 1 else f" (means of the last {k} epochs)"

    # 3. overfitting: a big gap, or a validation loss rising beyond noise for several epochs
    if has_val:
        big_acc = acc_gap > acc_gap_big  # False for nan
        big_loss = loss_gap > loss_gap_big * scale
        if big_acc or big_loss:
            t, v = _sig(train_now), _sig(val_now)
            parts = []
            if has_val_acc:
                parts.append(
                    f"training accuracy {tacc:.1f} % against validation {vacc:.1f} %, "
                    + _gap_points(tacc, vacc)
                )
            parts.append(
                f"validation loss {v:.3g} is {_times(v, t)} training loss {t:.3g} (the loss "
                f"gap is {(v - t) / scale:.0%} of the first epoch's loss {scale:.3g})"
            )
            where = f" ({suffix.strip()[1:-1]})" if suffix else ""
            return verdict("overfitting", f"a big gap{where}: " + ", and ".join(parts))
        if since >= patience:
            val_recent = min(val[-patience:])  # every one of them: a rise, not a bad epoch
            val_at_best = _mean(val[max(0, best_v - 1) : best_v + 2])
            rise_v = val_recent - val_at_best
            figs.update(val_at_best=val_at_best, val_rise=rise_v)
            threshold = max(noise_factor * noise_val, 0.05 * val_at_best)
            train_fell = train_now <= train[best_v] + noise_factor * noise_train
            if rise_v > threshold and train_fell:
                b, r = _sig(val_at_best), _sig(val_recent)
                noise_txt = (
                    f"{rise_v / noise_val:.1f} times its epoch-to-epoch noise of {noise_val:.2g}"
                    if noise_val > 0
                    else "a steady rise"
                )
                return verdict(
                    "overfitting",
                    f"the validation loss rose from {b:.3g} (mean of epochs "
                    f"{epoch_no[max(0, best_v - 1)]}-{epoch_no[min(n - 1, best_v + 1)]}, around "
                    f"its best) to {r:.3g} or more in each of the last {patience} epochs ("
                    f"{r / b - 1:.0%} higher; {noise_txt}) while the training loss did not "
                    "rise",
                )

    # 4. is training still improving? A straight line through log(loss) over the last
    # `m` epochs (a loss falling exponentially is straight there): its slope is the rate
    # per epoch, and it must stand out from the scatter around the line (a t statistic)
    m = min(n, max(5, n // 3))
    tail = train[-m:]
    slope, t_stat = _log_trend(tail)
    rel_slope = math.expm1(slope)
    improving = rel_slope < -plateau and (m < 5 or t_stat < -noise_factor)
    figs.update(train_trend_per_epoch=rel_slope, train_trend_t=t_stat, trend_epochs=m)
    if has_acc:
        high = tacc / 100 < underfit_acc
        level_txt = f"training accuracy {tacc:.1f} %"
    else:
        ratio = train_now / scale
        figs["loss_ratio_to_first_epoch"] = ratio
        high = ratio > underfit_loss_ratio
        level_txt = f"training loss {_sig(train_now):.3g} ({ratio:.0%} of the first epoch's)"
    nearly_perfect = has_acc and tacc >= 99.0
    first, last = _sig(tail[0]), _sig(tail[-1])
    # the rate shown is the one the two numbers shown give: (last / first) ** (1 / (m - 1))
    rate = (last / first) ** (1 / (m - 1)) - 1 if first > 0 and last > 0 else 0.0
    figs["train_change_per_epoch"] = rate
    how = f"{-rate:.1%} per epoch" if rate <= 0 else f"rising {rate:.1%} per epoch"
    trend_txt = f"{first:.3g} -> {last:.3g} over the last {m} epochs, {how}"
    if abs(rel_slope) < plateau:
        state = f"flat ({trend_txt})"
    else:
        state = f"not clearly falling ({trend_txt}, within its epoch-to-epoch noise)"
    gap_txt = ""
    if has_val_acc:
        gap_txt = f", validation {vacc:.1f} % ({_gap_points(tacc, vacc)})"
    elif has_val:
        shown_gap = (_sig(val_now) - _sig(train_now)) / scale
        gap_txt = (
            f", validation loss {_sig(val_now):.3g} (a gap of {shown_gap:.0%} of the first "
            f"epoch's loss {scale:.3g})"
        )

    if high and not improving:
        return verdict(
            "underfitting",
            f"{level_txt}{gap_txt}{suffix}, and the training loss is {state}: "
            "no big gap but a high error, so the model cannot fit even the training set",
        )
    if improving and not nearly_perfect:
        return verdict(
            "not converged",
            f"the training loss is still falling ({trend_txt})"
            + (", well beyond its epoch-to-epoch noise" if m >= 5 else ""),
        )
    if high:
        return verdict(
            "underfitting",
            f"{level_txt}{gap_txt}{suffix} is still poor and improves slowly ({trend_txt})",
        )
    if has_val:
        t, v = _sig(train_now), _sig(val_now)
        evidence = (
            f"training loss {t:.3g} and validation loss {v:.3g}{suffix} are low and close: "
            f"the gap is {(v - t) / scale:.1%} of the first epoch's loss {scale:.3g}"
        )
        if has_val_acc:
            evidence += (
                f"; training accuracy {tacc:.1f} %, validation {vacc:.1f} % "
                f"({_gap_points(tacc, vacc)})"
            )
    else:
        evidence = (
            f"the training loss {_sig(train_now):.3g}{suffix} is low and no longer falling fast "
            f"({trend_txt})"
        )
    return verdict("good fit", evidence)
