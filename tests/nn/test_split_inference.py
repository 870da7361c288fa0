"""Inference on a batch runs one share of the batch per core (``Module._split_forward``)
when every module treats samples independently and nothing observes the inside; the
result equals the serial run. The suite runs with one BLAS thread, so these tests allow
two (``threadpool_limits(2)``) to make the split happen."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import cnnkit as ck
import cnnkit.nn as nn
from cnnkit.functional import _parallel
from cnnkit.models import MLP, LeNet5, SmallResNet, SmallVGG
from tests.conftest import assert_close


@pytest.fixture
def splits(monkeypatch):
    """Counts the batches that were split over the workers."""
    calls = []
    real = _parallel.map_shares

    def spy(n, fn):
        calls.append(n)
        return real(n, fn)

    monkeypatch.setattr(_parallel, "map_shares", spy)
    return calls


def _run(model, x, threads):
    with threadpool_limits(threads, user_api="blas"), ck.no_grad():
        return model(ck.tensor(x)).numpy()


MODELS = {
    "lenet5": (lambda: LeNet5(), (50, 1, 28, 28)),
    "smallvgg": (lambda: SmallVGG(), (12, 3, 32, 32)),
    "smallresnet": (lambda: SmallResNet(), (11, 3, 32, 32)),
    "mlp": (lambda: MLP(in_features=4000, hidden=(16, 8), dropout=0.5), (9, 4000)),
}


@pytest.mark.parametrize("name", MODELS)
def test_split_inference_equals_serial(name, splits):
    ck.manual_seed(0)
    build, shape = MODELS[name]
    model = build().double().eval()
    x = np.random.default_rng(1).standard_normal(shape)
    serial = _run(model, x, 1)
    assert splits == []
    parallel = _run(model, x, 2)
    assert splits == [shape[0]]  # the whole model ran once per share, not per layer
    assert_close(parallel, serial, what=name, rtol=1e-12, atol=1e-12)


def _small_net():
    ck.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 62 * 62, 4)
    ).double()


def test_batch_statistics_keep_the_batch_together(splits, monkeypatch):
    # BatchNorm in training mode normalises over the whole batch: the network is not
    # split (its per-sample layers still may be, one at a time), and the result is the
    # one of the serial run
    seen = []
    real = nn.BatchNorm2d.forward

    def spy(m, t):
        seen.append(t.shape[0])
        return real(m, t)

    monkeypatch.setattr(nn.BatchNorm2d, "forward", spy)
    net = _small_net()
    x = np.random.default_rng(2).standard_normal((6, 2, 64, 64))
    serial = _run(net, x, 1)
    assert_close(_run(net, x, 2), serial, what="train-mode batch norm")
    assert seen == [6, 6]
    net.eval()
    seen.clear()
    _run(net, x, 2)
    assert splits[-1] == 6 and seen == [3, 3]  # the whole network, once per share


def test_hooks_see_the_whole_batch():
    # a hook inside the network keeps it together (layers without hooks may still split
    # their own work); the hooked layer's output is the whole batch's, once
    net = _small_net().eval()
    x = np.random.default_rng(4).standard_normal((6, 2, 64, 64))
    serial = _run(net, x, 1)
    seen = []
    net[2].register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    assert_close(_run(net, x, 2), serial, what="hooked network")
    assert seen == [6]


def test_no_split_while_recording_a_graph_or_for_unbatched_input(splits):
    net = _small_net().eval()
    x = ck.tensor(np.ones((6, 2, 64, 64)), requires_grad=True)
    with threadpool_limits(2, user_api="blas"):
        net(x).sum().backward()
        conv = nn.Conv2d(64, 5, 3).double()
        out = conv(ck.tensor(np.ones((64, 30, 30))))  # (C, H, W): one image, not a batch
    assert x.grad is not None and tuple(out.shape) == (5, 28, 28)
    assert splits == []


def test_softmax_over_the_batch_dim_keeps_the_batch_together(splits):
    net = nn.Sequential(nn.Linear(300, 4), nn.Softmax(dim=0)).double()
    x = np.random.default_rng(3).standard_normal((600, 300))
    out = _run(net, x, 2)
    assert splits == [600]  # the Linear alone
    assert_close(out.sum(axis=0), np.ones(4), what="columns sum to one")
