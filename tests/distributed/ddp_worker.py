"""LeNet-5 (and a batch-norm net) on the digits in float64 for 20 steps, data parallel.

``mpiexec -n P python ddp_worker.py OUT.npz B_PER_RANK`` trains with
DistributedDataParallel over P ranks (batch ``B_PER_RANK`` each, SyncBatchNorm for the
batch-norm net); :func:`train_single` trains the same models in one process on the
global batches ``P * B_PER_RANK`` that the ranks see together. The tests compare both.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from cnnkit import backend, nn, optim
from cnnkit.data import DataLoader, Digits, DistributedSampler, Subset, TensorDataset
from cnnkit.models import LeNet5

N_SAMPLES = 230  # 2 ranks x 6: 19 full steps + a last one of 2; 3 ranks x 4: padded by 1
CONFIGS = ("lenet_sgd", "lenet_adam", "bn_sgd", "lenet_accum")
SEED = 3


def dataset() -> TensorDataset:
    d = Digits(split="train")
    xs = np.stack([np.asarray(d[i][0], dtype=np.float64) for i in range(N_SAMPLES)])
    ys = np.array([int(d[i][1]) for i in range(N_SAMPLES)], dtype=np.int64)
    return TensorDataset(xs, ys)


def model(config: str) -> nn.Module:
    backend.manual_seed(0)
    if config.startswith("lenet"):
        return LeNet5(in_channels=1, input_size=8, num_classes=10).double()
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10),
    ).double()  # fmt: skip


def optimizer(config: str, params) -> optim.Optimizer:
    if config.endswith("adam"):
        return optim.Adam(params, lr=3e-3)
    return optim.SGD(params, lr=0.05, momentum=0.9)


def train(net: nn.Module, step_model: nn.Module, loader: DataLoader, config: str) -> int:
    """SGD/Adam steps; ``*_accum``: each batch in two halves, the first one's gradient
    accumulated without reduction (``no_sync``), each half's mean loss weighted by its
    share of the batch, so the step's gradient is that of the whole batch."""
    opt = optimizer(config, net.parameters())
    loss_fn = nn.CrossEntropyLoss()
    steps = 0
    for x, y in loader:
        opt.zero_grad()
        if config.endswith("accum"):
            n, h = len(x), len(x) // 2
            if h:
                sync_off = getattr(step_model, "no_sync", contextlib.nullcontext)
                with sync_off():
                    (loss_fn(step_model(x[:h]), y[:h]) * (h / n)).backward()
            (loss_fn(step_model(x[h:]), y[h:]) * ((n - h) / n)).backward()
        else:
            loss_fn(step_model(x), y).backward()
        opt.step()
        steps += 1
    return steps


def weights(net: nn.Module) -> dict[str, np.ndarray]:
    return {k: np.array(v.numpy(), copy=True) for k, v in net.state_dict().items()}


def train_ddp(per_rank: int) -> dict[str, np.ndarray]:
    from cnnkit import distributed as dist
    from cnnkit.nn.parallel import DistributedDataParallel

    ds = dataset()
    out: dict[str, np.ndarray] = {}
    for config in CONFIGS:
        net = model(config)
        if config.startswith("bn"):
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        ddp = DistributedDataParallel(net, bucket_cap_mb=0.02)  # several buckets
        sampler = DistributedSampler(ds, shuffle=True, seed=SEED)
        sampler.set_epoch(1)
        steps = train(net, ddp, DataLoader(ds, batch_size=per_rank, sampler=sampler), config)
        out.update({f"{config}/{k}": v for k, v in weights(net).items()})
        out[f"{config}/steps"] = np.array(steps)
        out[f"{config}/buckets"] = np.array(len(ddp.bucket_sizes))
        ddp.remove_hooks()
    dist.barrier()
    return out


def train_single(world: int, per_rank: int) -> dict[str, np.ndarray]:
    ds = dataset()
    sampler = DistributedSampler(ds, num_replicas=world, rank=0, shuffle=True, seed=SEED)
    sampler.set_epoch(1)
    order = sampler.global_order()  # what the ranks share out, padding included
    out: dict[str, np.ndarray] = {}
    for config in CONFIGS:
        net = model(config)
        loader = DataLoader(Subset(ds, order.tolist()), batch_size=world * per_rank)
        steps = train(net, net, loader, config)
        out.update({f"{config}/{k}": v for k, v in weights(net).items()})
        out[f"{config}/steps"] = np.array(steps)
    return out


def main() -> None:
    from cnnkit import distributed as dist

    path, per_rank = sys.argv[1], int(sys.argv[2])
    dist.init_process_group("mpi")
    result = train_ddp(per_rank)
    if dist.get_rank() == 0:
        np.savez(path, **result)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
