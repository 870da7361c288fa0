"""top_patches: each channel's best input patches are its receptive fields, and they
really produce the reported activations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import Digits
from cnnkit.train.run import load_run
from cnnkit.viz import plot_top_patches, top_patches


@pytest.mark.slow
def test_top_patches_recompute_their_activations(digits_run: Path, tmp_path: Path) -> None:
    _, model = load_run(digits_run)
    test = Digits(split="test")
    found = top_patches(model, test, "features.1", k=5)
    conv = model.features[0]
    w, b = conv.weight.numpy(), conv.bias.numpy()
    ch = w.shape[0]
    assert found.patches.shape == (ch, 5, 1, 5, 5)  # 5x5 receptive field of conv1
    for j in range(ch):
        assert np.all(np.diff(found.scores[j]) <= 0)  # best first
        assert len(set(found.index[j].tolist())) == 5  # one patch per image
        for t in range(5):
            # the patch (zeros outside the image = the conv's zero padding) gives the score
            act = max(0.0, float(np.sum(w[j] * found.patches[j, t]) + b[j]))
            np.testing.assert_allclose(act, found.scores[j, t], rtol=1e-4, atol=1e-5)
    # the best score of each channel is the channel's maximum over the whole test set
    x = np.stack([np.asarray(test.data[i]) for i in range(len(test))])
    from cnnkit.tensor import Tensor
    from cnnkit.viz.layers import capture

    act, _ = capture(model, model.features[1], Tensor(x), stop=True)
    np.testing.assert_allclose(found.scores[:, 0], act.numpy().max(axis=(0, 2, 3)), rtol=1e-5)
    deep = top_patches(model, test, "features.4", k=9)
    assert deep.patches.shape[2:] == (1, 14, 14)
    fc = top_patches(model, test, "classifier.2", k=3)
    assert fc.patches.shape[2:] == (1, 8, 8)  # a fully connected unit sees the whole image
    np.testing.assert_array_equal(fc.patches[0, 0], x[fc.index[0, 0]])
    png = plot_top_patches(deep, tmp_path / "tp.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_patches(model, test, "features.1", k=0)


@pytest.mark.slow
def test_cli_top_patches_and_dream(digits_run: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    from cnnkit.cli import main

    out = tmp_path / "vis"
    assert main(["visualize", str(digits_run), "--out", str(out), "--images", "0",
                 "--top-patches", "conv2"]) == 0  # fmt: skip
    assert (out / "top_patches.png").read_bytes()[:4] == b"\x89PNG"
    img = tmp_path / "d.png"
    Image.fromarray((np.asarray(Digits(split="test").data[0][0]) * 255).astype(np.uint8)).save(img)
    capsys.readouterr()
    assert main(["dream", str(digits_run), str(img), "--layer", "fc2", "--out",
                 str(tmp_path / "dream.png")]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "activation L2 norm" in text and "correlation with the original" in text
    assert main(["dream", str(digits_run), "--test-image", "3", "--layer", "conv1", "--out",
                 str(tmp_path / "t.png")]) == 0  # fmt: skip
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["dream", str(digits_run), "--test-image", "100000", "--layer", "conv1",
                 "--out", str(tmp_path / "t.png")]) == 2  # fmt: skip
    assert (
        main(["dream", str(digits_run), "--layer", "conv1", "--out", str(tmp_path / "t.png")]) == 2
    )
    assert main(["dream", str(digits_run), str(img), "--layer", "fc2", "--channel", "999",
                 "--out", str(tmp_path / "x.png")]) == 2  # fmt: skip
    # --keep: the guard's correlation (0.7 here) is what the dream keeps; -1 turns it off
    capsys.readouterr()
    for keep, least in (("0.7", 0.7), ("-1", -1.0)):
        assert main(["dream", str(digits_run), "--test-image", "3", "--layer", "fc1", "--keep",
                     keep, "--out", str(tmp_path / "k.jpg")]) == 0  # fmt: skip
        corr = float(
            capsys.readouterr().out.split("correlation with the original ")[1][:5].rstrip(";")
        )
        assert corr >= least - 5e-3
    assert corr < 0.5  # without the guard the dream leaves the original further behind
    assert (tmp_path / "k.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG, as named
    assert main(["dream", str(digits_run), "--test-image", "3", "--layer", "fc1", "--keep",
                 "1.5", "--out", str(tmp_path / "k.png")]) == 2  # fmt: skip
    assert "--keep must be a correlation in [-1, 1]" in capsys.readouterr().err
