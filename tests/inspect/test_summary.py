"""ck.summary: shapes, parameter counts, MACs, receptive fields, the meta device."""

import resource

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import nn
from cnnkit.io.architecture import describe
from cnnkit.models import MODELS, LeNet5
from tests.conftest import torch


def test_lenet5_counts_and_macs_at_28x28():
    s = ck.summary(LeNet5(), (1, 1, 28, 28))
    assert s.total_params == 61_706
    assert s.total_macs == 416_520
    convs = [r for r in s.rows if r.layer == "Conv2d"]
    assert [r.macs for r in convs] == [117_600, 240_000]
    fc = sum(r.macs for r in s.rows if r.layer == "Linear")
    assert fc == 58_920
    shapes = {r.name: r.output_shape for r in s.rows}
    assert shapes["features.0"] == (1, 6, 28, 28)
    assert shapes["features.2"] == (1, 6, 14, 14)
    assert shapes["features.3"] == (1, 16, 10, 10)
    assert shapes["features.5"] == (1, 16, 5, 5)
    assert shapes["classifier.5"] == (1, 10)
    assert all(r.trainable == r.params for r in s.rows)
    text = str(s)
    assert "61,706" in text and "416,520" in text
    assert repr(s) == text  # what a REPL shows for a bare ck.summary(...)
    assert text.splitlines()[0] == "LeNet5 on input (1, 1, 28, 28) (float32)"


def test_print_and_repl_show_the_table(capsys):
    import code

    console = code.InteractiveConsole({"ck": ck, "nn": nn})
    console.push("s = ck.summary(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), (1, 1, 5, 5))")
    console.push("print(s)")
    printed = capsys.readouterr().out
    console.push("s")  # the REPL echoes repr(s)
    echoed = capsys.readouterr().out
    for shown in (printed, echoed):
        assert "Layer (type)" in shown and "0 (Conv2d)" in shown and "Total params:" in shown
        assert "LayerRow(" not in shown


def test_receptive_fields_of_the_lecture():
    m = nn.Sequential(nn.Conv2d(1, 4, 5), nn.Conv2d(4, 4, 5), nn.MaxPool2d(2, 2))
    rows = ck.summary(m, (1, 1, 32, 32)).rows
    assert [r.receptive_field for r in rows] == [(5, 5), (9, 9), (10, 10)]
    assert rows[-1].jump == (2, 2)


def test_receptive_field_through_dilation_stride_and_branches():
    class TwoPaths(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3, dilation=2)  # 5x5 field
            self.b = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Conv2d(2, 2, 3))  # 3 + 2*2
            self.pool = nn.AdaptiveAvgPool2d(4)

        def forward(self, x):
            return ck.cat([self.pool(self.a(x)), self.pool(self.b(x))], dim=1) * 1.0

    rows = {r.name: r for r in ck.summary(TwoPaths(), (1, 1, 17, 17)).rows}
    assert rows["a"].receptive_field == (5, 5)
    assert rows["b.0"].receptive_field == (3, 3) and rows["b.0"].jump == (2, 2)
    assert rows["b.1"].receptive_field == (7, 7)


def test_global_average_pool_sees_exactly_the_input():
    """The theoretical field of a global pool would grow past the image by the padding
    of the layers before it (46x46 on 28x28 in MiniInception); it is the whole input."""
    from cnnkit.models import MiniInception

    rows = {r.name: r for r in ck.summary(MiniInception(), (1, 1, 28, 28)).rows}
    assert rows["avgpool"].receptive_field == (28, 28) == rows["fc"].receptive_field
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1))
    assert ck.summary(net, (1, 1, 9, 9)).rows[-1].receptive_field == (9, 9)


def test_meta_model_of_1_6_billion_parameters_without_memory():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = nn.Sequential(nn.Flatten(), nn.Linear(40_000, 40_000, device="meta"))
    s = ck.summary(m, (1, 1, 200, 200))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert s.total_params == 1_600_040_000
    assert s.rows[-1].output_shape == (1, 40_000)
    assert grown_mb < 50
    assert m[1].weight.device == "meta"
    with pytest.raises(RuntimeError, match="meta"):
        m(ck.zeros(1, 40_000))
    with pytest.raises(ValueError, match="meta"):
        nn.Linear(2, 2, device="meta").load_state_dict({"weight": np.zeros((2, 2))}, strict=False)


def test_meta_conv_net_and_batchnorm():
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, device="meta"),
        nn.BatchNorm2d(8, device="meta"),
        nn.ReLU(),
        nn.LocallyConnected2d(8, 4, 32, 3, stride=2, device="meta"),
    )
    s = ck.summary(m, (2, 3, 32, 32))
    assert s.rows[-1].output_shape == (2, 4, 15, 15)
    assert s.total_params == 8 * 27 + 8 + 16 + 15 * 15 * 4 * 8 * 9 + 4 * 15 * 15


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_zoo_layer_has_pytorch_parameter_counts(name):
    kwargs = {"in_features": 64} if name == "mlp" else {}
    model = MODELS[name](**kwargs)
    checked = 0
    for _, leaf in model.named_modules():
        if any(True for _ in leaf.children()):
            continue
        d = describe(leaf)
        if d is None or not hasattr(torch.nn, d["type"]):
            continue
        args = {k: tuple(v) if isinstance(v, list) else v for k, v in d["args"].items()}
        ref = getattr(torch.nn, d["type"])(**args)
        own = sum(p.numel() for p in leaf.parameters(recurse=False))
        assert own == sum(p.numel() for p in ref.parameters()), (name, d)
        checked += 1
    assert checked > 0
    c = getattr(model, "config", {}).get("in_channels", 3)
    shape = (2, 1, 28, 28) if name in ("lenet5",) else (2, c, 32, 32)
    if name == "mlp":
        shape = (2, 64)
    elif name in ("tinyyolo", "yolo"):
        shape = (2, 1, 96, 96)
    s = ck.summary(model, shape)
    assert s.total_params == sum(p.numel() for p in model.parameters())


def test_a_bare_layer_is_named_by_its_type():
    """A layer summarised on its own has no name in a model: its row is its type."""
    row = str(ck.summary(ck.nn.Linear(40, 30), (1, 40))).splitlines()[4]
    assert row.split()[:2] == ["Linear", "(1,"] and "1,230" in row
