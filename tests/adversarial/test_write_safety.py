"""Files cnnkit writes: symlinks, special files, permissions, full disk, read-only dirs."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from cnnkit import io, nn
from cnnkit.io.atomic import UnsafeWriteError, atomic_write, atomic_write_bytes, atomic_write_text


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_symlink_target_is_replaced_and_link_kept(tmp_path: Path) -> None:
    target_dir = tmp_path / "elsewhere"
    target_dir.mkdir()
    target = target_dir / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    assert sorted(p.name for p in target_dir.iterdir()) == ["real.txt"]  # no temporaries


def test_relative_symlink_chain(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.bin").write_bytes(b"1")
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("d/f.bin")
    atomic_write_bytes(tmp_path / "a", b"22")
    assert (tmp_path / "d" / "f.bin").read_bytes() == b"22"
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()


def test_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to("sub/new.txt")
    atomic_write_text(tmp_path / "link", "x")
    assert (tmp_path / "sub" / "new.txt").read_text() == "x"
    assert (tmp_path / "link").is_symlink()


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "l1").symlink_to("l2")
    (tmp_path / "l2").symlink_to("l1")
    with pytest.raises(UnsafeWriteError, match="symbolic link loop"):
        atomic_write_text(tmp_path / "l1", "x")


@pytest.mark.parametrize("kind", ["directory", "fifo", "link-to-directory", "link-to-fifo"])
def test_special_files_are_refused_and_kept(tmp_path: Path, kind: str) -> None:
    real = tmp_path / "thing"
    if "directory" in kind:
        real.mkdir()
        (real / "inside").write_text("keep")
    else:
        os.mkfifo(real)
    path = real
    if kind.startswith("link"):
        path = tmp_path / "link"
        path.symlink_to(real)
    what = "directory" if "directory" in kind else "FIFO"
    with pytest.raises(UnsafeWriteError, match=f"is a {what}.*refusing to replace it"):
        atomic_write_text(path, "x")
    if "directory" in kind:
        assert (real / "inside").read_text() == "keep"
    else:
        assert stat.S_ISFIFO(os.stat(real).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_device_file_is_refused() -> None:
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    with pytest.raises(UnsafeWriteError, match="character device"):
        atomic_write_text("/dev/null", "x")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_file_gets_umask_permissions(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "new.txt") == 0o666 & ~umask


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755, 0o444])
def test_existing_file_keeps_its_mode(tmp_path: Path, mode: int) -> None:
    p = tmp_path / "f.txt"
    p.write_text("old")
    os.chmod(p, mode)
    atomic_write_text(p, "new")
    assert p.read_text() == "new" and _mode(p) == mode


def _failing(monkeypatch: pytest.MonkeyPatch, where: str, err: int) -> None:
    """Make one step of the write fail with ``err`` (no real full disk needed)."""
    if where == "write":
        real = os.fdopen

        def fdopen(fd: int, *a: object, **k: object):  # type: ignore[no-untyped-def]
            f = real(fd, *a, **k)

            class Full:
                def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
                    return getattr(f, name)

                def write(self, data: object) -> int:
                    raise OSError(err, os.strerror(err))

                def __enter__(self):  # type: ignore[no-untyped-def]
                    return self

                def __exit__(self, *exc: object) -> None:
                    f.close()

            return Full()

        monkeypatch.setattr(os, "fdopen", fdopen)
    elif where == "fsync":
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(err, "x")))
    elif where == "mkstemp":
        import tempfile

        def mkstemp(*a: object, **k: object):  # type: ignore[no-untyped-def]
            raise OSError(err, os.strerror(err))

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    elif where == "replace":
        monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(err, "x")))


@pytest.mark.parametrize("where", ["write", "fsync", "mkstemp", "replace"])
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_failed_write_names_the_path_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, err: int
) -> None:
    p = tmp_path / "model.txt"
    p.write_text("previous")
    _failing(monkeypatch, where, err)
    with pytest.raises(OSError) as info:
        atomic_write_text(p, "next" * 1000)
    monkeypatch.undo()
    assert str(p) in str(info.value) and "unchanged" in str(info.value)
    assert info.value.errno == err
    assert p.read_text() == "previous"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model.txt"]


def test_checkpoint_save_on_full_disk_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = nn.Linear(3, 2)
    path = tmp_path / "m.safetensors"
    io.save(path, m)
    before = path.read_bytes()
    _failing(monkeypatch, "write", errno.ENOSPC)
    with pytest.raises(OSError, match="No space left on device"):
        io.save(path, nn.Linear(3, 2))
    monkeypatch.undo()
    assert path.read_bytes() == before
    np.testing.assert_array_equal(io.load(path).model.weight.numpy(), m.weight.numpy())


def test_tiny_tmpfs_full_disk_if_available(tmp_path: Path) -> None:
    """A real full file system where a small tmpfs can be mounted (root on Linux)."""
    import subprocess

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                       capture_output=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount)")
    try:
        p = mnt / "f.bin"
        atomic_write_bytes(p, b"a" * 1000)
        with pytest.raises(OSError, match=str(p)):
            atomic_write_bytes(p, b"b" * 200_000)
        assert p.read_bytes() == b"a" * 1000
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_exception_in_the_body_leaves_no_trace(tmp_path: Path) -> None:
    p = tmp_path / "f.txt"
    p.write_text("old")
    with pytest.raises(KeyError), atomic_write(p, "w") as f:
        f.write("partial")
        raise KeyError("boom")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.txt"]
