"""Resumable downloads (HTTP Range) and CIFAR10(download=True) against a local server."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from cnnkit.data import CIFAR10, DownloadError, download_url
from tests.data.test_cifar import make_cifar


class _Files(BaseHTTPRequestHandler):
    """Serves ``files`` (name -> bytes); honours ``Range: bytes=N-`` when ``ranges``."""

    files: ClassVar[dict[str, bytes]] = {}
    ranges = True
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        body = self.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        self.seen.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng and self.ranges else 0
        if start >= len(body) and rng and self.ranges:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve():
    servers = []

    def start(files: dict[str, bytes], ranges: bool = True) -> tuple[str, list]:
        seen: list = []
        handler = type("H", (_Files,), {"files": files, "ranges": ranges, "seen": seen})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()  # fmt: skip
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/", seen

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


BODY = bytes(range(256)) * 400  # 102,400 bytes
MD5 = hashlib.md5(BODY).hexdigest()


def test_interrupted_download_resumes_with_a_range_request(serve, tmp_path):
    url, seen = serve({"f.bin": BODY})
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(BODY[:40_000])  # an earlier, interrupted attempt
    download_url(url + "f.bin", dest, md5=MD5)
    assert dest.read_bytes() == BODY
    assert seen == ["bytes=40000-"]
    assert not (tmp_path / "f.bin.part").exists()


def test_server_without_ranges_restarts_from_zero(serve, tmp_path):
    url, seen = serve({"f.bin": BODY}, ranges=False)
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes from another file")
    download_url(url + "f.bin", dest, md5=MD5)
    assert dest.read_bytes() == BODY and seen == ["bytes=29-"]


def test_complete_part_is_verified_and_renamed(serve, tmp_path):
    url, seen = serve({"f.bin": BODY})
    (tmp_path / "f.bin.part").write_bytes(BODY)
    download_url(url + "f.bin", tmp_path / "f.bin", md5=MD5)
    assert (tmp_path / "f.bin").read_bytes() == BODY and seen == [f"bytes={len(BODY)}-"]


def test_corrupt_part_is_deleted_on_md5_mismatch(serve, tmp_path):
    url, _ = serve({"f.bin": BODY})
    (tmp_path / "f.bin.part").write_bytes(b"\xff" * 40_000)  # wrong bytes, resumed after
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        download_url(url + "f.bin", tmp_path / "f.bin", md5=MD5)
    assert list(tmp_path.iterdir()) == []
    download_url(url + "f.bin", tmp_path / "f.bin", md5=MD5)  # the next attempt is clean
    assert (tmp_path / "f.bin").read_bytes() == BODY


def _cifar_archive(tmp_path: Path) -> tuple[bytes, dict]:
    src = tmp_path / "src"
    batches = make_cifar(src, n=4)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        evil = tarfile.TarInfo("../escaped.txt")  # never extracted: not a batch name
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    return buf.getvalue(), batches


def test_cifar10_download_extracts_only_the_batches(serve, tmp_path, monkeypatch):
    archive, batches = _cifar_archive(tmp_path)
    url, _ = serve({"cifar-10-python.tar.gz": archive})
    monkeypatch.setattr(CIFAR10, "mirrors", (url,))
    monkeypatch.setattr(CIFAR10, "archive_md5", hashlib.md5(archive).hexdigest())
    root = tmp_path / "root"
    ds = CIFAR10(root, train=False, download=True)
    data, labels = batches["test_batch"]
    np.testing.assert_array_equal(ds.targets, labels)
    np.testing.assert_allclose(ds.data.reshape(4, -1), data / 255.0, rtol=1e-6)
    assert len(CIFAR10(root, train=True)) == 20  # 5 batches of 4, no second download
    assert not (tmp_path / "escaped.txt").exists()
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == sorted(
        [*(f"data_batch_{k}" for k in range(1, 6)), "test_batch", "batches.meta"]
    )


def test_cifar10_download_checks_md5(serve, tmp_path, monkeypatch):
    archive, _ = _cifar_archive(tmp_path)
    url, _ = serve({"cifar-10-python.tar.gz": archive})
    monkeypatch.setattr(CIFAR10, "mirrors", (url,))  # the real MD5 cannot match this file
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        CIFAR10(tmp_path / "root", download=True)
    assert not (tmp_path / "root" / "cifar-10-batches-py").exists()
