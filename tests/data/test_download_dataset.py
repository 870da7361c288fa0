"""`cnnkit download mnist|fashion` and download_dataset against a server on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.data import MNIST, FashionMNIST, download_dataset
from cnnkit.train.run import load_data
from tests.data.test_download_resume import serve  # noqa: F401  (the fixture)
from tests.data.test_mnist import make_mnist


def served_files(tmp_path: Path, n: int = 30) -> dict[str, bytes]:
    """Gzipped IDX files of a tiny MNIST (train and t10k), as the mirrors serve them."""
    src = tmp_path / "src"
    make_mnist(src, n=n, prefix="train", seed=1)
    make_mnist(src, n=n, prefix="t10k", seed=2)
    return {p.name: p.read_bytes() for p in src.iterdir()}


def md5s(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.md5(v).hexdigest() for k, v in files.items()}


def test_cli_download_then_train_reads_it(serve, tmp_path, monkeypatch, capsys):  # noqa: F811
    files = served_files(tmp_path)
    url, seen = serve(files)
    monkeypatch.setattr(MNIST, "md5s", md5s(files))
    root = tmp_path / "data" / "mnist"
    assert main(["download", "mnist", "--root", str(root), "--mirror", url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("checksum OK") == 4
    assert f"4 files in {root}; train with --data mnist:{root}" in out
    assert sorted(p.name for p in root.iterdir()) == sorted(files)
    for name, body in files.items():
        assert (root / name).read_bytes() == body
    splits = load_data(f"mnist:{root}")
    assert (len(splits.train) + len(splits.val), len(splits.test)) == (30, 30)
    # a second run finds the files with the right checksums and fetches nothing
    n_requests = len(seen)
    assert main(["download", "mnist", "--root", str(root), "--mirror", url, "--quiet"]) == 0
    assert capsys.readouterr().out.count("present, checksum OK") == 4
    assert len(seen) == n_requests


def test_download_resumes_a_part_and_replaces_a_corrupt_file(serve, tmp_path, monkeypatch):  # noqa: F811
    files = served_files(tmp_path, n=200)
    url, seen = serve(files)
    monkeypatch.setattr(MNIST, "md5s", md5s(files))
    root = tmp_path / "root"
    root.mkdir()
    name = "t10k-images-idx3-ubyte.gz"
    (root / f"{name}.part").write_bytes(files[name][:1000])  # interrupted earlier
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"corrupt")  # wrong checksum
    got = download_dataset("mnist", root, split="test", mirrors=[url], progress=False)
    assert [p.name for p in got] == [name, "t10k-labels-idx1-ubyte.gz"]
    assert seen[0] == "bytes=1000-"  # only the rest was requested
    for p in got:
        assert p.read_bytes() == files[p.name]
    assert not any(root.glob("*.part"))
    assert len(MNIST(root, train=False)) == 200


def test_checksum_mismatch_is_a_one_line_error_and_leaves_nothing(serve, tmp_path, capsys):  # noqa: F811
    files = served_files(tmp_path)
    url, _ = serve(files)  # the real MD5s cannot match these files
    root = tmp_path / "root"
    rc = main(["download", "mnist", "--root", str(root), "--mirror", url, "--split", "test",
               "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "MD5 mismatch" in err and "t10k-images-idx3-ubyte.gz" in err
    assert MNIST.md5s["t10k-images-idx3-ubyte.gz"] in err
    assert list(root.iterdir()) == []


def test_dead_mirror_falls_through_and_bad_arguments(serve, tmp_path, monkeypatch):  # noqa: F811
    files = served_files(tmp_path)
    url, _ = serve(files)
    monkeypatch.setattr(FashionMNIST, "md5s", md5s(files))
    got = download_dataset("fashion", tmp_path / "f", "train",
                           ["http://127.0.0.1:1/dead/", url], progress=False)  # fmt: skip
    assert [p.name for p in got] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    with gzip.open(got[1]) as f:
        assert np.frombuffer(f.read()[8:], np.uint8).shape == (30,)
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        download_dataset("cifar", tmp_path)
    with pytest.raises(ValueError, match="split must be all, train or test"):
        download_dataset("mnist", tmp_path, split="val")


def test_published_checksums_match_the_shared_test_set(mnist_dir):
    from cnnkit.data import md5sum

    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert md5sum(mnist_dir / name) == MNIST.md5s[name]


def test_no_mirror_reachable_says_how_to_work_offline(tmp_path, capsys):
    root = tmp_path / "root"
    dead = ["--mirror", "http://127.0.0.1:1/a/", "--mirror", "http://127.0.0.1:1/b/"]
    rc = main(["download", "mnist", "--root", str(root), "--split", "test", "--quiet", *dead])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    # each mirror's failure is its own clause, then what to do with or without a network
    assert "could not download t10k-images-idx3-ubyte.gz:; " not in err
    assert "http://127.0.0.1:1/a/t10k-images-idx3-ubyte.gz failed: " in err
    assert "failed: " in err.split("; download of ")[1]
    assert err.endswith(f"copy the data set's .gz files into {root} and run it again to check them")
