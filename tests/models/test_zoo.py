"""Zoo models: parameter counts equal PyTorch twins', shapes, and the DAG in SmallResNet."""

import numpy as np
import pytest
import torch

import cnnkit as ck
from cnnkit.models import MLP, LeNet5, SmallResNet, SmallVGG, get_model


def count(model):
    return sum(p.numel() for p in model.parameters())


def torch_lenet(in_ch=1, pad1=2, pad2=0, flat=400):
    tn = torch.nn
    return tn.ModuleDict(
        {
            "features": tn.Sequential(
                tn.Conv2d(in_ch, 6, 5, padding=pad1), tn.ReLU(), tn.MaxPool2d(2),
                tn.Conv2d(6, 16, 5, padding=pad2), tn.ReLU(), tn.MaxPool2d(2),
            ),
            "classifier": tn.Sequential(
                tn.Flatten(), tn.Linear(flat, 120), tn.ReLU(), tn.Linear(120, 84), tn.ReLU(),
                tn.Linear(84, 10),
            ),
        }
    )  # fmt: skip


def tcount(m):
    return sum(p.numel() for p in m.parameters())


def test_lenet5_parameter_count_is_the_classic_61706():
    assert count(LeNet5(input_size=28)) == 61_706 == tcount(torch_lenet())
    assert count(LeNet5(input_size=32)) == 61_706 == tcount(torch_lenet(pad1=0))
    assert count(LeNet5(input_size=28, dropout=0.5)) == 61_706


def test_zoo_counts_match_torch_twins():
    tn = torch.nn
    mlp = tn.Sequential(tn.Flatten(), tn.Linear(784, 256), tn.ReLU(), tn.Linear(256, 128),
                        tn.ReLU(), tn.Linear(128, 10))  # fmt: skip
    assert count(MLP()) == tcount(mlp) == 235_146
    vgg_layers = []
    c = 3
    for w in (32, 64, 128):
        vgg_layers += [tn.Conv2d(c, w, 3, padding=1, bias=False), tn.BatchNorm2d(w), tn.ReLU(),
                       tn.Conv2d(w, w, 3, padding=1, bias=False), tn.BatchNorm2d(w), tn.ReLU(),
                       tn.MaxPool2d(2)]  # fmt: skip
        c = w
    vgg = tn.Sequential(*vgg_layers, tn.Flatten(), tn.Linear(2048, 256), tn.Linear(256, 10))
    assert count(SmallVGG()) == tcount(vgg)


@pytest.mark.parametrize(
    "model, shape",
    [
        (LeNet5(input_size=28), (2, 1, 28, 28)),
        (LeNet5(input_size=32, in_channels=3), (2, 3, 32, 32)),
        (LeNet5(input_size=8), (2, 1, 8, 8)),
        (MLP(64, (32,), 10, dropout=0.2), (2, 1, 8, 8)),
        (SmallVGG(), (2, 3, 32, 32)),
        (SmallResNet(), (2, 3, 32, 32)),
        (SmallResNet(in_channels=1, widths=(8, 16)), (2, 1, 8, 8)),
    ],
)
def test_forward_shapes_and_backward_reaches_every_parameter(model, shape):
    x = ck.randn(*shape)
    out = model(x)
    assert out.shape == (shape[0], 10)
    out.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name


def test_get_model_and_errors():
    assert isinstance(get_model("LeNet-5", input_size=8), LeNet5)
    with pytest.raises(ValueError, match="unknown model 'alexnet'"):
        get_model("alexnet")
    with pytest.raises(ValueError, match="divisible"):
        SmallVGG(input_size=30)


def test_resnet_block_sums_two_branches():
    ck.manual_seed(0)
    m = SmallResNet(in_channels=1, widths=(4,), blocks_per_stage=1).double()
    x = ck.tensor(np.random.default_rng(0).standard_normal((2, 1, 6, 6)), requires_grad=True)
    m(x).sum().backward()
    assert x.grad is not None and np.isfinite(x.grad.numpy()).all()
