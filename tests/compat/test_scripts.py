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


# --- scripts as their authors publish them: no flags added for the test, data where the
# script looks for it (../data, ../../data/), outputs parsed from what the script prints


def _published_run(script: str, lib: str, base: Path, data_root: Path, depth: int, *args: str):
    """Run ``script`` in ``base/<lib>/w[/w]`` with the data reachable as ``../data`` (depth
    1) or ``../../data`` (depth 2), as the published scripts expect."""
    top = base / lib
    top.mkdir(parents=True, exist_ok=True)
    (top / "data").symlink_to(data_root, target_is_directory=True)
    cwd = top.joinpath(*["w"] * depth)
    return run(script, lib, cwd, *args), cwd


def test_published_mnist_example_dry_run(data_root: Path, tmp_path: Path) -> None:
    import cnnkit as ck

    args = ("--epochs", "1", "--dry-run", "--save-model", "--test-batch-size", "200")
    out_t, cwd_t = _published_run("mnist_examples", "torch", tmp_path, data_root, 1, *args)
    out_c, cwd_c = _published_run("mnist_examples", "cnnkit", tmp_path, data_root, 1, *args)
    for out in (out_t, out_c):
        assert "Train Epoch: 1 [0/1200 (0%)]" in out and "Accuracy: " in out
        assert out.count("Train Epoch") == 1  # --dry-run stops after the first logged batch
    sd_c = torch.load(cwd_c / "mnist_cnn.pt", weights_only=True)
    sd_t = ck.load(cwd_t / "mnist_cnn.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in sd_c.items()} == {
        k: tuple(v.shape) for k, v in sd_t.items()
    }


def _accuracies(out: str, prefix: str) -> list[float]:
    return [float(v) for v in re.findall(rf"{prefix}[^:]*: ([\d.]+) %", out)]


def test_yunjey_style_convnet(data_root: Path, tmp_path: Path) -> None:
    import cnnkit as ck

    out_t, cwd_t = _published_run("yunjey_cnn", "torch", tmp_path, data_root, 2)
    out_c, cwd_c = _published_run("yunjey_cnn", "cnnkit", tmp_path, data_root, 2)
    cnn_t, ff_t = _accuracies(out_t, "Test Accuracy")[0], _accuracies(out_t, "Accuracy of")[0]
    cnn_c, ff_c = _accuracies(out_c, "Test Accuracy")[0], _accuracies(out_c, "Accuracy of")[0]
    assert cnn_t > 95 and abs(cnn_t - cnn_c) <= 1.0, (cnn_t, cnn_c)
    # the feed-forward net (images.reshape(-1, 28*28)) starts from other random weights
    assert ff_t > 90 and ff_c > 90, (ff_t, ff_c)
    # model.ckpt written by either library loads into the other's ConvNet
    sd = torch.load(cwd_c / "model.ckpt", weights_only=True)
    assert [k for k in sd if "running" in k] == [
        k for k in ck.load(cwd_t / "model.ckpt") if "running" in k
    ]


def test_d2l_style_lenet(data_root: Path, tmp_path: Path) -> None:
    outs = {}
    for lib in ("torch", "cnnkit"):
        outs[lib], _ = _published_run("d2l_lenet", lib, tmp_path, data_root, 1, "16", "3", "0.03")
    shapes = re.findall(r"(\w+) output shape: \t (.*)", outs["cnnkit"])
    assert shapes[0] == ("Conv2d", "(1, 6, 28, 28)") and shapes[-1] == ("Linear", "(1, 10)")
    assert "training on cpu" in outs["cnnkit"]
    acc_t, acc_c = (float(re.findall(r"test acc ([\d.]+)", outs[k])[-1]) for k in outs)
    # the libraries draw other random streams from the same seed: both learn, to within
    # 2 points (measured 0.995 and 0.987, the same every run)
    assert acc_t > 0.9 and acc_c > 0.9 and abs(acc_t - acc_c) <= 0.02, (acc_t, acc_c)


