"""float32 accuracy of pooling, linear, BatchNorm and the losses (issue 15): each output's
and each gradient's float32 error against the float64 result is at most twice PyTorch's
float32 error on the same inputs (plus one float32 ulp of the largest magnitude, for
results both compute exactly). Inputs are chosen to stress accumulation: long sums, a
large mean against a small spread, many classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cnnkit as ck  # noqa: E402
import cnnkit.nn.functional as F  # noqa: E402

EPS32 = float(np.finfo(np.float32).eps)


def _cl(a: np.ndarray) -> np.ndarray:
    """The same values, channels-last in memory (an NCHW view of NHWC storage)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _over_twice(
    ours_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    inputs: list[np.ndarray],
    grad_of: tuple[int, ...],
    gout: np.ndarray | None,
    channels_last: bool = False,
) -> list[str]:
    """Run ``ours_fn`` in float64 (the exact result) and float32, ``torch_fn`` in float32,
    backward with ``gout`` (or from the scalar); the results (output, each gradient) whose
    float32 error exceeds twice torch's, with both errors (empty: all within)."""

    def ours(dtype: Any) -> list[np.ndarray]:
        ts = []
        for i, a in enumerate(inputs):
            a = a.astype(dtype) if a.dtype.kind == "f" else a
            if channels_last and a.ndim == 4:
                a = _cl(a)
            ts.append(ck.tensor(a, requires_grad=i in grad_of))
        out = ours_fn(*ts)
        out.backward(None if gout is None else ck.tensor(gout.astype(dtype)))
        return [np.asarray(out.numpy(), np.float64)] + [
            np.asarray(ts[i].grad.numpy(), np.float64) for i in grad_of
        ]

    def theirs() -> list[np.ndarray]:
        ts = []
        for i, a in enumerate(inputs):
            t = torch.tensor(a.astype(np.float32) if a.dtype.kind == "f" else a)
            if channels_last and a.ndim == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            ts.append(t.requires_grad_(i in grad_of))
        out = torch_fn(*ts)
        out.backward(None if gout is None else torch.tensor(gout.astype(np.float32)))
        return [out.detach().double().numpy()] + [ts[i].grad.double().numpy() for i in grad_of]

    exact, got, ref = ours(np.float64), ours(np.float32), theirs()
    names = ["out"] + [f"grad of input {i}" for i in grad_of]
    over = []
    for name, e, o, t in zip(names, exact, got, ref, strict=True):
        assert o.shape == e.shape == t.shape, name
        scale = max(float(np.abs(e).max()), 1e-30)
        err_ours = float(np.abs(o - e).max()) / scale
        err_torch = float(np.abs(t - e).max()) / scale
        if not err_ours <= 2 * err_torch + EPS32:
            over.append(f"{name}: {err_ours:.2e} vs torch {err_torch:.2e}")
    return over


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(2, 2, 0), (3, 2, 1), (3, 1, 1), (7, 7, 0)]
)
def test_pooling_error_at_most_twice_torchs(kernel, stride, padding, channels_last):
    rng = np.random.default_rng(kernel * 10 + stride)
    x = 50.0 + rng.standard_normal((8, 24, 14, 14))  # offset: the average's sum grows
    out_hw = (14 + 2 * padding - kernel) // stride + 1
    g = rng.standard_normal((8, 24, out_hw, out_hw))
    for ours_fn, torch_fn in (
        (F.max_pool2d, torch.nn.functional.max_pool2d),
        (F.avg_pool2d, torch.nn.functional.avg_pool2d),
    ):
        assert not _over_twice(
            lambda a, f=ours_fn: f(a, kernel, stride, padding),
            lambda a, f=torch_fn: f(a, kernel, stride, padding),
            [x],
            (0,),
            g,
            channels_last,
        )


def test_global_average_pool_error_at_most_twice_torchs():
    rng = np.random.default_rng(3)
    x = 10.0 + rng.standard_normal((16, 32, 16, 16))
    g = rng.standard_normal((16, 32, 1, 1))
    assert not _over_twice(
        lambda a: F.adaptive_avg_pool2d(a, 1),
        lambda a: torch.nn.functional.adaptive_avg_pool2d(a, 1),
        [x],
        (0,),
        g,
        True,
    )


