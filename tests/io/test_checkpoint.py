"""Checkpoints: round trips, exact resumption, corrupt files, crash safety."""

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import io, nn, optim
from cnnkit.io import CheckpointError
from cnnkit.models import MLP, LeNet5, SmallResNet, SmallVGG
from cnnkit.train.history import History

ZOO = [
    (lambda: LeNet5(input_size=28), (2, 1, 28, 28)),
    (lambda: LeNet5(input_size=8, dropout=0.3), (2, 1, 8, 8)),
    (lambda: MLP(64, (32, 16), 10, dropout=0.1), (2, 1, 8, 8)),
    (lambda: SmallVGG(widths=(8, 16), input_size=16), (2, 3, 16, 16)),
    (lambda: SmallResNet(widths=(8, 16)), (2, 3, 16, 16)),
    (
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(16, 3),
            nn.LogSoftmax(dim=1),
        ),
        (2, 1, 8, 8),
    ),
]


def train_steps(model, opt, x, y, n):
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(n):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("make, shape", ZOO)
def test_every_zoo_model_rebuilds_with_equal_outputs(tmp_path, make, shape):
    ck.manual_seed(1)
    model = make()
    x = ck.randn(*shape)
    y = ck.tensor(np.arange(shape[0]) % 3)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train_steps(model, opt, x, y, 2)  # moves BatchNorm running stats away from defaults
    model.eval()
    path = io.save(tmp_path / "m.safetensors", model, optimizer=opt, meta={"note": "hi"})
    ck.manual_seed(99)  # a rebuilt model starts from different random weights
    back = io.load(path)
    back.model.eval()
    assert type(back.model) is type(model)
    np.testing.assert_array_equal(back.model(x).numpy(), model(x).numpy())
    assert back.meta == {"note": "hi"}
    assert back.optimizer_class == "SGD"


def test_exact_resumption_in_a_fresh_process(tmp_path):
    """Train 3 steps, save, continue 3 steps in another process: identical to 6 straight."""
    script = textwrap.dedent(
        """
        import sys, numpy as np, cnnkit as ck
        from cnnkit import io, nn, optim
        from cnnkit.models import LeNet5
        mode, path = sys.argv[1], sys.argv[2]
        rng = np.random.default_rng(0)
        xs = rng.standard_normal((6, 8, 1, 8, 8)).astype(np.float32)
        ys = rng.integers(0, 10, (6, 8))
        def steps(model, opt, lo, hi):
            for i in range(lo, hi):
                opt.zero_grad()
                nn.CrossEntropyLoss()(model(ck.tensor(xs[i])), ck.tensor(ys[i])).backward()
                opt.step()
        if mode == "first":
            ck.manual_seed(0)
            m = LeNet5(input_size=8, dropout=0.2)
            o = optim.Adam(m.parameters(), lr=1e-2)
            steps(m, o, 0, 3)
            io.save(path, m, optimizer=o, meta={"rng": ck.backend.get_rng_state()})
        elif mode == "second":
            c = io.load(path)
            ck.backend.set_rng_state(c.meta["rng"])
            o = c.build_optimizer()
            steps(c.model, o, 3, 6)
            flat = [p.numpy().ravel() for p in c.model.parameters()]
            np.save(path + ".npy", np.concatenate(flat))
        else:
            ck.manual_seed(0)
            m = LeNet5(input_size=8, dropout=0.2)
            o = optim.Adam(m.parameters(), lr=1e-2)
            steps(m, o, 0, 6)
            np.save(path + ".npy", np.concatenate([p.numpy().ravel() for p in m.parameters()]))
        """
    )
    f = tmp_path / "resume.py"
    f.write_text(script)
    a, b = str(tmp_path / "a.safetensors"), str(tmp_path / "b")
    for mode, path in (("first", a), ("second", a), ("straight", b)):
        subprocess.run([sys.executable, str(f), mode, path], check=True)
    np.testing.assert_array_equal(np.load(a + ".npy"), np.load(b + ".npy"))


def make_ckpt(tmp_path):
    ck.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    h = History([{"epoch": 1, "train_loss": 0.5}])
    return model, io.save(tmp_path / "c.safetensors", model, history=h)


def test_history_and_version_are_stored(tmp_path):
    _, path = make_ckpt(tmp_path)
    c = io.load(path)
    assert c.history == History([{"epoch": 1, "train_loss": 0.5}])
    assert c.cnnkit_version == ck.__version__
    assert c.architecture["type"] == "Sequential"


