"""Free functions PyTorch scripts call (randperm, randint, F.one_hot) against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck
import cnnkit.nn.functional as F


def test_randperm_is_a_seeded_int64_permutation() -> None:
    p = ck.randperm(10, generator=ck.Generator().manual_seed(42))
    want = torch.randperm(10)
    assert p.dtype == np.int64 and str(want.dtype) == "torch.int64"
    assert sorted(p.tolist()) == list(range(10))
    assert p.tolist() == ck.randperm(10, generator=ck.Generator().manual_seed(42)).tolist()
    ck.manual_seed(3)
    a = ck.randperm(50)
    ck.manual_seed(3)
    assert a.tolist() == ck.randperm(50).tolist() and a.tolist() != list(range(50))
    assert ck.randperm(0).tolist() == torch.randperm(0).tolist() == []
    items = list("abcdefghij")
    assert sorted(items[i] for i in ck.randperm(10)[:3]) != []  # elements index lists
    with pytest.raises(ValueError, match="non-negative"):
        ck.randperm(-1)


def test_randint_range_shape_and_two_argument_form() -> None:
    ck.manual_seed(0)
    x = ck.randint(3, 7, (200,))
    t = torch.randint(3, 7, (200,))
    assert x.dtype == np.int64 and tuple(x.shape) == tuple(t.shape)
    assert set(x.tolist()) == set(t.tolist()) == {3, 4, 5, 6}
    y = ck.randint(5, (4, 3))
    assert tuple(y.shape) == tuple(torch.randint(5, (4, 3)).shape)
    assert 0 <= int(y.min()) and int(y.max()) < 5
    with pytest.raises(ValueError, match="greater than low"):
        ck.randint(5, 5, (2,))


@pytest.mark.parametrize("num_classes", [-1, 6])
def test_one_hot_matches_pytorch(num_classes: int) -> None:
    idx = np.array([[0, 3], [4, 1], [2, 2]])
    got = F.one_hot(ck.tensor(idx), num_classes=num_classes)
    want = torch.nn.functional.one_hot(torch.tensor(idx), num_classes=num_classes)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(got.sum(dim=0).numpy(), want.sum(dim=0).numpy())


def test_one_hot_bad_input() -> None:
    with pytest.raises(ValueError, match="smaller than num_classes=3"):
        F.one_hot(ck.tensor([0, 3]), num_classes=3)
    with pytest.raises(TypeError, match="integer"):
        F.one_hot(ck.tensor([0.0, 1.0]))


def test_inplace_methods_match_pytorch_and_guard_autograd() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    c, t = ck.tensor(x.copy()), torch.tensor(x.copy())
    for lib_t, lib in ((c, ck), (t, torch)):
        lib_t.add_(lib.tensor(1.0), alpha=2).sub_(0.5).mul_(3).div_(2).clamp_(-1, 5)
    np.testing.assert_allclose(c.numpy(), t.numpy())
    assert c.fill_(0.25).numpy().tolist() == t.fill_(0.25).numpy().tolist()
    # the init idioms: weight.data.normal_(0, 0.01), bias.data.zero_(), uniform_
    lin = ck.nn.Linear(50, 40)
    ck.manual_seed(0)
    assert lin.weight.data.normal_(0, 0.01) is not None
    w = lin.weight.numpy()
    assert abs(w.std() - 0.01) < 0.001 and abs(w.mean()) < 0.001
    lin.bias.data.uniform_(-0.1, 0.1)
    b = lin.bias.numpy()
    assert b.min() >= -0.1 and b.max() < 0.1 and b.std() > 0.03
    # a tracked leaf is refused (PyTorch raises RuntimeError too), no_grad allows it
    with pytest.raises(RuntimeError, match="in-place"):
        lin.weight.mul_(2)
    with pytest.raises(RuntimeError):
        torch.nn.Linear(2, 2).weight.mul_(2)
    with ck.no_grad():
        lin.weight.mul_(0)
    assert not lin.weight.numpy().any()


def test_std_pow_topk_contiguous_is_cuda() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    x[0, 1] = x[0, 3]  # a tie
    c, t = ck.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    np.testing.assert_allclose(c.std().item(), t.std().item(), rtol=1e-5)
    np.testing.assert_allclose(
        c.std(dim=1, unbiased=False).numpy(), t.std(dim=1, unbiased=False).detach().numpy(),
        rtol=1e-5,
    )  # fmt: skip
    np.testing.assert_allclose(c.pow(2).numpy(), t.pow(2).detach().numpy(), rtol=1e-6)
    assert c.contiguous() is c and c.is_cuda is False
    for largest in (True, False):
        vc, ic = c.topk(3, dim=1, largest=largest)
        vt, it = t.topk(3, dim=1, largest=largest)
        np.testing.assert_array_equal(ic.numpy(), it.numpy())
        np.testing.assert_allclose(vc.numpy(), vt.detach().numpy())
    vc, _ = c.topk(2, 0)
    vt, _ = t.topk(2, 0)
    (vc * vc).sum().backward()
    (vt * vt).sum().backward()
    np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-6)


def test_imagenet_example_topk_accuracy() -> None:
    # pytorch/examples imagenet: output.topk(maxk, 1, True, True), pred.t(), eq(expand_as)
    def accuracy(lib, output, target, topk=(1, 5)):
        with lib.no_grad():
            maxk = max(topk)
            batch_size = target.size(0)
            _, pred = output.topk(maxk, 1, True, True)
            pred = pred.t()
            correct = pred.eq(target.view(1, -1).expand_as(pred))
            res = []
            for k in topk:
                correct_k = correct[:k].reshape(-1).float().sum(0, keepdim=True)
                res.append(correct_k.mul_(100.0 / batch_size))
            return res

    rng = np.random.default_rng(2)
    out, tgt = rng.normal(size=(16, 10)).astype(np.float32), rng.integers(0, 10, 16)
    got = accuracy(ck, ck.tensor(out), ck.tensor(tgt))
    want = accuracy(torch, torch.tensor(out), torch.tensor(tgt))
    assert [float(g) for g in got] == pytest.approx([float(w) for w in want])


def test_data_parallel_wrapper_state_dict_and_forward() -> None:
    net = ck.nn.Linear(3, 2)
    dp = ck.nn.DataParallel(net, device_ids=[0, 1])
    tdp = torch.nn.DataParallel(torch.nn.Linear(3, 2))
    assert list(dp.state_dict()) == list(tdp.state_dict()) == ["module.weight", "module.bias"]
    dp.load_state_dict({k: ck.tensor(v.numpy()) for k, v in tdp.state_dict().items()})
    x = np.ones((4, 3), np.float32)
    np.testing.assert_allclose(
        dp(ck.tensor(x)).numpy(), tdp(torch.tensor(x)).detach().numpy(), rtol=1e-6
    )
    assert dp.module is net


def test_free_softmax_std_topk_match_pytorch() -> None:
    x = np.random.default_rng(3).normal(size=(3, 5)).astype(np.float32)
    c, t = ck.tensor(x), torch.tensor(x)
    np.testing.assert_allclose(ck.softmax(c, 1).numpy(), torch.softmax(t, 1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        ck.log_softmax(c, dim=0).numpy(), torch.log_softmax(t, dim=0).numpy(), rtol=1e-5
    )
    np.testing.assert_allclose(ck.std(c, 0).numpy(), torch.std(t, 0).numpy(), rtol=1e-5)
    vc, ic = ck.topk(c, 2)
    vt, it = torch.topk(t, 2)
    np.testing.assert_array_equal(ic.numpy(), it.numpy())
    np.testing.assert_allclose(vc.numpy(), vt.numpy())
    assert ck.cuda.empty_cache() is None and ck.cuda.is_available() is False


@pytest.mark.parametrize(
    ("p", "dim"), [("fro", None), (2, 1), (1, 0), (float("inf"), None), (3, 1)]
)
def test_norm_matches_pytorch(p, dim) -> None:
    x = np.random.default_rng(4).normal(size=(3, 4))
    c, t = ck.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    nc, nt = c.norm(p, dim), t.norm(p, dim)
    np.testing.assert_allclose(nc.numpy(), nt.detach().numpy(), rtol=1e-10)
    nc.sum().backward()
    nt.sum().backward()
    np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-8)


def test_variable_and_num_threads() -> None:
    from torch.autograd import Variable as TV

    from cnnkit.autograd import Variable

    x = ck.tensor([1.0, 2.0])
    v, tv = Variable(x, requires_grad=True), TV(torch.tensor([1.0, 2.0]), requires_grad=True)
    assert v.requires_grad and tv.requires_grad and v.is_leaf and tv.is_leaf
    assert not Variable(x).requires_grad and not TV(torch.tensor([1.0])).requires_grad
    v.numpy()[0] = 5.0  # shares the values, as PyTorch's
    assert x.numpy()[0] == 5.0
    before = ck.get_num_threads()
    ck.set_num_threads(1)
    assert ck.get_num_threads() == 1
    ck.set_num_threads(before)
    with pytest.raises(ValueError, match="positive int"):
        ck.set_num_threads(0)
