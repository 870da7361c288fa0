"""TensorBoard event files, read back with TensorBoard's own EventAccumulator and checked
against the History, the weights and gradients each epoch ended with, and the pictures."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorboardX", reason="the [dashboard] extra (tensorboardX) is not installed")
pytest.importorskip("tensorboard", reason="tensorboard (the reader) is not installed")

from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import cnnkit as ck
from cnnkit import optim
from cnnkit.data import Digits, Subset
from cnnkit.models import get_model
from cnnkit.train import History, diagnose, fit
from cnnkit.train.callbacks import Callback, TensorBoard
from cnnkit.train.tensorboard import activation_grid, filter_grid
from cnnkit.viz.conv_maps import conv_activations

KEEP_ALL = {"scalars": 0, "histograms": 0, "images": 0, "tensors": 0, "compressedHistograms": 0}


def read(log_dir: Path) -> EventAccumulator:
    """Every event of a log folder (no sampling)."""
    ea = EventAccumulator(str(log_dir), size_guidance=KEEP_ALL)
    ea.Reload()
    return ea


class Recorder(Callback):
    """Copies of every parameter and gradient as each epoch ended (runs after TensorBoard)."""

    def __init__(self) -> None:
        self.weights: list[dict[str, np.ndarray]] = []
        self.grads: list[dict[str, np.ndarray]] = []

    def on_epoch_end(self, state: Any, record: dict[str, Any]) -> None:
        params = list(state.model.named_parameters())
        self.weights.append({n: p.numpy().copy() for n, p in params})
        self.grads.append({n: p.grad.numpy().copy() for n, p in params})


def png(event: Any) -> np.ndarray:
    """The pixels of an image event."""
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three epochs of a small LeNet-5 on 300 digits with TensorBoard logging."""
    log_dir = tmp_path_factory.mktemp("tb") / "events"
    ck.manual_seed(0)
    model = get_model("lenet5", in_channels=1, input_size=8, num_classes=10)
    test = Digits("test")
    sample = np.asarray(test[0][0])
    hp = {"lr": 0.003, "optimizer": "adam", "augment": False, "model.channels": (6, 16)}
    tb = TensorBoard(log_dir, sample=sample, hparams=hp)
    rec = Recorder()
    history = fit(
        model,
        Subset(Digits("train"), list(range(300))),
        Subset(test, list(range(100))),
        optimizer=optim.Adam(model.parameters(), lr=3e-3),
        epochs=3,
        batch_size=32,
        callbacks=[tb, rec],
        verbose=False,
        seed=0,
    )
    return {"ea": read(log_dir), "history": history, "rec": rec, "model": model,
            "sample": sample, "hp": hp}  # fmt: skip


def test_scalars_equal_the_history(logged: dict[str, Any]) -> None:
    ea, history = logged["ea"], logged["history"]
    tags = {"loss/train": "train_loss", "loss/val": "val_loss", "accuracy/train": "train_acc",
            "accuracy/val": "val_acc", "lr": "lr", "epoch_time_s": "time"}  # fmt: skip
    assert set(tags) <= set(ea.Tags()["scalars"])
    for tag, col in tags.items():
        events = ea.Scalars(tag)
        assert [e.step for e in events] == [1, 2, 3], tag
        np.testing.assert_allclose([e.value for e in events], history[col], rtol=1e-6, err_msg=tag)


def test_histograms_describe_each_epochs_weights_and_gradients(logged: dict[str, Any]) -> None:
    ea, rec = logged["ea"], logged["rec"]
    names = [n for n, _ in logged["model"].named_parameters()]
    for kind, copies in (("weights", rec.weights), ("gradients", rec.grads)):
        for name in names:
            events = ea.Histograms(f"{kind}/{name}")
            assert [e.step for e in events] == [1, 2, 3]
            for e, epoch in zip(events, copies, strict=True):
                values = epoch[name].astype(np.float64)
                h = e.histogram_value
                assert h.num == values.size
                assert h.min == pytest.approx(values.min(), rel=1e-6, abs=1e-12)
                assert h.max == pytest.approx(values.max(), rel=1e-6, abs=1e-12)
                assert h.sum == pytest.approx(values.sum(), rel=1e-5, abs=1e-9)
                assert h.sum_squares == pytest.approx((values**2).sum(), rel=1e-5)
                assert sum(h.bucket) == values.size
    # the gradients are not the weights (a mix-up of the two would pass the checks above
    # only if they coincided)
    w = ea.Histograms("weights/features.0.weight")[-1].histogram_value
    g = ea.Histograms("gradients/features.0.weight")[-1].histogram_value
    assert w.sum != g.sum


