"""PyTorch state dicts in and out, without importing torch and without running pickled code.

:func:`load_torch_state_dict` reads the zip files that ``torch.save(model.state_dict(),
path)`` writes (``*.pt`` / ``*.pth``) and bare ``*.safetensors`` state dicts.
The pickle inside a ``.pt`` file is read by an unpickler that knows only the handful
of names a tensor state dict uses (``torch._utils._rebuild_tensor_v2``, the storage
types, ``collections.OrderedDict``); any other global (``os.system``, ``builtins.eval``,
a custom class) is refused before anything is called. Tensors are rebuilt as NumPy
views of the raw storages (offset, size, stride; bounds-checked) and then copied.

:func:`save_torch_state_dict` writes a ``.safetensors`` file that PyTorch users load
with ``safetensors.torch.load_file`` and ``model.load_state_dict``.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.io.atomic import atomic_write_bytes
from cnnkit.io.checkpoint import CheckpointError
from cnnkit.tensor import Tensor

# torch storage type name -> NumPy dtype (bfloat16 is read as raw uint16, widened later)
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
}


class _StorageType:
    """Stands in for ``torch.<Name>Storage`` inside the pickle."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """A flat storage read from the archive: its elements and whether it holds bfloat16."""

    def __init__(self, array: np.ndarray, bfloat16: bool) -> None:
        self.array = array
        self.bfloat16 = bfloat16


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``: a bounds-checked strided view of ``storage``, copied."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("_rebuild_tensor_v2: the first argument is not a storage")
    try:
        offset = int(offset)
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
    except (TypeError, ValueError):
        raise pickle.UnpicklingError("_rebuild_tensor_v2: malformed offset/size/stride") from None
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise pickle.UnpicklingError(
            f"_rebuild_tensor_v2: bad geometry offset={offset} size={size} stride={stride}"
        )
    flat = storage.array
    if 0 in size:
        out = np.zeros(size, flat.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= flat.size:
            raise pickle.UnpicklingError(
                f"_rebuild_tensor_v2: view (offset {offset}, size {size}, stride {stride}) "
                f"reaches element {last} of a storage of {flat.size}"
            )
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:],
            shape=size,
            strides=tuple(s * item for s in stride),
            writeable=False,
        )
        out = np.array(view, order="C")  # a real copy: the result owns its memory
    if storage.bfloat16:
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    """``torch._utils._rebuild_parameter``: a Parameter is just its data here."""
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
}


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a tensor state dict; refuses every global outside a short allowlist."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: Path) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._storages: dict[str, _Storage] = {}
        names = set(archive.namelist())
        order = f"{prefix}/byteorder"
        self._order = archive.read(order).decode().strip() if order in names else "little"
        if self._order not in ("little", "big"):
            raise CheckpointError(f"{path}: unknown byteorder {self._order!r}")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"{self._path}: refused to load global {module}.{name}: a tensor state dict "
            "never needs it (the file may run code when opened with torch.load)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self._path}: unsupported persistent id {pid!r}")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError(f"{self._path}: persistent id without a storage type")
        key = str(key)
        if key in self._storages:
            return self._storages[key]
        entry = f"{self._prefix}/data/{key}"
        try:
            raw = self._archive.read(entry)
        except KeyError:
            raise CheckpointError(f"{self._path}: missing storage {entry}") from None
        dtype = stype.dtype.newbyteorder("<" if self._order == "little" else ">")
        if len(raw) % dtype.itemsize or len(raw) // dtype.itemsize < int(numel):
            raise CheckpointError(
                f"{self._path}: storage {entry} has {len(raw)} bytes; expected {numel} "
                f"elements of {dtype.itemsize} bytes"
            )
        arr = np.frombuffer(raw, dtype=dtype, count=int(numel))
        arr = arr.astype(stype.dtype.newbyteorder("="), copy=False)
        storage = _Storage(arr, bfloat16=stype.name == "BFloat16Storage")
        self._storages[key] = storage
        return storage


def _load_zip(path: Path) -> Any:
    """Unpickle the object of a zip-format ``torch.save`` file."""
    with zipfile.ZipFile(path) as archive:
        pkls = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pkls) != 1:
            raise CheckpointError(
                f"{path}: a zip file but not a torch.save archive (expected one */data.pkl; "
                f"found {len(pkls)})"
            )
        prefix = pkls[0][: -len("/data.pkl")]
        data = archive.read(pkls[0])
        try:
            return _StateDictUnpickler(data, archive, prefix, path).load()
        except pickle.UnpicklingError as e:
            msg = str(e)
            raise pickle.UnpicklingError(msg if str(path) in msg else f"{path}: {msg}") from None
        except (EOFError, AttributeError, IndexError, TypeError, ValueError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"{path}: corrupt data.pkl ({type(e).__name__}: {e})") from None


def _select(obj: Any, key: str | None, path: Path) -> dict[str, np.ndarray]:
    """The ``{name: array}`` state dict inside the loaded object."""
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            raise CheckpointError(f"{path}: no entry {key!r} at the top level")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    out: dict[str, np.ndarray] = {}
    for k, v in obj.items():
        if not isinstance(v, np.ndarray):
            hint = (
                f"; pass key={k!r} to load the state dict under it"
                if isinstance(v, Mapping)
                else ""
            )
            raise CheckpointError(
                f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor{hint}"
            )
        out[str(k)] = v
    return out


def load_torch_state_dict(path: str | Path, key: str | None = None) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (``torch.save`` zip file or ``.safetensors``) as NumPy arrays.

    No torch import and no pickled code is run: only tensors, storages and
    ``OrderedDict`` are accepted inside a ``.pt`` file. ``bfloat16`` tensors come back
    as ``float32``; all other dtypes are kept.

    Parameters
    ----------
    path : str or Path
        ``*.pt`` / ``*.pth`` written by ``torch.save(model.state_dict(), path)``, or a
        ``*.safetensors`` file of bare tensors.
    key : str, optional
        Take the state dict stored under this top-level key (e.g. ``"model"`` for
        ``torch.save({"model": m.state_dict(), "epoch": 3}, path)``).

    Returns
    -------
    dict[str, numpy.ndarray]
        Pass it to ``model.load_state_dict``.

    Raises
    ------
    pickle.UnpicklingError
        The pickle asks for a global outside the allowlist (the message names it).
    CheckpointError
        Missing, legacy (non-zip), corrupt or non-state-dict files.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a state dict file")
    with open(path, "rb") as f:
        head = f.read(8)
    if zipfile.is_zipfile(path):
        return _select(_load_zip(path), key, path)
    if path.suffix != ".safetensors" and head[:1] == b"\x80":  # pickle protocol 2+ opcode
        raise CheckpointError(
            f"{path}: a legacy (pre-1.6, non-zip) torch.save file, which cnnkit does not "
            "read; re-save it with torch.save(state_dict, path, "
            "_use_new_zipfile_serialization=True) or as safetensors"
        )
    return _select(_load_safetensors(path), key, path)


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(
            f"{path}: neither a torch.save zip file nor a safetensors file ({e})"
        ) from None


def save_torch_state_dict(path: str | Path, model: Any) -> Path:
    """Write ``model``'s state dict to a ``.safetensors`` file that PyTorch loads.

    Load it in PyTorch with ``torch_model.load_state_dict(safetensors.torch.load_file(path))``
    (the keys are the module names, as in PyTorch). The file is written atomically.

    Parameters
    ----------
    path : str or Path
    model : Module or mapping
        A cnnkit module, or a state dict of Tensors / arrays.

    Returns
    -------
    Path
    """
    from safetensors.numpy import save as st_save

    state = model if isinstance(model, Mapping) else model.state_dict()
    tensors: dict[str, np.ndarray] = {}
    for k, v in state.items():
        a = v.array if isinstance(v, Tensor) else np.asarray(v)
        # not np.ascontiguousarray: it turns 0-d arrays (num_batches_tracked) into 1-d
        tensors[str(k)] = a if a.flags.c_contiguous else a.copy(order="C")
    return atomic_write_bytes(path, st_save(tensors, metadata={"format": "pt"}))
