"""``ck.save`` / ``ck.load``: PyTorch's zip checkpoint format, no torch, no pickled code.

:func:`save` writes what ``torch.save`` writes for tensors, containers and plain values
(``{'net': model.state_dict(), 'acc': 91.2, 'epoch': 7}``, optimizer states, lists of
tensors): a zip archive ``<name>/data.pkl`` + ``<name>/data/<k>`` (one raw little-endian
storage per tensor) + ``<name>/version``. The pickle is emitted opcode by opcode from a
closed set of types, so it names only ``torch._utils._rebuild_tensor_v2``, the
``torch.<Type>Storage`` classes and ``collections.OrderedDict`` — exactly what
``torch.load(path, weights_only=True)`` accepts.

:func:`load` reads such files (written by cnnkit or by ``torch.save``) through the
restricted unpickler of :mod:`cnnkit.io.torch_io`, which refuses every other global, and
turns the arrays back into :class:`~cnnkit.tensor.Tensor`.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cnnkit.tensor import Tensor

__all__ = ["load", "save"]

# NumPy dtype -> torch storage class name
_STORAGE_NAMES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage",
    np.dtype("int16"): "ShortStorage",
    np.dtype("int8"): "CharStorage",
    np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}


class _PickleWriter:
    """Emits a protocol-2 pickle for a closed set of types; tensors become persistent storages."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.storages: list[np.ndarray] = []

    def op(self, b: bytes) -> None:
        self.out.write(b)

    def glob(self, module: str, name: str) -> None:
        self.op(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def text(self, s: str) -> None:
        raw = s.encode("utf-8")
        self.op(b"X" + struct.pack("<I", len(raw)) + raw)

    def integer(self, v: int) -> None:
        if -(2**31) <= v < 2**31:
            self.op(b"J" + struct.pack("<i", v))
        else:
            raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            self.op(b"\x8a" + bytes([len(raw)]) + raw)

    def tup(self, items: Any) -> None:
        self.op(b"(")
        for x in items:
            self.dump(x, "")
        self.op(b"t")

    def dump(self, obj: Any, where: str) -> None:
        if isinstance(obj, Tensor):
            obj = obj.array
        if obj is None:
            self.op(b"N")
        elif obj is True or obj is False or isinstance(obj, np.bool_):
            self.op(b"\x88" if obj else b"\x89")
        elif isinstance(obj, (int, np.integer)):
            self.integer(int(obj))
        elif isinstance(obj, (float, np.floating)):
            self.op(b"G" + struct.pack(">d", float(obj)))
        elif isinstance(obj, str):
            self.text(obj)
        elif isinstance(obj, np.ndarray):
            self.tensor(obj, where)
        elif isinstance(obj, dict):
            if isinstance(obj, OrderedDict):
                self.glob("collections", "OrderedDict")
                self.op(b")R")
            else:
                self.op(b"}")
            if obj:
                self.op(b"(")
                for k, v in obj.items():
                    if not isinstance(k, (str, int, float, bool, type(None))):
                        raise TypeError(
                            f"save: dict key {k!r} at {where or 'the top level'} is a "
                            f"{type(k).__name__}; only str/int/float/bool/None keys are saved"
                        )
                    self.dump(k, where)
                    self.dump(v, f"{where}[{k!r}]")
                self.op(b"u")
        elif isinstance(obj, list):
            self.op(b"]")
            if obj:
                self.op(b"(")
                for i, v in enumerate(obj):
                    self.dump(v, f"{where}[{i}]")
                self.op(b"e")
        elif isinstance(obj, tuple):
            self.op(b"(")
            for i, v in enumerate(obj):
                self.dump(v, f"{where}[{i}]")
            self.op(b"t")
        else:
            raise TypeError(
                f"save: {where or 'the object'} is a {type(obj).__name__}; cnnkit saves tensors, "
                "dicts, lists, tuples, numbers, strings and None (save model.state_dict(), "
                "not the model)"
            )

    def tensor(self, a: np.ndarray, where: str) -> None:
        dt = np.dtype(a.dtype).newbyteorder("=")
        name = _STORAGE_NAMES.get(dt)
        if name is None:
            raise TypeError(f"save: tensor {where} has dtype {a.dtype}, which torch cannot store")
        # not np.ascontiguousarray: it turns a 0-d array (num_batches_tracked) into 1-d
        a = np.asarray(a, dtype=dt.newbyteorder("<"))
        if not a.flags.c_contiguous:
            a = a.copy(order="C")
        key = len(self.storages)
        self.storages.append(a)
        stride, acc = [], 1
        for n in reversed(a.shape):
            stride.insert(0, acc)
            acc *= max(n, 1)
        self.glob("torch._utils", "_rebuild_tensor_v2")
        self.op(b"(")
        # persistent id ('storage', storage type, key, location, numel)
        self.op(b"(")
        self.text("storage")
        self.glob("torch", name)
        self.text(str(key))
        self.text("cpu")
        self.integer(int(a.size))
        self.op(b"tQ")
        self.integer(0)
        self.tup(a.shape)
        self.tup(stride)
        self.op(b"\x89")  # requires_grad
        self.glob("collections", "OrderedDict")
        self.op(b")R")  # backward hooks
        self.op(b"tR")

    def finish(self) -> bytes:
        return b"\x80\x02" + self.out.getvalue() + b"."


def save(obj: Any, f: str | os.PathLike | BinaryIO) -> None:
    """Write ``obj`` in PyTorch's zip format (``torch.load(f, weights_only=True)`` reads it).

    Parameters
    ----------
    obj : Tensor, dict, list, tuple, number, str or None, nested
        E.g. ``model.state_dict()``, ``optimizer.state_dict()`` or
        ``{'net': ..., 'acc': ..., 'epoch': ...}``. Tensors are saved with their values
        only (no graph); NumPy arrays are saved as tensors.
    f : path or binary file
        Where to write; a path is written atomically (temporary file, then rename).

    Raises
    ------
    TypeError
        For any other object (a module, an optimizer, a custom class); the message
        names where in ``obj`` it sits.
    """
    writer = _PickleWriter()
    writer.dump(obj, "")
    pkl = writer.finish()
    buf = io.BytesIO()
    name = "archive"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}/data.pkl", pkl)
        z.writestr(f"{name}/byteorder", "little")
        for k, a in enumerate(writer.storages):
            z.writestr(f"{name}/data/{k}", a.tobytes())
        z.writestr(f"{name}/version", "3\n")
    data = buf.getvalue()
    if isinstance(f, (str, os.PathLike)):
        from cnnkit.io.atomic import atomic_write_bytes

        Path(f).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(f), data)
    else:
        f.write(data)


