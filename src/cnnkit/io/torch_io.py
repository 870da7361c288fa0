"""PyTorch files in and out, without importing torch and without running pickled code.

:func:`load_torch_state_dict` reads every format ``torch.save`` has written since
PyTorch 0.4, and bare ``*.safetensors`` state dicts:

- the **zip format** (PyTorch >= 1.6): ``<name>/data.pkl`` (the pickle), ``<name>/byteorder``
  and one entry ``<name>/data/<key>`` of raw bytes per storage;
- the **legacy stream** (PyTorch 0.4 - 1.5, and ``_use_new_zipfile_serialization=False``):
  five pickles back to back (the magic number ``0x1950a86a20f9469cfc6c``, the protocol
  version 1001, a ``sys_info`` dict, the object, the sorted list of storage keys), then
  for each key an int64 little-endian element count followed by the storage's raw
  little-endian bytes.

Both pickles are read by one restricted unpickler that knows only the names a
checkpoint of tensors uses (``torch._utils._rebuild_tensor_v2``, the storage types,
``collections.OrderedDict``, ``torch.Size``, numpy scalars, ``argparse.Namespace`` as
plain data); any other global (``os.system``, ``builtins.eval``, a custom class) is refused
before anything is called. Storages saved on ``cuda:N`` (or any other device) are read to
the CPU. Tensors are rebuilt as bounds-checked strided views of their storages and then
copied.

Every size is checked against the file and against :class:`TorchLoadLimits` *before*
memory is allocated: a zip entry's declared size against its storage's element count,
a view's extent against its storage (zero or overlapping strides that would expand a
small storage into a huge tensor are limited separately), the total against
``max_bytes``. Corrupt archives (bad CRC, encrypted or unknown-compression entries,
truncation) raise :class:`~cnnkit.io.CheckpointError` naming the file and the entry.

:func:`save_torch_state_dict` writes a ``.safetensors`` file that PyTorch users load
with ``safetensors.torch.load_file`` and ``model.load_state_dict``.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import types
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cnnkit.io.atomic import atomic_write_bytes
from cnnkit.io.checkpoint import CheckpointError
from cnnkit.tensor import Tensor

__all__ = [
    "DEFAULT_LIMITS",
    "STATE_DICT_KEYS",
    "TorchLoadLimits",
    "TorchPickleError",
    "load_torch_object",
    "load_torch_state_dict",
    "save_torch_state_dict",
]

_GiB = 1 << 30
_MiB = 1 << 20


@dataclass(frozen=True)
class TorchLoadLimits:
    """Upper bounds checked from a file's headers before any memory is allocated.

    Attributes
    ----------
    max_bytes : int
        Total bytes of the storages read plus the tensors built from them (4 GiB).
    max_pickle_bytes : int
        Size of the pickle itself (``data.pkl`` or the legacy stream's object; 256 MiB).
    max_expanded_bytes : int
        A tensor with more elements than its storage holds (only possible with zero or
        overlapping strides, e.g. ``x.expand(...)``) may be at most this big (64 MiB).

    Pass ``limits=TorchLoadLimits(max_bytes=16 * 2**30)`` to the loaders to raise them.
    """

    max_bytes: int = 4 * _GiB
    max_pickle_bytes: int = 256 * _MiB
    max_expanded_bytes: int = 64 * _MiB


DEFAULT_LIMITS = TorchLoadLimits()

#: Keys searched, in this order, for the state dict inside a checkpoint dict.
STATE_DICT_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "net",
    "network",
    "weights",
    "params",
    "module",
)


class TorchPickleError(CheckpointError, pickle.UnpicklingError):
    """The pickle inside a ``.pt`` file is refused: a forbidden global or a malformed tensor.

    A :class:`CheckpointError` (and, for callers that catch pickle errors, a
    :class:`pickle.UnpicklingError`).
    """


_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}

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
    "UntypedStorage": "u1",
}

# torch dtypes as pickled globals (``torch.float32``) -> NumPy dtypes
_TORCH_DTYPES: dict[str, str] = {
    "float32": "f4",
    "float": "f4",
    "float64": "f8",
    "double": "f8",
    "float16": "f2",
    "half": "f2",
    "bfloat16": "f4",
    "int64": "i8",
    "long": "i8",
    "int32": "i4",
    "int": "i4",
    "int16": "i2",
    "short": "i2",
    "int8": "i1",
    "uint8": "u1",
    "bool": "?",
    "complex64": "c8",
    "complex128": "c16",
}


class _StorageType:
    """Stands in for ``torch.<Name>Storage`` (or ``torch.cuda.<Name>Storage``) in a pickle."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """A storage named in the pickle: its declared size now, its elements once read.

    A legacy view storage (``view_metadata``) is ``numel`` elements of ``root`` from
    ``offset`` on.
    """

    def __init__(
        self, key: str, stype: _StorageType, numel: int, root: _Storage | None = None, offset=0
    ) -> None:
        self.key = key
        self.dtype = stype.dtype
        self.bfloat16 = stype.name == "BFloat16Storage"
        self.numel = numel
        self.root = root
        self.offset = offset
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self.root is not None:
            return self.root.array[self.offset : self.offset + self.numel]
        assert self._array is not None, "storage read before its bytes"
        return self._array


class _PendingTensor:
    """A tensor whose geometry was checked during unpickling; built once storages are read."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def build(self) -> np.ndarray:
        flat = self.storage.array
        if 0 in self.size:
            out = np.zeros(self.size, flat.dtype)
        else:
            view = np.lib.stride_tricks.as_strided(
                flat[self.offset :],
                shape=self.size,
                strides=tuple(s * flat.itemsize for s in self.stride),
                writeable=False,
            )
            out = np.array(view, order="C")  # a real copy: the result owns its memory
        if self.storage.bfloat16:
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out


def _as_int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TorchPickleError(f"{what} must be an integer; got {type(v).__name__} {v!r}")
    return int(v)


class _Budget:
    """Counts bytes against :class:`TorchLoadLimits` as the file is parsed."""

    def __init__(self, path: Path, limits: TorchLoadLimits) -> None:
        self.path, self.limits, self.used = path, limits, 0

    def take(self, nbytes: int, what: str) -> None:
        self.used += nbytes
        if self.used > self.limits.max_bytes:
            raise CheckpointError(
                f"{self.path}: {what} brings the data to {self.used:,} bytes, over the limit "
                f"of {self.limits.max_bytes:,} (TorchLoadLimits.max_bytes; pass "
                "limits=TorchLoadLimits(max_bytes=...) to raise it)"
            )


def _numpy_scalar(dtype: Any, raw: Any = None) -> Any:
    """``numpy.core.multiarray.scalar``: a NumPy scalar from its dtype and raw bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise TorchPickleError(f"numpy scalar of dtype {dtype!r} refused (only plain numbers)")
    if isinstance(raw, str):  # pickles written by Python 2
        raw = raw.encode("latin1")
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
        raise TorchPickleError(f"numpy scalar: need {dtype.itemsize} bytes of {dtype}")
    return np.frombuffer(raw, dtype)[0]


def _numpy_dtype(name: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """``numpy.dtype(name, align, copy)`` for plain type codes only."""
    if not isinstance(name, str) or not name[:1].isalpha() or name.startswith("O"):
        raise TorchPickleError(f"numpy dtype {name!r} refused (only plain numeric codes)")
    try:
        return np.dtype(name)
    except TypeError:
        raise TorchPickleError(f"unknown numpy dtype {name!r}") from None


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode(text, 'latin1')``: how protocol-2 pickles store ``bytes``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise TorchPickleError(f"_codecs.encode refused for {type(text).__name__}/{encoding!r}")
    return text.encode("latin1")


def _torch_size(*args: Any) -> tuple:
    return tuple(*args)


def _torch_device(*args: Any) -> str:
    return ":".join(str(a) for a in args)


class _Unpickler(pickle.Unpickler):
    """Unpickles a checkpoint of tensors; refuses every global outside a short allowlist.

    Storages become :class:`_Storage` placeholders and tensors :class:`_PendingTensor`,
    both checked against the storages' declared sizes and the limits; nothing large is
    allocated until every check has passed.
    """

    def __init__(self, data: BinaryIO, path: Path, budget: _Budget, legacy: bool) -> None:
        super().__init__(data)
        self._path = path
        self._budget = budget
        self._legacy = legacy
        self.storages: dict[str, _Storage] = {}

    # ---------------------------------------------------------------- globals
    def find_class(self, module: str, name: str) -> Any:
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch.storage" and name in ("UntypedStorage", "_LegacyStorage"):
            return _StorageType("UntypedStorage")
        if module == "torch" and name in _TORCH_DTYPES:
            return np.dtype(_TORCH_DTYPES[name])
        allowed = {
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_tensor"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
            ("collections", "OrderedDict"): OrderedDict,
            ("torch", "Size"): _torch_size,
            ("torch", "device"): _torch_device,
            ("argparse", "Namespace"): types.SimpleNamespace,
            ("numpy.core.multiarray", "scalar"): _numpy_scalar,
            ("numpy._core.multiarray", "scalar"): _numpy_scalar,
            ("numpy", "dtype"): _numpy_dtype,
            ("_codecs", "encode"): _latin1_bytes,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise TorchPickleError(
            f"{self._path}: refused to load global {module}.{name}: a checkpoint of tensors "
            "never needs it (the file may run code when opened with torch.load)"
        )

    # --------------------------------------------------------------- storages
    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise TorchPickleError(f"{self._path}: unsupported persistent id {pid!r:.80}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":
            raise TorchPickleError(
                f"{self._path}: holds a whole pickled nn.Module (class {pid[1]!r:.60}), not a "
                "state dict; re-save it with torch.save(model.state_dict(), path)"
            )
        want = 6 if self._legacy else 5
        if kind != "storage" or len(pid) != want:
            raise TorchPickleError(
                f"{self._path}: unsupported persistent id {pid!r:.80} (expected a "
                f"{want}-tuple ('storage', type, key, location, numel"
                f"{', view' if self._legacy else ''}))"
            )
        stype, key, _location, numel = pid[1:5]
        if not isinstance(stype, _StorageType):
            raise TorchPickleError(f"{self._path}: persistent id without a storage type: {pid!r}")
        if isinstance(key, bytes):
            key = key.decode("ascii", "replace")
        if not isinstance(key, (str, int)):
            raise TorchPickleError(f"{self._path}: storage key {key!r:.40} is not a string")
        key = str(key)
        numel = _as_int(numel, f"{self._path}: storage {key}: element count")
        if numel < 0:
            raise TorchPickleError(f"{self._path}: storage {key}: negative element count {numel}")
        storage = self.storages.get(key)
        if storage is None:
            self._budget.take(numel * stype.dtype.itemsize, f"storage {key} ({numel:,} elements)")
            storage = self.storages[key] = _Storage(key, stype, numel)
        elif storage.numel != numel or storage.dtype != stype.dtype:
            raise TorchPickleError(
                f"{self._path}: storage {key} declared twice, as {storage.numel} x "
                f"{storage.dtype} and as {numel} x {stype.dtype}"
            )
        view = pid[5] if self._legacy else None
        if view is None:
            return storage
        if not (isinstance(view, tuple) and len(view) == 3):
            raise TorchPickleError(f"{self._path}: storage {key}: malformed view {view!r:.60}")
        where = f"{self._path}: storage view {view[0]!r:.40} of {key}"
        offset, size = _as_int(view[1], where), _as_int(view[2], where)
        if offset < 0 or size < 0 or offset + size > numel:
            raise TorchPickleError(
                f"{where}: elements {offset}..{offset + size} outside the storage of {numel}"
            )
        return _Storage(str(view[0]), stype, size, root=storage, offset=offset)

    # ---------------------------------------------------------------- tensors
    def _rebuild_tensor(
        self, storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any
    ) -> _PendingTensor:
        """``torch._utils._rebuild_tensor_v2``: geometry checked against the storage."""
        if not isinstance(storage, _Storage):
            raise TorchPickleError(
                f"{self._path}: _rebuild_tensor_v2: the first argument is a "
                f"{type(storage).__name__}, not a storage"
            )
        try:
            offset = _as_int(offset, "offset")
            size = tuple(_as_int(s, "size") for s in size)
            stride = tuple(_as_int(s, "stride") for s in stride)
        except (TypeError, TorchPickleError):
            raise TorchPickleError(
                f"{self._path}: _rebuild_tensor_v2: malformed offset/size/stride "
                f"{offset!r:.40}/{size!r:.60}/{stride!r:.60}"
            ) from None
        where = f"{self._path}: tensor on storage {storage.key}"
        if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
            raise TorchPickleError(
                f"{where}: bad geometry offset={offset} size={size} stride={stride} "
                "(_rebuild_tensor_v2)"
            )
        numel = math.prod(size)
        if numel:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if last >= storage.numel:
                raise TorchPickleError(
                    f"{where}: view (offset {offset}, size {size}, stride {stride}) "
                    f"reaches element {last} of a storage of {storage.numel} "
                    "(_rebuild_tensor_v2)"
                )
        nbytes = numel * storage.dtype.itemsize * (2 if storage.bfloat16 else 1)
        limit = self._budget.limits.max_expanded_bytes
        if numel > storage.numel and nbytes > limit:
            raise TorchPickleError(
                f"{where}: size {size} with stride {stride} would expand a storage of "
                f"{storage.numel:,} elements into {numel:,} ({nbytes:,} bytes; limit "
                f"{limit:,}, TorchLoadLimits.max_expanded_bytes): zero or overlapping strides"
            )
        self._budget.take(nbytes, f"tensor of size {size}")
        return _PendingTensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    """``torch._utils._rebuild_parameter``: a Parameter is just its data here."""
    return data


def _unpickle(
    data: BinaryIO, path: Path, budget: _Budget, legacy: bool
) -> tuple[Any, dict[str, _Storage]]:
    """Run the restricted unpickler; every failure becomes a CheckpointError naming ``path``."""
    unpickler = _Unpickler(data, path, budget, legacy)
    try:
        obj = unpickler.load()
    except CheckpointError as e:
        msg = str(e)
        if str(path) in msg:
            raise
        raise type(e)(f"{path}: {msg}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: the pickle nests too deeply") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, IndexError, KeyError) as e:
        raise TorchPickleError(f"{path}: corrupt pickle ({type(e).__name__}: {e})") from None
    except (TypeError, ValueError, UnicodeDecodeError, OverflowError, struct.error) as e:
        raise TorchPickleError(f"{path}: corrupt pickle ({type(e).__name__}: {e})") from None
    except MemoryError:
        raise CheckpointError(f"{path}: the pickle asks for more memory than there is") from None
    return obj, unpickler.storages


def _materialise(obj: Any, path: Path) -> Any:
    """``obj`` with every pending tensor replaced by its array (containers rebuilt)."""
    memo: dict[int, Any] = {}

    def walk(o: Any) -> Any:
        if isinstance(o, _PendingTensor):
            if id(o) not in memo:
                memo[id(o)] = o.build()
            return memo[id(o)]
        if isinstance(o, _Storage):
            return np.array(o.array)  # a bare storage saved on its own: its elements
        if id(o) in memo:
            return memo[id(o)]
        if isinstance(o, dict):
            new: dict = OrderedDict() if isinstance(o, OrderedDict) else {}
            memo[id(o)] = new
            for k, v in o.items():
                new[k] = walk(v)
            return new
        if isinstance(o, list):
            new_list: list = []
            memo[id(o)] = new_list
            new_list.extend(walk(v) for v in o)
            return new_list
        if isinstance(o, tuple):
            return tuple(walk(v) for v in o)
        if isinstance(o, types.SimpleNamespace):
            ns = types.SimpleNamespace()
            memo[id(o)] = ns
            ns.__dict__.update({k: walk(v) for k, v in vars(o).items()})
            return ns
        return o

    try:
        return walk(obj)
    except RecursionError:
        raise CheckpointError(f"{path}: the pickle nests too deeply") from None


# -------------------------------------------------------------------- zip format
def _zip_entry(archive: zipfile.ZipFile, name: str, path: Path, size: int | None = None) -> bytes:
    """The bytes of one entry, refusing encryption, odd compression and size mismatches first."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise CheckpointError(f"{path}: missing entry {name}") from None
    if size is not None and info.file_size != size:
        raise CheckpointError(
            f"{path}: entry {name} holds {info.file_size:,} bytes; expected {size:,}"
        )
    try:
        with archive.open(info) as f:
            data = f.read(info.file_size + 1)
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{path}: corrupt zip entry {name} ({e})") from None
    except (EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as e:
        raise CheckpointError(f"{path}: unreadable zip entry {name} ({e})") from None
    except Exception as e:  # zlib.error and other decompressor failures
        raise CheckpointError(f"{path}: corrupt zip entry {name} ({e})") from None
    if len(data) != info.file_size:
        raise CheckpointError(
            f"{path}: zip entry {name} gave {len(data):,} bytes; its header says "
            f"{info.file_size:,} (truncated or corrupt archive)"
        )
    return data


def _check_zip_entries(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuse encrypted entries and compression methods torch never writes."""
    for info in archive.infolist():
        if info.flag_bits & 0x1:
            raise CheckpointError(
                f"{path}: zip entry {info.filename} is encrypted; torch.save never encrypts"
            )
        if info.compress_type not in _ZIP_METHODS:
            raise CheckpointError(
                f"{path}: zip entry {info.filename} uses compression method "
                f"{info.compress_type}; only stored (0) and deflated (8) are read"
            )


def _load_zip(path: Path, limits: TorchLoadLimits) -> Any:
    """The object of a zip-format ``torch.save`` file."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated zip archive ({e})") from None
    with archive:
        _check_zip_entries(archive, path)
        pkls = [n for n in archive.namelist() if n.endswith("data.pkl")]
        pkls = [n for n in pkls if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pkls) != 1:
            raise CheckpointError(
                f"{path}: a zip file but not a torch.save archive (expected one */data.pkl; "
                f"found {len(pkls)})"
            )
        prefix = pkls[0][: -len("data.pkl")]
        pkl_info = archive.getinfo(pkls[0])
        if pkl_info.file_size > limits.max_pickle_bytes:
            raise CheckpointError(
                f"{path}: {pkls[0]} declares {pkl_info.file_size:,} bytes, over the limit of "
                f"{limits.max_pickle_bytes:,} (TorchLoadLimits.max_pickle_bytes)"
            )
        names = set(archive.namelist())
        order = "little"
        if f"{prefix}byteorder" in names:
            if archive.getinfo(f"{prefix}byteorder").file_size > 64:
                raise CheckpointError(
                    f"{path}: {prefix}byteorder declares "
                    f"{archive.getinfo(f'{prefix}byteorder').file_size:,} bytes; expected "
                    "'little' or 'big'"
                )
            raw_order = _zip_entry(archive, f"{prefix}byteorder", path)
            order = raw_order[:16].decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byteorder {order!r} in {prefix}byteorder")
        budget = _Budget(path, limits)
        data = _zip_entry(archive, pkls[0], path)
        obj, storages = _unpickle(io.BytesIO(data), path, budget, legacy=False)
        for key, storage in storages.items():
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise CheckpointError(f"{path}: missing storage {entry}")
            info = archive.getinfo(entry)
            want = storage.numel * storage.dtype.itemsize
            if info.file_size != want:
                raise CheckpointError(
                    f"{path}: storage {entry} has {info.file_size:,} bytes; expected "
                    f"{storage.numel:,} elements of {storage.dtype.itemsize} bytes"
                )
            raw = _zip_entry(archive, entry, path, size=want)
            dtype = storage.dtype.newbyteorder("<" if order == "little" else ">")
            storage._array = np.frombuffer(raw, dtype=dtype).astype(
                storage.dtype.newbyteorder("="), copy=False
            )
    return _materialise(obj, path)


# ----------------------------------------------------------------- legacy stream
class _PlainUnpickler(pickle.Unpickler):
    """For the legacy header pickles: plain data only, no globals at all."""

    def find_class(self, module: str, name: str) -> Any:
        raise TorchPickleError(f"refused global {module}.{name} in a legacy header")


class _LimitedReader:
    """A read-only view of a file that refuses to hand out more than ``limit`` bytes."""

    def __init__(self, f: BinaryIO, limit: int, path: Path) -> None:
        self._f, self._left, self._path, self._limit = f, limit, path, limit

    def _spend(self, n: int) -> None:
        if n > self._left:
            raise CheckpointError(
                f"{self._path}: the pickle is longer than the limit of {self._limit:,} bytes "
                "(TorchLoadLimits.max_pickle_bytes)"
            )
        self._left -= n

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(self._left + 1 if n < 0 else min(n, self._left + 1))
        self._spend(len(data))
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        data = self._f.readline(self._left + 1)
        self._spend(len(data))
        return data


def _load_legacy(path: Path, limits: TorchLoadLimits) -> Any:
    """The object of a legacy (non-zip) ``torch.save`` stream."""
    size = path.stat().st_size
    with open(path, "rb") as f:

        def header(what: str) -> Any:
            try:
                return _PlainUnpickler(f).load()
            except CheckpointError as e:
                raise CheckpointError(f"{path}: {e}") from None
            except Exception as e:
                raise CheckpointError(
                    f"{path}: corrupt legacy torch.save header: cannot read the {what} "
                    f"({type(e).__name__}: {e})"
                ) from None

        magic = header("magic number")
        if magic != _MAGIC_NUMBER:
            raise CheckpointError(
                f"{path}: not a torch.save file (magic number {magic!r:.40}; expected "
                f"{_MAGIC_NUMBER:#x})"
            )
        version = header("protocol version")
        if version != _PROTOCOL_VERSION:
            raise CheckpointError(
                f"{path}: legacy torch.save protocol version {version!r:.40}; expected "
                f"{_PROTOCOL_VERSION}"
            )
        sys_info = header("sys_info")
        if not isinstance(sys_info, dict):
            raise CheckpointError(
                f"{path}: legacy sys_info is a {type(sys_info).__name__}, not a dict"
            )
        budget = _Budget(path, limits)
        bounded = _LimitedReader(f, limits.max_pickle_bytes, path)
        obj, storages = _unpickle(bounded, path, budget, legacy=True)  # type: ignore[arg-type]
        keys = header("storage keys")
        if not isinstance(keys, list) or not all(isinstance(k, (str, int)) for k in keys):
            raise CheckpointError(f"{path}: the legacy storage key list is malformed")
        keys = [str(k) for k in keys]
        roots = {k: s for k, s in storages.items() if s.root is None}
        if set(keys) != set(roots) or len(keys) != len(set(keys)):
            raise CheckpointError(
                f"{path}: the pickle uses storages {sorted(roots)} but the file lists {keys}"
            )
        for key in keys:
            storage = roots[key]
            raw = f.read(8)
            if len(raw) != 8:
                raise CheckpointError(f"{path}: truncated before storage {key}")
            (numel,) = struct.unpack("<q", raw)
            if numel != storage.numel:
                raise CheckpointError(
                    f"{path}: storage {key} holds {numel} elements; the pickle declares "
                    f"{storage.numel}"
                )
            nbytes = numel * storage.dtype.itemsize
            if nbytes > size - f.tell():
                raise CheckpointError(
                    f"{path}: storage {key} needs {nbytes:,} bytes but only "
                    f"{size - f.tell():,} remain (truncated file)"
                )
            data = f.read(nbytes)
            # the legacy writer stores every storage little-endian, whatever the host
            storage._array = np.frombuffer(data, dtype=storage.dtype.newbyteorder("<")).astype(
                storage.dtype.newbyteorder("="), copy=False
            )
    return _materialise(obj, path)


# ------------------------------------------------------------------- public API
def _is_zipfile(path: Path) -> bool:
    """Whether ``path`` ends with a zip directory; a corrupt one (a zip64 record claiming
    several disks) counts as a zip, so that opening it reports the corruption."""
    try:
        return zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, ValueError, EOFError):
        return True


def load_torch_object(path: str | Path, *, limits: TorchLoadLimits | None = None) -> Any:
    """Read the whole object of a ``torch.save`` file (zip or legacy format).

    Tensors come back as NumPy arrays (``bfloat16`` widened to ``float32``), containers
    (dict, ``OrderedDict``, list, tuple) and plain values as they were, ``torch.Size`` as
    a tuple, ``torch.device`` as its string, ``argparse.Namespace`` as a
    :class:`types.SimpleNamespace`. No torch import and no pickled code is run.

    Parameters
    ----------
    path : str or Path
        A file written by ``torch.save`` (PyTorch 0.4 or later).
    limits : TorchLoadLimits, optional
        Size limits checked before allocation (default :data:`DEFAULT_LIMITS`).

    Returns
    -------
    object

    Raises
    ------
    TorchPickleError
        The pickle asks for a global outside the allowlist (the message names it) or
        describes a tensor that does not fit its storage.
    CheckpointError
        Missing, corrupt, truncated or over-limit files (the message names the file).
    """
    path = Path(path)
    limits = DEFAULT_LIMITS if limits is None else limits
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")
    with open(path, "rb") as f:
        head = f.read(512)
    if _is_zipfile(path):
        return _load_zip(path, limits)
    if head[:4] == b"PK\x03\x04":
        raise CheckpointError(
            f"{path}: a truncated or corrupt zip archive (no end of central directory)"
        )
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise CheckpointError(
            f"{path}: the tar format of PyTorch before 0.1.10, which cnnkit does not read"
        )
    if head[:1] == b"\x80":  # pickle protocol 2+: the legacy stream
        return _load_legacy(path, limits)
    raise CheckpointError(
        f"{path}: not a torch.save file (neither a zip archive nor a legacy pickle stream)"
    )


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())
    )


