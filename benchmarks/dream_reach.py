"""What DeepDream's defaults reach: the README's table ("The lecture's tools").

For each model, every layer output ``--layer`` can name, ``--images`` test images and
``--seeds`` jitter seeds: the dream's norm ratio (the layer's output L2 norm on the
dream over that on the original), its Pearson correlation with the original and whether
every pixel stayed in the data range. Prints, per model, the smallest and the median
ratio over everything, the same after conv1, and per layer.

Models (PyTorch ones are trained with torch 2.13, saved with ``torch.save`` and read by
``cnnkit.io.load_torch_state_dict``):

- ``demo``: `make demo`'s LeNet-5 on the 8x8 digits (cnnkit);
- ``torch-digits``: LeNet-5 (16/32 filters) trained in PyTorch on normalised 8x8 digits;
- ``torch-mnist``: LeNet-5 trained in PyTorch on 3,000 MNIST images, ``Normalize(0.1307,
  0.3081)``;
- ``cnnkit-mnist``: ``cnnkit train --model lenet5 --data mnist:... --epochs 3``;
- ``torch-resnet20``: ResNet-20 (He et al. 2016, option A) trained in PyTorch on 4,000
  MNIST images for 3 epochs, read into ``models.resnet_cifar(20, in_channels=1)``.

Run from the repository root: ``python benchmarks/dream_reach.py [--steps 40]``. The
PyTorch models need torch (``make test`` installs it into ``.venv``) and the three MNIST
models the MNIST test set (``--mnist DIR``, default ``../shared/data/mnist``); the whole
table takes about 5 minutes on 2 cores, ``--models demo`` about 30 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cnnkit as ck  # noqa: E402
from cnnkit.viz import data_range, deep_dream, layer_norm  # noqa: E402

MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"  # --mnist DIR changes it
MNIST_NORM = {"normalize": {"mean": [0.1307], "std": [0.3081]}}


def _lenet_layers(model: Any) -> list[str]:
    return [n for n, _ in model.named_modules() if n.count(".") == 1 and n != "classifier.0"]


def _shown(model: Any, layer: str) -> str:
    """A layer as ``cnnkit dream --layer`` names it: ``conv2 (features.3)``, or its
    dotted name with the layer type when it has no alias (``features.4 (ReLU)``)."""
    from cnnkit.cli import _aliased

    for prefix, found in _aliased(model).items():
        if layer in found:
            return f"{prefix}{found.index(layer) + 1} ({layer})"
    return f"{layer} ({type(dict(model.named_modules())[layer]).__name__})"


def demo(tmp: Path) -> tuple[Any, list[np.ndarray], Any, list[str]]:
    from cnnkit.data import Digits
    from cnnkit.train.run import load_run, train_run
    from examples.demo import DEMO_CONFIG

    train_run(tmp / "demo", **{**DEMO_CONFIG, "verbose": False})
    cfg, model = load_run(tmp / "demo")
    test = Digits(split="test")
    return model, [np.asarray(x) for x in test.data], data_range(cfg, 1), _lenet_layers(model)


def torch_digits(tmp: Path) -> tuple[Any, list[np.ndarray], Any, list[str]]:
    import torch

    from cnnkit.data import Digits
    from tests.viz.test_dream_goals import _imported, _torch_lenet, _train_torch

    torch.manual_seed(0)
    tmodel = _torch_lenet(torch, 16, 32, mnist=False)
    mean, std = 0.3, 0.4
    train = Digits(split="train")
    x = (np.asarray(train.data) - mean) / std
    _train_torch(torch, tmodel, x, np.asarray(train.targets), epochs=8, lr=3e-3)
    model = _imported(torch, tmodel, tmp / "digits.pt", input_size=8, channels=(16, 32))
    test = Digits(split="test")
    images = [((np.asarray(x) - mean) / std).astype(np.float32) for x in test.data]
    clip = data_range({"normalize": {"mean": [mean], "std": [std]}}, 1)
    return model, images, clip, _lenet_layers(model)


def _mnist_images() -> tuple[Any, list[np.ndarray]]:
    from cnnkit.data import MNIST

    data = MNIST(MNIST_DIR, train=False)
    mean, std = 0.1307, 0.3081
    images = [
        ((np.asarray(data.data[i]) - mean) / std).astype(np.float32) for i in range(8000, 8100)
    ]
    return data, images


def torch_mnist(tmp: Path) -> tuple[Any, list[np.ndarray], Any, list[str]]:
    import torch

    from tests.viz.test_dream_goals import _imported, _torch_lenet, _train_torch

    data, images = _mnist_images()
    x = (np.asarray(data.data[:3000]) - 0.1307) / 0.3081
    torch.manual_seed(0)
    tmodel = _torch_lenet(torch, 6, 16, mnist=True)
    _train_torch(torch, tmodel, x, np.asarray(data.targets[:3000]), epochs=1, lr=2e-3)
    model = _imported(torch, tmodel, tmp / "mnist.pt", input_size=28)
    return model, images, data_range(MNIST_NORM, 1), _lenet_layers(model)


def _array(v: Any) -> np.ndarray:
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float32)


def cnnkit_mnist(tmp: Path) -> tuple[Any, list[np.ndarray], Any, list[str]]:
    from cnnkit.train.run import load_data, load_run, train_run

    spec = f"mnist:{MNIST_DIR}"
    train_run(tmp / "ckmnist", model="lenet5", data=spec, epochs=3, verbose=False)
    cfg, model = load_run(tmp / "ckmnist")
    test = load_data(cfg["data"], seed=cfg.get("seed", 0)).test
    images = [_array(test[i][0]) for i in range(100)]
    return model, images, data_range(cfg, 1), _lenet_layers(model)


def torch_resnet20(tmp: Path) -> tuple[Any, list[np.ndarray], Any, list[str]]:
    import torch

    from tests.viz.test_dream_goals import _torch_resnet20_on_mnist

    data, images = _mnist_images()
    model = _torch_resnet20_on_mnist(torch, data, tmp / "resnet20.pt")
    layers = [
        "conv1",
        "relu",
        "layer1.0.conv1",
        "layer1",
        "layer2.0",
        "layer2",
        "layer3.0",
        "layer3",
        "linear",
    ]
    return model, images, data_range(MNIST_NORM, 1), layers


MODELS = {
    "demo": demo,
    "torch-digits": torch_digits,
    "torch-mnist": torch_mnist,
    "cnnkit-mnist": cnnkit_mnist,
    "torch-resnet20": torch_resnet20,
}


def measure(
    model: Any, images: list[np.ndarray], clip: Any, layer: str, seeds: int, steps: int
) -> tuple[list[float], float, bool]:
    """Norm ratios over images x seeds, the smallest correlation, all pixels in range."""
    low, high = float(np.min(clip[0])), float(np.max(clip[1]))
    ratios, corr, inside = [], 1.0, True
    for i, x in enumerate(images):
        before = layer_norm(model, x, layer)
        for s in range(seeds):
            ck.manual_seed(100 * s + i)
            d = deep_dream(model, x, layer, clip=clip, steps=steps)
            ratios.append(layer_norm(model, d, layer) / before)
            corr = min(corr, float(np.corrcoef(x.ravel(), d.ravel())[0, 1]))
            inside &= bool(d.min() >= low - 1e-6 and d.max() <= high + 1e-6)
    return ratios, corr, inside


def main() -> None:
    global MNIST_DIR
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated, of " + ", ".join(MODELS)
    )
    p.add_argument("--images", type=int, default=10, help="test images per layer")
    p.add_argument("--seeds", type=int, default=2, help="jitter seeds per image")
    p.add_argument(
        "--steps", type=int, default=None, help="steps per octave (None: deep_dream's default)"
    )
    p.add_argument("--mnist", type=Path, default=MNIST_DIR, help="the MNIST test set's folder")
    args = p.parse_args()
    names = args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        p.error(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    MNIST_DIR = args.mnist
    needs_torch = [n for n in names if n.startswith("torch")]
    if needs_torch and importlib.util.find_spec("torch") is None:
        p.error(
            f"{', '.join(needs_torch)} need torch (`make test` installs it); without it: "
            "--models demo,cnnkit-mnist"
        )
    if (
        any("mnist" in n or "resnet" in n for n in names)
        and not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists()
    ):
        p.error(f"the MNIST models need the MNIST test set in {MNIST_DIR} (--mnist DIR)")
    import inspect

    steps = args.steps or inspect.signature(deep_dream).parameters["steps"].default
    print(f"steps per octave {steps}; {args.images} image(s) x {args.seeds} seed(s) per layer")
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            model, images, clip, layers = MODELS[name](Path(tmp))
            model.eval()
            every, later, worst, inside = [], [], 1.0, True
            lines = []
            for layer in layers:
                r, c, ok = measure(model, images[: args.images], clip, layer, args.seeds, steps)
                every += r
                if layer not in ("conv1", "features.0"):
                    later += r
                worst, inside = min(worst, c), inside and ok
                shown = _shown(model, layer)
                lines.append(f"  {shown:26s} min x{min(r):.2f}  median x{np.median(r):.2f}")
            print(
                f"{name}: {len(every)} dreams, norm ratio min x{min(every):.2f} median "
                f"x{np.median(every):.2f}; after conv1 min x{min(later):.2f} median "
                f"x{np.median(later):.2f}; correlation >= {worst:.3f}; in range: {inside} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
            print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
