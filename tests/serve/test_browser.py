"""`cnnkit serve` in a real browser: Debian's headless Chromium driven by Playwright.

Each test starts the real command (`python -m cnnkit.cli serve RUNS --port P`) on its own
runs folder, as a person would, and looks at the pages. Screenshots are kept under
``test-artifacts/serve/`` (git-ignored); two of them are in the README (docs/images/).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnnkit.serve.runs import read_history

from .conftest import ARTIFACTS, MNIST_DIR, make_runs

pytest.importorskip("uvicorn", reason="the [dashboard] extra (uvicorn) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) missing")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (`make test` installs it with apt-get "
        "when it runs as root: apt-get install chromium)",
    ),
    pytest.mark.slow,
]
CLI = [sys.executable, "-m", "cnnkit.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`cnnkit serve ROOT` in a child process."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*CLI, "serve", str(root), "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cnnkit serve exited: {self.proc.stdout.read()}")
            if self.status("/api/runs") == 200:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("cnnkit serve did not answer within 30 s")

    def status(self, path: str) -> int:
        """The status of a GET sent exactly as written (no normalisation of ``..``)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        except OSError:
            return 0
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM)
        except sync_api.Error as e:  # e.g. a chromium whose libraries are missing
            pytest.skip(f"{CHROMIUM} could not be started by Playwright: {e}")
        try:
            yield b
        finally:
            b.close()


class Page:
    """A browser tab that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def shot(self, name: str, selector: str | None = None) -> Path:
        """A screenshot of the whole page (or of one element) under test-artifacts/serve."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if selector:
            self.page.locator(selector).screenshot(path=str(path))
        else:
            self.page.screenshot(path=str(path), full_page=True)
        return path


def test_pages_load_without_errors_and_traversal_is_404(
    tmp_path: Path, trained_run: Path, browser: Any
) -> None:
    root = make_runs(tmp_path / "runs", trained_run)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "history.csv").write_text("epoch,train_loss\n1,0.5\n")
    os.symlink(outside, root / "escape")
    server = Server(root)
    try:
        tab = Page(browser)
        p = tab.page
        p.goto(server.url + "/")
        p.wait_for_selector("tr[data-run='digits']")
        assert p.locator("#runs tbody tr").count() == 8
        tab.shot("runs")
        p.goto(server.url + "/run/digits")
        p.wait_for_selector("#chart-loss[data-points='2']")
        p.wait_for_selector("#summary-table")
        p.wait_for_selector("#activations .layer canvas")
        p.wait_for_selector("#filters canvas")
        assert "features.3" in p.locator("#activations").inner_text()
        assert p.locator("#diagnosis").inner_text().strip()
        tab.shot("run-digits")
        p.goto(server.url + "/run/grid")
        p.wait_for_selector("#results tbody tr")
        rows = lambda: [r.inner_text().split("\t")[0] for r in p.locator("#results tbody tr").all()]  # noqa: E731
        assert rows() == ["lr=0.01", "lr=0.03", "lr=0.1"]
        p.click("#results th[data-col='val_acc']")  # ascending
        assert rows() == ["lr=0.1", "lr=0.03", "lr=0.01"]
        p.click("#results th[data-col='val_acc']")  # descending
        assert rows() == ["lr=0.01", "lr=0.03", "lr=0.1"]
        assert p.locator("#chart-grid polyline").count() == 3
        tab.shot("grid")
        for name in ("writing", "broken", "yolo"):
            p.goto(server.url + "/run/" + name)
            p.wait_for_selector("#chart-loss[data-points]")
            p.wait_for_timeout(300)
            tab.shot("run-" + name)
        assert p.locator("img[alt='detections']").evaluate("i => i.naturalWidth") == 60
        assert tab.errors == []
        for bad in ("/run/../../etc/passwd", "/api/run/../../../etc/history",
                    "/file/../../../etc/passwd", "/file/%2Fetc%2Fpasswd", "/run/%2E%2E/outside",
                    "/api/run/escape/history", "/run/escape", "/api/run//etc/history",
                    f"/file/{tmp_path}/runs/yolo/detections.png"):  # fmt: skip
            assert server.status(bad) == 404, bad
        assert server.status("/file/yolo/detections.png") == 200
        # a deleted run disappears from the list
        p.goto(server.url + "/")
        p.wait_for_selector("tr[data-run='digits']")
        shutil.rmtree(root / "digits")
        p.wait_for_selector("tr[data-run='digits']", state="detached", timeout=5000)
        assert tab.errors == []
    finally:
        server.stop()


