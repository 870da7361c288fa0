"""resnet_cifar(depth): PyTorch's module names, option A shortcuts, outputs equal to a
PyTorch re-implementation of He et al. (2016, sec. 4.2) with the same weights."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit as ck
from cnnkit.io import load_torch_state_dict
from cnnkit.models import ResNetCIFAR, get_model, resnet_cifar

torch = pytest.importorskip("torch")
tnn = torch.nn
tF = torch.nn.functional


class TorchBlock(tnn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = tnn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.shortcut = tnn.Sequential()
        self.pad = None
        if stride != 1 or in_planes != planes:
            self.pad = planes // 4  # option A: subsample, zero-pad the channels

    def forward(self, x):
        out = tF.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.pad is None:
            short = self.shortcut(x)
        else:
            short = tF.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return tF.relu(out + short)


class TorchResNetCIFAR(tnn.Module):
    def __init__(self, n, num_classes=10):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, 1)
        self.layer2 = self._stage(16, 32, n, 2)
        self.layer3 = self._stage(32, 64, n, 2)
        self.linear = tnn.Linear(64, num_classes)

    @staticmethod
    def _stage(cin, planes, n, stride):
        return tnn.Sequential(
            TorchBlock(cin, planes, stride), *[TorchBlock(planes, planes) for _ in range(n - 1)]
        )

    def forward(self, x):
        out = tF.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = tF.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


def _warm(tmodel):
    tmodel.train()
    with torch.no_grad():
        for _ in range(2):
            tmodel(torch.randn(4, 3, 32, 32) * 1.5 + 0.2)
    tmodel.eval()


@pytest.mark.parametrize(
    "depth, params", [(20, 269_722), (32, 464_154), (56, 853_018), (110, 1_727_962)]
)
def test_depths_and_parameter_counts(depth, params):
    model = resnet_cifar(depth)
    assert sum(p.numel() for p in model.parameters()) == params
    n = (depth - 2) // 6
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [n, n, n]
    assert sum(isinstance(m, ck.nn.Conv2d) for m in model.modules()) + 1 == depth


def test_names_and_outputs_equal_pytorch(tmp_path):
    torch.manual_seed(0)
    tmodel = TorchResNetCIFAR(n=3)
    _warm(tmodel)
    model = resnet_cifar(20)
    assert list(model.state_dict()) == list(tmodel.state_dict())
    # through a checkpoint as published: DataParallel prefix, inside a checkpoint dict
    wrapped = {f"module.{k}": v for k, v in tmodel.state_dict().items()}
    path = tmp_path / "resnet20.th"
    torch.save({"state_dict": wrapped, "best_prec1": 91.7}, path)
    model.load_state_dict(load_torch_state_dict(path, strip_prefix="module."))
    model.eval()
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(ck.tensor(x)).numpy(), want, rtol=1e-4, atol=1e-4)


def test_gradients_equal_pytorch_and_old_checkpoints_without_num_batches_tracked():
    torch.manual_seed(1)
    tmodel = TorchResNetCIFAR(n=1)
    _warm(tmodel)
    sd = {k: v for k, v in tmodel.state_dict().items() if "num_batches_tracked" not in k}
    model = resnet_cifar(8)
    model.load_state_dict(sd)  # PyTorch < 0.4.1 saved no num_batches_tracked
    model.eval()
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    tmodel(tx).square().sum().backward()
    cx = ck.tensor(x, requires_grad=True)
    (model(cx) ** 2).sum().backward()
    np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-4)
    tw = tmodel.layer2[0].conv1.weight.grad.numpy()
    np.testing.assert_allclose(model.layer2[0].conv1.weight.grad.numpy(), tw, rtol=1e-3, atol=1e-4)


def test_bad_depth_and_zoo_name():
    for bad in (18, 21, 2, 0):
        with pytest.raises(ValueError, match=rf"depth must be 6n\+2 .*got {bad}"):
            resnet_cifar(bad)
    assert isinstance(get_model("resnet_cifar", depth=32), ResNetCIFAR)