@pytest.mark.parametrize(("n", "fin", "fout"), [(64, 2048, 32), (512, 120, 84), (1, 400, 10)])
def test_linear_error_at_most_twice_torchs(n, fin, fout):
    rng = np.random.default_rng(fin)
    x = 1.0 + rng.standard_normal((n, fin))
    w = rng.standard_normal((fout, fin)) / np.sqrt(fin)
    b = rng.standard_normal(fout)
    g = rng.standard_normal((n, fout))
    assert not _over_twice(F.linear, torch.nn.functional.linear, [x, w, b], (0, 1, 2), g)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_error_at_most_twice_torchs(training, channels_last):
    """Forward and every gradient; a large mean against a small spread in training."""
    rng = np.random.default_rng(7 + training)
    x = 30.0 + rng.standard_normal((32, 16, 12, 12)) * 0.05
    w = 1.0 + 0.1 * rng.standard_normal(16)
    b = 0.1 * rng.standard_normal(16)
    rm = 30.0 + 0.01 * rng.standard_normal(16)
    rv = 0.0025 * (1.0 + 0.1 * rng.random(16))
    g = rng.standard_normal(x.shape)

    def ours(a, gamma, beta):
        m, v = ck.tensor(rm.astype(a.dtype)), ck.tensor(rv.astype(a.dtype))
        return F.batch_norm(a, m, v, gamma, beta, training, 0.1, 1e-5)

    def theirs(a, gamma, beta):
        m, v = torch.tensor(rm, dtype=a.dtype), torch.tensor(rv, dtype=a.dtype)
        return torch.nn.functional.batch_norm(a, m, v, gamma, beta, training, 0.1, 1e-5)

    assert not _over_twice(ours, theirs, [x, w, b], (0, 1, 2), g, channels_last)


def test_batch_norm_running_statistics_error_at_most_twice_torchs():
    rng = np.random.default_rng(17)
    x = 30.0 + rng.standard_normal((64, 8, 10, 10)) * 0.05
    stats = {}
    for name, dtype in (("exact", np.float64), ("ours", np.float32)):
        m, v = ck.tensor(np.zeros(8, dtype)), ck.tensor(np.ones(8, dtype))
        F.batch_norm(ck.tensor(x.astype(dtype)), m, v, None, None, True, 0.1, 1e-5)
        stats[name] = [np.asarray(m.numpy(), np.float64), np.asarray(v.numpy(), np.float64)]
    tm, tv = torch.zeros(8), torch.ones(8)
    torch.nn.functional.batch_norm(torch.tensor(x, dtype=torch.float32), tm, tv, None, None,
                                   True, 0.1, 1e-5)  # fmt: skip
    for i, t in enumerate((tm.double().numpy(), tv.double().numpy())):
        e, o = stats["exact"][i], stats["ours"][i]
        scale = np.abs(e).max()
        err_ours, err_torch = np.abs(o - e).max() / scale, np.abs(t - e).max() / scale
        assert err_ours <= 2 * err_torch + EPS32, (i, err_ours, err_torch)


@pytest.mark.parametrize(("n", "classes"), [(512, 10), (64, 1000)])
def test_cross_entropy_and_nll_error_at_most_twice_torchs(n, classes):
    rng = np.random.default_rng(classes)
    logits = 20.0 + 4.0 * rng.standard_normal((n, classes))  # shifted: softmax must subtract
    y = rng.integers(0, classes, n)
    weight = rng.random(classes) + 0.5
    assert not _over_twice(
        F.cross_entropy, torch.nn.functional.cross_entropy, [logits, y], (0,), None
    )
    assert not _over_twice(
        lambda a, t, w: F.cross_entropy(a, t, weight=w, label_smoothing=0.1),
        lambda a, t, w: torch.nn.functional.cross_entropy(a, t, weight=w, label_smoothing=0.1),
        [logits, y, weight],
        (0,),
        None,
    )
    logp = np.log(rng.dirichlet(np.ones(classes), n))
    assert not _over_twice(F.nll_loss, torch.nn.functional.nll_loss, [logp, y], (0,), None)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_regression_and_binary_losses_error_at_most_twice_torchs(reduction):
    rng = np.random.default_rng(5)
    a = 3.0 + rng.standard_normal((256, 40))
    t = 3.0 + rng.standard_normal((256, 40))
    p = rng.random((256, 40)) * 0.98 + 0.01
    z = (rng.random((256, 40)) > 0.5).astype(np.float64)
    tf = torch.nn.functional
    for ours_fn, torch_fn, inputs in (
        (F.mse_loss, tf.mse_loss, [a, t]),
        (F.l1_loss, tf.l1_loss, [a, t]),
        (F.binary_cross_entropy_with_logits, tf.binary_cross_entropy_with_logits, [4 * a, z]),
        (F.binary_cross_entropy, tf.binary_cross_entropy, [p, z]),
    ):
        assert not _over_twice(
            lambda x, y, f=ours_fn: f(x, y, reduction=reduction),
            lambda x, y, f=torch_fn: f(x, y, reduction=reduction),
            inputs,
            (0,),
            None,
        )
