"""ONNX export: every zoo model and the layer zoo run in onnxruntime like in cnnkit."""

import sys
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import cnnkit as ck  # noqa: E402
import cnnkit.nn.functional as F  # noqa: E402
from cnnkit import nn, optim  # noqa: E402
from cnnkit.io.onnx_export import export_onnx  # noqa: E402
from cnnkit.models import MODELS  # noqa: E402

ZOO = {
    "lenet5": ({}, (1, 1, 28, 28)),
    "mlp": ({"in_features": 784}, (1, 784)),
    "smallvgg": ({}, (1, 3, 32, 32)),
    "smallresnet": ({}, (1, 3, 32, 32)),
}


def _train_a_little(model, size, steps=2):
    """A few SGD steps so BatchNorm running statistics are far from (0, 1)."""
    rng = np.random.default_rng(1)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(steps):
        x = ck.tensor((rng.standard_normal((8, *size[1:])) * 2 + 0.5).astype(np.float32))
        target = ck.tensor(rng.integers(0, 10, 8))
        loss = F.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _run(path, x, input_name="input"):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {input_name: x})[0]


def _reference(model, x):
    model.eval()
    with ck.no_grad():
        return model(ck.tensor(x)).numpy()


def _check_roundtrip(model, size, path, batch=3, atol=1e-4, **kwargs):
    out = export_onnx(model, path, size, **kwargs)
    assert Path(out) == Path(path) and Path(path).is_file()
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    x = np.random.default_rng(2).standard_normal((batch, *size[1:])).astype(np.float32)
    got = _run(path, x, kwargs.get("input_name", "input"))
    want = _reference(model, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    return proto


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_match_onnxruntime(name, tmp_path):
    ck.manual_seed(0)
    kwargs, size = ZOO[name]
    model = MODELS[name](**kwargs)
    _train_a_little(model, size)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if bns:  # the statistics really moved
        assert not np.allclose(bns[0].running_var.numpy(), 1.0)
    proto = _check_roundtrip(model, size, tmp_path / f"{name}.onnx")
    inits = {t.name for t in proto.graph.initializer}
    for pname, _ in model.named_parameters():
        assert pname in inits, pname
    for mname, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert f"{mname}.running_mean" in inits
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temp files


def test_layer_zoo_sequential(tmp_path):
    ck.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(4, 6, 3, stride=2, padding=(1, 2), dilation=2, groups=2),  # -> 8x10
        nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),  # -> 5x6 (ceil mode)
        nn.AvgPool2d(2, padding=1, ceil_mode=True, count_include_pad=False),  # -> 3x4
        nn.LocallyConnected2d(6, 5, input_size=(3, 4), kernel_size=2, padding=1),  # -> 4x5
        nn.Sigmoid(),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(100, 7),
        nn.Softmax(dim=1),
    )
    proto = _check_roundtrip(model, (2, 4, 17, 19), tmp_path / "layers.onnx", atol=1e-5)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Conv", "MaxPool", "AveragePool", "MatMul", "Gemm", "Softmax"} <= ops


@pytest.mark.parametrize(
    "layers, size",
    [
        (
            [nn.AvgPool2d(3, 2, padding=1, ceil_mode=True), nn.LeakyReLU(0.2)],
            (1, 2, 10, 11),
        ),
        ([nn.AvgPool2d(2), nn.AdaptiveAvgPool2d((3, 2)), nn.LogSoftmax(dim=1)], (1, 3, 12, 8)),
        ([nn.AdaptiveAvgPool2d((3, 4)), nn.ReLU()], (1, 2, 7, 9)),  # uneven windows
        (
            [nn.MaxPool2d(2, 1, padding=2, dilation=3), nn.Flatten(), nn.Linear(72, 4)],
            (1, 1, 7, 8),
        ),  # padding >= kernel: an explicit Pad node
        (
            [nn.LocallyConnected2d(3, 4, input_size=9, kernel_size=3, stride=2, bias=False)],
            (1, 3, 9, 9),
        ),
        ([nn.Linear(6, 5), nn.BatchNorm1d(4)], (1, 4, 6)),  # 3-D input: MatMul + Add
        ([nn.BatchNorm2d(2, affine=False, eps=1e-3), nn.Sigmoid()], (1, 2, 3, 3)),
    ],
)
def test_layer_variants(layers, size, tmp_path):
    ck.manual_seed(0)
    model = nn.Sequential(*layers)
    _train_a_little_bn(model, size)
    _check_roundtrip(model, size, tmp_path / "m.onnx", atol=1e-5)


def _train_a_little_bn(model, size):
    model.train()
    rng = np.random.default_rng(3)
    with ck.no_grad():
        for _ in range(3):
            model(ck.tensor((rng.standard_normal((4, *size[1:])) * 3 + 1).astype(np.float32)))


