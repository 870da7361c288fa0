"""Atomic file writes: write a temporary file in the same folder, fsync, then rename.

A crash (or SIGKILL) at any moment leaves either the old file or the new one under
the real name, never a half-written one. Temporary names carry the writer's process id,
so the temporaries of writers that died are removed by the next successful write.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class UnsafeWriteError(OSError):
    """The destination is not a regular file (a directory, FIFO, device, socket) or a
    symbolic link that cannot be resolved: cnnkit refuses to replace it."""


def resolve_destination(path: str | Path) -> Path:
    """The file a write to ``path`` must replace: ``path`` itself, or the final target
    when ``path`` is a symbolic link (so the link stays a link).

    Raises
    ------
    UnsafeWriteError
        ``path`` (or its target) exists and is not a regular file, or is a link loop.
    """
    path = Path(path)
    if path.is_symlink():
        try:
            target = Path(os.path.realpath(path, strict=False))
        except OSError as e:  # pragma: no cover - realpath(strict=False) rarely raises
            raise UnsafeWriteError(f"{path}: cannot resolve the symbolic link ({e})") from None
        if target.is_symlink():  # realpath stops on a loop and returns a link
            raise UnsafeWriteError(f"{path}: symbolic link loop; refusing to write through it")
        path = target
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError as e:
        raise UnsafeWriteError(f"{path}: cannot inspect the destination ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = _kind(st.st_mode)
        raise UnsafeWriteError(
            f"{path}: is a {kind}, not a regular file; refusing to replace it (choose another path)"
        )
    return path


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def _umask() -> int:
    """The process's umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then restore at once
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success rename it onto ``path``.

    What is at ``path`` is respected: a symbolic link has its target replaced
    (atomically, in the target's folder) and stays a link; a directory, FIFO, device or
    socket is refused (:class:`UnsafeWriteError`); an existing file keeps its permission
    bits, a new one gets those the umask gives (``0o666 & ~umask``), as ``open`` would.
    On an exception the temporary file is removed and ``path`` is untouched; an
    ``OSError`` (disk full, read-only folder, no permission) is re-raised naming ``path``.
    """
    shown = Path(path)
    path = resolve_destination(shown)
    try:
        old_mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        old_mode = None
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{path.name}.{os.getpid()}."
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
        os.chmod(tmp, old_mode if old_mode is not None else 0o666 & ~_umask())
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
        _remove_orphans(path)
    except OSError as e:
        _discard(tmp)
        if isinstance(e, UnsafeWriteError) or getattr(e, "_cnnkit_named", False):
            raise
        where = f"{shown} (-> {path})" if shown != path else str(shown)
        err = OSError(
            e.errno,
            f"cannot write {where}: {e.strerror or e}; the previous file (if any) is unchanged",
        )
        err._cnnkit_named = True  # type: ignore[attr-defined]
        raise err from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def _remove_orphans(path: Path) -> None:
    """Delete temporaries of ``path`` left by writers that no longer run (killed mid-write);
    those of live processes, this one included, are left alone."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but not ours, or cannot tell: keep its file
    return True


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
