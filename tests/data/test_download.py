"""download_url and MNIST(download=True) against a local HTTP server (no real network)."""

from __future__ import annotations

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import MNIST, DownloadError, download_url, md5sum
from tests.data.test_mnist import make_mnist


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_download_url_writes_and_checks_md5(server, tmp_path):
    served, url = server
    (served / "blob.bin").write_bytes(b"hello world" * 100)
    dest = tmp_path / "out" / "blob.bin"
    md5 = hashlib.md5(b"hello world" * 100).hexdigest()
    assert download_url(url + "blob.bin", dest, md5=md5) == dest
    assert dest.read_bytes() == b"hello world" * 100
    assert md5sum(dest) == md5


def test_md5_mismatch_leaves_no_file(server, tmp_path):
    served, url = server
    (served / "blob.bin").write_bytes(b"abc")
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        download_url(url + "blob.bin", dest, md5="0" * 32)
    assert list((tmp_path / "out").iterdir()) == []


def test_missing_url_raises(server, tmp_path):
    _, url = server
    with pytest.raises(DownloadError, match=r"nope\.bin"):
        download_url(url + "nope.bin", tmp_path / "nope.bin")
    assert not any(tmp_path.glob(".nope.bin*"))


def test_mnist_download(server, tmp_path, monkeypatch):
    served, url = server
    images, labels = make_mnist(served, n=6, prefix="t10k")
    md5s = {p.name: md5sum(p) for p in served.iterdir()}
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:1/dead/", url.rstrip("/")])
    monkeypatch.setattr(MNIST, "md5s", md5s)
    root = tmp_path / "data"
    ds = MNIST(root, train=False, download=True)
    assert len(ds) == 6
    np.testing.assert_array_equal(ds.targets, labels)
    np.testing.assert_allclose(ds.data[:, 0], images / np.float32(255))
    assert sorted(p.name for p in root.iterdir()) == sorted(md5s)
    # Second time: found on disk, no download needed.
    monkeypatch.setattr(MNIST, "mirrors", [])
    assert len(MNIST(root, train=False, download=True)) == 6


def test_mnist_download_md5_mismatch(server, tmp_path, monkeypatch):
    served, url = server
    make_mnist(served, n=3, prefix="t10k")
    monkeypatch.setattr(MNIST, "mirrors", [url])
    monkeypatch.setattr(MNIST, "md5s", {"t10k-images-idx3-ubyte.gz": "f" * 32})
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"expected f{32}"):
        MNIST(root, train=False, download=True)
    assert not root.exists() or list(Path(root).iterdir()) == []
