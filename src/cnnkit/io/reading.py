"""Open files cnnkit reads only when they are regular files.

A FIFO, a device or a directory where a run's ``config.json``, a checkpoint or a data
file is expected would block ``open`` (a FIFO with no writer), never end (``/dev/zero``)
or fail with an unhelpful message. :func:`open_regular` opens without blocking, checks
the kind of what it opened (after following symbolic links) and refuses anything but a
regular file with one error naming the path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from cnnkit.io.atomic import _kind


class NotAFileError(ValueError):
    """A path to read is a directory, FIFO, device or socket, not a regular file."""


def open_regular(
    path: str | Path, what: str = "file", error: type[Exception] = NotAFileError
) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file.

    Parameters
    ----------
    path : str or Path
    what : str
        What the file should be (``"checkpoint"``, ``"config file"``), for the message.
    error : exception type
        Raised (with a message naming ``path``) when ``path`` is not a regular file.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist (or is a dangling symbolic link).
    error
        ``path`` is a directory, FIFO, device or socket.
    OSError
        Any other failure to open (permissions), naming ``path``.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a regular file (a {what})") from None
    except OSError as e:
        if e.errno == 40:  # ELOOP: a symbolic link loop
            raise error(f"{path}: symbolic link loop, not a regular file (a {what})") from None
        raise OSError(e.errno, f"{path}: cannot open the {what}: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{path}: is a {_kind(mode)}, not a regular file (a {what})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_bytes(
    path: str | Path, what: str = "file", error: type[Exception] = NotAFileError
) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular`)."""
    with open_regular(path, what, error) as f:
        try:
            return f.read()
        except OSError as e:
            raise OSError(e.errno, f"{path}: cannot read the {what}: {e.strerror}") from None


def read_regular_text(
    path: str | Path, what: str = "file", error: type[Exception] = NotAFileError
) -> str:
    """The UTF-8 text of the regular file ``path``; invalid UTF-8 is ``error`` too."""
    data = read_regular_bytes(path, what, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        why = f"{e.reason} at byte {e.start}"
        raise error(f"{path}: not UTF-8 text, not a {what} ({why})") from None