class Inception(nn.Module):
    def __init__(self):
        super().__init__()
        self.b1 = nn.Conv2d(3, 4, 1)
        self.b3 = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.b5 = nn.Sequential(nn.Conv2d(3, 2, 5, padding="same"), nn.LeakyReLU())
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(3, 4, 1))
        self.proj = nn.Conv2d(3, 16, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        y = ck.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)
        y = self.bn(y + self.proj(x))
        y = (y * 0.5 - 1.0) / 2.0 + 0.25
        y = F.relu(y)
        return F.log_softmax(self.fc(self.pool(y).flatten(1)), dim=1)


def test_inception_dag(tmp_path):
    ck.manual_seed(0)
    model = Inception()
    _train_a_little_bn(model, (1, 3, 12, 12))
    proto = _check_roundtrip(model, (1, 3, 12, 12), tmp_path / "inception.onnx", batch=5)
    assert "Concat" in {n.op_type for n in proto.graph.node}


def test_flags_names_and_fixed_batch(tmp_path):
    ck.manual_seed(0)
    model = MODELS["lenet5"](input_size=8)
    model.requires_grad_(False)
    model.train()
    path = tmp_path / "sub" / "fixed.onnx"
    names = {"input_name": "img", "output_name": "logits"}
    export_onnx(model, path, (2, 1, 8, 8), dynamic_batch=False, opset=13, **names)
    assert model.training and all(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 13
    assert proto.graph.input[0].name == "img" and proto.graph.output[0].name == "logits"
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 1, 8, 8]
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(path, x, "img"), _reference(model, x), atol=1e-5, rtol=0)


class Sliced(nn.Module):
    def forward(self, x):
        return x[:, :2]


class Maxed(nn.Module):
    def forward(self, x):
        return x.amax(dim=1)


@pytest.mark.parametrize("module, op", [(Sliced(), "GetItem"), (Maxed(), "Amax")])
def test_unsupported_op_names_the_function(module, op, tmp_path):
    path = tmp_path / "bad.onnx"
    with pytest.raises(NotImplementedError, match=op):
        export_onnx(nn.Sequential(nn.Linear(4, 4), module), path, (1, 4))
    assert not path.exists()


def test_unsupported_settings(tmp_path):
    model = nn.Sequential(nn.AvgPool2d(2, divisor_override=3))
    with pytest.raises(NotImplementedError, match="divisor_override"):
        export_onnx(model, tmp_path / "a.onnx", (1, 1, 4, 4))
    bn = nn.Sequential(nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(NotImplementedError, match="batch statistics"):
        export_onnx(bn, tmp_path / "b.onnx", (2, 2, 3, 3))
    with pytest.raises(ValueError, match="opset"):
        export_onnx(bn, tmp_path / "c.onnx", (2, 2, 3, 3), opset=9)


def test_missing_onnx_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install cnnkit\[onnx\]"):
        export_onnx(nn.Linear(2, 2), tmp_path / "x.onnx", (1, 2))


def test_export_with_a_big_batch_on_two_threads(tmp_path):
    # a batch big enough to be split over the cores is still traced op by op
    from threadpoolctl import threadpool_limits

    ck.manual_seed(0)
    model = MODELS["lenet5"]()
    with threadpool_limits(2, user_api="blas"):
        _check_roundtrip(model, (64, 1, 28, 28), tmp_path / "big.onnx", batch=64)


def test_torch_style_onnx_export(tmp_path):
    import cnnkit as ck

    model = ck.nn.Sequential(ck.nn.Conv2d(1, 4, 3), ck.nn.ReLU(), ck.nn.Flatten(),
                             ck.nn.Linear(4 * 4 * 4, 3))  # fmt: skip
    x = ck.randn(2, 1, 6, 6)
    path = tmp_path / "m.onnx"
    ck.onnx.export(model, (x,), path, input_names=["img"], output_names=["logits"],
                   dynamic_axes={"img": {0: "batch"}, "logits": {0: "batch"}})  # fmt: skip
    sess = ort.InferenceSession(str(path))
    assert [i.name for i in sess.get_inputs()] == ["img"]
    x5 = np.random.default_rng(0).normal(size=(5, 1, 6, 6)).astype(np.float32)
    (out,) = sess.run(["logits"], {"img": x5})
    model.eval()
    np.testing.assert_allclose(out, model(ck.tensor(x5)).numpy(), rtol=1e-4, atol=1e-5)
    ck.onnx.export(model, x, tmp_path / "fixed.onnx")
    fixed = ort.InferenceSession(str(tmp_path / "fixed.onnx"))
    assert fixed.get_inputs()[0].shape[0] == 2