def test_curves_follow_a_real_training_run(tmp_path: Path, browser: Any) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    server = Server(root)
    argv = ["train", "--data", "digits", "--epochs", "5", "--batch-size", "4", "--quiet"]
    train = subprocess.Popen(
        [*CLI, *argv, "--out", str(root / "live")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        hist = root / "live" / "history.csv"
        deadline = time.monotonic() + 120
        # the run directory appears once the data is loaded, before the first epoch
        while not (root / "live" / "config.json.running").exists():
            assert train.poll() is None, train.stderr.read()
            assert time.monotonic() < deadline, "no run directory within 120 s"
            time.sleep(0.05)
        tab = Page(browser)
        p = tab.page
        p.goto(server.url + "/run/live")
        p.wait_for_selector("#chart-loss[data-points]")
        on_page = lambda: int(p.get_attribute("#chart-loss", "data-points") or 0)  # noqa: E731
        start = on_page()
        written: dict[int, float] = {}
        shown: dict[int, float] = {}
        end = None
        while end is None or (time.monotonic() < end + 2.5 and len(shown) < len(written)):
            now = time.monotonic()
            for k in range(len(written) + 1, len(read_history(hist)) + 1):
                written[k] = now
            for k in range(1, on_page() + 1):
                shown.setdefault(k, time.monotonic())
            if end is None and train.poll() is not None:
                end = time.monotonic()
            time.sleep(0.02)
        assert train.returncode == 0, train.stderr.read()
        new = [k for k in written if k > start]
        assert len(new) >= 2, f"only epochs {sorted(written)} seen; {start} on the page at first"
        delays = {k: shown.get(k, float("inf")) - written[k] for k in new}
        print("seconds from an epoch in history.csv to its point on the page:", delays)
        assert all(d < 2.0 for d in delays.values()), delays
        p.wait_for_selector("#chart-loss[data-points='5']", timeout=3000)
        p.wait_for_selector("#live-status .badge.finished", timeout=5000)
        tab.shot("run-live")
        p.evaluate("window.scrollTo(0, 0)")
        tab.page.screenshot(path=str(ARTIFACTS / "run-live-top.png"))
        assert tab.errors == []
    finally:
        if train.poll() is None:
            train.kill()
            train.wait()
        server.stop()


# strokes in canvas pixels (the canvas is 280x280)
SEVEN = [[(70, 60), (210, 60), (125, 235)]]
THREE = [[(80, 70), (140, 45), (200, 75), (195, 115), (140, 140), (195, 165), (200, 210),
          (140, 238), (80, 212)]]  # fmt: skip


@pytest.fixture(scope="module")
def mnist_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not MNIST_DIR.is_dir():
        pytest.skip(f"no MNIST test set at {MNIST_DIR}")
    from cnnkit.train.run import train_run

    root = tmp_path_factory.mktemp("mnist")
    train_run(root / "mnist", data=f"mnist:{MNIST_DIR}", epochs=2, lr=2e-3, verbose=False)
    return root


def test_drawn_digits_are_recognised(mnist_runs: Path, browser: Any) -> None:
    server = Server(mnist_runs)
    try:
        tab = Page(browser)
        p = tab.page
        p.goto(server.url + "/run/mnist")
        canvas = p.locator("#draw-canvas")
        canvas.wait_for()
        p.wait_for_selector("#activations .layer canvas")
        for digit, strokes in (("7", SEVEN), ("3", THREE)):
            p.click("#draw-clear")
            box = canvas.bounding_box()
            for stroke in strokes:
                p.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
                p.mouse.down()
                for x, y in stroke[1:]:
                    p.mouse.move(box["x"] + x, box["y"] + y, steps=12)
                p.mouse.up()
            p.wait_for_function("document.getElementById('draw-result').dataset.top")
            assert p.locator("#draw-result").get_attribute("data-top") == digit
            probs = p.locator("#draw-result .top3 li").all_inner_texts()
            assert len(probs) == 3 and probs[0].split()[0] == digit
            assert p.locator("#draw-result .layer").count() == 2  # maps of both convolutions
            canvas.scroll_into_view_if_needed()
            tab.shot(f"draw-{digit}")
            tab.shot(f"draw-{digit}-card", "#draw-card")
        assert tab.errors == []
    finally:
        server.stop()