def test_images_are_the_filters_and_the_activation_maps(logged: dict[str, Any]) -> None:
    ea, rec, model, sample = logged["ea"], logged["rec"], logged["model"], logged["sample"]
    images = ea.Tags()["images"]
    assert {"input/test_image", "filters/features.0"} <= set(images)
    assert {"activations/features.0", "activations/features.3"} <= set(images)
    filters = ea.Images("filters/features.0")
    assert [e.step for e in filters] == [1, 2, 3]
    for e, epoch in zip(filters, rec.weights, strict=True):
        want = np.round(filter_grid(epoch["features.0.weight"]) * 255)
        got = png(e)[..., :3].astype(float)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1
    maps, _ = conv_activations(model, sample)  # the model as the last epoch left it
    assert [n for n, _ in maps] == ["features.0", "features.3"]
    for layer, act in maps:
        last = ea.Images(f"activations/{layer}")[-1]
        got = png(last).astype(float)
        got = got[..., 0] if got.ndim == 3 else got
        want = np.round(activation_grid(act) * 255)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1
        assert act.shape[0] == 6 if layer == "features.0" else 16


def test_diagnosis_text_per_epoch(logged: dict[str, Any]) -> None:
    ea, history = logged["ea"], logged["history"]
    events = ea.Tensors("diagnosis/text_summary")
    assert [e.step for e in events] == [1, 2, 3]
    for k, e in enumerate(events, 1):
        text = e.tensor_proto.string_val[0].decode()
        assert text == str(diagnose(History(history.records[:k])))


def test_hparams_plugin_records(logged: dict[str, Any]) -> None:
    ea, hp = logged["ea"], logged["hp"]
    content = ea.PluginTagToContent("hparams")
    exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert {h.name for h in exp.experiment.hparam_infos} == set(hp)
    metrics = {m.name.tag for m in exp.experiment.metric_infos}
    assert metrics == {"loss/val", "accuracy/val", "loss/train", "accuracy/train"}
    assert metrics <= set(ea.Tags()["scalars"])  # the metrics are logged scalars
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    values = start.session_start_info.hparams
    assert values["lr"].number_value == pytest.approx(0.003)
    assert values["optimizer"].string_value == "adam"
    assert values["augment"].bool_value is False
    assert values["model.channels"].string_value == "(6, 16)"
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
    assert end.session_end_info.status == 1  # STATUS_SUCCESS


def test_every_n_epochs_and_off(tmp_path: Path) -> None:
    ck.manual_seed(0)
    model = get_model("lenet5", in_channels=1, input_size=8, num_classes=10)
    data = Subset(Digits("train"), list(range(64)))
    tb = TensorBoard(tmp_path, histogram_every=2, images_every=0)
    fit(model, data, epochs=3, batch_size=32, callbacks=[tb], verbose=False)
    ea = read(tmp_path)
    # every 2nd epoch, and the last one
    assert [e.step for e in ea.Histograms("weights/features.0.weight")] == [2, 3]
    assert ea.Tags()["images"] == []
    assert [e.step for e in ea.Scalars("loss/train")] == [1, 2, 3]
    assert "loss/val" not in ea.Tags()["scalars"]  # no validation data, no validation curve
    assert "_hparams_/experiment" not in ea.summary_metadata  # no hparams given, none written


