"""MiniInception: four branches concatenated, equal to a PyTorch twin, learns the digits,
and its summary shows each branch with its receptive field."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit as ck
from cnnkit.models import Inception, MiniInception, get_model

torch = pytest.importorskip("torch")
tnn = torch.nn


def _cbr(cin, cout, k, p=0):
    return tnn.Sequential(
        tnn.Conv2d(cin, cout, k, padding=p, bias=False), tnn.BatchNorm2d(cout), tnn.ReLU()
    )


class TorchInception(tnn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
        super().__init__()
        self.branch1 = _cbr(cin, c1, 1)
        self.branch2 = tnn.Sequential(_cbr(cin, c3r, 1), _cbr(c3r, c3, 3, 1))
        self.branch3 = tnn.Sequential(_cbr(cin, c5r, 1), _cbr(c5r, c5, 5, 2))
        self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, 1, 1), _cbr(cin, pp, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def _rename(key: str) -> str:
    """cnnkit's ConvBNReLU names its parts conv/bn; the torch twin's Sequential 0/1."""
    return key.replace(".conv.", ".0.").replace(".bn.", ".1.")


def test_block_equals_pytorch_forward_and_backward():
    torch.manual_seed(0)
    tblock = TorchInception(6, 3, 4, 5, 2, 3, 2)
    tblock.train()
    with torch.no_grad():
        tblock(torch.randn(4, 6, 7, 7))  # move the running statistics
    tblock.eval()
    block = Inception(6, 3, 4, 5, 2, 3, 2)
    tsd = tblock.state_dict()
    block.load_state_dict({k: tsd[_rename(k)].numpy() for k in block.state_dict()})
    block.eval()
    x = np.random.default_rng(0).standard_normal((2, 6, 7, 7)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    tout = tblock(tx)
    cx = ck.tensor(x, requires_grad=True)
    out = block(cx)
    assert out.shape == (2, 3 + 5 + 3 + 2, 7, 7)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    w = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    (tout * torch.from_numpy(w)).sum().backward()
    (out * ck.tensor(w)).sum().backward()
    np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-5)
    g = block.branch3[1].conv.weight.grad.numpy()
    np.testing.assert_allclose(g, tblock.branch3[1][0].weight.grad.numpy(), rtol=1e-3, atol=1e-5)


def test_summary_shows_the_branches_and_their_receptive_fields():
    s = ck.summary(MiniInception(), (1, 1, 8, 8))
    rf = {r.name: r.receptive_field for r in s.rows}
    # after the 3x3 stem: 1x1 keeps 3x3, 3x3 gives 5x5, 5x5 gives 7x7, pool 3x3 gives 5x5
    assert rf["inception_a.branch1.conv"] == (3, 3)
    assert rf["inception_a.branch2.1.conv"] == (5, 5)
    assert rf["inception_a.branch3.1.conv"] == (7, 7)
    assert rf["inception_a.branch4.1.conv"] == (5, 5)
    # the concatenation sees as far as its widest branch
    assert rf["inception_b.branch1.conv"] == (7, 7)
    assert rf["inception_b.branch3.1.conv"] == (11, 11)
    table = str(s)
    for b in ("branch1", "branch2", "branch3", "branch4"):
        assert f"inception_c.{b}" in table
    assert s.total_params == sum(p.numel() for p in MiniInception().parameters()) == 21_578
    assert isinstance(get_model("MiniInception", in_channels=3, input_size=32), MiniInception)


@pytest.mark.slow
def test_trains_on_the_digits(tmp_path):
    from cnnkit.train.run import load_run, train_run

    s = train_run(tmp_path / "run", model="miniinception", epochs=2, lr=3e-3, verbose=False)
    assert s["test_accuracy"] > 0.85, s["test_accuracy"]
    _, model = load_run(tmp_path / "run")  # rebuilt from the checkpoint
    assert isinstance(model, MiniInception)