def _to_tensors(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return Tensor(obj)
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, _to_tensors(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_tensors(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_tensors(v) for v in obj)
    return obj


def load(
    f: str | os.PathLike | BinaryIO,
    map_location: Any = None,
    weights_only: bool | None = None,
    **_kw: Any,
) -> Any:
    """Read a file written by :func:`save` or by ``torch.save`` (zip or legacy format).

    Only tensors, containers and plain values are rebuilt; any other pickled global is
    refused before it is called, whatever ``weights_only`` says (``weights_only=False``
    is accepted for PyTorch scripts' sake and changes nothing).

    Parameters
    ----------
    f : path or binary file
        The checkpoint.
    map_location : any
        Accepted and ignored unless it names a non-CPU device (every tensor loads on the CPU).
    weights_only : bool, optional
        Accepted; loading is always restricted.

    Returns
    -------
    object
        The saved object with tensors as :class:`~cnnkit.tensor.Tensor`.

    Raises
    ------
    pickle.UnpicklingError
        The file asks for a global outside the allowlist.
    cnnkit.io.checkpoint.CheckpointError
        Missing, corrupt or legacy (non-zip) files.
    """
    from cnnkit._device import check_device
    from cnnkit.io import torch_io

    if isinstance(map_location, str) or type(map_location).__name__ == "device":
        check_device(map_location, "load(map_location=)")
    if not isinstance(f, (str, os.PathLike)):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "ckpt.pt"
            p.write_bytes(f.read())
            return load(p)
    return _to_tensors(torch_io.load_torch_object(Path(f)))
