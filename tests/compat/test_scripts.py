"""PyTorch-style training scripts run twice: under PyTorch, and under cnnkit after the
README's import table is applied to their text (nothing else changes).

The scripts live in ``scripts/``; the data are small local files in torchvision's layouts
(``_data.py``); torchvision itself is replaced on the PyTorch side by the test-only
stand-in in ``oracle/``. Both runs start from the same weights where the script can load
them, and must reach the same accuracy within 1 percentage point and write checkpoints
the other library reads.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.compat._data import write_cifar, write_mnist
from tests.compat._rewrite import rewrite

torch = pytest.importorskip("torch")

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "scripts"
ORACLE = HERE / "oracle"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, "MNIST", n_train=1200)
    write_mnist(root, "FashionMNIST", n_train=1200, gz=True)
    write_cifar(root, n_train=500, n_test=200)
    return root


def run(script: str, lib: str, cwd: Path, *args: str) -> str:
    """Run ``scripts/<script>.py`` in ``cwd`` under ``lib`` ('torch' or 'cnnkit'); its stdout."""
    cwd.mkdir(parents=True, exist_ok=True)
    src = (SCRIPTS / f"{script}.py").read_text()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    if lib == "torch":
        env["PYTHONPATH"] = os.pathsep.join([str(ORACLE), env.get("PYTHONPATH", "")])
    else:
        src = rewrite(src)
        assert "torch" not in re.sub(r"PyTorch|pytorch", "", src)
    path = cwd / f"{script}_{lib}.py"
    path.write_text(src)
    proc = subprocess.run(
        [sys.executable, str(path), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"{script} under {lib} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


def values(out: str, key: str) -> list[float]:
    return [float(v) for v in re.findall(rf"{key} ([\d.]+)", out)]


def torch_module(script: str):
    """Import a script's definitions under PyTorch (with the stand-in torchvision)."""
    sys.path.insert(0, str(ORACLE))
    try:
        spec = importlib.util.spec_from_file_location(f"compat_{script}", SCRIPTS / f"{script}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ORACLE))
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    return mod


def cnnkit_module(script: str):
    """Import a script's definitions rewritten for cnnkit."""
    mod = type(sys)(f"compat_ck_{script}")
    exec(compile(rewrite((SCRIPTS / f"{script}.py").read_text()), script, "exec"), mod.__dict__)
    return mod


def test_mnist_adadelta_steplr(data_root: Path, tmp_path: Path) -> None:
    import cnnkit as ck

    tm = torch_module("mnist_main")
    torch.manual_seed(0)
    torch.save(tm.Net().state_dict(), tmp_path / "init.pt")
    args = ("--data", str(data_root), "--epochs", "1", "--batch-size", "8", "--log-interval",
            "50", "--init", str(tmp_path / "init.pt"), "--save-model")  # fmt: skip
    out_t = run("mnist_main", "torch", tmp_path / "t", *args)
    out_c = run("mnist_main", "cnnkit", tmp_path / "c", *args)
    acc_t, acc_c = values(out_t, "FINAL_ACC")[-1], values(out_c, "FINAL_ACC")[-1]
    assert acc_t > 90 and abs(acc_t - acc_c) <= 1.0, (acc_t, acc_c)

    # each library reads the other's state dict; evaluating the same weights gives the
    # same accuracy to the last image
    cm = cnnkit_module("mnist_main")
    net_c = cm.Net()
    net_c.load_state_dict(ck.load(tmp_path / "t" / "mnist_cnn.pt", weights_only=True))
    tf = ck.vision.transforms
    ds = ck.vision.datasets.MNIST(
        data_root, train=False,
        transform=tf.Compose([tf.ToTensor(), tf.Normalize((0.1307,), (0.3081,))]),
    )  # fmt: skip
    acc = cm.test(net_c, ck.device("cpu"), ck.utils.data.DataLoader(ds, 1000))
    assert round(acc, 4) == acc_t
    net_t = tm.Net()
    net_t.load_state_dict(torch.load(tmp_path / "c" / "mnist_cnn.pt", weights_only=True))
    for k, v in net_t.state_dict().items():
        np.testing.assert_array_equal(
            v.numpy(), ck.load(tmp_path / "c" / "mnist_cnn.pt")[k].numpy()
        )


def test_cifar_tutorial_per_class_accuracy(data_root: Path, tmp_path: Path) -> None:
    import cnnkit as ck

    # the script defines Net after building its loaders: build one here with its layers
    sys.argv = ["x"]
    init = tmp_path / "init.pt"
    torch.manual_seed(1)
    net = torch.nn.ModuleDict()
    shapes = {"conv1": (3, 6, 5), "conv2": (6, 16, 5)}
    for k, (i, o, ks) in shapes.items():
        net[k] = torch.nn.Conv2d(i, o, ks)
    for k, (i, o) in {"fc1": (400, 120), "fc2": (120, 84), "fc3": (84, 10)}.items():
        net[k] = torch.nn.Linear(i, o)
    torch.save(net.state_dict(), init)
    args = ("--data", str(data_root), "--epochs", "3", "--lr", "0.003", "--init", str(init))
    out_t = run("cifar_tutorial", "torch", tmp_path / "t", *args)
    out_c = run("cifar_tutorial", "cnnkit", tmp_path / "c", *args)
    acc_t, acc_c = values(out_t, "FINAL_ACC")[-1], values(out_c, "FINAL_ACC")[-1]
    assert acc_t > 90 and abs(acc_t - acc_c) <= 1.0, (acc_t, acc_c)
    # the per-class loop (label == prediction on one-element tensors) counts every hit
    assert values(out_c, "CLASS_SUM")[-1] == round(acc_c * 200 / 100)
    assert "Accuracy for class: plane" in out_c
    sd = torch.load(tmp_path / "c" / "cifar_net.pth", weights_only=True)
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        k: tuple(v.shape) for k, v in torch.load(tmp_path / "t" / "cifar_net.pth").items()
    }
    assert set(ck.load(tmp_path / "t" / "cifar_net.pth")) == set(sd)


