"""The tensor and module behaviour PyTorch scripts rely on, checked against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnkit as ck


def _both(x):
    return ck.tensor(x), torch.tensor(x)


@pytest.mark.parametrize("op", ["__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
                                "eq", "ne", "lt", "le", "gt", "ge"])  # fmt: skip
def test_comparisons_are_elementwise_bool_tensors(op: str) -> None:
    a, ta = _both([1, 2, 3, 4])
    b, tb = _both([1, 0, 3, 5])
    for other, tother in [(b, tb), (3, 3)]:
        got = getattr(a, op)(other)
        want = getattr(ta, op)(tother)
        assert isinstance(got, ck.Tensor) and got.dtype == np.bool_
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_accuracy_idioms_of_training_scripts() -> None:
    logits, tl = _both(np.random.default_rng(0).normal(size=(6, 4)))
    target, tt = _both([0, 1, 2, 3, 0, 1])
    pred, tp = logits.argmax(dim=1, keepdim=True), tl.argmax(dim=1, keepdim=True)
    assert pred.eq(target.view_as(pred)).sum().item() == tp.eq(tt.view_as(tp)).sum().item()
    _, p = ck.max(logits.data, 1)
    _, q = torch.max(tl.data, 1)
    assert (p == target).sum().item() == (q == tt).sum().item()
    assert ck.sum(p == target).item() == torch.sum(q == tt).item()
    classes = ("a", "b", "c", "d")
    assert [classes[t] for t in target] == [classes[t] for t in tt]
    hits = sum(1 for lbl, pr in zip(target, p, strict=True) if lbl == pr)
    assert hits == int((p == target).sum())
    v, i = logits.max(axis=1, keepdims=True)
    tv, ti = tl.max(axis=1, keepdims=True)
    np.testing.assert_array_equal(v.numpy(), tv.numpy())
    np.testing.assert_array_equal(i.numpy(), ti.numpy())
    assert float((logits.argmax(axis=1) == target).sum()) == float((tl.argmax(axis=1) == tt).sum())


def test_scalar_conversions_and_index() -> None:
    t = ck.tensor([2.5])
    assert float(t) == 2.5 and int(t) == 2 and bool(ck.tensor(0)) is False
    assert [10, 20, 30][ck.tensor(2)] == 30
    assert f"{ck.tensor(0.123456):.3f}" == f"{torch.tensor(0.123456):.3f}" == "0.123"
    with pytest.raises(ValueError, match="one-element"):
        float(ck.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="integer"):
        [1, 2][ck.tensor(1.0)]


def test_free_functions_match_torch() -> None:
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    a, t = _both(x)
    np.testing.assert_array_equal(ck.flatten(a, 1).numpy(), torch.flatten(t, 1).numpy())
    np.testing.assert_array_equal(ck.argmax(a, 2).numpy(), torch.argmax(t, 2).numpy())
    vals, idx = ck.min(a, dim=1)
    tv, ti = torch.min(t, dim=1)
    np.testing.assert_array_equal(vals.numpy(), tv.numpy())
    np.testing.assert_array_equal(idx.numpy(), ti.numpy())
    np.testing.assert_array_equal(
        ck.max(a, ck.zeros_like(a)).numpy(), torch.max(t, torch.zeros_like(t)).numpy()
    )
    arr = np.arange(4.0)
    shared = ck.from_numpy(arr)
    arr[0] = 9
    assert shared[0].item() == 9
    assert ck.rand(size=(2, 3)).shape == (2, 3) and ck.zeros(size=(4,)).shape == (4,)
    assert a.type_as(ck.tensor([1], dtype="int64")).dtype == np.int64
    assert a.to(ck.float64).dtype == np.float64 and a.to("cpu") is a and a.cpu() is a


def test_devices_are_the_cpu_only() -> None:
    assert ck.cuda.is_available() is False and ck.accelerator.is_available() is False
    assert ck.accelerator.current_accelerator() is None
    ck.backends.cudnn.benchmark = True
    assert ck.backends.mps.is_available() is False
    dev = ck.device("cuda" if ck.cuda.is_available() else "cpu")
    assert dev == "cpu" and str(dev) == "cpu" and dev.type == "cpu"
    m = ck.nn.Linear(2, 2).to(dev)
    x = ck.randn(1, 2).to(dev)
    assert m(x).shape == (1, 2)
    for bad in (lambda: x.to("cuda"), lambda: x.cuda(), lambda: m.cuda(),
                lambda: m.to(ck.device("cuda:0")), lambda: ck.zeros(2, device="mps")):  # fmt: skip
        with pytest.raises(RuntimeError, match="cnnkit runs on the CPU"):
            bad()


def test_import_cnnkit_reaches_the_subpackages_and_inference_mode() -> None:
    import cnnkit

    assert cnnkit.nn.Conv2d and cnnkit.optim.Adadelta and cnnkit.utils.data.DataLoader
    assert cnnkit.vision.transforms.ToTensor and cnnkit.onnx.export
    w = ck.ones(2, requires_grad=True)
    with ck.inference_mode():
        assert not (w * 2).requires_grad
    assert (w * 2).requires_grad

    @ck.no_grad()
    def f():
        return w * 2

    assert not f().requires_grad


@pytest.mark.parametrize("shape", [(5,), (2, 5), (2, 3, 4), (2, 3, 4, 5)])
def test_softmax_implicit_dim_as_torch(shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).normal(size=shape)
    with pytest.warns(UserWarning, match="implicit dim"):
        got = ck.nn.functional.log_softmax(ck.tensor(x))
    with pytest.warns(UserWarning):
        want = torch.nn.functional.log_softmax(torch.tensor(x))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
