"""Fused BatchNorm+ReLU and residual add+ReLU: the same values and gradients as the
unfused ops and as PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_close

torch = pytest.importorskip("torch")

import cnnkit as ck  # noqa: E402
import cnnkit.nn as nn  # noqa: E402
import cnnkit.nn.functional as F  # noqa: E402
from cnnkit.autograd import iter_graph  # noqa: E402
from cnnkit.functional import activation  # noqa: E402
from cnnkit.models import SmallResNet  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_relu_equals_torch(dtype):
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((4, 6, 5, 5)).astype(dtype) for _ in range(2))
    g = rng.standard_normal((4, 6, 5, 5)).astype(dtype)
    ca, cb = ck.tensor(a, requires_grad=True), ck.tensor(b, requires_grad=True)
    out = F.add_relu(ca, cb)
    assert isinstance(out.grad_fn, activation.AddReLU)
    out.backward(ck.tensor(g))
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    tout = (ta + tb).relu()
    tout.backward(torch.tensor(g))
    assert_close(out, tout, what="out")
    assert_close(ca.grad, ta.grad, what="da")
    assert_close(cb.grad, tb.grad, what="db")


def test_add_relu_gradcheck():
    rng = np.random.default_rng(2)
    a, b = (ck.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True) for _ in range(2))
    assert ck.gradcheck(F.add_relu, (a, b))


def _grads(model, x, g):
    for p in model.parameters():
        p.grad = None
    cx = ck.tensor(x, requires_grad=True)
    out = model(cx)
    out.backward(ck.tensor(g))
    return [out.numpy(), cx.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequential_bn_relu_fusion_equals_unfused(dtype):
    ck.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 6, 6)).astype(dtype)
    g = rng.standard_normal((4, 8, 6, 6)).astype(dtype)
    seq = seq.double() if dtype == np.float64 else seq
    fused = _grads(seq, x, g)
    seq[2].register_forward_hook(lambda *a: None)  # a hook on the ReLU stops the fusion
    plain = _grads(seq, x, g)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {}
    for a, b in zip(fused, plain, strict=True):
        assert_close(a, b, **tol)


def test_resnet_fused_equals_unfused_and_running_stats():
    ck.manual_seed(4)
    model = SmallResNet().double()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 3, 8, 8))
    g = rng.standard_normal((3, 10))
    fns = list(iter_graph(model(ck.tensor(x))))
    assert any(isinstance(f, activation.AddReLU) for f in fns)
    assert any(f.params.get("relu") for f in fns)  # BatchNorm with the ReLU fused
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    fused = _grads(model, x, g)
    stats = [m.running_var.numpy().copy() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.register_forward_hook(lambda *a: None)  # hooks: no fusion anywhere
        if isinstance(m, nn.ReLU):
            m.register_forward_hook(lambda *a: None)
    plain = _grads(model, x, g)
    for a, b in zip(fused, plain, strict=True):
        assert_close(a, b)
    after = [m.running_var.numpy() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for a, b in zip(stats, after, strict=True):
        assert_close(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eval_folds_batchnorm_into_conv_like_torch(dtype):
    ck.manual_seed(5)
    model = SmallResNet()
    model = model.double() if dtype == np.float64 else model
    rng = np.random.default_rng(5)
    for m in model.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.array[...] = rng.standard_normal(c)
            m.running_var.array[...] = rng.uniform(0.5, 2.0, c)
            m.weight.array[...] = rng.standard_normal(c)
            m.bias.array[...] = rng.standard_normal(c)
    model.eval()
    x = rng.standard_normal((3, 3, 8, 8)).astype(dtype)
    from cnnkit.nn import container

    calls = []
    real = container.conv2d
    container.conv2d = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        with ck.no_grad():
            folded = model(ck.tensor(x)).numpy()
    finally:
        container.conv2d = real
    assert len(calls) == 9  # every convolution ran with its BatchNorm folded in
    unfolded = model(ck.tensor(x))  # grad enabled: no folding, the graph is recorded
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {}
    assert_close(folded, unfolded.numpy(), **tol)
    seq = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    seq = seq.double() if dtype == np.float64 else seq
    seq[1].running_mean.array[...] = rng.standard_normal(4)
    seq.eval()
    th = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                             torch.nn.ReLU())  # fmt: skip
    th = th.double() if dtype == np.float64 else th
    th.load_state_dict({k: torch.tensor(v.numpy()) for k, v in seq.state_dict().items()})
    th.eval()
    with ck.no_grad():
        ours = seq(ck.tensor(x)).numpy()
    with torch.no_grad():
        theirs = th(torch.tensor(x)).numpy()
    assert_close(ours, theirs, **tol)


@pytest.mark.parametrize("channels", [4, 32])  # channel-first and channels-last activations
def test_inference_relu_in_place_equals_module_by_module(channels):
    """Without a graph, a ReLU after a Conv2d, a Linear or a max pool overwrites that
    layer's new output: the same values (NaN kept) as calling each module in turn, no
    ReLU op run, the input untouched; a hook on the layer switches it off."""
    from cnnkit.nn import container

    ck.manual_seed(3)
    seq = nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(channels * 16, 10), nn.ReLU(),
    )  # fmt: skip
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    keep = x.copy()
    want = ck.tensor(x)
    for m in seq:
        want = m(want)
    calls = []
    real = container.relu_fn
    container.relu_fn = lambda t: calls.append(1) or real(t)
    try:
        with ck.no_grad():
            got = seq(ck.tensor(x))
    finally:
        container.relu_fn = real
    assert calls == []
    np.testing.assert_array_equal(got.numpy(), want.numpy())  # NaNs in the same places
    assert np.isnan(got.numpy()).any()
    np.testing.assert_array_equal(x, keep)
    seen = []
    seq[0].register_forward_hook(lambda m, i, out: seen.append(out.numpy().copy()))
    with ck.no_grad():
        hooked = seq(ck.tensor(x))
    np.testing.assert_array_equal(hooked.numpy(), want.numpy())
    assert (seen[0][~np.isnan(seen[0])] < 0).any()  # the hook saw the convolution's output
