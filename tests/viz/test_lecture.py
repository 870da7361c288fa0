"""examples/lecture.py prints the lecture's parameter counts (built on the meta device)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "lecture.py"


def test_lecture_comparison_numbers() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, check=True
    )
    lines = {ln.split("  ")[0].strip(): ln.split() for ln in run.stdout.splitlines() if "  " in ln}
    fc = lines["fully connected"]
    assert fc[2:7] == ["40,000", "40,000", "1,600,000,000", "40,000", "1,600,040,000"]
    lc = lines["locally connected"]
    assert lc[2:7] == ["40,000", "100", "4,000,000", "40,000", "4,040,000"]
    assert lines["locally connected, sliding"][3:8] == ["40,401", "100", "4,040,100", "40,401",
                                                        "4,080,501"]  # fmt: skip
    one = lines["convolution, 1 filter"]
    assert one[3:8] == ["36,481", "100", "100", "1", "101"]
    twenty = lines["convolution, 20 filters"]
    assert twenty[3:8] == ["729,620", "100", "2,000", "20", "2,020"]
    assert "LocallyConnected2d(1, 100, input_size=200, kernel_size=10, stride=10)" in run.stdout
    assert run.stderr == ""


def test_lecture_allocates_no_big_weights() -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("measuring a process's own peak memory needs Linux's /proc")
    # the child's own peak: ru_maxrss would include the pytest process's peak (Linux
    # carries the parent's high-water mark across fork/vfork and exec), so the child
    # resets its high-water mark (clear_refs 5) and reads VmHWM after the script
    code = (
        "import runpy, sys; open('/proc/self/clear_refs', 'w').write('5'); "
        "runpy.run_path(sys.argv[1], run_name='__main__'); "
        "print('maxrss_kb', [l for l in open('/proc/self/status') "
        "if l.startswith('VmHWM')][0].split()[1])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rss_mb = int(run.stdout.split("maxrss_kb")[1]) / 1024
    assert rss_mb < 1000, f"{rss_mb:.0f} MB: the 6.4 GB layer must stay on the meta device"