def _find_state_dict(obj: Any, path: Path, depth: int = 0) -> Mapping | None:
    """The state dict in a checkpoint by the documented rule (see load_torch_state_dict)."""
    if _is_state_dict(obj):
        return obj
    if not isinstance(obj, Mapping) or depth >= 3:
        return None
    for k in STATE_DICT_KEYS:
        if k in obj:
            found = _find_state_dict(obj[k], path, depth + 1)
            if found is not None:
                return found
    candidates = [v for v in obj.values() if _is_state_dict(v)]
    return candidates[0] if len(candidates) == 1 else None


def _describe(obj: Mapping) -> str:
    parts = [f"{k!r}: {type(v).__name__}" for k, v in list(obj.items())[:12]]
    return "{" + ", ".join(parts) + (", ..." if len(obj) > 12 else "") + "}"


def _select(obj: Any, key: str | None, path: Path) -> dict[str, np.ndarray]:
    """The ``{name: array}`` state dict inside the loaded object."""
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            have = f"; it has {_describe(obj)}" if isinstance(obj, Mapping) else ""
            raise CheckpointError(f"{path}: no entry {key!r} at the top level{have}")
        obj = obj[key]
        if not isinstance(obj, Mapping):
            raise CheckpointError(
                f"{path}: entry {key!r} is a {type(obj).__name__}, not a state dict"
            )
        for k, v in obj.items():
            if not isinstance(v, np.ndarray):
                raise CheckpointError(
                    f"{path}: entry {key!r}[{k!r}] is a {type(v).__name__}, not a tensor"
                )
        return {str(k): v for k, v in obj.items()}
    if isinstance(obj, Mapping) and len(obj) == 0:
        return {}
    found = _find_state_dict(obj, path)
    if found is None:
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
        raise CheckpointError(
            f"{path}: no state dict found in {_describe(obj)} (looked for a dict of tensors "
            f"at the top, under {', '.join(STATE_DICT_KEYS)}, or as the only dict of tensors); "
            "pass key=NAME"
        )
    return {str(k): v for k, v in found.items()}