def _tb_runs(log_dir: Path) -> dict[str, set[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for run_dir in [log_dir, *sorted(p for p in log_dir.iterdir() if p.is_dir())]:
        acc = EventAccumulator(str(run_dir))
        acc.Reload()
        name = "." if run_dir == log_dir else run_dir.name
        if name[0].isdigit():  # add_hparams' sub-run is named by the time
            name = "<time>"
        out[name] = {f"{kind}:{t}" for kind in ("scalars", "histograms", "images")
                     for t in acc.Tags()[kind]}  # fmt: skip
    return out


def test_tensorboard_torchvision_resnet18(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    import cnnkit as ck

    sys.path.insert(0, str(ORACLE))
    try:
        import torchvision.models as tvm

        torch.manual_seed(0)
        torch.save(tvm.resnet18(num_classes=10).state_dict(), tmp_path / "init.pt")
    finally:
        sys.path.remove(str(ORACLE))
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    data_root = tmp_path / "small_cifar"  # ResNet-18 at full width: few images
    write_cifar(data_root, n_train=150, n_test=60)
    args = ("--data", str(data_root), "--epochs", "1", "--batch-size", "16", "--train-size",
            "32", "--init", str(tmp_path / "init.pt"))  # fmt: skip
    out_t = run("tb_resnet18", "torch", tmp_path / "t", *args)
    out_c = run("tb_resnet18", "cnnkit", tmp_path / "c", *args)
    for out in (out_t, out_c):
        assert "train 32, val 30, test 60" in out and "fc in_features: 512" in out
    # the same TensorBoard runs and tags
    assert _tb_runs(tmp_path / "c" / "runs" / "resnet18") == _tb_runs(
        tmp_path / "t" / "runs" / "resnet18"
    )
    # each library's best checkpoint, evaluated by the other's ResNet-18 on the test set,
    # gives the confusion-matrix trace that library printed
    tf = ck.vision.transforms
    norm = tf.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    ds = ck.vision.datasets.CIFAR10(
        data_root, train=False, transform=tf.Compose([tf.ToTensor(), norm])
    )
    net = ck.vision.models.resnet18(num_classes=10)
    net.load_state_dict(ck.load(tmp_path / "t" / "best_resnet18.pth", weights_only=True))
    net.eval()
    with ck.no_grad():
        hits = sum(int((net(x).argmax(1) == y).sum()) for x, y in ck.utils.data.DataLoader(ds, 100))
    assert abs(hits - values(out_t, "CM_TRACE")[-1]) <= 1
    sd_c = torch.load(tmp_path / "c" / "best_resnet18.pth", weights_only=True)
    assert list(sd_c) == list(torch.load(tmp_path / "init.pt", weights_only=True))


# --- scripts exercising the later layers, schedulers, transforms and tensor ops


def _defs(script: str, start: str, end: str, lib: str) -> dict:
    """The definitions between ``start`` and ``end`` in a script (its model classes, not
    its training run), executed under ``lib`` with the script's own imports."""
    src = (SCRIPTS / f"{script}.py").read_text()
    head = "\n".join(
        line for line in src.splitlines() if line.startswith(("import ", "from "))
        and "torchvision" not in line
    )  # fmt: skip
    code = head + "\n" + src[src.index(start) : src.index(end)]
    ns: dict = {}
    exec(compile(rewrite(code) if lib == "cnnkit" else code, script, "exec"), ns)
    return ns


def _epoch_values(out: str, key: str) -> list[float]:
    """``key: <number>`` on the lines that start with 'Epoch'."""
    lines = "\n".join(line for line in out.splitlines() if line.startswith("Epoch"))
    return [float(v) for v in re.findall(rf"{key}: ([\d.]+)", lines)]


def test_fashion_conv_autoencoder(data_root: Path, tmp_path: Path) -> None:
    from PIL import Image

    import cnnkit as ck

    defs_t = _defs("fashion_autoencoder", "class ConvAutoencoder", "transform =", "torch")
    torch.manual_seed(0)
    torch.save(defs_t["ConvAutoencoder"](16).state_dict(), tmp_path / "init.pt")
    args = ("--data", str(data_root), "--epochs", "3", "--batch-size", "32", "--init",
            str(tmp_path / "init.pt"))  # fmt: skip
    out_t = run("fashion_autoencoder", "torch", tmp_path / "t", *args)
    out_c = run("fashion_autoencoder", "cnnkit", tmp_path / "c", *args)
    for out in (out_t, out_c):
        assert "train images: 1200, test images: 597" in out and "parameters: 64561" in out
    # from the same weights the reconstruction error falls alike (the batches are shuffled
    # by each library's own generator: measured 0.0309/0.0199/0.0135 and 0.0311/0.0199/0.0127)
    mse_t, mse_c = _epoch_values(out_t, "test mse"), _epoch_values(out_c, "test mse")
    assert len(mse_c) == 3 and mse_c[0] > mse_c[1] > mse_c[2], mse_c
    np.testing.assert_allclose(mse_c, mse_t, rtol=0.15)
    assert mse_c[-1] < 0.02

    # PyTorch's trained weights in the script's own model under cnnkit: the same test
    # error to the printed digits, the same reconstructions, the same picture
    defs_c = _defs("fashion_autoencoder", "class ConvAutoencoder", "transform =", "cnnkit")
    net_c = defs_c["ConvAutoencoder"](16)
    net_c.load_state_dict(ck.load(tmp_path / "t" / "results" / "conv_autoencoder.pth"))
    ds = ck.vision.datasets.FashionMNIST(
        data_root, train=False, transform=ck.vision.transforms.ToTensor()
    )
    loader = ck.utils.data.DataLoader(ds, batch_size=256)
    evaluate = _defs("fashion_autoencoder", "def evaluate", "history = []", "cnnkit")
    evaluate["device"] = ck.device("cpu")  # the script's global
    assert f"{evaluate['evaluate'](net_c, loader):.5f}" == f"{values(out_t, 'RECON_MSE')[-1]:.5f}"
    net_t = defs_t["ConvAutoencoder"](16)
    net_t.load_state_dict(torch.load(tmp_path / "t" / "results" / "conv_autoencoder.pth"))
    net_t.eval()
    images = next(iter(loader))[0][:8]
    with ck.no_grad():
        recon = net_c(images)
        z = net_c.encode(images[:2])
    with torch.no_grad():
        recon_t = net_t(torch.from_numpy(images.numpy()))
        z_t = net_t.encode(torch.from_numpy(images.numpy()[:2]))
    np.testing.assert_allclose(recon.numpy(), recon_t.numpy(), atol=2e-6)
    np.testing.assert_allclose(z.numpy(), z_t.numpy(), rtol=1e-4, atol=1e-5)
    pic = tmp_path / "recon_c.png"
    ck.vision.utils.save_image(ck.cat([images, recon.view(-1, 1, 28, 28)]), pic, nrow=8)
    a = np.asarray(Image.open(pic), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "t" / "results" / "reconstruction.png"), dtype=np.int16)
    assert a.shape == b.shape == (62, 242, 3) and np.abs(a - b).max() <= 1
    inter = Image.open(tmp_path / "c" / "results" / "interpolation.png")
    assert inter.size == (233, 30)  # padding=1: 8 * 29 + 1 wide

    # and PyTorch reads cnnkit's checkpoint
    sd = torch.load(tmp_path / "c" / "results" / "conv_autoencoder.pth", weights_only=True)
    net_t.load_state_dict(sd)
    assert list(sd) == list(torch.load(tmp_path / "init.pt", weights_only=True))

    # the BCE variant trains under both for an epoch, to about the same error
    args = ("--data", str(data_root), "--epochs", "1", "--batch-size", "32", "--init",
            str(tmp_path / "init.pt"), "--loss", "bce")  # fmt: skip
    bce_t = run("fashion_autoencoder", "torch", tmp_path / "tb", *args)
    bce_c = run("fashion_autoencoder", "cnnkit", tmp_path / "cb", *args)
    np.testing.assert_allclose(
        _epoch_values(bce_c, "train loss"), _epoch_values(bce_t, "train loss"), rtol=0.05
    )


def _lines(out: str, start: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(start)]


def test_cifar_augmentation_sampler_warmup_cosine(tmp_path: Path) -> None:
    import cnnkit as ck

    # classes 0-4 thinned to one image in five: the sampler has something to balance
    data = tmp_path / "imbalanced"
    write_cifar(data, n_train=600, n_test=200, rare=(0, 1, 2, 3, 4))
    defs_t = _defs("cifar_augment", "def conv_block", "net = Net", "torch")
    torch.manual_seed(3)
    torch.save(defs_t["Net"](10).state_dict(), tmp_path / "init.pt")
    args = ("--data", str(data), "--epochs", "4", "--batch-size", "32", "--warmup-epochs",
            "1", "--init", str(tmp_path / "init.pt"))  # fmt: skip
    out_t = run("cifar_augment", "torch", tmp_path / "t", *args)
    out_c = run("cifar_augment", "cnnkit", tmp_path / "c", *args)
    counts = "train images per class: [13, 12, 12, 12, 12, 54, 61, 66, 61, 61]"
    assert counts in out_t and counts in out_c
    # the warm-up into the cosine schedule, stepped per batch (12 an epoch), is the same
    lrs_t = [float(v) for v in re.findall(r"\| lr ([\d.]+)", out_t)]
    lrs_c = [float(v) for v in re.findall(r"\| lr ([\d.]+)", out_c)]
    assert lrs_c == lrs_t == [0.005, 0.05, 0.037525, 0.012575]
    assert "final lr 0.000100" in out_c
    # WeightedRandomSampler: the rare classes are drawn as often as the common ones
    # (unweighted, one fifth as often)
    seen = np.array([eval(line.split(":")[1]) for line in _lines(out_c, "  sampled")])
    assert seen.shape == (4, 10) and (seen.sum(1) == 364).all()
    ratio = seen[:, :5].sum() / seen[:, 5:].sum()
    assert 0.8 < ratio < 1.25, seen
    # both learn the classes from augmented, label-smoothed batches: the train loss stays
    # above the smoothing's floor and ends near PyTorch's
    loss_t = [float(v) for v in re.findall(r"train loss ([\d.]+)", out_t)]
    loss_c = [float(v) for v in re.findall(r"train loss ([\d.]+)", out_c)]
    assert loss_c[0] > loss_c[-1] > 0.5 and abs(loss_c[-1] - loss_t[-1]) < 0.15, (loss_c, loss_t)
    acc_t = [float(v) for v in re.findall(r"test acc ([\d.]+)%", out_t)]
    acc_c = [float(v) for v in re.findall(r"test acc ([\d.]+)%", out_c)]
    assert acc_t[-1] >= 90 and acc_c[-1] >= 90, (acc_t, acc_c)

    # each library resumes from the other's epoch-2 checkpoint (model, SGD momentum,
    # SequentialLR state): the schedule carries on where it stopped
    for lib, other in (("cnnkit", "t"), ("torch", "c")):
        ckpt = tmp_path / other / "checkpoints" / "epoch_2.pth"
        out = run("cifar_augment", lib, tmp_path / f"r_{lib}", *args, "--resume", str(ckpt))
        assert f"==> Resuming from {ckpt}" in out
        assert [float(v) for v in re.findall(r"\| lr ([\d.]+)", out)] == lrs_t[2:]
        assert re.findall(r"Epoch (\d)/4", out) == ["3", "4"]
        assert "final lr 0.000100" in out

    # PyTorch's best weights evaluate to PyTorch's best accuracy in cnnkit's Net
    defs_c = _defs("cifar_augment", "def conv_block", "net = Net", "cnnkit")
    net = defs_c["Net"](10)
    net.load_state_dict(ck.load(tmp_path / "t" / "checkpoints" / "best_model.pth"))
    net.eval()
    tf = ck.vision.transforms
    norm = tf.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    ds = ck.vision.datasets.CIFAR10(data, train=False, transform=tf.Compose([tf.ToTensor(), norm]))
    with ck.no_grad():
        hits = sum(int((net(x).argmax(1) == y).sum()) for x, y in ck.utils.data.DataLoader(ds, 100))
    best_t = float(re.findall(r"Best test accuracy: ([\d.]+)%", out_t)[0])
    assert abs(100.0 * hits / 200 - best_t) <= 0.5
    ckpt_c = torch.load(tmp_path / "c" / "checkpoints" / "epoch_4.pth", weights_only=True)
    assert set(ckpt_c) == {"epoch", "model", "optimizer", "scheduler", "best_acc"}
    assert ckpt_c["scheduler"]["_milestones"] == [12] and ckpt_c["epoch"] == 3


def test_evaluation_tensor_recipes(tmp_path: Path) -> None:
    # deterministic: no data, no random numbers; every printed line must be PyTorch's
    out_t = run("eval_utils", "torch", tmp_path / "t")
    out_c = run("eval_utils", "cnnkit", tmp_path / "c")
    # the one documented difference: dtypes print as NumPy's ('int64', not 'torch.int64')
    assert "targets: (60,) torch.int64" in out_t and "targets: (60,) int64" in out_c
    assert out_c.splitlines() == out_t.replace("torch.int64", "int64").splitlines()
    for line in ("three ways agree: True", "scatter_ one-hot == F.one_hot: True",
                 "F.cosine_similarity agrees: True", "einsum == matmul: True",
                 "batched argmax == full argmax: True", "19 mistakes"):  # fmt: skip
        assert line in out_c
    # other sizes too (a batch size that leaves a remainder, more bins)
    args = ("--num-samples", "37", "--embed-dim", "6", "--batch-size", "10", "--bins", "10")
    out_t = run("eval_utils", "torch", tmp_path / "t2", *args)
    out_c = run("eval_utils", "cnnkit", tmp_path / "c2", *args)
    assert "split sizes: [10, 10, 10, 7]" in out_c
    assert out_c.splitlines() == out_t.replace("torch.int64", "int64").splitlines()
