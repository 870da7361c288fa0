"""cnnkit.vision.models' ResNets against torchvision's architecture (the test-only stand-in
in tests/compat/oracle, written on torch from torchvision's layout): the same state-dict
keys and shapes, the same outputs for the same weights, torchvision's parameter counts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cnnkit as ck  # noqa: E402
from cnnkit.vision import models  # noqa: E402

ORACLE = Path(__file__).resolve().parents[1] / "compat" / "oracle"


@pytest.fixture(scope="module")
def tv_models():
    sys.path.insert(0, str(ORACLE))
    try:
        import torchvision.models as m
    finally:
        sys.path.remove(str(ORACLE))
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    return m


def _shapes(sd) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_state_dict_keys_and_shapes_match_torchvision(tv_models, name: str) -> None:
    ours = getattr(models, name)(num_classes=10)
    theirs = getattr(tv_models, name)(num_classes=10)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert _shapes(ours.state_dict()) == _shapes(theirs.state_dict())


def test_parameter_counts_are_torchvisions() -> None:
    # torchvision's documented sizes (ImageNet heads)
    counts = {"resnet18": 11_689_512, "resnet50": 25_557_032}
    for name, n in counts.items():
        model = getattr(models, name)()
        assert sum(p.numel() for p in model.parameters()) == n, name


def test_same_weights_same_outputs_and_gradients(tv_models) -> None:
    torch.manual_seed(0)
    theirs = tv_models.resnet18(num_classes=10)
    ours = models.resnet18(num_classes=10)
    ours.load_state_dict({k: ck.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    for train in (True, False):
        theirs.train(train)
        ours.train(train)
        xt = torch.tensor(x)
        xc = ck.tensor(x)
        yt, yc = theirs(xt), ours(xc)
        np.testing.assert_allclose(yc.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    yt.sum().backward()
    yc.sum().backward()
    np.testing.assert_allclose(
        ours.conv1.weight.grad.numpy(), theirs.conv1.weight.grad.numpy(), rtol=1e-3, atol=1e-4
    )
    # running statistics moved the same way in the training-mode pass
    np.testing.assert_allclose(
        ours.bn1.running_var.numpy(), theirs.bn1.running_var.numpy(), rtol=1e-4
    )


def test_torchvision_init_and_swapped_parts() -> None:
    ck.manual_seed(0)
    m = models.resnet18(num_classes=10, zero_init_residual=True)
    w = m.layer3[0].conv1.weight.numpy()  # fan_out = 256 * 3 * 3
    assert abs(w.std() - np.sqrt(2 / (256 * 9))) < 0.05 * np.sqrt(2 / (256 * 9))
    assert np.all(m.layer1[0].bn2.weight.numpy() == 0)
    assert np.all(m.bn1.weight.numpy() == 1) and np.all(m.bn1.bias.numpy() == 0)
    assert m.fc.in_features == 512 and m.fc.out_features == 10
    # the CIFAR recipe: a 3x3 stem without max pooling
    m.conv1 = ck.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.maxpool = ck.nn.Identity()
    m.fc = ck.nn.Linear(m.fc.in_features, 4)
    assert tuple(m(ck.zeros(2, 3, 16, 16)).shape) == (2, 4)
    assert models.resnet50(num_classes=3).fc.in_features == 2048


def test_pretrained_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="no pretrained weights"):
        models.resnet18(weights="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="pretrained=True"):
        models.resnet18(pretrained=True)
    with pytest.raises(TypeError, match="unexpected"):
        models.resnet18(num_clases=10)