def test_resnet18_checkpoint_and_resume(data_root: Path, tmp_path: Path) -> None:
    args = ("--data", str(data_root), "--epochs", "1", "--width", "8", "--lr", "0.05")
    out_t = run("resnet_cifar", "torch", tmp_path / "t", *args)
    out_c = run("resnet_cifar", "cnnkit", tmp_path / "c", *args)
    assert "Saving.." in out_t and "Saving.." in out_c
    ckpt_c = torch.load(tmp_path / "c" / "checkpoint" / "ckpt.pth", weights_only=True)
    ckpt_t = torch.load(tmp_path / "t" / "checkpoint" / "ckpt.pth", weights_only=True)
    assert set(ckpt_c) == {"net", "acc", "epoch"} and ckpt_c["epoch"] == 0
    assert ckpt_c["acc"] == values(out_c, "TEST_ACC")[-1]
    assert {k: tuple(v.shape) for k, v in ckpt_c["net"].items()} == {
        k: tuple(v.shape) for k, v in ckpt_t["net"].items()
    }
    # the same weights evaluate to the same accuracy under cnnkit: PyTorch's checkpoint,
    # loaded into the script's own ResNet-18 rewritten for cnnkit
    import cnnkit as ck

    src = (SCRIPTS / "resnet_cifar.py").read_text()
    defs = src[: src.index("parser = argparse")]  # the classes, not the training run
    mod = type(sys)("compat_ck_resnet")
    exec(compile(rewrite(defs), "resnet_cifar", "exec"), mod.__dict__)
    net = mod.ResNet18(8)
    net.load_state_dict(ck.load(tmp_path / "t" / "checkpoint" / "ckpt.pth")["net"])
    net.eval()
    tf = ck.vision.transforms
    norm = tf.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    ds = ck.vision.datasets.CIFAR10(
        data_root, train=False, transform=tf.Compose([tf.ToTensor(), norm])
    )
    correct = 0
    with ck.no_grad():
        for x, y in ck.utils.data.DataLoader(ds, batch_size=100):
            correct += net(x).max(1)[1].eq(y).sum().item()
    assert 100.0 * correct / len(ds) == pytest.approx(ckpt_t["acc"], abs=1.0)

    # cnnkit resumes from PyTorch's checkpoint: epoch and best accuracy carry over
    d = tmp_path / "r_cnnkit"
    shutil.copytree(tmp_path / "t" / "checkpoint", d / "checkpoint")
    out = run("resnet_cifar", "cnnkit", d, "--resume", *args)
    assert "Resuming from checkpoint" in out and "Epoch: 1" in out and "Epoch: 0" not in out
    assert values(out, "TEST_ACC")


def test_lenet_lazy_layers(data_root: Path, tmp_path: Path) -> None:
    import cnnkit as ck

    args = ("--data", str(data_root), "--epochs", "3", "--lr", "0.1", "--batch-size", "16")
    out_t = run("lenet_lazy", "torch", tmp_path / "t", *args)
    out_c = run("lenet_lazy", "cnnkit", tmp_path / "c", *args)
    assert "Linear output shape:\t (1, 120)" in out_c
    acc_t, acc_c = values(out_t, "FINAL_ACC")[-1], values(out_c, "FINAL_ACC")[-1]
    assert acc_t > 90 and abs(acc_t - acc_c) <= 1.0, (acc_t, acc_c)
    sd_c = torch.load(tmp_path / "c" / "lenet.pt", weights_only=True)
    sd_t = ck.load(tmp_path / "t" / "lenet.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in sd_c.items()} == {
        k: tuple(v.shape) for k, v in sd_t.items()
    }
