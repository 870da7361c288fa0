"""SIGKILL while checkpoints are being written never leaves a broken file under the real name."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cnnkit import io

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

# Every parameter of save number i holds the value i, so a loaded file is consistent
# exactly when all its values are equal, and it tells which save it came from.
WRITER = textwrap.dedent(
    """
    import sys
    from cnnkit import io, nn
    path = sys.argv[1]
    m = nn.Sequential(nn.Linear(2000, 2000), nn.Linear(2000, 10))
    i = 0
    while True:
        for p in m.parameters():
            p.data[...] = i
        io.save(path, m, meta={"step": i})
        print(i, flush=True)
        i += 1
    """
)


def test_sigkill_mid_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    rng = random.Random(1234)
    delays = [rng.uniform(0.0, 0.25) for _ in range(5)]
    for trial, delay in enumerate(delays):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            first = proc.stdout.readline()  # one complete save exists from here on
            assert first.strip() == "0", f"writer failed to start: {first!r}"
            t0 = time.perf_counter()
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
            elapsed = time.perf_counter() - t0
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        reported = [int(s) for s in proc.stdout.read().split()]
        proc.stdout.close()
        last_done = reported[-1] if reported else 0

        c = io.load(path)  # never raises: the real name always holds a complete file
        step = c.meta["step"]
        # the save in flight may have been renamed into place before its "done" line
        assert last_done <= step <= last_done + 1, (trial, delay, last_done, step)
        for name, v in c.state_dict.items():
            assert np.all(v == step), (trial, name, step)
        assert c.model[0].weight.shape == (2000, 2000)

        # anything else in the folder is an unfinished temporary sibling, never the real name
        others = [p for p in tmp_path.iterdir() if p != path]
        for p in others:
            assert p.name.startswith(f".ckpt.safetensors.{proc.pid}."), p
            assert p.name.endswith(".tmp"), p
        # the next successful save removes the dead writer's temporaries
        io.save(path, c.model, meta={"step": step})
        assert [p for p in tmp_path.iterdir() if p != path] == []
        print(f"trial {trial}: killed after {elapsed:.3f}s at step {step}, {len(others)} tmp left")
