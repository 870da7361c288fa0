"""BatchNorm's compiled one-pass path (float32, both layouts, fused ReLU) against its
reference equations and PyTorch, running statistics included; float32 accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_close

torch = pytest.importorskip("torch")

import cnnkit as ck  # noqa: E402
import cnnkit.nn.functional as F  # noqa: E402
from cnnkit.functional import _native  # noqa: E402
from cnnkit.functional import norm as norm_mod  # noqa: E402

needs_kernels = pytest.mark.skipif(not _native.available(), reason="compiled kernels not built")


def _layout(x: np.ndarray, nhwc: bool) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) if nhwc else x


@needs_kernels
@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(4, 5, 7, 9), (33, 3, 16, 16)])
def test_fast_batch_norm_equals_torch(nhwc, training, relu, shape):
    rng = np.random.default_rng(sum(shape) + 2 * nhwc + training)
    x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)
    c = shape[1]
    gamma, beta = (
        rng.standard_normal(c).astype(np.float32),
        rng.standard_normal(c).astype(np.float32),
    )
    rm, rv = rng.standard_normal(c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)
    gout = rng.standard_normal(shape).astype(np.float32)
    cx = ck.tensor(_layout(x, nhwc), requires_grad=True)
    cg, cb = ck.tensor(gamma, requires_grad=True), ck.tensor(beta, requires_grad=True)
    crm, crv = ck.tensor(rm.copy()), ck.tensor(rv.copy())
    out = F.batch_norm(cx, crm, crv, cg, cb, training, 0.1, 1e-5, relu=relu)
    assert out.grad_fn.path is not norm_mod._REFERENCE
    out.backward(ck.tensor(gout))
    tx = torch.tensor(x, requires_grad=True)
    tg, tb = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    trm, trv = torch.tensor(rm.copy()), torch.tensor(rv.copy())
    tout = torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, training, 0.1, 1e-5)
    if relu:
        tout = tout.relu()
    tout.backward(torch.tensor(gout))
    tol = {"rtol": 2e-4, "atol": 2e-4}
    assert_close(out, tout, what="out", **tol)
    assert_close(cx.grad, tx.grad, what="dx", **tol)
    assert_close(cg.grad, tg.grad, what="dgamma", **tol)
    assert_close(cb.grad, tb.grad, what="dbeta", **tol)
    assert_close(crm, trm, what="running_mean", **tol)
    assert_close(crv, trv, what="running_var", **tol)


@pytest.mark.parametrize("training", [True, False])
def test_fused_relu_reference_passes_gradcheck(training):
    rng = np.random.default_rng(3)
    x = ck.tensor(rng.standard_normal((3, 2, 4, 4)), requires_grad=True)
    g = ck.tensor(rng.standard_normal(2), requires_grad=True)
    b = ck.tensor(rng.standard_normal(2), requires_grad=True)
    rm, rv = ck.tensor(np.zeros(2)), ck.tensor(np.ones(2))

    def fn(a, w, v):
        return F.batch_norm(a, rm, rv, w, v, training, 0.0, 1e-5, relu=True)

    assert fn(x, g, b).grad_fn.path is norm_mod._REFERENCE  # float64
    assert ck.gradcheck(fn, (x, g, b))


@needs_kernels
@pytest.mark.parametrize("nhwc", [False, True])
def test_float32_statistics_error_at_most_twice_torchs(nhwc):
    """A large mean against a small spread: the one-pass statistics stay accurate (the
    output's float32 error against float64 is at most 2x PyTorch's)."""
    rng = np.random.default_rng(11)
    x64 = 100.0 + rng.standard_normal((64, 8, 12, 12)) * 0.01
    x32 = x64.astype(np.float32)
    exact = torch.nn.functional.batch_norm(
        torch.tensor(x32.astype(np.float64)), None, None, training=True
    ).numpy()
    ours = F.batch_norm(ck.tensor(_layout(x32, nhwc)), None, None, training=True).numpy()
    theirs = torch.nn.functional.batch_norm(torch.tensor(x32), None, None, training=True).numpy()
    err_ours = np.abs(ours - exact).max()
    err_torch = np.abs(theirs - exact).max()
    assert err_ours <= 2 * err_torch + 1e-6, (err_ours, err_torch)
