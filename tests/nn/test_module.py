"""Module API (names, state_dict, modes, hooks, repr), initialisation, parameter counts, errors."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn as nn
from tests.conftest import assert_close

tnn = torch.nn


def _count(m) -> int:
    return sum(int(np.prod(p.shape)) for p in m.parameters())


def _nested(lib, **kw):
    """The same nested network built from torch.nn or cnnkit.nn."""
    return lib.Sequential(
        lib.Conv2d(1, 4, 3, padding=1, **kw),
        lib.BatchNorm2d(4, **kw),
        lib.ReLU(),
        lib.Sequential(
            lib.Conv2d(4, 2, 3, bias=False, **kw),
            lib.MaxPool2d(2),
            lib.Sequential(lib.BatchNorm2d(2, **kw), lib.Flatten()),
        ),
        lib.Linear(2 * 3 * 3, 5, **kw),
    )


# ----------------------------------------------------------------------------- initialisation
@pytest.mark.parametrize(
    "make,fan_in",
    [(lambda: nn.Linear(200, 50), 200), (lambda: nn.Conv2d(16, 32, 3), 16 * 9)],
    ids=["Linear", "Conv2d"],
)
def test_default_init_distribution(make, fan_in):
    ck.manual_seed(0)
    m = make()
    bound = 1 / math.sqrt(fan_in)
    w = m.weight.numpy()
    assert np.all(np.abs(w) <= bound)
    assert w.max() > 0.95 * bound and w.min() < -0.95 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.05
    assert abs(w.mean()) < 0.05 * bound
    b = m.bias.numpy()
    assert np.all(np.abs(b) <= bound)
    assert b.std() > 0.3 * bound  # not constant


def test_default_init_matches_torch_bound():
    """The bound is the one torch uses (its empirical max stays within it, and close)."""
    for t, c in [
        (tnn.Linear(200, 50), nn.Linear(200, 50)),
        (tnn.Conv2d(16, 32, 3), nn.Conv2d(16, 32, 3)),
    ]:
        tb = float(t.weight.detach().abs().max())
        cb = float(np.abs(c.weight.numpy()).max())
        assert abs(tb - cb) / tb < 0.02


def test_batchnorm_init_and_dtype():
    bn = nn.BatchNorm2d(5)
    np.testing.assert_array_equal(bn.weight.numpy(), np.ones(5))
    np.testing.assert_array_equal(bn.bias.numpy(), np.zeros(5))
    np.testing.assert_array_equal(bn.running_mean.numpy(), np.zeros(5))
    np.testing.assert_array_equal(bn.running_var.numpy(), np.ones(5))
    assert bn.num_batches_tracked.dtype == np.int64
    assert bn.weight.dtype == np.float32  # default dtype, like torch
    assert nn.BatchNorm1d(3, dtype="float64").running_var.dtype == np.float64


def test_manual_seed_reproducible():
    ck.manual_seed(0)
    a = nn.Conv2d(3, 4, 3)
    b1 = nn.Linear(5, 2)
    ck.manual_seed(0)
    c = nn.Conv2d(3, 4, 3)
    b2 = nn.Linear(5, 2)
    np.testing.assert_array_equal(a.weight.numpy(), c.weight.numpy())
    np.testing.assert_array_equal(a.bias.numpy(), c.bias.numpy())
    np.testing.assert_array_equal(b1.weight.numpy(), b2.weight.numpy())
    ck.manual_seed(1)
    d = nn.Conv2d(3, 4, 3)
    assert not np.array_equal(a.weight.numpy(), d.weight.numpy())


def test_layers_default_to_float32_and_accept_float64():
    assert nn.Linear(3, 2).weight.dtype == np.float32
    assert nn.Conv2d(3, 2, 3, dtype="float64").weight.dtype == np.float64
    assert nn.Linear(3, 2, dtype=ck.float64).bias.dtype == np.float64


# ----------------------------------------------------------------------------- counts and shapes
@pytest.mark.parametrize(
    "make,count",
    [
        (lambda: nn.Conv2d(1, 1, 10), 101),
        (lambda: nn.Conv2d(1, 20, 10), 2_020),
        (lambda: nn.Conv2d(3, 1, 5), 76),
        (lambda: nn.Linear(20, 30), 630),
        (lambda: nn.Linear(20, 30, bias=False), 600),
        (lambda: nn.Conv2d(4, 8, 3, groups=4), 8 * (1 * 9 + 1)),
        (lambda: nn.LocallyConnected2d(1, 1, input_size=(19, 19), kernel_size=10), 100 * 100 + 100),
        (lambda: nn.BatchNorm2d(7), 14),
    ],
    ids=[
        "conv1-1-10",
        "conv1-20-10",
        "conv3-1-5",
        "linear",
        "linear-nobias",
        "grouped",
        "lc",
        "bn",
    ],
)
def test_parameter_counts(make, count):
    assert _count(make()) == count


def test_parameter_counts_equal_torch():
    t, c = _nested(tnn), _nested(nn)
    assert _count(c) == sum(p.numel() for p in t.parameters())


def test_locally_connected_shapes():
    lc = nn.LocallyConnected2d(1, 1, input_size=(19, 19), kernel_size=10)
    assert lc.output_size == (10, 10)
    assert lc.weight.shape == (10, 10, 1, 1, 10, 10)
    assert lc.bias.shape == (1, 10, 10)
    assert lc(ck.zeros(2, 1, 19, 19)).shape == (2, 1, 10, 10)


def test_lenet_like_shapes():
    x = ck.zeros(4, 3, 32, 32)
    c1 = nn.Conv2d(3, 6, 5)
    c2 = nn.Conv2d(6, 10, 5)
    h = c1(x)
    assert h.shape == (4, 6, 28, 28)
    assert c2(h).shape == (4, 10, 24, 24)


# ----------------------------------------------------------------------------- names, state dict
def test_named_parameters_and_state_dict_keys_equal_torch():
    t, c = _nested(tnn), _nested(nn)
    assert [n for n, _ in c.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert list(c.state_dict()) == list(t.state_dict())
    assert [n for n, _ in c.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in c.named_modules()] == [n for n, _ in t.named_modules()]
    for (n, p), (_, tp) in zip(c.named_parameters(), t.named_parameters(), strict=True):
        assert tuple(p.shape) == tuple(tp.shape), n
    assert "1.running_mean" in c.state_dict()
    assert "3.2.0.num_batches_tracked" in c.state_dict()


def test_load_state_dict_from_torch_and_roundtrip():
    t, c = _nested(tnn).double(), _nested(nn, dtype="float64")
    t.train()
    t(torch.randn(3, 1, 8, 8, dtype=torch.float64))  # non-trivial running statistics
    res = c.load_state_dict(t.state_dict())
    assert list(res.missing_keys) == [] and list(res.unexpected_keys) == []
    for k, v in c.state_dict().items():
        assert_close(v, t.state_dict()[k], what=k)
    # cnnkit -> torch
    t2 = _nested(tnn).double()
    t2.load_state_dict({k: torch.tensor(v.numpy()) for k, v in c.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    t2.eval()
    c.eval()
    assert_close(c(ck.tensor(x)), t2(torch.tensor(x)))


def test_state_dict_shares_memory_and_load_copies():
    m = nn.Linear(2, 3)
    sd = m.state_dict()
    sd["weight"].numpy()[...] = 7.0
    assert np.all(m.weight.numpy() == 7.0)
    src = {"weight": np.ones((3, 2)), "bias": np.zeros(3)}
    m.load_state_dict(src)
    src["weight"][...] = 5.0
    assert np.all(m.weight.numpy() == 1.0)
    assert m.weight.dtype == np.float32  # cast to the parameter's dtype


def test_load_state_dict_strict_errors():
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    sd = dict(m.state_dict())
    del sd["1.running_var"]
    sd["2.weight"] = np.zeros(3)
    with pytest.raises(ValueError) as ei:
        m.load_state_dict(sd)
    msg = str(ei.value)
    assert "1.running_var" in msg and "missing" in msg
    assert "2.weight" in msg and "unexpected" in msg


def test_load_state_dict_shape_mismatch_names_expected_and_got():
    m = nn.Linear(2, 3)
    before = m.weight.numpy().copy()
    with pytest.raises(ValueError) as ei:
        m.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(3)})
    msg = str(ei.value)
    assert "weight" in msg and "(3, 2)" in msg and "(2, 3)" in msg
    np.testing.assert_array_equal(m.weight.numpy(), before)  # nothing half-loaded
    with pytest.raises(ValueError, match="shape"):
        m.load_state_dict({"weight": np.zeros((3, 2)), "bias": np.zeros(4)}, strict=False)


def test_load_state_dict_accepts_torch_tensors_requiring_grad():
    t = tnn.Linear(2, 3)
    c = nn.Linear(2, 3)
    c.load_state_dict(t.state_dict(keep_vars=True))
    assert_close(c.weight, t.weight.detach().numpy())


def test_load_state_dict_non_strict_reports_keys():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    sd = {"0.weight": np.ones((3, 2)), "0.bias": np.ones(3), "extra.w": np.zeros(1)}
    res = m.load_state_dict(sd, strict=False)
    assert list(res.missing_keys) == ["2.weight", "2.bias"]
    assert list(res.unexpected_keys) == ["extra.w"]
    assert np.all(m[0].weight.numpy() == 1)


# ----------------------------------------------------------------------------- modes, grads, dtype
def test_train_eval_propagate():
    m = _nested(nn)
    assert all(sub.training for sub in m.modules())
    assert m.eval() is m
    assert not any(sub.training for sub in m.modules())
    m[3].train()
    assert not m.training and m[3][2][0].training
    m.train()
    assert all(sub.training for sub in m.modules())
    with pytest.raises(ValueError):
        m.train("yes")


def test_zero_grad():
    m = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    m(ck.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.numpy() == 0) for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_parameters_deduplicate_shared_module():
    shared = nn.Linear(3, 3)
    m = nn.Sequential(shared, nn.ReLU(), shared)
    t_shared = tnn.Linear(3, 3)
    t = tnn.Sequential(t_shared, tnn.ReLU(), t_shared)
    assert len(list(m.parameters())) == 2
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    # a parameter used twice accumulates both gradients
    m.double()
    t.double()
    shared.load_state_dict(t_shared.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3))
    m(ck.tensor(x)).sum().backward()
    t(torch.tensor(x)).sum().backward()
    assert_close(shared.weight.grad, t_shared.weight.grad)


def test_to_and_double_convert():
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    assert m.to("float64") is m
    for _, v in m.state_dict().items():
        assert v.dtype in (np.float64, np.int64)
    assert m[1].num_batches_tracked.dtype == np.int64  # integer buffer untouched
    m.float()
    assert m[0].weight.dtype == np.float32
    m.double()
    assert m[0].weight.dtype == np.float64 and m[1].running_mean.dtype == np.float64
    y = m(ck.tensor(np.ones((4, 3))))
    assert y.dtype == np.float64
    m.to(ck.float32)
    assert m[1].running_var.dtype == np.float32
    with pytest.raises(TypeError):
        m.to("int64")
    with pytest.raises(ValueError, match="cnnkit runs on the CPU"):
        m.to(device="cuda")


def test_to_positional_cuda_string_raises_device_error():
    with pytest.raises(ValueError, match="cnnkit runs on the CPU"):
        nn.Linear(2, 2).to("cuda")


def test_state_dict_keys_of_shared_module_equal_torch():
    shared, t_shared = nn.Linear(3, 3), tnn.Linear(3, 3)
    c = nn.Sequential(shared, nn.ReLU(), shared)
    t = tnn.Sequential(t_shared, tnn.ReLU(), t_shared)
    assert list(c.state_dict()) == list(t.state_dict())
    c.load_state_dict(t.state_dict())


def test_repr_matches_torch_where_formats_coincide():
    c = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1, bias=False), nn.Sigmoid())
    t = tnn.Sequential(tnn.Linear(2, 3), tnn.ReLU(), tnn.Linear(3, 1, bias=False), tnn.Sigmoid())
    assert repr(c) == repr(t)
    assert repr(nn.Linear(2, 3)) == "Linear(in_features=2, out_features=3, bias=True)"
    nested_c = nn.Sequential(nn.Sequential(nn.ReLU(), nn.Tanh()), nn.Flatten())
    nested_t = tnn.Sequential(tnn.Sequential(tnn.ReLU(), tnn.Tanh()), tnn.Flatten())
    assert repr(nested_c) == repr(nested_t)
    # Conv2d with stride 1 (torch always prints stride) and BatchNorm (torch 2.13 prints
    # bias=True) use different formats, so only layers whose formats coincide are compared
    for cm, tm in [
        (
            nn.Conv2d(3, 6, 5, stride=2, padding=1, bias=False),
            tnn.Conv2d(3, 6, 5, 2, 1, bias=False),
        ),
        (nn.Conv2d(2, 4, 3, 2, groups=2), tnn.Conv2d(2, 4, 3, 2, groups=2)),
        (nn.MaxPool2d(2), tnn.MaxPool2d(2)),
        (nn.AvgPool2d(3, 2), tnn.AvgPool2d(3, 2)),
        (nn.CrossEntropyLoss(), tnn.CrossEntropyLoss()),
        (nn.Dropout(0.3), tnn.Dropout(0.3)),
        (nn.Softmax(dim=1), tnn.Softmax(dim=1)),
        (nn.LeakyReLU(0.2), tnn.LeakyReLU(0.2)),
        (nn.Flatten(), tnn.Flatten()),
        (nn.AdaptiveAvgPool2d(1), tnn.AdaptiveAvgPool2d(1)),
    ]:
        assert repr(cm) == repr(tm)


def test_forward_hook_sees_input_and_output_and_removes():
    m = nn.Linear(3, 2)
    seen = []
    handle = m.register_forward_hook(lambda mod, inp, out: seen.append((mod, inp, out)))
    x = ck.randn(4, 3)
    y = m(x)
    assert len(seen) == 1
    mod, inp, out = seen[0]
    assert mod is m and isinstance(inp, tuple) and inp[0] is x and out is y
    handle.remove()
    m(x)
    assert len(seen) == 1
    # a non-None return replaces the output
    with m.register_forward_hook(lambda mod, inp, out: out * 0):
        assert np.all(m(x).numpy() == 0)
    assert not np.all(m(x).numpy() == 0)


def test_forward_pre_hook():
    m = nn.ReLU()
    h = m.register_forward_pre_hook(lambda mod, inp: (inp[0] * -1,))
    assert np.all(m(ck.tensor(np.array([1.0, 2.0]))).numpy() == 0)
    h.remove()
    assert np.all(m(ck.tensor(np.array([1.0, 2.0]))).numpy() == [1.0, 2.0])


def test_hooks_on_submodules_capture_activations():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten())
    acts = {}
    handles = [
        sub.register_forward_hook(lambda mod, i, o, name=name: acts.__setitem__(name, o.shape))
        for name, sub in m.named_children()
    ]
    m(ck.zeros(1, 1, 5, 5))
    assert acts == {"0": (1, 2, 3, 3), "1": (1, 2, 3, 3), "2": (1, 18)}
    for h in handles:
        h.remove()


def test_module_list_and_dict_register_parameters():
    class Net(nn.Module):
        def __init__(self, lib):
            super().__init__()
            self.blocks = lib.ModuleList([lib.Linear(3, 3) for _ in range(2)])
            self.heads = lib.ModuleDict({"a": lib.Linear(3, 1), "b": lib.Linear(3, 2)})

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return {k: h(x) for k, h in self.heads.items()}

    class TNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = tnn.ModuleList([tnn.Linear(3, 3) for _ in range(2)])
            self.heads = tnn.ModuleDict({"a": tnn.Linear(3, 1), "b": tnn.Linear(3, 2)})

    c, t = Net(nn), TNet()
    assert [n for n, _ in c.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert len(c.blocks) == 2 and "a" in c.heads and len(c.heads) == 2
    out = c(ck.randn(4, 3))
    assert out["a"].shape == (4, 1) and out["b"].shape == (4, 2)
    c.blocks.append(nn.Linear(3, 3))
    assert len(list(c.parameters())) == 10


def test_custom_module_registration_and_attribute_errors():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.zeros(3))
            self.register_buffer("stat", ck.zeros(2))
            self.register_buffer("tmp", ck.zeros(1), persistent=False)
            self.lin = nn.Linear(3, 1)
            self.not_param = ck.zeros(4)

    m = M()
    assert [n for n, _ in m.named_parameters()] == ["w", "lin.weight", "lin.bias"]
    assert list(m.state_dict()) == ["w", "stat", "lin.weight", "lin.bias"]
    with pytest.raises(TypeError):
        m.w = np.ones(3)
    with pytest.raises(AttributeError, match="nope"):
        _ = m.nope

    class Bad(nn.Module):
        def __init__(self):
            self.x = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_sequential_indexing_and_ordered_dict():
    m = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3), act=nn.ReLU(), flat=nn.Flatten()))
    assert list(dict(m.named_children())) == ["conv", "act", "flat"]
    assert isinstance(m[-1], nn.Flatten) and len(m[:2]) == 2
    assert [n for n, _ in m.named_parameters()] == ["conv.weight", "conv.bias"]
    with pytest.raises(IndexError):
        m[3]
    with pytest.raises(TypeError):
        nn.Sequential(nn.ReLU(), lambda x: x)


# ----------------------------------------------------------------------------- errors
def test_conv_wrong_channels_message():
    with pytest.raises(ValueError) as ei:
        nn.Conv2d(3, 16, 3)(ck.zeros(8, 1, 28, 28))
    msg = str(ei.value)
    assert "expects input (N, 3, H, W)" in msg and "(8, 1, 28, 28)" in msg
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        nn.Conv2d(3, 16, 3)(ck.zeros(28, 28))


def test_linear_wrong_features_message():
    with pytest.raises(ValueError) as ei:
        nn.Linear(4, 2)(ck.zeros(3, 5))
    assert "(*, 4)" in str(ei.value) and "(3, 5)" in str(ei.value)


def test_batchnorm_wrong_rank_message():
    with pytest.raises(ValueError) as ei:
        nn.BatchNorm2d(3)(ck.zeros(2, 3, 4))
    assert "(N, 3, H, W)" in str(ei.value) and "(2, 3, 4)" in str(ei.value)
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        nn.BatchNorm1d(3)(ck.zeros(4, 2))


def test_layer_rejects_non_tensor():
    with pytest.raises(TypeError, match="Tensor"):
        nn.Linear(2, 2)(np.zeros((1, 2)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Conv2d(4, 6, 3, groups=4),
        lambda: nn.Conv2d(3, 6, 3, groups=2),
        lambda: nn.Conv2d(3, 6, 3, stride=0),
        lambda: nn.Conv2d(3, 6, 0),
        lambda: nn.Conv2d(0, 6, 3),
        lambda: nn.Conv2d(3, 6, 3, stride=2, padding="same"),
        lambda: nn.Conv2d(3, 6, 3, padding="full"),
        lambda: nn.Linear(0, 3),
        lambda: nn.LocallyConnected2d(1, 1, input_size=4, kernel_size=5),
        lambda: nn.BatchNorm2d(0),
        lambda: nn.CrossEntropyLoss(reduction="avg"),
    ],
    ids=[
        "groups-out",
        "groups-in",
        "stride0",
        "kernel0",
        "channels0",
        "same-strided",
        "bad-padding",
        "linear0",
        "lc-too-big",
        "bn0",
        "bad-reduction",
    ],
)
def test_invalid_constructor_arguments(make):
    with pytest.raises(ValueError):
        make()


def test_groups_error_names_the_problem():
    with pytest.raises(ValueError, match="groups=4") as ei:
        nn.Conv2d(4, 6, 3, groups=4)
    assert "out_channels=6" in str(ei.value)


def test_cross_entropy_target_out_of_range():
    loss = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="out of range"):
        loss(ck.zeros(2, 10), ck.tensor(np.array([3, 12])))
    with pytest.raises(ValueError, match="out of range"):
        nn.NLLLoss()(ck.zeros(2, 10), ck.tensor(np.array([-1, 2])))


def test_int_tensor_cannot_require_grad():
    with pytest.raises(TypeError):
        ck.tensor([1, 2], requires_grad=True)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("pool", [(2, 2, 0), (3, 2, 1), (2, 1, 0)])
def test_sequential_pools_before_relu_with_equal_values_and_gradients(pool, ties, monkeypatch):
    # ReLU -> MaxPool2d runs as MaxPool2d -> ReLU (a quarter of the ReLU work): max
    # pooling commutes with the monotonic ReLU, and the gradients are the same too
    import cnnkit.nn.container as container

    calls = []
    real = container._pool_first

    def spy(a, b):
        if real(a, b):
            calls.append((type(a).__name__, type(b).__name__))
            return True
        return False

    monkeypatch.setattr(container, "_pool_first", spy)
    k, s, p = pool
    ck.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.MaxPool2d(k, s, p)).double()
    tnet = tnn.Sequential(tnn.Conv2d(2, 3, 3), tnn.ReLU(), tnn.MaxPool2d(k, s, p)).double()
    tnet.load_state_dict({n: torch.tensor(v.numpy()) for n, v in net.state_dict().items()})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 9, 10)) - 0.5  # many ReLU zeros
    if ties:  # no weights, no bias: ties between equal inputs
        net[0].weight.data[...] = 0.0
        net[0].weight.data[:, :, 1, 1] = 1.0
        net[0].bias.data[...] = 0.0
        tnet.load_state_dict({n: torch.tensor(v.numpy()) for n, v in net.state_dict().items()})
        x = rng.integers(-1, 2, (2, 2, 9, 10)).astype(np.float64)
    cx, tx = ck.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, tout = net(cx), tnet(tx)
    assert calls == [("ReLU", "MaxPool2d")]  # the reordered path ran
    g = rng.standard_normal(tuple(tout.shape))
    out.backward(ck.tensor(g))
    tout.backward(torch.tensor(g))
    assert_close(out, tout, what=f"pool {pool}")
    assert_close(cx.grad, tx.grad, what="input gradient")
    assert_close(net[0].weight.grad, tnet[0].weight.grad, what="weight gradient")
    with ck.no_grad():
        assert_close(net(ck.tensor(x)), tout.detach(), what="inference")
