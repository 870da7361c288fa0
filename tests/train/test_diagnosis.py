"""The diagnosis on constructed histories: every verdict, its borderlines, and the
arithmetic of its sentences (tests/train/test_diagnosis_real.py uses real runs)."""

import math
import re

import numpy as np
import pytest

from cnnkit.train.diagnosis import ADVICE, diagnose, noise_level
from cnnkit.train.history import History


def hist(train, val=None, train_acc=None, val_acc=None):
    recs = []
    for i, t in enumerate(train):
        r = {"epoch": i + 1, "train_loss": float(t)}
        if val is not None:
            r["val_loss"] = float(val[i])
        if train_acc is not None:
            r["train_acc"] = float(train_acc[i])
        if val_acc is not None:
            r["val_acc"] = float(val_acc[i])
        recs.append(r)
    return History(recs)


def decay(n, start, end, rate=0.35):
    """A loss falling exponentially from ``start`` towards ``end`` over ``n`` epochs."""
    return [end + (start - end) * math.exp(-rate * i) for i in range(n)]


def jitter(values, scale, seed=0):
    rng = np.random.default_rng(seed)
    return [v + scale * e for v, e in zip(values, rng.standard_normal(len(values)), strict=True)]


NUM = r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)"


def good_run(n=30, seed=0):
    """A healthy classifier: losses fall to ~0.01 / ~0.05 with epoch-to-epoch noise."""
    train = jitter(decay(n, 2.3, 0.01), 0.002, seed)
    val = jitter(decay(n, 2.2, 0.05), 0.008, seed + 1)
    tacc = [min(1.0, 0.3 + 0.7 * (1 - math.exp(-0.4 * i))) for i in range(n)]
    vacc = [a - 0.012 for a in tacc]
    return train, val, tacc, vacc


# --- good fit -------------------------------------------------------------------------


def test_good_fit_and_its_sentence():
    d = diagnose(hist(*good_run()))
    assert d.verdict == "good fit", str(d)
    assert str(d).startswith("good fit: ")
    assert d.explanation.endswith(ADVICE["good fit"])
    pattern = rf"training accuracy {NUM} %, validation {NUM} % \(a gap of {NUM} points\)"
    m = re.search(pattern, str(d))
    assert m is not None, str(d)
    t, v, g = map(float, m.groups())
    assert g == pytest.approx(round(t - v, 1))
    assert g == pytest.approx(1.2)
    pattern = (
        rf"training loss {NUM} and validation loss {NUM} \(means of the last 3 epochs\) are "
        rf"low and close: the gap is {NUM}% of the first epoch's loss {NUM}"
    )
    m = re.search(pattern, str(d))
    assert m is not None, str(d)
    t, v, pct, scale = map(float, m.groups())
    assert scale == pytest.approx(2.3)
    assert pct == pytest.approx(round(100 * (v - t) / scale, 1))


def test_the_issue_example_is_a_small_gap_and_its_arithmetic():
    # the demo's numbers from the issue: "0.0797 is 89 % above 0.0084" (it is 9.5 times);
    # with 99.9 % training and 98.1 % validation accuracy, that is the slide's small gap
    n = 20
    train = decay(n, 2.3, 0.0084, 0.6)
    val = decay(n, 2.2, 0.0797, 0.6)
    tacc = [min(0.999, 0.3 + 0.7 * (1 - math.exp(-0.5 * i))) for i in range(n)]
    vacc = [a - 0.018 for a in tacc]
    d = diagnose(hist(train, val, tacc, vacc))
    assert d.verdict == "good fit", str(d)
    assert "89 %" not in str(d) and "89%" not in str(d)
    # the same losses with a memorising accuracy gap: overfitting, and "times" is right
    vacc_bad = [a - 0.12 for a in tacc]
    d = diagnose(hist(train, val, tacc, vacc_bad))
    assert d.verdict == "overfitting", str(d)
    m = re.search(rf"validation loss {NUM} is {NUM} times training loss {NUM}", str(d))
    assert m is not None, str(d)
    v, r, t = map(float, m.groups())
    assert v == pytest.approx(float(f"{d.figures['val_loss_last']:.3g}"))
    assert t == pytest.approx(float(f"{d.figures['train_loss_last']:.3g}"))
    assert r == pytest.approx(round(v / t, 1))
    assert 9.0 < r < 10.0


# --- overfitting ----------------------------------------------------------------------


