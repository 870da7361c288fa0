"""The diagnosis on real training runs: each run is built to fail in one known way.

tests/train/test_diagnosis.py checks the rules on hand-written histories; here the
histories come from ``fit`` on the embedded digits (each run takes about a second).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit import backend, optim
from cnnkit.data import Digits
from cnnkit.models import MLP, LeNet5
from cnnkit.train import TrainingError, diagnose, fit
from cnnkit.train.callbacks import Callback

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits() -> tuple[Digits, Digits]:
    return Digits(split="train"), Digits(split="test")


class KeepHistory(Callback):
    """Keeps the history of a run, also of one that ``fit`` aborts."""

    def on_train_end(self, state) -> None:
        self.history = state.history


def pooled(x: np.ndarray, side: int) -> np.ndarray:
    """8x8 images averaged down to ``side`` x ``side`` and flattened."""
    k = 8 // side
    return x.reshape(len(x), side, k, side, k).mean(axis=(2, 4)).astype(np.float32)


def test_big_mlp_memorising_200_samples_overfits(digits) -> None:
    train, test = digits
    x, y = train.data, train.targets
    backend.manual_seed(0)
    model = MLP(64, (256, 256), 10)
    history = fit(
        model,
        (x[:200], y[:200]),  # 200 images for ~85k parameters
        test,
        optimizer=optim.Adam(model.parameters(), lr=1e-3),
        epochs=60,
        batch_size=20,
        seed=0,
        verbose=False,
    )
    d = diagnose(history)
    assert d.verdict == "overfitting", str(d)
    assert history["train_acc"][-1] == 1.0
    assert d.figures["accuracy_gap"] > 0.1  # memorised: 100 % against ~85 %
    assert d.figures["loss_gap_of_scale"] > 0.2
    assert "regularisation" in d.explanation


def test_lenet5_on_all_digits_is_a_good_fit(digits) -> None:
    train, test = digits
    backend.manual_seed(0)
    model = LeNet5(10, 1, 8)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    history = fit(model, train, test, optimizer=opt, epochs=15, batch_size=32, seed=0,
                  verbose=False)  # fmt: skip
    d = diagnose(history)
    assert d.verdict == "good fit", str(d)
    assert history["val_acc"][-1] > 0.93
    assert 0 < d.figures["accuracy_gap"] < 0.05  # the slide's small gap


@pytest.mark.parametrize("case", ["linear on 2x2 pixels", "two hidden units"])
def test_too_small_models_underfit(digits, case: str) -> None:
    train, test = digits
    backend.manual_seed(0)
    if case == "linear on 2x2 pixels":
        model = MLP(4, (), 10)
        data = (pooled(train.data, 2), train.targets), (pooled(test.data, 2), test.targets)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        model = MLP(64, (2,), 10)
        data = (train.data, train.targets), (test.data, test.targets)
        opt = optim.Adam(model.parameters(), lr=1e-2)
    history = fit(model, *data, optimizer=opt, epochs=20, batch_size=32, seed=0, verbose=False)
    d = diagnose(history)
    assert d.verdict == "underfitting", str(d)
    assert d.figures["train_acc_last"] < 0.75
    assert abs(d.figures["accuracy_gap"]) < 0.05  # no generalisation gap
    assert "capacity" in d.explanation


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to NaN
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_lenet5_with_lr_10_diverges(digits, momentum: float) -> None:
    # no NaN here: the weights blow up, the ReLUs die and the loss stays near chance
    # (without momentum) or climbs (with it); either way the learning rate is to blame
    train, test = digits
    backend.manual_seed(0)
    model = LeNet5(10, 1, 8)
    opt = optim.SGD(model.parameters(), lr=10.0, momentum=momentum)
    history = fit(model, train, test, optimizer=opt, epochs=8, batch_size=32, seed=0, verbose=False)
    d = diagnose(history)
    assert d.verdict == "diverging", str(d)
    assert "learning rate" in d.explanation
    assert max(history["train_acc"]) < 0.2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_lr_10_nan_stops_fit_and_the_partial_history_diverges(digits) -> None:
    train, test = digits
    backend.manual_seed(0)
    model = MLP(64, (256, 256, 256), 10)
    keep = KeepHistory()
    with pytest.raises(TrainingError) as err:
        fit(
            model,
            train,
            test,
            optimizer=optim.SGD(model.parameters(), lr=10.0),
            epochs=20,
            batch_size=len(train),  # full batch: one step per epoch
            seed=0,
            callbacks=[keep],
            verbose=False,
        )
    msg = str(err.value)
    m = re.search(r"loss became (nan|inf|-inf) at epoch (\d+), batch 1 of 1", msg)
    assert m is not None, msg
    assert "lr=10" in msg and "lower the learning rate" in msg
    epoch = int(m.group(2))
    assert len(keep.history) == epoch - 1  # every finished epoch is kept
    assert epoch >= 4, msg
    d = diagnose(keep.history)
    assert d.verdict == "diverging", str(d)


def test_tiny_learning_rate_is_not_called_diverging(digits) -> None:
    # learns nothing either, but smoothly: the advice must not be "lower the lr"
    train, test = digits
    backend.manual_seed(0)
    model = LeNet5(10, 1, 8)
    opt = optim.SGD(model.parameters(), lr=1e-4)
    history = fit(model, train, test, optimizer=opt, epochs=8, batch_size=32, seed=0, verbose=False)
    d = diagnose(history)
    assert d.verdict == "underfitting", str(d)


def test_a_run_cut_short_is_not_converged(digits) -> None:
    train, test = digits
    backend.manual_seed(0)
    model = LeNet5(10, 1, 8)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    history = fit(model, train, test, optimizer=opt, epochs=6, batch_size=32, seed=0,
                  verbose=False)  # fmt: skip
    d = diagnose(history)
    assert d.verdict == "not converged", str(d)
    assert history["train_loss"][-1] < 0.8 * history["train_loss"][-3]  # still falling fast
    assert "train for more epochs" in d.explanation
