"""cnnkit.utils.tensorboard.SummaryWriter against torch.utils.tensorboard.SummaryWriter: the
same calls give the same runs, tags and values when TensorBoard reads the logs back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard")
pytest.importorskip("tensorboardX")

import cnnkit as ck  # noqa: E402
from cnnkit.utils.tensorboard import SummaryWriter  # noqa: E402


def _log(writer_cls, lib, log_dir: Path) -> None:
    w = writer_cls(log_dir=str(log_dir))
    w.add_scalar("Loss/train", lib.tensor(0.5), 0)  # a 0-d tensor, as scripts pass loss
    w.add_scalar("Loss/train", 0.25, 1)
    w.add_scalars("Accuracy", {"train": 90.0, "val": lib.tensor([80.0])}, 1)
    w.add_histogram("fc.weight", lib.tensor(np.linspace(-1, 1, 50, dtype=np.float32)), 1)
    w.add_image("grid", lib.tensor(np.full((3, 4, 5), 0.5, np.float32)), 1)
    w.add_text("note", "hello", 1)
    w.add_hparams({"lr": 0.1, "bs": 8}, {"hparam/acc": 0.9}, run_name="hp")
    w.flush()
    w.close()


def _read(run: Path) -> dict[str, object]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"images": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    out: dict[str, object] = {}
    for t in tags["scalars"]:
        out[f"scalar:{t}"] = [(e.step, round(e.value, 6)) for e in acc.Scalars(t)]
    for t in tags["histograms"]:
        h = acc.Histograms(t)[0].histogram_value
        out[f"hist:{t}"] = (h.min, h.max, h.num, round(h.sum, 4))
    for t in tags["images"]:
        im = acc.Images(t)[0]
        out[f"image:{t}"] = (im.width, im.height)
    return out


def test_summary_writer_matches_pytorch(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    _log(TorchWriter, torch, tmp_path / "t")
    _log(SummaryWriter, ck, tmp_path / "c")
    runs_t = sorted(p.name for p in (tmp_path / "t").iterdir() if p.is_dir())
    runs_c = sorted(p.name for p in (tmp_path / "c").iterdir() if p.is_dir())
    assert runs_c == runs_t == ["Accuracy_train", "Accuracy_val", "hp"]
    for run in ["", *runs_t]:
        got, want = _read(tmp_path / "c" / run), _read(tmp_path / "t" / run)
        assert got == want, run
    assert _read(tmp_path / "c")["scalar:Loss/train"] == [(0, 0.5), (1, 0.25)]


def test_default_log_dir_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with SummaryWriter(comment="_lr0.1") as w:
        assert w.get_logdir().startswith("runs" + __import__("os").sep)
        assert w.get_logdir().endswith("_lr0.1")
        with pytest.raises(ValueError, match="one element"):
            w.add_scalar("x", ck.tensor([1.0, 2.0]), 0)
        with pytest.warns(UserWarning, match="add_graph"):
            w.add_graph(ck.nn.Linear(2, 2), ck.zeros(1, 2))
    assert len(list((tmp_path / "runs").iterdir())) == 1