def test_overfitting_from_a_big_accuracy_gap():
    h = hist(
        [2.0, 1.0, 0.4, 0.1, 0.03, 0.01],
        [2.1, 1.4, 1.2, 1.3, 1.5, 1.7],
        [0.3, 0.7, 0.9, 0.98, 1.0, 1.0],
        [0.3, 0.55, 0.6, 0.6, 0.6, 0.6],
    )
    d = diagnose(h)
    assert d.verdict == "overfitting", str(d)
    assert d.figures["accuracy_gap"] == pytest.approx((99.3 - 60.0) / 100)
    assert d.figures["loss_gap"] == pytest.approx((1.3 + 1.5 + 1.7 - 0.1 - 0.03 - 0.01) / 3)
    m = re.search(rf"training accuracy {NUM} % against validation {NUM} %, a gap of {NUM}", str(d))
    assert m is not None and m.groups() == ("99.3", "60.0", "39.3"), str(d)
    assert "regularisation" in d.explanation


@pytest.mark.parametrize(("gap", "verdict"), [(0.049, "good fit"), (0.051, "overfitting")])
def test_accuracy_gap_borderline(gap, verdict):
    train, val, tacc, _ = good_run()
    vacc = [a - gap for a in tacc]
    d = diagnose(hist(train, val, tacc, vacc))
    assert d.verdict == verdict, str(d)


@pytest.mark.parametrize(("gap", "verdict"), [(0.09, "good fit"), (0.11, "overfitting")])
def test_loss_gap_borderline_without_accuracy(gap, verdict):
    # the loss gap is measured against the first epoch's loss (2.0), not the training loss
    n = 25
    train = decay(n, 2.0, 0.05)
    val = [t + gap * 2.0 * (1 - math.exp(-0.3 * i)) for i, t in enumerate(train)]
    d = diagnose(hist(train, val))
    assert d.verdict == verdict, str(d)
    assert d.figures["loss_scale"] == pytest.approx(max(2.0, val[0]))


def test_overfitting_from_a_sustained_validation_rise():
    # a small accuracy gap, but the validation loss climbs steadily after epoch 11
    n = 22
    train = decay(n, 2.3, 0.1)
    val = [*decay(11, 2.2, 0.20), *[0.20 + 0.006 * i for i in range(1, n - 10)]]
    val = jitter(val, 0.002)
    tacc = [min(0.99, 0.3 + 0.7 * (1 - math.exp(-0.4 * i))) for i in range(n)]
    vacc = [a - 0.03 for a in tacc]
    d = diagnose(hist(train, val, tacc, vacc))
    assert d.verdict == "overfitting", str(d)
    best = int(np.argmin(val))
    assert d.figures["best_val_epoch"] == best + 1
    pattern = (
        rf"rose from {NUM} \(mean of epochs (\d+)-(\d+), around its best\) to {NUM} or more "
        rf"in each of the last 3 epochs \((\d+)% higher; {NUM} times its epoch-to-epoch noise"
    )
    m = re.search(pattern, str(d))
    assert m is not None, str(d)
    b, lo, hi, r, pct, times = m.groups()
    assert (int(lo), int(hi)) == (best, best + 2)
    assert float(b) == pytest.approx(float(f"{np.mean(val[best - 1 : best + 2]):.3g}"))
    assert float(r) == pytest.approx(float(f"{min(val[-3:]):.3g}"))
    assert int(pct) == round(100 * (float(r) / float(b) - 1))
    assert float(times) == pytest.approx(d.figures["val_rise"] / d.figures["val_noise"], abs=0.05)


def test_one_noisy_last_epoch_is_not_overfitting():
    # the issue's complaint: one bad validation epoch at the end must not flip the verdict
    train, val, tacc, vacc = good_run()
    val[-1] *= 1.6
    vacc[-1] -= 0.02
    d = diagnose(hist(train, val, tacc, vacc))
    assert d.verdict == "good fit", str(d)


def test_a_rise_of_two_epochs_is_not_yet_overfitting():
    train, val, tacc, vacc = good_run()
    val[-2:] = [v * 1.5 for v in val[-2:]]
    assert diagnose(hist(train, val, tacc, vacc)).verdict == "good fit"
    val[-3:] = [v * 1.5 for v in val[-3:]]  # a third epoch makes it a trend
    assert diagnose(hist(train, val, tacc, vacc)).verdict == "overfitting"


