"""A batch runs one share per core through a whole module (``cnnkit.runtime``) when
every module inside treats samples independently and nothing observes the inside: the
output, the loss and every gradient equal the serial run's. The suite runs with one BLAS
thread, so these tests allow two (``threadpool_limits(2)``) to make the split happen."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import cnnkit as ck
import cnnkit.nn as nn
from cnnkit import optim
from cnnkit.functional import _parallel
from cnnkit.models import MLP, LeNet5, SmallResNet, SmallVGG
from tests.conftest import assert_close


@pytest.fixture
def splits(monkeypatch):
    """Counts the batches that were split over the workers."""
    calls = []
    real = _parallel.shares

    def spy(n):
        calls.append(n)
        return real(n)

    monkeypatch.setattr(_parallel, "shares", spy)
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
    import cnnkit.nn.norm as norm_mod

    seen = []
    real = norm_mod.batch_norm

    def spy(t, *args, **kwargs):
        seen.append(t.shape[0])
        return real(t, *args, **kwargs)

    monkeypatch.setattr(norm_mod, "batch_norm", spy)
    net = _small_net()
    x = np.random.default_rng(2).standard_normal((6, 2, 64, 64))
    serial = _run(net, x, 1)
    assert_close(_run(net, x, 2), serial, what="train-mode batch norm")
    assert seen == [6, 6]
    net.eval()
    seen.clear()
    with threadpool_limits(2, user_api="blas"):  # with a graph (without one, the
        net(ck.tensor(x))  # BatchNorm is folded into the convolution before it)
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


def test_no_split_for_unbatched_input(splits):
    with threadpool_limits(2, user_api="blas"), ck.no_grad():
        conv = nn.Sequential(nn.Conv2d(64, 5, 3), nn.ReLU()).double()
        out = conv(ck.tensor(np.ones((64, 30, 30))))  # (C, H, W): one image, not a batch
    assert tuple(out.shape) == (5, 28, 28)
    assert splits == []


def test_one_op_is_not_split_into_shares(splits):
    with threadpool_limits(2, user_api="blas"), ck.no_grad():
        relu, conv = nn.ReLU(), nn.Conv2d(3, 8, 3).double()
        x = ck.tensor(np.random.default_rng(4).standard_normal((64, 3, 40, 40)))
        assert_close(conv(x).numpy(), nn.Sequential(conv)(x).numpy(), what="conv")
        relu(x)
    assert splits == [64]  # the Sequential around the conv, not the conv or the ReLU


def test_softmax_over_the_batch_dim_keeps_the_batch_together(splits):
    net = nn.Sequential(nn.Linear(300, 4), nn.Softmax(dim=0)).double()
    x = np.random.default_rng(3).standard_normal((600, 300))
    out = _run(net, x, 2)
    # nothing runs in shares: the softmax needs the whole batch, and the Linear alone is
    # one op, which splits its own product where that pays
    assert splits == []
    assert_close(out.sum(axis=0), np.ones(4), what="columns sum to one")


# ------------------------------------------------------------------ with a graph


def _cifar_like():
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10),
    )  # fmt: skip


TRAIN_MODELS = {
    "lenet5": (lambda: LeNet5(), (50, 1, 28, 28)),
    "cifar_like": (_cifar_like, (12, 3, 32, 32)),
    "mlp": (lambda: MLP(in_features=4000, hidden=(16, 8)), (9, 4000)),
}


def _loss_and_grads(model, x, y, threads, x_grad=True):
    for p in model.parameters():
        p.grad = None
    xt = ck.tensor(x, requires_grad=x_grad)
    with threadpool_limits(threads, user_api="blas"):
        loss = ck.nn.functional.cross_entropy(model(xt), ck.tensor(y))
        loss.backward()
    grads = {
        n: None if p.grad is None else p.grad.numpy().copy() for n, p in model.named_parameters()
    }
    return loss.item(), grads, (xt.grad.numpy() if x_grad else None)


@pytest.mark.parametrize("name", TRAIN_MODELS)
def test_split_training_equals_serial(name, splits):
    ck.manual_seed(0)
    build, shape = TRAIN_MODELS[name]
    model = build().double()
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(shape), rng.integers(0, 10, shape[0])
    loss1, grads1, dx1 = _loss_and_grads(model, x, y, 1)
    assert splits == []
    loss2, grads2, dx2 = _loss_and_grads(model, x, y, 2)
    assert splits == [shape[0]]
    assert_close(loss2, loss1, what="loss", rtol=1e-12, atol=1e-12)
    assert_close(dx2, dx1, what="input gradient", rtol=1e-10, atol=1e-12)
    for n in grads1:
        assert_close(grads2[n], grads1[n], what=n, rtol=1e-10, atol=1e-12)


def test_split_training_with_frozen_layers_and_constant_input(splits):
    ck.manual_seed(1)
    model = _cifar_like().double()
    model[0].weight.requires_grad_(False)
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((12, 3, 32, 32)), rng.integers(0, 10, 12)
    _, grads1, _ = _loss_and_grads(model, x, y, 1, x_grad=False)
    _, grads2, _ = _loss_and_grads(model, x, y, 2, x_grad=False)
    assert splits == [12]
    assert grads1["0.weight"] is None and grads2["0.weight"] is None
    for n in grads1:
        if grads1[n] is not None:
            assert_close(grads2[n], grads1[n], what=n, rtol=1e-10, atol=1e-12)


def test_split_training_retain_graph(splits):
    ck.manual_seed(2)
    model = _cifar_like().double()
    x = ck.tensor(np.random.default_rng(7).standard_normal((12, 3, 32, 32)))
    with threadpool_limits(2, user_api="blas"):
        out = model(x).sum()
        out.backward(retain_graph=True)
        once = model[3].weight.grad.numpy().copy()
        out.backward()
        assert_close(model[3].weight.grad, 2 * once, what="accumulated twice")
        with pytest.raises(RuntimeError, match="second time"):
            out.backward()
    assert splits == [12]


def test_split_sgd_steps_equal_serial():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((12, 3, 32, 32)), rng.integers(0, 10, 12)
    weights = []
    for threads in (1, 2):
        ck.manual_seed(3)
        model = _cifar_like().double()
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        with threadpool_limits(threads, user_api="blas"):
            for _ in range(3):
                opt.zero_grad()
                ck.nn.functional.cross_entropy(model(ck.tensor(x)), ck.tensor(y)).backward()
                opt.step()
        weights.append([p.numpy().copy() for p in model.parameters()])
    for a, b in zip(*weights, strict=True):
        assert_close(b, a, what="weights after 3 steps", rtol=1e-9, atol=1e-12)


def test_a_subclass_that_overrides_forward_is_not_trusted(splits):
    # the subclass mixes samples (a batch mean); it does not declare _samplewise, so the
    # network around it is not split and the result is the whole batch's
    class Centered(nn.Linear):
        def forward(self, x):
            y = super().forward(x)
            return y - y.mean(dim=0, keepdim=True)

    ck.manual_seed(4)
    net = nn.Sequential(Centered(4000, 8), nn.ReLU()).double()
    assert not net[0]._per_sample() and net[1]._per_sample()
    x = np.random.default_rng(9).standard_normal((12, 4000))
    serial = _run(net, x, 1)
    assert_close(_run(net, x, 2), serial, what="batch-centred output")
    assert splits == []  # neither the network nor the subclass was split


@pytest.mark.parametrize("grad", [False, True])
def test_an_error_names_the_whole_batch_and_leaves_blas_as_it_was(grad):
    from threadpoolctl import threadpool_info

    net = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(100, 10))
    x = ck.tensor(np.zeros((64, 3, 16, 16), np.float32))
    with threadpool_limits(2, user_api="blas"):
        with ck.set_grad_enabled(grad), pytest.raises(ValueError, match=r"got \(64, 6272\)"):
            net(x)
        threads = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert min(threads) == 2
