"""fit / evaluate / predict, callbacks, determinism and exact resumption."""

import math

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import nn, optim
from cnnkit.data import DataLoader, TensorDataset
from cnnkit.train import (
    CSVLogger,
    EarlyStopping,
    History,
    ModelCheckpoint,
    TrainingError,
    evaluate,
    fit,
    predict,
)


def blobs(n=240, seed=0):
    """Three separable Gaussian blobs in 2-D (float32)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0.0], [-2.0, 1.5], [0.0, -2.5]])
    x = (centers[y] + 0.6 * rng.standard_normal((n, 2))).astype(np.float32)
    return x, y


def net():
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))


def run(epochs=4, seed=0, callbacks=(), resume=None, model=None, opt=None):
    ck.manual_seed(seed)
    x, y = blobs()
    model = model or net()
    opt = opt or optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(TensorDataset(x[:200], y[:200]), batch_size=16, shuffle=True, seed=seed)
    h = fit(model, loader, (x[200:], y[200:]), optimizer=opt, epochs=epochs,
            callbacks=list(callbacks), verbose=False, resume=resume)  # fmt: skip
    return model, h


def test_fit_learns_and_records_history():
    _, h = run(epochs=5)
    assert len(h) == 5
    assert h["train_loss"][-1] < h["train_loss"][0] * 0.5
    assert h["val_acc"][-1] >= 0.95
    assert all(r["lr"] == 0.1 for r in h.records)
    assert {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time"} <= set(
        h.records[0]
    )


def test_two_seeded_runs_are_bit_identical():
    _, a = run(epochs=3, seed=7)
    _, b = run(epochs=3, seed=7)
    strip = [{k: v for k, v in r.items() if k != "time"} for r in a.records]
    assert strip == [{k: v for k, v in r.items() if k != "time"} for r in b.records]


def test_resume_from_last_checkpoint_is_exact(tmp_path):
    ck_cb = ModelCheckpoint(tmp_path / "ckpt")
    full_model, full = run(epochs=4, seed=3)
    run(epochs=2, seed=3, callbacks=[ck_cb])
    ck.manual_seed(12345)  # the resumed run must not depend on the current global state
    model = net()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    resumed_model, resumed = run(epochs=4, seed=3, resume=ck_cb.last_path, model=model, opt=opt)
    key = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h.records]  # noqa: E731
    assert key(resumed) == key(full)
    for p, q in zip(resumed_model.parameters(), full_model.parameters(), strict=True):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_checkpoint(tmp_path):
    x, y = blobs()
    x[150] = np.nan  # a poisoned sample in the second epoch's data? no: sorted loader
    model = net()
    cb = ModelCheckpoint(tmp_path / "c")
    loader = DataLoader(TensorDataset(x[:160], y[:160]), batch_size=16, shuffle=False)
    with pytest.raises(TrainingError, match=r"epoch 1, batch 10 of 10"):
        fit(model, loader, epochs=2, callbacks=[cb], verbose=False)
    assert not cb.last_path.exists()  # nothing half-written
    x2 = x.copy()
    x2[150] = 0.0
    loader2 = DataLoader(TensorDataset(x2[:160], y[:160]), batch_size=16, shuffle=False)
    fit(model, loader2, epochs=1, callbacks=[cb], verbose=False)
    good = cb.last_path.read_bytes()
    with pytest.raises(TrainingError, match="epoch 1, batch 10"):
        fit(model, loader, epochs=1, callbacks=[cb], verbose=False)
    assert cb.last_path.read_bytes() == good


def test_early_stopping_restores_best_weights():
    ck.manual_seed(0)  # the initial weights decide when validation loss turns up
    x, y = blobs()
    model = net()
    es = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    # lr so large that validation loss soon gets worse
    opt = optim.SGD(model.parameters(), lr=3.0)
    try:
        h = fit(model, (x[:200], y[:200]), (x[200:], y[200:]), optimizer=opt, epochs=30,
                callbacks=[es], verbose=False, batch_size=200)  # fmt: skip
    except TrainingError:
        pytest.skip("diverged to NaN before early stopping could act")
    assert es.stopped_epoch > 0 and len(h) == es.stopped_epoch < 30
    best = min(h["val_loss"])
    res = evaluate(model, (x[200:], y[200:]), report=False)
    assert math.isclose(res.loss, best, rel_tol=1e-5)


def test_csv_logger_and_evaluate_report(tmp_path):
    model, h = run(epochs=2, callbacks=[CSVLogger(tmp_path / "h.csv")])
    assert History.from_csv(tmp_path / "h.csv")["train_loss"] == pytest.approx(h["train_loss"])
    x, y = blobs(seed=1)
    res = evaluate(model, (x, y), classes=["a", "b", "c"])
    assert res.confusion_matrix.shape == (3, 3)
    assert res.confusion_matrix.sum() == len(y)
    assert res.accuracy == pytest.approx(np.trace(res.confusion_matrix) / len(y))
    assert "precision" in res.report and "a" in res.report


def test_predict_gives_probabilities_in_eval_mode():
    model, _ = run(epochs=2)
    model.train()
    x, _ = blobs(seed=2)
    p = predict(model, x, batch_size=7)
    assert p.shape == (len(x), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert model.training  # mode restored
    p2 = predict(model, x, batch_size=64)
    np.testing.assert_allclose(p, p2, rtol=1e-6)  # eval mode: no dropout noise


def test_bad_arguments():
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        fit(net(), blobs(), epochs=0, verbose=False)
    with pytest.raises(TypeError, match="expected a DataLoader"):
        fit(net(), 42, epochs=1, verbose=False)