def test_a_rise_within_the_noise_is_not_overfitting():
    # a validation loss that wanders up and down around a plateau by +-20 %
    n = 30
    train = decay(n, 2.3, 0.01)
    val = [*decay(15, 2.2, 0.1), *jitter([0.1] * 15, 0.02, seed=3)]
    tacc = [min(1.0, 0.3 + 0.7 * (1 - math.exp(-0.4 * i))) for i in range(n)]
    vacc = [a - 0.02 for a in tacc]
    d = diagnose(hist(train, val, tacc, vacc))
    assert d.verdict == "good fit", str(d)
    assert d.figures["val_noise"] > 0.01


# --- underfitting ---------------------------------------------------------------------


def test_underfitting_flat_high_loss_no_gap():
    h = hist([2.2, 1.9, 1.85, 1.84, 1.84, 1.835], [2.2, 1.9, 1.86, 1.85, 1.85, 1.84],
             [0.2, 0.3, 0.33, 0.34, 0.34, 0.34], [0.2, 0.3, 0.33, 0.34, 0.33, 0.34])  # fmt: skip
    d = diagnose(h)
    assert d.verdict == "underfitting", str(d)
    assert d.figures["train_acc_last"] == pytest.approx(0.34)
    assert "training accuracy 34.0 %, validation 33.7 % (a gap of 0.3 points)" in str(d)
    assert "capacity" in d.explanation


@pytest.mark.parametrize(("acc", "verdict"), [(0.88, "underfitting"), (0.92, "good fit")])
def test_underfitting_borderline_on_training_accuracy(acc, verdict):
    n = 20
    train = jitter(decay(n, 2.3, 0.4), 0.003)
    val = jitter(decay(n, 2.2, 0.42), 0.003, 1)
    tacc = [acc - 0.5 * math.exp(-0.5 * i) for i in range(n)]
    vacc = [a - 0.005 for a in tacc]
    assert diagnose(hist(train, val, tacc, vacc)).verdict == verdict


def test_underfitting_without_accuracy_and_a_higher_validation_accuracy_is_no_gap():
    d = diagnose(hist([2.0, 1.7, 1.6, 1.58, 1.57, 1.57], [1.9, 1.65, 1.58, 1.57, 1.56, 1.56]))
    assert d.verdict == "underfitting", str(d)
    assert d.figures["loss_ratio_to_first_epoch"] == pytest.approx(np.mean([1.58, 1.57, 1.57]) / 2)
    h = hist([2.2, 1.9, 1.85, 1.84, 1.84, 1.835], [2.1, 1.8, 1.76, 1.75, 1.75, 1.74],
             [0.2, 0.3, 0.33, 0.34, 0.34, 0.34], [0.25, 0.34, 0.37, 0.38, 0.37, 0.38])  # fmt: skip
    d = diagnose(h)
    assert d.verdict == "underfitting", str(d)
    assert "no gap: validation 3.7 points higher" in str(d)


# --- not converged --------------------------------------------------------------------


def test_not_converged_when_still_falling_fast():
    h = hist([2.0, 1.6, 1.2, 0.9, 0.7], [2.0, 1.6, 1.2, 0.92, 0.72],
             [0.5, 0.6, 0.7, 0.8, 0.9], [0.5, 0.6, 0.7, 0.8, 0.9])  # fmt: skip
    d = diagnose(h)
    assert d.verdict == "not converged", str(d)
    pattern = rf"still falling \({NUM} -> {NUM} over the last (\d+) epochs, {NUM}% per epoch\)"
    m = re.search(pattern, str(d))
    assert m is not None, str(d)
    first, last, epochs, rate = m.groups()
    assert int(epochs) == 5 and (float(first), float(last)) == (2.0, 0.7)
    # the rate follows from the two numbers shown: 1 - (0.7 / 2.0) ** (1 / 4) = 23.1 %
    assert float(rate) == pytest.approx(100 * (1 - (0.7 / 2.0) ** 0.25), abs=0.05)


@pytest.mark.parametrize(("rate", "verdict"), [(0.015, "good fit"), (0.03, "not converged")])
def test_not_converged_borderline_on_the_rate(rate, verdict):
    # training accuracy 97 % (not polishing at 100 %); the loss falls `rate` per epoch
    n = 12
    train = [0.2 * (1 - rate) ** i for i in range(n)]
    val = [t + 0.02 for t in train]
    tacc = [0.97] * n
    vacc = [0.96] * n
    assert diagnose(hist(train, val, tacc, vacc)).verdict == verdict


