"""Training parity: LeNet-5 trained by cnnkit and by PyTorch from the same start.

Both frameworks get the same initial weights (cnnkit's, copied into the PyTorch
model), the same mini-batches in the same order (one list of NumPy permutations) and
the same hyper-parameters (SGD with momentum 0.9, lr 0.05, batch 64, no augmentation).
The script prints, per epoch, both training losses and their relative difference, and
the final test accuracies, once in float32 and once in float64.

Criteria: a per-epoch loss within 2 % (relative) and test accuracies within 1
percentage point. In float64 both frameworks do the same arithmetic up to summation
order, so the losses agree to ~1e-12 over the whole run and any real difference in a
forward or backward pass or in the optimizer shows. In float32 a 5-epoch MNIST run
is chaotic: rounding differences of 1e-7 grow to several percent of the loss within a
few epochs, in PyTorch itself too (the "torch, 1 ulp" column trains PyTorch from
weights moved by one float32 ulp), so there the float32 losses are reported and only
the accuracy is checked (``--strict-float32`` checks the losses as well). The exit
status is 1 when a checked criterion fails.

Data: the real MNIST test file split as ``cnnkit train --data mnist:PATH`` does (first
8,000 images for training, last 2,000 for testing), or the embedded 8x8 digits when
the MNIST folder is absent (or with ``--data digits``).

    python benchmarks/parity_torch.py [--data mnist:PATH|digits] [--epochs 5]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_LOSS_REL_DIFF = 0.02
MAX_ACC_DIFF_PP = 1.0
DEFAULT_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@dataclass
class Arrays:
    """Training and test images ``(n, 1, h, w)`` float32 with int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class EpochRow:
    epoch: int
    cnnkit_loss: float
    torch_loss: float
    rel_diff: float
    torch_ulp_loss: float = math.nan  # PyTorch from weights moved by one float32 ulp

    @property
    def noise(self) -> float:
        """Relative change of PyTorch's own loss caused by a one-ulp change of the start."""
        return abs(self.torch_ulp_loss - self.torch_loss) / max(abs(self.torch_loss), 1e-12)


@dataclass
class ParityResult:
    data: str
    dtype: str
    epochs: list[EpochRow] = field(default_factory=list)
    cnnkit_acc: float = 0.0
    torch_acc: float = 0.0
    acc_diff_pp: float = 0.0
    cnnkit_seconds: float = 0.0
    torch_seconds: float = 0.0

    @property
    def loss_ok(self) -> bool:
        return all(r.rel_diff <= MAX_LOSS_REL_DIFF for r in self.epochs)

    @property
    def acc_ok(self) -> bool:
        return abs(self.acc_diff_pp) <= MAX_ACC_DIFF_PP

    @property
    def ok(self) -> bool:
        return self.loss_ok and self.acc_ok


def _stack(ds) -> tuple[np.ndarray, np.ndarray]:
    """All samples of a dataset as two arrays."""
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    x = np.stack([np.asarray(getattr(v, "data", v), dtype=np.float32) for v in xs])
    y = np.asarray([int(np.asarray(getattr(v, "data", v))) for v in ys], dtype=np.int64)
    return x, y


def load_arrays(spec: str) -> Arrays:
    """``digits`` or ``mnist:PATH`` (the t10k-only split of ``load_data``), as arrays."""
    from cnnkit.data import Digits
    from cnnkit.train.run import load_data

    if spec == "digits":
        train, test = Digits(split="train"), Digits(split="test")
        return Arrays(spec, train.data, train.targets, test.data, test.targets)
    splits = load_data(spec, val_fraction=0.0)
    x_train, y_train = _stack(splits.train)
    x_test, y_test = _stack(splits.test)
    return Arrays(spec, x_train, y_train, x_test, y_test)


