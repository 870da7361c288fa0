"""TinyYOLO: head shape, decoding by hand, detect's input checks, checkpoint round trip,
and a short training smoke test through the run directory and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnkit import io, nn
from cnnkit.detect import decode_predictions
from cnnkit.models import TinyYOLO, get_model
from cnnkit.tensor import Tensor


def test_head_shape_and_zoo() -> None:
    m = TinyYOLO()
    out = m(Tensor(np.zeros((2, 1, 96, 96), np.float32)))
    assert out.shape == (2, 6, 6, 20)
    m2 = get_model("tinyyolo", num_classes=3, grid=4, boxes_per_cell=3, widths=(8, 8, 8, 8))
    assert m2(Tensor(np.zeros((1, 1, 32, 32), np.float32))).shape == (1, 4, 4, 18)
    with pytest.raises(ValueError, match="input_size must be grid"):
        TinyYOLO(input_size=100)


def test_decode_by_hand() -> None:
    # S=2, B=1, C=2 on 64x64: cell (row 0, col 0) predicts x = y = sqrt_w = sqrt_h = 0.5
    # (logits 0), confidence sigmoid(10), class 0: centre (16, 16), size 16 -> [8, 8, 24, 24]
    head = np.full((1, 2, 2, 7), -10.0)
    head[0, 0, 0, :5] = [0, 0, 0, 0, 10]
    head[0, 0, 0, 5:] = [10, -10]
    (d,) = decode_predictions(head, 1, 2, 64, conf_threshold=0.5)
    np.testing.assert_allclose(d["boxes"], [[8, 8, 24, 24]], atol=1e-4)
    assert d["labels"].tolist() == [0]
    s = 1 / (1 + np.exp(-10))
    np.testing.assert_allclose(d["scores"], [s / (1 + np.exp(-20))], rtol=1e-6)
    assert d["boxes"].dtype == np.float32 and d["labels"].dtype == np.int64


def test_detect_checks_its_input() -> None:
    m = TinyYOLO()
    with pytest.raises(
        ValueError, match=r"expected images shaped \(N, 1, 96, 96\).*\(2, 1, 64, 64\)"
    ):
        m.detect(np.zeros((2, 1, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"\(1, 3, 96, 96\)"):
        m.detect(np.zeros((3, 96, 96), np.float32))
    with pytest.raises(ValueError, match="empty image list"):
        m.detect([])
    with pytest.raises(ValueError, match="empty batch"):
        m.detect(np.zeros((0, 1, 96, 96), np.float32))
    out = m.detect([np.zeros((1, 96, 96), np.float32)] * 3, max_detections=5)
    assert len(out) == 3 and all(len(d["boxes"]) <= 5 for d in out)
    assert set(out[0]) == {"boxes", "scores", "labels"}


def test_checkpoint_rebuilds_the_model(tmp_path) -> None:
    m = TinyYOLO(widths=(8, 8, 8, 8, 8))
    m.eval()
    x = np.random.default_rng(0).random((2, 1, 96, 96)).astype(np.float32)
    io.save(tmp_path / "m.safetensors", m, meta={"task": "detection"})
    ck = io.load(tmp_path / "m.safetensors")
    assert isinstance(ck.model, TinyYOLO) and ck.meta["task"] == "detection"
    ck.model.eval()
    np.testing.assert_array_equal(ck.model(Tensor(x)).numpy(), m(Tensor(x)).numpy())


def _scene_png(path, scene: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray((scene[0] * 255).round().astype(np.uint8), mode="L").save(path)


@pytest.mark.slow
def test_training_smoke_run_and_cli(tmp_path, mnist_dir, capsys) -> None:
    """A few hundred scenes: the loss falls, the run directory is complete, and
    ``cnnkit evaluate`` / ``cnnkit detect`` work on it."""
    from cnnkit.cli import main
    from cnnkit.data import DigitScenes
    from cnnkit.detect.run import train_detection_run

    run = tmp_path / "yolo"
    s = train_detection_run(run, data=f"digit-scenes:{mnist_dir}", epochs=2, batch_size=32,
                            train_scenes=384, val_scenes=64, test_scenes=40, verbose=False,
                            model_kwargs={"widths": [8, 16, 16, 32, 32]})  # fmt: skip
    hist = [float(r.split(",")[1]) for r in (run / "history.csv").read_text().split()[1:]]
    assert hist[1] < hist[0]
    for name in ("config.json", "model.safetensors", "curves.png", "detections.png",
                 "report.txt", "diagnosis.txt", "history.csv"):  # fmt: skip
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["task"] == "detection" and 0.0 <= cfg["test_map"] <= 1.0
    assert "mAP" in s["report"] and len(cfg["test_ap"]) == 10
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "mAP@0.5" in out and f"{cfg['test_map']:.4f}" in out
    scene = DigitScenes(mnist_dir, "test", n=2)[0][0]
    _scene_png(tmp_path / "a.png", scene)
    assert (
        main(
            [
                "detect",
                str(run),
                str(tmp_path / "a.png"),
                "--conf",
                "0.01",
                "--out",
                str(tmp_path / "b.json"),
                "--draw",
                str(tmp_path / "d.png"),
            ]
        )
        == 0
    )
    boxes = json.loads((tmp_path / "b.json").read_text())
    assert boxes[0]["image"].endswith("a.png") and (tmp_path / "d.png").is_file()
    for d in boxes[0]["detections"]:
        assert len(d["box"]) == 4 and 0 <= d["score"] <= 1 and 0 <= d["label"] < 10
    # bad scenes: one-line errors naming the file and the expected geometry
    from PIL import Image

    Image.new("L", (64, 64)).save(tmp_path / "small.png")
    Image.new("RGB", (96, 96)).save(tmp_path / "rgb.png")
    capsys.readouterr()
    assert main(["detect", str(run), str(tmp_path / "small.png")]) == 2
    assert "expected a 96x96 scene" in capsys.readouterr().err
    assert main(["detect", str(run), str(tmp_path / "rgb.png")]) == 2
    assert "1-channel grayscale" in capsys.readouterr().err
    assert main(["detect", str(run), str(tmp_path / "missing.png")]) == 2


def test_loss_module_repr() -> None:
    assert "lambda_coord=5" in repr(nn.YOLOv1Loss(6, 2, 10))


def test_detection_run_claims_its_directory(tmp_path, mnist_dir) -> None:
    """As `cnnkit train` for classification: a detection run into a directory another
    live run holds stops at once, loads nothing and leaves the other's files alone."""
    from cnnkit.detect.run import train_detection_run
    from cnnkit.train.claim import RunDirectoryBusy, claim

    out = tmp_path / "yolo"
    held = claim(out)
    try:
        with pytest.raises(RunDirectoryBusy, match="in use by another cnnkit run"):
            train_detection_run(out, data=f"digit-scenes:{mnist_dir}", epochs=1, verbose=False)
        assert sorted(p.name for p in out.iterdir()) == [".cnnkit-run.lock"]
    finally:
        held.release()
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        train_detection_run(tmp_path / "none", data=f"digit-scenes:{mnist_dir}", resume=True)
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_finished_detection_run_continues_to_more_epochs(tmp_path, mnist_dir) -> None:
    """`cnnkit train --resume --epochs N` on a finished detection run trains it on to N
    epochs with its schedule stretched; without a larger N it says what to type."""
    from cnnkit.cli import main
    from cnnkit.detect.run import train_detection_run

    run = tmp_path / "yolo"
    small = {"train_scenes": 96, "val_scenes": 32, "test_scenes": 16, "batch_size": 32,
             "model_kwargs": {"widths": [8, 8, 8, 8, 8]}, "verbose": False}  # fmt: skip
    train_detection_run(run, data=f"digit-scenes:{mnist_dir}", epochs=1, **small)
    with pytest.raises(FileExistsError, match="--resume --epochs 2"):
        train_detection_run(run, resume=True, verbose=False)
    assert main(["train", "--resume", "--epochs", "3", "--out", str(run), "--quiet"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["epochs"] == 3 and cfg["resumed"] == [{"at_epoch": 1, "epochs_before": 1}]
    assert len((run / "history.csv").read_text().split()) == 1 + 3  # header + 3 epochs
    lrs = [float(r.split(",")[3]) for r in (run / "history.csv").read_text().split()[1:]]
    # epoch 1 at the base rate; then the cosine schedule as if started with 3 epochs
    np.testing.assert_allclose(
        lrs, [2e-3, 1e-3 * (1 + np.cos(np.pi / 3)), 1e-3 * (1 + np.cos(2 * np.pi / 3))], rtol=1e-6
    )
    assert not (run / "config.json.running").exists()
    # the throughput counts the scenes of the epochs this session ran (2 and 3), not all 3
    report = (run / "report.txt").read_text()
    assert "training (epochs 2-3, resumed): 192 scenes in" in report, report
    rate = float(report.split(" scenes/s)")[0].rsplit("(", 1)[1])
    seconds = float(report.split(" scenes in ")[1].split(" s of wall time")[0])
    per_second = 192 / max(cfg["train_seconds"], 1e-9)
    assert cfg["train_images_per_second"] == pytest.approx(per_second, rel=1e-9)
    assert abs(rate - per_second) <= 0.5 and abs(seconds - cfg["train_seconds"]) <= 0.5
