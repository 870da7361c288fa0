"""Run directories owned by one run at a time: an exclusive claim file.

``cnnkit train --out DIR`` claims ``DIR`` before any data is loaded by creating
``DIR/.cnnkit-run.lock`` and holding an ``flock`` on it for as long as it runs; the file
records the process id, host and start time. It is written and locked under a private
name first and then hard-linked to its name (exactly one process can create it), so a
claim file never exists without its owner's record. A second run on the same directory
stops at once with an error naming the owner. When the owner died (SIGKILL, power
loss) the lock file stays but its ``flock`` is gone: the claim is *stale*, reported as
such; ``--resume`` takes it over (one process wins the takeover, by an atomic rename),
and so does any run when the folder holds nothing but the claim.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: liveness by process id only
    fcntl = None  # type: ignore[assignment]

LOCK = ".cnnkit-run.lock"


class RunDirectoryBusy(FileExistsError):
    """The run directory is claimed by another run (live, or stale after a kill)."""


class RunClaim:
    """An exclusive claim of a run directory; release it with :meth:`release`
    (or use it as a context manager)."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self.path = folder / LOCK
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the directory up (remove the claim file); idempotent."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _owner(path: Path) -> dict[str, Any]:
    try:
        from cnnkit.io.reading import read_regular_text

        info = json.loads(read_regular_text(path))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _check_claim_file(path: Path) -> None:
    """A claim file is a regular file cnnkit created; anything else there (a directory,
    FIFO, symbolic link) is refused rather than read (a FIFO would block) or replaced."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        from cnnkit.io.atomic import _kind

        kind = "symbolic link" if stat.S_ISLNK(mode) else _kind(mode)
        raise RunDirectoryBusy(
            f"{path} is a {kind}, not a cnnkit claim file; remove it or choose another --out"
        )


def _describe(info: dict[str, Any]) -> str:
    pid, host, started = info.get("pid", "?"), info.get("host", "?"), info.get("started", "?")
    return f"pid {pid} on {host}, started {started}"


def is_live(path: Path) -> bool:
    """Whether the claim file at ``path`` is held by a running process."""
    if fcntl is not None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return False
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True  # someone holds it
        finally:
            os.close(fd)
        return False
    info = _owner(path)  # pragma: no cover
    pid = info.get("pid")
    if info.get("host") != socket.gethostname() or not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _young(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < 5.0
    except OSError:
        return False


def nothing_but_claims(folder: Path) -> bool:
    """Whether ``folder`` holds no files but claim files: a stale claim there is of a
    run that was stopped before it wrote anything (a mistyped option under ``mpiexec``:
    another rank aborted the job while this one held the claim), so nothing is lost by
    taking it over."""
    try:
        return all(p.name.startswith(LOCK) for p in folder.iterdir())
    except OSError:
        return False


def claim(folder: str | Path, takeover: bool = False) -> RunClaim:
    """Claim ``folder`` (created if missing) for this process.

    Parameters
    ----------
    folder : str or Path
    takeover : bool
        Take over a stale claim (of a run that was killed), as ``--resume`` does. A
        stale claim in a folder with nothing else in it is taken over in any case.

    Raises
    ------
    RunDirectoryBusy
        Another live run holds the claim, or (without ``takeover``) a killed run left
        a stale one; the message names its process, host and start time.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    for _ in range(3):
        fd = _new_claim(folder)  # locked and written before it takes the claim's name
        try:
            _take_name(folder / _pending_name(), path, fd)  # exactly one process can
        except FileExistsError:
            _drop_pending(folder, fd)
            _check_claim_file(path)
            info = _owner(path)
            if is_live(path) or (not info and _young(path)):  # a claim being written
                raise RunDirectoryBusy(
                    f"{folder} is in use by another cnnkit run ({_describe(info)}); wait for "
                    "it to finish or choose another --out"
                ) from None
            if not (takeover or nothing_but_claims(folder)):
                raise RunDirectoryBusy(
                    f"{folder} holds a stale claim ({path.name}) of a run that was killed "
                    f"({_describe(info)}); continue it with `cnnkit train --resume --out "
                    f"{folder}` or remove {path}"
                ) from None
            stale = path.with_name(f"{LOCK}.stale.{os.getpid()}")
            try:
                os.rename(path, stale)  # one process wins the takeover
            except FileNotFoundError:
                continue
            with contextlib.suppress(OSError):
                stale.unlink()
            continue
        except BaseException:
            _drop_pending(folder, fd)
            raise
        with contextlib.suppress(OSError):
            (folder / _pending_name()).unlink()
        return RunClaim(folder, fd)
    raise RunDirectoryBusy(f"{folder}: could not claim the run directory (contended)")


def _take_name(pending: Path, path: Path, fd: int) -> None:
    """Give the written claim ``pending`` the name ``path``; FileExistsError if taken.
    Where the file system has no hard links, ``path`` is created exclusively and the
    record copied into it (briefly empty: the "being written" case of :func:`claim`)."""
    try:
        os.link(pending, path)
        return
    except FileExistsError:
        raise
    except OSError:
        pass  # no hard links here (some network and FUSE file systems)
    fd2 = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd2, fcntl.LOCK_EX)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd2, os.read(fd, 4096))
        os.fsync(fd2)
    except BaseException:
        os.close(fd2)
        raise
    os.dup2(fd2, fd)  # the claim holds the lock of the file that has the name
    os.close(fd2)


def _pending_name() -> str:
    return f"{LOCK}.new.{os.getpid()}"


def _new_claim(folder: Path) -> int:
    """This process's claim file under a private name, ``flock``ed and holding its pid,
    host and start time, so that the claim file never exists without them."""
    pending = folder / _pending_name()
    with contextlib.suppress(FileNotFoundError):
        pending.unlink()  # left by an earlier attempt of this process
    fd = os.open(pending, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
    except BaseException:
        _drop_pending(folder, fd)
        raise
    return fd


def _drop_pending(folder: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        (folder / _pending_name()).unlink()
    with contextlib.suppress(OSError):
        os.close(fd)
