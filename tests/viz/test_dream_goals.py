"""DeepDream's goals at the defaults: the target grows, the pixels stay in the data range,
the dream keeps the original's structure; on the demo model and on one trained in PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit as ck
from cnnkit.data import Digits
from cnnkit.viz import data_range, deep_dream, layer_norm

IMAGES = range(8)


def _stats(model, images, layer, clip):
    ratios, corrs, lo, hi = [], [], np.inf, -np.inf
    for i, x in enumerate(images):
        ck.manual_seed(i)
        d = deep_dream(model, x, layer, clip=clip)
        ratios.append(layer_norm(model, d, layer) / layer_norm(model, x, layer))
        corrs.append(np.corrcoef(x.ravel(), d.ravel())[0, 1])
        lo, hi = min(lo, d.min()), max(hi, d.max())
    print(layer, np.round(ratios, 2), np.round(corrs, 2))
    return np.array(ratios), np.array(corrs), lo, hi


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    from cnnkit.train.run import load_run, train_run
    from examples.demo import DEMO_CONFIG  # the very configuration of `make demo`

    out = tmp_path_factory.mktemp("demo") / "run"
    train_run(out, **{**DEMO_CONFIG, "verbose": False})
    return load_run(out)


@pytest.mark.slow
def test_dream_goals_on_the_demo_model(demo_model):
    cfg, model = demo_model
    clip = data_range(cfg, 1)
    assert clip == (0.0, 1.0)
    test = Digits(split="test")
    images = [np.asarray(test.data[i]) for i in IMAGES]
    ratios, corrs, lo, hi = _stats(model, images, "classifier.4", clip)
    assert np.median(ratios) >= 2.0 and ratios.min() >= 1.5
    assert corrs.min() >= 0.5
    assert lo >= 0.0 and hi <= 1.0
    ratios, corrs, lo, hi = _stats(model, images, "features.1", clip)
    assert np.median(ratios) >= 1.7 and corrs.min() >= 0.5 and lo >= 0.0 and hi <= 1.0


@pytest.mark.slow
def test_dream_on_a_model_trained_in_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    from cnnkit.io import load_torch_state_dict
    from cnnkit.models import LeNet5

    tnn = torch.nn
    torch.manual_seed(0)
    tmodel = tnn.Sequential()
    tmodel.features = tnn.Sequential(
        tnn.Conv2d(1, 16, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(16, 32, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
    )  # fmt: skip
    tmodel.classifier = tnn.Sequential(
        tnn.Flatten(), tnn.Linear(128, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
        tnn.Linear(84, 10),
    )  # fmt: skip
    mean, std = 0.3, 0.4  # trained on normalised inputs: the data range is [-0.75, 1.75]
    train = Digits(split="train")
    x = torch.from_numpy((np.asarray(train.data) - mean) / std).float()
    y = torch.from_numpy(np.asarray(train.targets))
    opt = torch.optim.Adam(tmodel.parameters(), 3e-3)
    for _ in range(8):
        perm = torch.randperm(len(x))
        for s in range(0, len(x), 64):
            idx = perm[s : s + 64]
            opt.zero_grad()
            tnn.functional.cross_entropy(tmodel(x[idx]), y[idx]).backward()
            opt.step()
    torch.save(tmodel.state_dict(), tmp_path / "lenet.pt")
    model = LeNet5(input_size=8, channels=(16, 32))
    model.load_state_dict(load_torch_state_dict(tmp_path / "lenet.pt"))
    model.eval()
    clip = data_range({"normalize": {"mean": [mean], "std": [std]}}, 1)
    np.testing.assert_allclose([clip[0][0], clip[1][0]], [-0.75, 1.75])
    test = Digits(split="test")
    images = [((np.asarray(test.data[i]) - mean) / std).astype(np.float32) for i in IMAGES]
    ratios, corrs, lo, hi = _stats(model, images, "classifier.4", clip)
    assert lo >= -0.75 - 1e-6 and hi <= 1.75 + 1e-6
    assert corrs.min() >= 0.5
    assert np.median(ratios) >= 1.3  # grows, but less than on the demo model (see report)


def test_dream_keeps_per_channel_ranges_and_refuses_bad_clip():
    ck.manual_seed(0)
    from cnnkit.models import SmallVGG

    model = SmallVGG(widths=(4, 8), input_size=16)
    img = np.random.default_rng(0).uniform(0, 1, (3, 16, 16)).astype(np.float32)
    clip = ([0.0, -1.0, 0.2], [1.0, 0.5, 0.3])
    d = deep_dream(model, img, "features.2", clip=clip, steps=5)
    for c in range(3):
        assert d[c].min() >= clip[0][c] - 1e-6 and d[c].max() <= clip[1][c] + 1e-6
    with pytest.raises(ValueError, match="clip bounds need 1 or 3 values"):
        deep_dream(model, img, "features.2", clip=([0, 0], [1, 1]))
    with pytest.raises(ValueError, match="clip needs low < high"):
        deep_dream(model, img, "features.2", clip=(1.0, 0.0))
    with pytest.raises(ValueError, match="objective must be"):
        deep_dream(model, img, "features.2", objective="max")
