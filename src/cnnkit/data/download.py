"""Fetch files over HTTP(S) atomically, with optional MD5 checking."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DownloadError",
    "download_dataset",
    "download_from_mirrors",
    "download_url",
    "md5sum",
]

_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download failed or its checksum did not match."""


def md5sum(path: str | os.PathLike, chunk: int = _CHUNK) -> str:
    """Hex MD5 digest of a file.

    Parameters
    ----------
    path : path-like
        The file.
    chunk : int
        Bytes read at a time.

    Returns
    -------
    str
        32 lowercase hex digits.
    """
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_url(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    progress: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically, resuming an interrupted download.

    The bytes go to ``<dest>.part`` in ``dest``'s folder, which is renamed onto ``dest``
    (``os.replace``) only once complete and, if ``md5`` is given, verified. If a
    ``.part`` file is already there (an earlier download was interrupted), only the rest
    is requested with an HTTP ``Range`` header; a server that ignores it sends the whole
    file again, which then replaces the part. On an MD5 mismatch the part is deleted; on
    a network error it is kept for the next attempt. ``dest`` itself is never partial.

    Parameters
    ----------
    url : str
        The address (``http``, ``https`` or ``file``).
    dest : path-like
        Where the file ends up; parent folders are created.
    md5 : str, optional
        Expected hex MD5; ``None`` skips the check.
    progress : bool
        Show a tqdm progress bar.
    timeout : float
        Socket timeout in seconds.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DownloadError
        The request failed or the MD5 did not match.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url)
    if have and url.startswith(("http://", "https://")):
        request.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part is already complete (or longer than the file)
            resp = None
        else:
            raise DownloadError(f"download of {url} failed: {e}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"download of {url} failed: {e}") from e
    h = hashlib.md5(usedforsecurity=False)
    if resp is not None:
        with resp:
            resumed = have and getattr(resp, "status", 200) == 206
            if resumed:
                with open(part, "rb") as f:  # the MD5 covers the bytes already there too
                    for block in iter(lambda: f.read(_CHUNK), b""):
                        h.update(block)
            else:
                have = 0
            length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            total = have + int(length) if length else None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name)
            try:
                with open(part, "ab" if resumed else "wb") as out:
                    while True:
                        try:
                            block = resp.read(_CHUNK)
                        except OSError as e:
                            raise DownloadError(
                                f"download of {url} failed after {out.tell()} bytes: {e} "
                                "(run again to resume)"
                            ) from e
                        if not block:
                            break
                        out.write(block)
                        h.update(block)
                        if bar is not None:
                            bar.update(len(block))
                    out.flush()
                    os.fsync(out.fileno())
            finally:
                if bar is not None:
                    bar.close()
    else:
        h = hashlib.md5(usedforsecurity=False)
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
    if md5 is not None and h.hexdigest() != md5.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"MD5 mismatch for {url} (saving {dest}): expected {md5.lower()}, "
            f"got {h.hexdigest()}; the partial file was deleted"
        )
    os.replace(part, dest)
    return dest


def download_from_mirrors(
    mirrors: Sequence[str],
    filename: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    progress: bool = False,
) -> Path:
    """Try ``mirror + filename`` for each mirror in turn until one succeeds.

    Parameters
    ----------
    mirrors : sequence of str
        Base URLs (a trailing ``/`` is added when missing).
    filename : str
        File name appended to each base URL.
    dest : path-like
        Destination file.
    md5 : str, optional
        Expected hex MD5.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DownloadError
        Every mirror failed; the message lists each failure.
    """
    errors = []
    for base in mirrors:
        url = base if base.endswith("/") else base + "/"
        url += filename
        try:
            return download_url(url, dest, md5=md5, progress=progress)
        except DownloadError as e:
            errors.append(str(e))
    if not errors:
        raise DownloadError(f"no mirrors given to download {filename}")
    raise DownloadError(f"could not download {filename}:\n  " + "\n  ".join(errors))


DATASETS = ("mnist", "fashion")


def download_dataset(
    name: str,
    root: str | os.PathLike,
    split: str = "all",
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    log: Any = None,
) -> list[Path]:
    """Fetch a data set's files into ``root``, checked against their published MD5s.

    Files already in ``root`` with the right checksum are kept; an interrupted download
    (a ``.part`` file) is resumed; a file whose checksum does not match is fetched again.

    Parameters
    ----------
    name : {'mnist', 'fashion'}
        MNIST or Fashion-MNIST (the four IDX files, gzip-compressed).
    root : path-like
        Destination folder (created); ``cnnkit train --data mnist:ROOT`` reads it.
    split : {'all', 'train', 'test'}
        ``test`` fetches only the t10k files (10,000 images, 3.7 MB for MNIST).
    mirrors : sequence of str, optional
        Base URLs tried in order; default the data set's own (``MNIST.mirrors``).
    progress : bool
        Show a progress bar per file.
    log : callable, optional
        Called with one line per file (e.g. ``print``).

    Returns
    -------
    list of Path
        The files, in ``root``.

    Raises
    ------
    ValueError
        Unknown ``name`` or ``split``.
    DownloadError
        Every mirror failed for a file, or its checksum did not match.
    """
    from cnnkit.data.mnist import MNIST, FashionMNIST

    key = name.lower()
    if key not in DATASETS and key != "fashionmnist":
        raise ValueError(f"download: unknown data set {name!r}; use one of {DATASETS}")
    if split not in ("all", "train", "test"):
        raise ValueError(f"download: split must be all, train or test; got {split!r}")
    cls = MNIST if key == "mnist" else FashionMNIST
    prefixes = {"all": ("train", "t10k"), "train": ("train",), "test": ("t10k",)}[split]
    root = Path(root)
    out = []
    for prefix in prefixes:
        for kind in ("images-idx3", "labels-idx1"):
            fname = f"{prefix}-{kind}-ubyte.gz"
            dest = root / fname
            md5 = cls.md5s.get(fname)
            if dest.is_file() and md5 is not None and md5sum(dest) == md5:
                if log is not None:
                    log(f"{dest}: present, checksum OK")
                out.append(dest)
                continue
            path = download_from_mirrors(
                list(mirrors) if mirrors else cls.mirrors, fname, dest, md5=md5, progress=progress
            )
            if log is not None:
                log(f"{path}: downloaded" + (", checksum OK" if md5 else ""))
            out.append(path)
    return out