@pytest.mark.parametrize("bad", [-1, 1.5, "2"])
def test_bad_arguments(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match="histogram_every must be an int >= 0"):
        TensorBoard(tmp_path, histogram_every=bad)
    with pytest.raises(ValueError, match="images_every must be an int >= 0"):
        TensorBoard(tmp_path, images_every=bad)


@pytest.mark.slow
def test_cli_train_tensorboard_matches_history_csv(tmp_path: Path) -> None:
    from cnnkit.cli import main

    out = tmp_path / "run"
    argv = ["train", "--data", "digits", "--epochs", "2", "--lr", "0.002", "--out", str(out),
            "--quiet", "--tensorboard"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((out / "config.json").read_text())["tensorboard"] is True
    history = History.from_csv(out / "history.csv")
    ea = read(out / "tensorboard")
    np.testing.assert_allclose([e.value for e in ea.Scalars("accuracy/val")], history["val_acc"],
                               rtol=1e-6)  # fmt: skip
    start = plugin_data_pb2.HParamsPluginData.FromString(
        ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    )
    assert start.session_start_info.hparams["lr"].number_value == pytest.approx(0.002)
    assert start.session_start_info.hparams["data"].string_value == "digits"
    # an overwritten run starts a fresh log (no second event file mixing two runs)
    from cnnkit.train.run import train_run

    train_run(out, data="digits", epochs=1, verbose=False, overwrite=True, tensorboard=True)
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert [e.step for e in read(out / "tensorboard").Scalars("loss/train")] == [1]


@pytest.mark.slow
def test_grid_runs_compare_in_the_hparams_plugin(tmp_path: Path) -> None:
    from cnnkit.train.grid import grid_search

    base = {"data": "digits", "epochs": 1, "tensorboard": True}
    res = grid_search({"lr": [1e-3, 4e-3]}, tmp_path, base=base, verbose=False)
    assert len(res.rows) == 2
    for row in res.rows:
        ea = read(tmp_path / row["run"] / "tensorboard")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        )
        assert start.session_start_info.hparams["lr"].number_value == pytest.approx(row["lr"])
        assert ea.Scalars("accuracy/val")[-1].value == pytest.approx(row["val_acc"], rel=1e-6)


def test_resumed_run_hides_the_interrupted_epochs(tmp_path: Path) -> None:
    """Resuming after epoch 2 purges the interrupted run's later events (purge_step)."""
    import shutil

    from cnnkit.train.callbacks import ModelCheckpoint

    class KeepEpoch2(Callback):
        def on_epoch_end(self, state: Any, record: dict[str, Any]) -> None:
            if state.epoch == 2:
                shutil.copy(tmp_path / "ck" / "last.safetensors", tmp_path / "epoch2.safetensors")

    data = Subset(Digits("train"), list(range(96)))

    def run(resume: Any, lr: float) -> History:
        ck.manual_seed(0)
        model = get_model("lenet5", in_channels=1, input_size=8, num_classes=10)
        cbs = [ModelCheckpoint(tmp_path / "ck", monitor="train_loss"), KeepEpoch2(),
               TensorBoard(tmp_path / "tb", histogram_every=0, images_every=0)]  # fmt: skip
        opt = optim.SGD(model.parameters(), lr=lr)
        return fit(model, data, optimizer=opt, epochs=3, callbacks=cbs, verbose=False,
                   seed=0, resume=resume)  # fmt: skip

    first = run(None, 0.05)
    second = run(tmp_path / "epoch2.safetensors", 0.05)
    assert first["train_loss"][:2] == second["train_loss"][:2]
    events = read(tmp_path / "tb").Scalars("loss/train")
    assert [e.step for e in events] == [1, 2, 3]  # epoch 3 once, not twice
    assert events[-1].value == pytest.approx(second["train_loss"][2], rel=1e-6)


def test_cli_without_tensorboardx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import sys

    from cnnkit.cli import main

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if not installed
    out = tmp_path / "run"
    code = main(["train", "--epochs", "1", "--out", str(out), "--tensorboard"])
    assert code == 2
    err = capsys.readouterr().err
    assert "tensorboardX" in err and "pip install 'cnnkit[dashboard]'" in err
    assert not out.exists()
