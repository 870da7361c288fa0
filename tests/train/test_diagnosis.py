import math

import pytest

from cnnkit.train.diagnosis import diagnose
from cnnkit.train.history import History


def hist(train, val=None, train_acc=None, val_acc=None):
    recs = []
    for i, t in enumerate(train):
        r = {"epoch": i + 1, "train_loss": t}
        if val is not None:
            r["val_loss"] = val[i]
        if train_acc is not None:
            r["train_acc"] = train_acc[i]
        if val_acc is not None:
            r["val_acc"] = val_acc[i]
        recs.append(r)
    return History(recs)


def test_overfitting_from_a_large_gap():
    h = hist(
        [2.0, 1.0, 0.4, 0.1, 0.03, 0.01],
        [2.1, 1.4, 1.2, 1.3, 1.5, 1.7],
        [0.3, 0.7, 0.9, 0.98, 1.0, 1.0],
        [0.3, 0.55, 0.6, 0.6, 0.6, 0.6],
    )
    d = diagnose(h)
    assert d.verdict == "overfitting"
    assert d.figures["gap"] == pytest.approx(1.69)
    assert d.figures["best_val_epoch"] == 3
    assert "regularisation" in d.explanation


def test_underfitting_flat_high_loss_no_gap():
    h = hist([2.2, 1.9, 1.85, 1.84, 1.84, 1.835], [2.2, 1.9, 1.86, 1.85, 1.85, 1.84],
             [0.2, 0.3, 0.33, 0.34, 0.34, 0.34], [0.2, 0.3, 0.33, 0.34, 0.33, 0.34])  # fmt: skip
    d = diagnose(h)
    assert d.verdict == "underfitting"
    assert d.figures["final_train_acc"] == pytest.approx(0.34)
    assert "capacity" in d.explanation


def test_diverging_on_nan_and_on_rising_loss():
    d = diagnose(hist([2.3, 5.0, math.nan]))
    assert d.verdict == "diverging" and d.figures["first_bad_epoch"] == 3
    d = diagnose(hist([2.3, 3.0, 8.0, 20.0]))
    assert d.verdict == "diverging" and "learning rate" in d.explanation


def test_not_converged_when_still_falling_fast():
    h = hist([2.0, 1.6, 1.2, 0.9, 0.7], [2.0, 1.6, 1.2, 0.92, 0.72],
             [0.5, 0.6, 0.7, 0.8, 0.9], [0.5, 0.6, 0.7, 0.8, 0.9])  # fmt: skip
    assert diagnose(h).verdict == "not converged"


def test_good_fit():
    h = hist([0.5, 0.2, 0.1, 0.08, 0.079, 0.078], [0.5, 0.22, 0.11, 0.09, 0.088, 0.087],
             [0.9, 0.95, 0.97, 0.98, 0.98, 0.98], [0.9, 0.94, 0.96, 0.97, 0.97, 0.97])  # fmt: skip
    d = diagnose(h)
    assert d.verdict == "good fit"
    assert str(d).startswith("good fit: ")


def test_empty_history_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        diagnose(History())
