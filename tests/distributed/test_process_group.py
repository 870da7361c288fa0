"""The process-group API without starting MPI: argument errors, launcher detection,
SyncBatchNorm conversion."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import distributed as dist
from cnnkit import nn
from cnnkit.tensor import Tensor


def test_unsupported_backend_is_a_clear_error():
    for name in ("nccl", "gloo", "tcp"):
        with pytest.raises(ValueError, match=f"backend '{name}' is not supported.*backend='mpi'"):
            dist.init_process_group(name)
    with pytest.raises(ValueError, match="init_method 'tcp://h:1' is not supported"):
        dist.init_process_group("mpi", init_method="tcp://h:1")
    assert not dist.is_initialized()


def test_calls_before_init_say_what_to_do():
    assert not dist.is_initialized()
    for fn in (dist.get_rank, dist.get_world_size, dist.barrier):
        with pytest.raises(RuntimeError, match="init_process_group"):
            fn()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.all_reduce(Tensor(np.ones(2)))
    from cnnkit.nn.parallel import DistributedDataParallel

    with pytest.raises(RuntimeError, match="process group has not been initialized"):
        DistributedDataParallel(nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['bogus'\]"):
        DistributedDataParallel(nn.Linear(2, 2), bogus=1)


def test_launcher_detection(monkeypatch):
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert dist.launched_world_size() == 1
    assert dist.init_from_environment() is False and not dist.is_initialized()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert dist.launched_world_size() == 4
    monkeypatch.setenv("PMI_SIZE", "3")
    assert dist.launched_world_size() == 3


def test_convert_sync_batchnorm_keeps_parameters_statistics_and_mode():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(),
                        nn.Sequential(nn.Flatten(), nn.BatchNorm1d(12)))  # fmt: skip
    net[1].running_mean.numpy()[:] = [1.0, 2.0, 3.0]
    w = net[1].weight
    net.eval()
    out = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    assert out is net
    assert isinstance(net[1], nn.SyncBatchNorm) and isinstance(net[3][1], nn.SyncBatchNorm)
    assert net[1].weight is w and net[1].running_mean.numpy().tolist() == [1.0, 2.0, 3.0]
    assert not net[1].training and net[3][1].num_features == 12
    single = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(5))
    assert isinstance(single, nn.SyncBatchNorm)


def test_sync_batchnorm_without_a_group_is_batchnorm(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 3, 5, 5))
    ours = nn.SyncBatchNorm(3).double()
    ref = torch.nn.BatchNorm2d(3).double()
    xt = Tensor(x.copy(), requires_grad=True)
    xr = torch.tensor(x, requires_grad=True)
    g = rng.standard_normal(x.shape)
    ours(xt).backward(g)
    ref(xr).backward(torch.tensor(g))
    np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.running_var.numpy(), ref.running_var.detach().numpy())
