"""Writers of ``torch.save`` files with the standard library only (no torch), for tests.

The legacy stream (PyTorch 0.4 - 1.5) is five pickles and the raw storages; the zip
format is ``archive/data.pkl`` plus one entry per storage. The pickles name torch's
functions by text (``GLOBAL`` opcodes), so the stand-ins below are pickled under their
own names and then renamed to torch's in the bytes (protocol 2 writes each global as
``c<module>\\n<name>\\n``).
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_NAMES = {
    "float32": "FloatStorage",
    "float64": "DoubleStorage",
    "float16": "HalfStorage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}


def rebuild_tensor_v2(*args: Any) -> None:
    """Stand-in for torch._utils._rebuild_tensor_v2 (renamed in the pickle's bytes)."""


class StorageType:
    """Stand-in for torch.<Name>Storage / torch.cuda.<Name>Storage."""


class Storage:
    """A flat storage: its elements, the key it is saved under and its device."""

    def __init__(self, values: np.ndarray, key: str, location: str = "cpu") -> None:
        self.values = np.ascontiguousarray(values).reshape(-1)
        self.key, self.location = key, location

    @property
    def type_name(self) -> str:
        return STORAGE_NAMES[self.values.dtype.name]


class T:
    """A tensor: a strided view of a Storage (``view`` = legacy view metadata)."""

    def __init__(self, storage: Storage, offset: int, size, stride, view=None) -> None:
        self.storage, self.offset, self.size, self.stride, self.view = (
            storage,
            offset,
            tuple(size),
            tuple(stride),
            view,
        )

    def __reduce__(self):
        where = self.storage if self.view is None else StorageView(self.storage, self.view)
        return (
            rebuild_tensor_v2,
            (where, self.offset, self.size, self.stride, False, OrderedDict()),
        )


class StorageView:
    """A legacy storage view: ``(view_key, offset, numel)`` of a root storage."""

    def __init__(self, storage: Storage, view: tuple) -> None:
        self.storage, self.view = storage, view


def tensor(values, key: str, location: str = "cpu") -> T:
    """A contiguous tensor holding ``values`` in a storage of its own."""
    a = np.asarray(values)
    strides = [int(np.prod(a.shape[i + 1 :])) for i in range(a.ndim)]
    return T(Storage(a, key, location), 0, a.shape, strides)


def _pickle(obj: Any, legacy: bool) -> tuple[bytes, dict[str, Storage]]:
    storages: dict[str, Storage] = {}
    renames: dict[bytes, bytes] = {}

    class P(pickle.Pickler):
        def persistent_id(self, o):
            if not isinstance(o, (Storage, StorageView)):
                return None
            s = o if isinstance(o, Storage) else o.storage
            view = o.view if isinstance(o, StorageView) else None
            storages[s.key] = s
            module = "torch.cuda" if s.location.startswith("cuda") else "torch"
            stand_in = type(f"ST_{module.replace('.', '_')}_{s.type_name}", (StorageType,), {})
            stand_in.__module__ = __name__
            globals()[stand_in.__name__] = stand_in
            renames[f"c{__name__}\n{stand_in.__name__}\n".encode()] = (
                f"c{module}\n{s.type_name}\n".encode()
            )
            pid = ("storage", stand_in, s.key, s.location, s.values.size)
            return (*pid, view) if legacy else pid

    buf = io.BytesIO()
    P(buf, protocol=2).dump(obj)
    data = buf.getvalue()
    data = data.replace(
        f"c{__name__}\nrebuild_tensor_v2\n".encode(), b"ctorch._utils\n_rebuild_tensor_v2\n"
    )
    for old, new in renames.items():
        data = data.replace(old, new)
    return data, storages


def write_legacy(path: Path, obj: Any, sys_info: dict | None = None) -> Path:
    """The legacy ``torch.save`` stream of ``obj`` (tensors as :class:`T`)."""
    data, storages = _pickle(obj, legacy=True)
    info = sys_info or {
        "protocol_version": PROTOCOL_VERSION,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 8},
    }
    out = io.BytesIO()
    pickle.dump(MAGIC_NUMBER, out, protocol=2)
    pickle.dump(PROTOCOL_VERSION, out, protocol=2)
    pickle.dump(info, out, protocol=2)
    out.write(data)
    keys = sorted(storages)
    pickle.dump(keys, out, protocol=2)
    for k in keys:
        v = storages[k].values
        out.write(struct.pack("<q", v.size))
        out.write(v.astype(v.dtype.newbyteorder("<")).tobytes())
    Path(path).write_bytes(out.getvalue())
    return Path(path)


def write_zip(
    path: Path,
    obj: Any,
    compression: int = zipfile.ZIP_STORED,
    storages_override: dict | None = None,
    byteorder: str = "little",
) -> Path:
    """The zip-format ``torch.save`` archive of ``obj`` (tensors as :class:`T`)."""
    data, storages = _pickle(obj, legacy=False)
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr("archive/data.pkl", data)
        z.writestr("archive/byteorder", byteorder)
        z.writestr("archive/version", "3\n")
        for k, s in storages.items():
            raw = (storages_override or {}).get(
                k, s.values.astype(s.values.dtype.newbyteorder("<")).tobytes()
            )
            z.writestr(f"archive/data/{k}", raw)
    return Path(path)
