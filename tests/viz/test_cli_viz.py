"""`cnnkit visualize` and `cnnkit dream` on a trained run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main
from cnnkit.data import Digits
from tests.test_cli import assert_one_line_error


@pytest.fixture
def digit_png(tmp_path: Path) -> Path:
    x, _ = Digits(split="test")[0]
    a = np.asarray(x)[0]
    path = tmp_path / "digit.png"
    Image.fromarray((255 * a / a.max()).astype(np.uint8)).save(path)
    return path


def test_visualize_writes_every_picture(
    digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "vis"
    assert main(["visualize", str(digits_run), "--out", str(out), "--images", "2"]) == 0
    want = {"filters.png", "curves.png"}
    for i in range(2):
        want |= {f"activations_{i}_conv1.png", f"activations_{i}_conv2.png", f"saliency_{i}.png"}
    assert {p.name for p in out.iterdir()} == want
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in out.iterdir())
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == sorted(want)


def test_visualize_errors(
    digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = assert_one_line_error(capsys, main(["visualize", str(tmp_path), "--out", str(tmp_path)]))
    assert "not a finished run" in err
    rc = main(["visualize", str(digits_run), "--out", str(tmp_path), "--images", "-1"])
    assert "--images" in assert_one_line_error(capsys, rc)


@pytest.mark.parametrize("layer", ["conv2", "features.3", "conv1", "fc2", "classifier.2"])
def test_dream(
    digits_run: Path,
    digit_png: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    layer: str,
) -> None:
    out = tmp_path / "sub" / "dream.png"
    rc = main(["dream", str(digits_run), str(digit_png), "--layer", layer, "--out", str(out)])
    assert rc == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    text = capsys.readouterr().out
    name = {"conv2": "features.3", "conv1": "features.0", "fc2": "classifier.3"}.get(layer, layer)
    assert name in text
    norms = text.split("activation L2 norm ")[1].split(" (x")[0]
    before, after = (float(v) for v in norms.split("->"))
    corr = float(text.split("correlation with the original ")[1].split(";")[0])
    lo, hi = (float(v) for v in text.split("pixels in [")[1].split("]")[0].split(","))
    print(layer, before, after, corr, lo, hi)
    assert after > 1.2 * before and corr >= 0.5 and 0 <= lo < hi <= 1
    assert f"(x{after / before:.2f})" in text and "data range [0, 1]" in text


def test_dream_options_and_errors(
    digits_run: Path, digit_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d.png"
    base = ["dream", str(digits_run), str(digit_png), "--out", str(out)]
    rc = main([*base, "--layer", "conv2", "--channel", "5", "--octaves", "2", "--jitter", "1"])
    assert rc == 0 and "channel 5" in capsys.readouterr().out
    err = assert_one_line_error(capsys, main([*base, "--layer", "conv3"]))
    assert "2 Conv2d layers; aliases: conv1 = features.0, conv2 = features.3" in err
    assert "pool2 = features.5" in err and "fc3 = classifier." in err
    err = assert_one_line_error(capsys, main([*base, "--layer", "nope"]))
    assert "--layer nope: the model has no such layer; aliases: conv1 = features.0" in err
    assert "or a dotted name of any layer (features, features.0, features.1," in err
    err = assert_one_line_error(capsys, main([*base, "--layer", "conv1", "--channel", "6"]))
    assert "channel 6 out of range" in err
    assert "--steps" in assert_one_line_error(
        capsys, main([*base, "--layer", "conv1", "--steps", "0"])
    )
    err = assert_one_line_error(capsys, main([*base, "--layer", "conv1", "--lr", "-1"]))
    assert "lr > 0" in err