def test_a_short_steep_run_is_not_converged_not_underfitting():
    # 5 epochs of a grid search: the loss still falls ~30 % per epoch at 85 % accuracy;
    # the steep start must not be taken for noise (the trend is judged in log space)
    h = hist([2.20, 1.09, 0.631, 0.412, 0.301], [1.74, 0.908, 0.639, 0.459, 0.416],
             [0.21, 0.63, 0.78, 0.86, 0.91], [0.45, 0.72, 0.79, 0.86, 0.86])  # fmt: skip
    d = diagnose(h)
    assert d.verdict == "not converged", str(d)
    assert "(2.2 -> 0.301 over the last 5 epochs, 39.2% per epoch)" in str(d)


def test_too_few_epochs_is_not_converged_whatever_the_gap():
    d = diagnose(hist([0.5, 0.1], [1.5, 1.4], [0.9, 1.0], [0.6, 0.6]))
    assert d.verdict == "not converged" and "only 2 epochs" in str(d)
    assert diagnose(hist([2.3])).verdict == "not converged"


def test_falling_loss_at_perfect_training_accuracy_is_polishing():
    n = 12
    train = [2.3, 0.5, 0.1, *[0.02 * 0.8**i for i in range(n - 3)]]
    val = [2.2, 0.5, 0.12, *[0.06 + 0.001 * (i % 2) for i in range(n - 3)]]
    d = diagnose(hist(train, val, [0.3, 0.9, 0.97, *[1.0] * (n - 3)], [0.985] * n))
    assert d.verdict == "good fit", str(d)


# --- diverging ------------------------------------------------------------------------


def test_diverging_on_nan_and_on_rising_loss():
    d = diagnose(hist([2.3, 5.0, math.nan]))
    assert d.verdict == "diverging" and d.figures["first_bad_epoch"] == 3
    d = diagnose(hist([2.3, 3.0, 8.0, 20.0]))
    assert d.verdict == "diverging" and "learning rate" in d.explanation
    assert "rose from 2.3 (epoch 1) to 20 (epoch 4)" in str(d)


def test_diverging_on_a_final_nan_validation_loss_only():
    d = diagnose(hist([2.3, 1.0, 0.5, 0.4], [2.2, 1.1, 0.6, math.inf]))
    assert d.verdict == "diverging" and "validation loss became non-finite at epoch 4" in str(d)


def test_diverging_when_training_loss_climbs_back_after_learning():
    # learned down to 0.3, then the steps blew it back up for 4 epochs
    train = [2.3, 1.2, 0.6, 0.35, 0.3, 0.9, 1.4, 1.6, 1.8]
    d = diagnose(hist(train, [t + 0.05 for t in train]))
    assert d.verdict == "diverging", str(d)
    assert "from its best 0.3 at epoch 5 to 1.6 (mean of the last 3 epochs)" in str(d)


def test_a_small_bump_in_a_low_training_loss_is_not_diverging():
    train, val, tacc, vacc = good_run()
    train[-3:] = [0.05, 0.04, 0.045]  # 4-5x its best of ~0.01, but 2 % of the start
    assert diagnose(hist(train, val, tacc, vacc)).verdict != "diverging"


def test_collapsed_network_is_diverging_not_underfitting():
    # lr far too high: loss jumps around chance level, accuracy stuck at 10 %
    train = [5.4, 6.6, 8.1, 6.5, 6.8, 6.0, 5.2, 6.3]
    d = diagnose(hist(train, train, [0.1] * 8, [0.1] * 8))
    assert d.verdict == "diverging" and "collapsed" in str(d)


# --- measures and errors --------------------------------------------------------------


def test_noise_level_of_white_noise_and_of_a_smooth_curve():
    rng = np.random.default_rng(0)
    x = list(1.0 + 0.05 * rng.standard_normal(4000))
    assert noise_level(x) == pytest.approx(0.05, rel=0.1)
    assert noise_level(decay(30, 2.0, 0.1)) < 1e-3
    assert noise_level([1.0, 2.0]) == 0.0


def test_empty_history_and_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="empty"):
        diagnose(History())
    with pytest.raises(ValueError, match="window and patience"):
        diagnose(hist([1.0, 0.5, 0.4]), window=0)