def load_torch_state_dict(
    path: str | Path,
    key: str | None = None,
    *,
    strip_prefix: str | None = None,
    limits: TorchLoadLimits | None = None,
) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (any ``torch.save`` format since 0.4, or safetensors).

    No torch import and no pickled code is run (see :func:`load_torch_object`).
    ``bfloat16`` tensors come back as ``float32``; all other dtypes are kept; tensors
    saved on a GPU are read to the CPU.

    Where the state dict is (``key=None``), in this order:

    1. the file's object itself, if it is a dict whose values are all tensors;
    2. else, in a checkpoint dict, the first of :data:`STATE_DICT_KEYS`
       (``state_dict``, ``model_state_dict``, ``model_state``, ``model``, ``net``,
       ``network``, ``weights``, ``params``, ``module``) whose value holds one by this
       same rule (so ``{'state_dict': ..., 'epoch': 90, 'best_prec1': 0.93}`` works);
    3. else the only top-level value that is a dict of tensors.

    Otherwise a :class:`CheckpointError` lists the top-level keys; pass ``key``.

    Parameters
    ----------
    path : str or Path
        ``*.pt`` / ``*.pth`` / ``*.tar`` written by ``torch.save``, or a ``*.safetensors``
        file of bare tensors.
    key : str, optional
        Take the state dict stored under this top-level key, skipping the search.
    strip_prefix : str, optional
        Remove this prefix from every key that has it, e.g. ``"module."`` for the
        checkpoints of ``nn.DataParallel`` / ``DistributedDataParallel`` models.
    limits : TorchLoadLimits, optional
        Size limits checked before allocation (default :data:`DEFAULT_LIMITS`).

    Returns
    -------
    dict[str, numpy.ndarray]
        Pass it to ``model.load_state_dict``.

    Raises
    ------
    TorchPickleError
        The pickle asks for a global outside the allowlist (the message names it).
    CheckpointError
        Missing, corrupt, over-limit or non-state-dict files.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a state dict file")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix == ".safetensors" or not (
        _is_zipfile(path) or head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"
    ):
        sd = _select(_load_safetensors(path), key, path)
    else:
        sd = _select(load_torch_object(path, limits=limits), key, path)
    if strip_prefix:
        sd = {k[len(strip_prefix) :] if k.startswith(strip_prefix) else k: v for k, v in sd.items()}
    return sd


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(
            f"{path}: neither a torch.save file nor a safetensors file ({e})"
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
