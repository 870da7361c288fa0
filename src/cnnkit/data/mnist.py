"""MNIST and Fashion-MNIST from their IDX files (parsed and validated here)."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cnnkit.data.dataset import LabeledArrays
from cnnkit.data.download import download_from_mirrors

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "MNIST", "FashionMNIST", "read_idx"]

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801


def _open(path: Path) -> Any:
    """A binary reader of ``path``'s content, decompressing gzip on the fly (so only as
    many bytes are inflated as are read: a gzip bomb is stopped by the size checks)."""
    f = open(path, "rb")  # handed to the caller, which closes it
    head = f.read(2)
    f.seek(0)
    if path.suffix == ".gz" or head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb"), f
    return f, f


def _read_exact(stream: Any, n: int, path: Path) -> bytes:
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: not a valid gzip file ({e})") from None


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes, checking its header against its size.

    The header is read first; the payload it promises is checked (no zero dimension, at
    most :data:`cnnkit.limits.MAX_DATA_BYTES`) before it is read or decompressed, so a
    gzip bomb or a lying header costs no memory.

    Parameters
    ----------
    path : path-like
        The file, gzip-compressed when it ends in ``.gz`` (or starts with the gzip magic).
    magic : int
        The expected magic number: ``0x00000803`` for images (3 dims),
        ``0x00000801`` for labels (1 dim).

    Returns
    -------
    np.ndarray
        uint8 array with the header's dimensions, e.g. ``(N, 28, 28)`` or ``(N,)``.

    Raises
    ------
    ValueError
        Wrong magic number, a zero dimension (no images), or a file size that does not
        match the header; the message names the file and both values.
    cnnkit.limits.LimitError
        The header promises more than :data:`cnnkit.limits.MAX_DATA_BYTES`.
    """
    from cnnkit import limits

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such IDX file")
    stream, raw = _open(path)
    with raw, stream:
        buf = _read_exact(stream, 4, path)
        if len(buf) < 4:
            raise ValueError(
                f"{path}: truncated IDX file: expected at least a 4-byte header, got "
                f"{len(buf)} bytes"
            )
        got = int.from_bytes(buf[:4], "big")
        if got != magic:
            raise ValueError(
                f"{path}: bad IDX magic number: expected {magic:#010x}, got {got:#010x}"
            )
        ndim = magic & 0xFF
        header = 4 + 4 * ndim
        rest = _read_exact(stream, 4 * ndim, path)
        if len(rest) < 4 * ndim:
            raise ValueError(
                f"{path}: truncated IDX file: expected a {header}-byte header, got "
                f"{4 + len(rest)} bytes"
            )
        dims = tuple(int.from_bytes(rest[4 * k : 4 + 4 * k], "big") for k in range(ndim))
        if 0 in dims:
            what = "zero images" if dims[0] == 0 else f"a zero dimension (dims {dims})"
            raise ValueError(f"{path}: the IDX file holds {what}: nothing to load")
        payload = math.prod(dims)
        limits.check(f"{path} (IDX header dims {dims})", payload, "MAX_DATA_BYTES", "bytes")
        body = _read_exact(stream, payload + 1, path)
    expected = header + payload
    if len(body) != payload:
        what = "truncated" if len(body) < payload else "oversized"
        size = f"{header + len(body)}" if len(body) <= payload else f"more than {expected}"
        raise ValueError(
            f"{path}: {what} IDX file: header dims {dims} promise {expected} bytes, got {size}"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


class MNIST(LabeledArrays):
    """The MNIST handwritten digits, read from the four IDX files.

    Parameters
    ----------
    root : path-like
        Folder holding ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``; the files are
        also looked for in ``root/<ClassName>/raw``, ``root/<ClassName>`` and ``root/raw``.
    train : bool
        The 60,000 training images (``train-*``) or the 10,000 test images (``t10k-*``).
    transform : callable, optional
        Applied to each ``(1, 28, 28)`` image in ``__getitem__``.
    download : bool
        Fetch missing files into ``root`` from the base URLs in :attr:`mirrors`,
        checking them against :attr:`md5s` (entries missing there are not checked).

    Attributes
    ----------
    data : np.ndarray
        float32 images in ``[0, 1]``, shape ``(N, 1, 28, 28)``.
    targets : np.ndarray
        int64 labels in ``0..9``, shape ``(N,)``.
    classes : list of str
        The class names.
    """

    mirrors: ClassVar[list[str]] = [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ]
    md5s: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    class_names: ClassVar[list[str]] = [str(d) for d in range(10)]
    cli_name: ClassVar[str] = "mnist"  # as in `cnnkit download mnist`

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        download: bool = False,
    ) -> None:
        self.root = Path(root)
        self.train = bool(train)
        prefix = "train" if self.train else "t10k"
        names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
        paths = []
        for name in names:
            p = self._find(name)
            if p is None and download:
                p = self._download(name)
            if p is None:
                raise FileNotFoundError(
                    f"{type(self).__name__}: {name}[.gz] not found in {self.root} (also looked "
                    f"in {self._search_dirs()[1:]}); pass download=True or run `cnnkit "
                    f"download {self.cli_name} --root {self.root}` to fetch it"
                )
            paths.append(p)
        images = read_idx(paths[0], IDX_IMAGES_MAGIC)
        labels = read_idx(paths[1], IDX_LABELS_MAGIC)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{paths[1]}: label count does not match {paths[0].name}: expected "
                f"{images.shape[0]} labels, got {labels.shape[0]}"
            )
        n_classes = len(self.class_names)
        if labels.size and int(labels.max()) >= n_classes:
            k = int(np.argmax(labels >= n_classes))
            raise ValueError(
                f"{paths[1]}: label out of range at index {k}: expected 0..{n_classes - 1}, "
                f"got {int(labels[k])}"
            )
        data = images.astype(np.float32)[:, None, :, :]
        data /= np.float32(255.0)
        self.files = paths
        super().__init__(data, labels.astype(np.int64), self.class_names, transform=transform)

    def _search_dirs(self) -> list[Path]:
        name = type(self).__name__
        return [self.root, self.root / name / "raw", self.root / name, self.root / "raw"]

    def _find(self, name: str) -> Path | None:
        for d in self._search_dirs():
            for candidate in (d / name, d / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
        return None

    def _download(self, name: str) -> Path:
        fname = f"{name}.gz"
        md5 = (self.md5s or {}).get(fname)
        return download_from_mirrors(self.mirrors, fname, self.root / fname, md5=md5, progress=True)


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: the MNIST file layout with ten clothing classes.

    Parameters
    ----------
    root : path-like
        Folder holding the IDX files (see :class:`MNIST`).
    train : bool
        Training (60,000) or test (10,000) images.
    transform : callable, optional
        Applied to each ``(1, 28, 28)`` image.
    download : bool
        Fetch missing files from :attr:`mirrors`.
    """

    mirrors: ClassVar[list[str]] = [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ]
    md5s: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    cli_name: ClassVar[str] = "fashion"
    class_names: ClassVar[list[str]] = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
