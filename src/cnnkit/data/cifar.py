"""CIFAR-10 from its python-version batches, unpickled with a restricted unpickler."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.data.dataset import LabeledArrays
from cnnkit.data.download import download_from_mirrors

__all__ = ["CIFAR10", "RestrictedUnpickler", "safe_load_pickle"]

# The only globals a CIFAR batch may reference: what NumPy needs to rebuild an ndarray,
# plus ``_codecs.encode``, which Python 3 uses for ``bytes`` in protocol 0-2 pickles
# (it only turns a str into bytes).
_ALLOWED_GLOBALS = frozenset(
    {
        ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global except NumPy's ndarray reconstruction.

    Allowed: ``numpy.ndarray``, ``numpy.dtype``, ``numpy[._]core.multiarray._reconstruct``,
    ``numpy[._]core.numeric._frombuffer`` (protocol 5 arrays) and ``_codecs.encode``.

    Plain containers (dict, list, tuple), str, bytes and numbers load as usual; any other
    class or function reference raises :class:`pickle.UnpicklingError`, so a crafted
    pickle cannot run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}")


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle with :class:`RestrictedUnpickler` (Python 2 strings as latin-1).

    Parameters
    ----------
    path : path-like
        The pickle file.

    Returns
    -------
    object
        The unpickled object.

    Raises
    ------
    pickle.UnpicklingError
        The file references a forbidden global or is not a valid pickle; the message
        names the file.
    """
    from cnnkit import limits

    path = Path(path)
    limits.check(str(path), path.stat().st_size, "MAX_DATA_BYTES", "bytes")
    raw = path.read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f"{path}: {e}") from e
    except (
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        RecursionError,
        OverflowError,
    ) as e:
        raise pickle.UnpicklingError(f"{path}: not a valid pickle ({e})") from e


def _get(d: Any, key: str, path: Path) -> Any:
    """``d[b'key']`` or ``d['key']``, with an error naming the file when absent."""
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a dict, got {type(d).__name__}")
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise ValueError(f"{path}: missing key {key!r}; got keys {sorted(map(str, d))}")


def _as_str(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


class CIFAR10(LabeledArrays):
    """CIFAR-10 (32x32 colour images, 10 classes) from ``cifar-10-batches-py``.

    Parameters
    ----------
    root : path-like
        The ``cifar-10-batches-py`` folder or its parent.
    train : bool
        ``data_batch_1`` .. ``data_batch_5`` (50,000 images) or ``test_batch`` (10,000).
    transform : callable, optional
        Applied to each ``(3, 32, 32)`` image in ``__getitem__``.
    download : bool
        When the batches are missing, fetch ``cifar-10-python.tar.gz`` (163 MB, MD5
        checked, resumable) from ``mirrors`` into ``root`` and unpack the batch files.

    Attributes
    ----------
    data : np.ndarray
        float32 images in ``[0, 1]``, shape ``(N, 3, 32, 32)``.
    targets : np.ndarray
        int64 labels, shape ``(N,)``.
    classes : list of str
        ``label_names`` from ``batches.meta``.

    Notes
    -----
    The batches are pickles; they are read with :class:`RestrictedUnpickler`, which
    only lets NumPy's array reconstruction through.
    """

    base_folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{k}" for k in range(1, 6))
    test_files = ("test_batch",)
    archive = "cifar-10-python.tar.gz"
    archive_md5: str | None = "c58f30108f718f92721af3b95e74349a"
    mirrors: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        download: bool = False,
    ) -> None:
        root = Path(root)
        if (
            download
            and not (root / self.base_folder / "batches.meta").is_file()
            and not (root / "batches.meta").is_file()
        ):
            self._download(root)
        folder = root / self.base_folder
        if not folder.is_dir():
            folder = root
        self.root = folder
        self.train = bool(train)
        meta_path = folder / "batches.meta"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"CIFAR10: {meta_path} not found; root must be the {self.base_folder} folder "
                "or its parent"
            )
        meta = safe_load_pickle(meta_path)
        names = _get(meta, "label_names", meta_path)
        if not isinstance(names, (list, tuple)) or not all(
            isinstance(c, (str, bytes)) for c in names
        ):
            raise ValueError(
                f"{meta_path}: field 'label_names': expected a list of strings; got "
                f"{type(names).__name__}"
            )
        if not names:
            raise ValueError(f"{meta_path}: field 'label_names' is empty (no classes)")
        classes = [_as_str(c) for c in names]
        xs, ys = [], []
        for name in self.train_files if self.train else self.test_files:
            path = folder / name
            if not path.is_file():
                raise FileNotFoundError(f"CIFAR10: batch file {path} not found")
            x, y = self._load_batch(path, len(classes))
            xs.append(x)
            ys.append(y)
        data = np.concatenate(xs).reshape(-1, 3, 32, 32).astype(np.float32)
        data /= np.float32(255.0)
        super().__init__(data, np.concatenate(ys), classes, transform=transform)

    def _download(self, root: Path) -> None:
        """Fetch the archive and unpack only the expected batch files, each written
        atomically; a member with any other name or a link is ignored."""
        from cnnkit.io.atomic import atomic_write  # (cnnkit.io imports the models: load late)

        archive = download_from_mirrors(
            self.mirrors, self.archive, root / self.archive, md5=self.archive_md5, progress=True
        )
        wanted = {f"{self.base_folder}/{n}" for n in (*self.train_files, *self.test_files)}
        wanted.add(f"{self.base_folder}/batches.meta")
        found = set()
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    if member.name not in wanted or not member.isfile():
                        continue
                    src = tar.extractfile(member)
                    if src is None:
                        continue
                    with src, atomic_write(root / member.name) as out:
                        shutil.copyfileobj(src, out)
                    found.add(member.name)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ValueError(f"{archive}: not a readable CIFAR-10 archive ({e})") from None
        missing = sorted(wanted - found)
        if missing:
            raise ValueError(f"{archive}: the archive lacks {', '.join(missing)}")

    @staticmethod
    def _load_batch(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        batch = safe_load_pickle(path)
        raw = _get(batch, "data", path)
        if isinstance(raw, (bytes, bytearray)):
            raw = np.frombuffer(raw, dtype=np.uint8)
        try:
            data = np.asarray(raw)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: field 'data': not an array ({e})") from None
        if data.dtype != np.uint8:
            raise ValueError(f"{path}: expected data of dtype uint8, got {data.dtype}")
        if data.ndim == 1 and data.size % 3072 == 0:
            data = data.reshape(-1, 3072)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{path}: expected data of shape (N, 3072), got {data.shape}")
        if data.shape[0] == 0:
            raise ValueError(f"{path}: the batch holds zero images: nothing to load")
        try:
            labels = np.asarray(_get(batch, "labels", path))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: field 'labels': not a list of integers ({e})") from None
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"{path}: expected a 1-D list of integer labels, got dtype {labels.dtype} "
                f"shape {labels.shape}"
            )
        if labels.shape[0] != data.shape[0]:
            raise ValueError(
                f"{path}: expected {data.shape[0]} labels (one per image), got {labels.shape[0]}"
            )
        bad = (labels < 0) | (labels >= n_classes)
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(
                f"{path}: label out of range at index {k}: expected 0..{n_classes - 1}, "
                f"got {int(labels[k])}"
            )
        return data, labels.astype(np.int64)
