"""ck.save / ck.load in PyTorch's zip format: each library reads what the other wrote, and
nothing but tensors, containers and plain values is ever rebuilt."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnkit as ck


def test_checkpoint_dict_written_by_cnnkit_loads_in_torch_weights_only(tmp_path: Path) -> None:
    m = ck.nn.Sequential(ck.nn.Conv2d(1, 2, 3), ck.nn.BatchNorm2d(2), ck.nn.Flatten(),
                         ck.nn.Linear(8, 3))  # fmt: skip
    opt = ck.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(ck.randn(2, 1, 4, 4)).sum().backward()
    opt.step()
    obj = {"net": m.state_dict(), "opt": opt.state_dict(), "acc": 91.25, "epoch": 7}
    obj.update(names=["a", "b"], pair=(1, None, True), big=2**40, half=ck.zeros(2, dtype="float16"))
    ck.save(obj, tmp_path / "ckpt.pth")
    t = torch.load(tmp_path / "ckpt.pth", weights_only=True)
    assert isinstance(t["net"], OrderedDict) and list(t["net"]) == list(m.state_dict())
    assert t["acc"] == 91.25 and t["epoch"] == 7 and t["names"] == ["a", "b"]
    assert t["pair"] == (1, None, True) and t["big"] == 2**40 and t["half"].dtype == torch.float16
    assert (
        t["net"]["1.num_batches_tracked"].shape == ()
        and t["net"]["1.num_batches_tracked"].dtype == torch.int64
    )
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(t["net"][k].numpy(), v.numpy())
    buf = t["opt"]["state"][0]["momentum_buffer"]
    np.testing.assert_array_equal(buf.numpy(), opt.state_dict()["state"][0]["momentum_buffer"])
    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
                             torch.nn.Linear(8, 3))  # fmt: skip
    tm.load_state_dict(t["net"])


def test_cnnkit_reads_torch_checkpoints(tmp_path: Path) -> None:
    tm = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    opt = torch.optim.Adam(tm.parameters())
    tm(torch.randn(4, 3)).sum().backward()
    opt.step()
    torch.save({"net": tm.state_dict(), "opt": opt.state_dict(), "acc": 50.0, "epoch": 3},
               tmp_path / "t.pth")  # fmt: skip
    c = ck.load(tmp_path / "t.pth", weights_only=True)
    assert c["acc"] == 50.0 and c["epoch"] == 3
    assert isinstance(c["net"]["0.weight"], ck.Tensor)
    m = ck.nn.Sequential(ck.nn.Linear(3, 2), ck.nn.BatchNorm1d(2))
    m.load_state_dict(c["net"])
    np.testing.assert_array_equal(m[0].weight.numpy(), tm[0].weight.detach().numpy())
    assert c["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
    # a file object works too, and map_location="cpu" is accepted
    with open(tmp_path / "t.pth", "rb") as f:
        assert ck.load(f, map_location="cpu")["epoch"] == 3


def test_save_refuses_objects_that_are_not_data(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="state_dict"):
        ck.save(ck.nn.Linear(2, 2), tmp_path / "m.pt")
    with pytest.raises(TypeError, match=r"\['x'\]"):
        ck.save({"x": object()}, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_load_never_runs_code_from_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"a": _Evil()}, protocol=2))
        z.writestr("archive/version", "3\n")
    (tmp_path / "evil.pt").write_bytes(buf.getvalue())
    with pytest.raises(pickle.UnpicklingError, match=r"refused to load global .*print"):
        ck.load(tmp_path / "evil.pt", weights_only=False)
    assert "pwned" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="cnnkit runs on the CPU"):
        ck.load(tmp_path / "evil.pt", map_location="cuda:0")