def _torch_lenet(ck_model, torch):
    """A PyTorch module with the same layers and state-dict keys as a cnnkit LeNet5."""
    cfg = ck_model.config
    if cfg["activation"] != "relu" or cfg["dropout"]:
        raise ValueError("parity: only the ReLU LeNet5 without dropout is mirrored")
    tnn = torch.nn
    c1, c2 = cfg["channels"]
    pad1 = tuple(ck_model.features[0].padding)
    pad2 = tuple(ck_model.features[3].padding)
    flat = ck_model.classifier[1].in_features

    class TorchLeNet5(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = tnn.Sequential(
                tnn.Conv2d(cfg["in_channels"], c1, 5, padding=pad1),
                tnn.ReLU(),
                tnn.MaxPool2d(2),
                tnn.Conv2d(c1, c2, 5, padding=pad2),
                tnn.ReLU(),
                tnn.MaxPool2d(2),
            )
            self.classifier = tnn.Sequential(
                tnn.Flatten(),
                tnn.Linear(flat, 120),
                tnn.ReLU(),
                tnn.Linear(120, 84),
                tnn.ReLU(),
                tnn.Linear(84, cfg["num_classes"]),
            )

        def forward(self, x):
            return self.classifier(self.features(x))

    return TorchLeNet5()


def initial_state(data: Arrays, seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    """The config and float32 initial weights of a cnnkit LeNet5 for this data."""
    from cnnkit import backend
    from cnnkit.models import LeNet5

    previous = backend.get_default_dtype()
    backend.set_default_dtype(np.float32)
    try:
        backend.manual_seed(seed)
        n_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
        model = LeNet5(n_classes, data.x_train.shape[1], data.x_train.shape[-1])
    finally:
        backend.set_default_dtype(previous)
    state = {k: np.array(v.numpy(), copy=True) for k, v in model.state_dict().items()}
    return dict(model.config), state


def compare(
    data: Arrays,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 0.05,
    momentum: float = 0.9,
    seed: int = 0,
    dtype: str = "float32",
    noise_floor: bool = False,
) -> ParityResult:
    """Train a cnnkit LeNet5 and its PyTorch twin in lockstep from the same start.

    Both start from the same float32 initial weights (cast to ``dtype``) and see the
    same mini-batches in the same order. With ``noise_floor`` a second PyTorch model,
    started from weights one float32 ulp away, measures how far rounding alone moves
    the losses.
    """
    from cnnkit import backend

    previous = backend.get_default_dtype()
    backend.set_default_dtype(np.dtype(dtype))
    try:
        return _compare(data, epochs, batch_size, lr, momentum, seed, np.dtype(dtype), noise_floor)
    finally:
        backend.set_default_dtype(previous)


def _compare(data, epochs, batch_size, lr, momentum, seed, dtype, noise_floor) -> ParityResult:
    import torch

    import cnnkit as ck
    from cnnkit import optim
    from cnnkit.models import get_model
    from cnnkit.nn import functional as F

    config, init = initial_state(data, seed)
    ck_model = get_model("lenet5", **config)
    ck_model.load_state_dict({k: v.astype(dtype) for k, v in init.items()})
    tdtype = getattr(torch, dtype.name)
    t_models = [_torch_lenet(ck_model, torch).to(tdtype) for _ in range(2 if noise_floor else 1)]
    t_models[0].load_state_dict({k: torch.from_numpy(v.astype(dtype)) for k, v in init.items()})
    if noise_floor:
        moved = {k: np.nextafter(v, np.inf).astype(dtype) for k, v in init.items()}
        t_models[1].load_state_dict({k: torch.from_numpy(v) for k, v in moved.items()})

    ck_opt = optim.SGD(ck_model.parameters(), lr=lr, momentum=momentum)
    t_opts = [torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum) for m in t_models]
    gen = np.random.default_rng(seed)
    n = len(data.x_train)
    orders = [gen.permutation(n) for _ in range(epochs)]

    result = ParityResult(data.name, dtype.name)
    for epoch, order in enumerate(orders, 1):
        ck_total = 0.0
        t_totals = [0.0] * len(t_models)
        ck_model.train()
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb, yb = data.x_train[idx].astype(dtype), data.y_train[idx]

            t0 = time.perf_counter()
            loss = F.cross_entropy(ck_model(ck.tensor(xb)), ck.tensor(yb))
            ck_opt.zero_grad()
            loss.backward()
            ck_opt.step()
            ck_total += float(loss.item()) * len(idx)
            t1 = time.perf_counter()
            for j, (model, opt) in enumerate(zip(t_models, t_opts, strict=True)):
                t_loss = torch.nn.functional.cross_entropy(
                    model(torch.from_numpy(xb)), torch.from_numpy(yb)
                )
                opt.zero_grad()
                t_loss.backward()
                opt.step()
                t_totals[j] += float(t_loss.item()) * len(idx)
                if j == 0:
                    result.torch_seconds += time.perf_counter() - t1
            result.cnnkit_seconds += t1 - t0
        a, b = ck_total / n, t_totals[0] / n
        row = EpochRow(epoch, a, b, abs(a - b) / max(abs(b), 1e-12))
        if noise_floor:
            row.torch_ulp_loss = t_totals[1] / n
        result.epochs.append(row)

    ck_model.eval()
    t_model = t_models[0].eval()
    ck_pred, t_pred = [], []
    with ck.no_grad(), torch.no_grad():
        for start in range(0, len(data.x_test), 500):
            xb = data.x_test[start : start + 500].astype(dtype)
            ck_pred.append(ck_model(ck.tensor(xb)).numpy().argmax(axis=1))
            t_pred.append(t_model(torch.from_numpy(xb)).numpy().argmax(axis=1))
    result.cnnkit_acc = float((np.concatenate(ck_pred) == data.y_test).mean())
    result.torch_acc = float((np.concatenate(t_pred) == data.y_test).mean())
    result.acc_diff_pp = 100.0 * (result.cnnkit_acc - result.torch_acc)
    return result


def format_table(r: ParityResult) -> str:
    """The per-epoch loss table and the test accuracies."""
    noise = any(math.isfinite(row.torch_ulp_loss) for row in r.epochs)
    head = f"{'epoch':>5}  {'cnnkit loss':>12}  {'torch loss':>12}  {'rel. diff':>10}"
    if noise:
        head += f"  {'torch, 1 ulp':>12}  {'its diff':>9}"
    lines = [f"LeNet5 on {r.data}, {r.dtype}: same start, same batches, SGD momentum", head]
    for row in r.epochs:
        line = (
            f"{row.epoch:>5}  {row.cnnkit_loss:>12.6f}  {row.torch_loss:>12.6f}  "
            f"{f'{100 * row.rel_diff:.3g}%':>10}"
        )
        if noise:
            line += f"  {row.torch_ulp_loss:>12.6f}  {f'{100 * row.noise:.3g}%':>9}"
        lines.append(line)
    lines.append(
        f"test accuracy: cnnkit {r.cnnkit_acc:.2%}, torch {r.torch_acc:.2%}, "
        f"difference {r.acc_diff_pp:+.2f} pp"
    )
    lines.append(
        f"training time: cnnkit {r.cnnkit_seconds:.1f} s, torch {r.torch_seconds:.1f} s; "
        f"loss within {MAX_LOSS_REL_DIFF:.0%}: {'yes' if r.loss_ok else 'NO'}, accuracy "
        f"within {MAX_ACC_DIFF_PP:g} pp: {'yes' if r.acc_ok else 'NO'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="mnist:PATH or digits (default: MNIST if found)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="PyTorch intra-op threads")
    p.add_argument(
        "--strict-float32",
        action="store_true",
        help="also fail when a float32 epoch loss differs by more than 2 %%",
    )
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    spec = args.data
    if spec is None:
        found = (DEFAULT_MNIST / "t10k-images-idx3-ubyte.gz").exists()
        spec = f"mnist:{DEFAULT_MNIST}" if found else "digits"
        if not found:
            print(f"no MNIST at {DEFAULT_MNIST}; using the embedded digits", file=sys.stderr)
    data = load_arrays(spec)
    hp = (args.epochs, args.batch_size, args.lr, args.momentum, args.seed)
    r32 = compare(data, *hp, dtype="float32", noise_floor=True)
    print(format_table(r32), end="\n\n", flush=True)
    r64 = compare(data, *hp, dtype="float64")
    print(format_table(r64))
    failed = []
    if not r64.ok:
        failed.append("float64 losses or accuracies differ: cnnkit does not train like PyTorch")
    if not r32.acc_ok:
        failed.append("float32 test accuracies differ by more than 1 pp")
    if args.strict_float32 and not r32.loss_ok:
        failed.append("float32 epoch losses differ by more than 2 %")
    for why in failed:
        print(f"FAIL: {why}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