def test_truncated_file_is_a_clear_error(tmp_path):
    _, path = make_ckpt(tmp_path)
    data = path.read_bytes()
    bad = tmp_path / "trunc.safetensors"
    bad.write_bytes(data[: len(data) - 10])
    with pytest.raises(CheckpointError, match=r"trunc\.safetensors.*corrupt tensor data"):
        io.load(bad)
    bad.write_bytes(data[:20])
    with pytest.raises(CheckpointError, match=r"trunc\.safetensors: truncated"):
        io.load(bad)


def test_flipped_header_bytes_are_a_clear_error(tmp_path):
    _, path = make_ckpt(tmp_path)
    data = bytearray(path.read_bytes())
    data[12] ^= 0xFF
    data[13] ^= 0xFF
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flipped\.safetensors"):
        io.load(bad)


def test_wrong_format_version(tmp_path):
    from safetensors.numpy import save as st_save

    header = {"format": "cnnkit-checkpoint", "format_version": 99}
    data = st_save(
        {"model.w": np.zeros(2, np.float32)},
        metadata={"format": "cnnkit-checkpoint", "cnnkit": json.dumps(header)},
    )
    bad = tmp_path / "v99.safetensors"
    bad.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"v99\.safetensors: checkpoint format version 99"):
        io.load(bad)


def test_non_checkpoint_files(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello, not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"notes\.txt"):
        io.load(txt)
    from safetensors.numpy import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, plain)
    with pytest.raises(CheckpointError, match=r"plain\.safetensors: not a cnnkit checkpoint"):
        io.load(plain)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        io.load(tmp_path / "missing.safetensors")


def test_state_dict_mismatch_lists_keys(tmp_path):
    _, path = make_ckpt(tmp_path)
    other = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2), nn.Linear(2, 2))
    with pytest.raises(CheckpointError) as e:
        io.load(path, model=other)
    msg = str(e.value)
    assert "c.safetensors" in msg and "3.weight" in msg and "0.weight" in msg


def test_save_never_overwrites_in_place(tmp_path):
    model, path = make_ckpt(tmp_path)
    before = path.read_bytes()

    class Boom:
        def state_dict(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        io.save(path, model, optimizer=Boom())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_sigkill_during_writes_keeps_a_loadable_checkpoint(tmp_path):
    """A writer killed at a random moment leaves the previous checkpoint loadable."""
    path = tmp_path / "k.safetensors"
    script = textwrap.dedent(
        f"""
        import cnnkit as ck
        from cnnkit import io, nn
        ck.manual_seed(0)
        m = nn.Sequential(nn.Linear(512, 512), nn.Linear(512, 512))
        io.save({str(path)!r}, m)
        print("ready", flush=True)
        while True:
            io.save({str(path)!r}, m)
        """
    )
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        c = io.load(path)
        assert c.model[0].weight.shape == (512, 512)


def test_header_length_sanity(tmp_path):
    bad = tmp_path / "huge.safetensors"
    bad.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(CheckpointError, match="header length"):
        io.load(bad)


def test_custom_module_needs_an_instance(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x)

    net = Net()
    path = io.save(tmp_path / "custom.safetensors", net)
    with pytest.raises(CheckpointError, match="custom Module; pass model="):
        io.load(path)
    other = Net()
    io.load(path, model=other)
    np.testing.assert_array_equal(other.fc.weight.numpy(), net.fc.weight.numpy())
    assert isinstance(Path(path), Path)


def test_temporaries_of_dead_writers_are_cleaned_up(tmp_path):
    from cnnkit.io.atomic import atomic_write_bytes

    target = tmp_path / "ckpt.safetensors"
    dead = tmp_path / ".ckpt.safetensors.99999999.x1y2.tmp"  # beyond any pid_max: no process
    live = tmp_path / f".ckpt.safetensors.{os.getpid()}.a1b2.tmp"  # a write still in flight
    other = tmp_path / ".other.safetensors.99999999.zz.tmp"  # another file's temporary
    for f in (dead, live, other):
        f.write_bytes(b"partial")
    atomic_write_bytes(target, b"complete")
    assert target.read_bytes() == b"complete"
    assert not dead.exists()
    assert live.exists() and other.exists()
