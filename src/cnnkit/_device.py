"""Devices as PyTorch names them; cnnkit computes on the CPU only.

``ck.device("cpu")`` works everywhere a PyTorch script passes a device; asking for any
other device (``"cuda"``, ``"mps"``, ``.cuda()``) raises :class:`DeviceError` saying so.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DeviceError", "check_device", "device"]


class DeviceError(ValueError, RuntimeError):
    """A device other than the CPU was asked for."""


class device:
    """A device, ``device("cpu")`` or ``device("cpu", 0)``, as ``torch.device``.

    Parameters
    ----------
    type : str or device
        ``"cpu"`` (also accepted: ``"cpu:0"``). Other types can be named (so
        ``device("cuda" if cuda.is_available() else "cpu")`` evaluates) but moving
        a tensor or module to them raises :class:`DeviceError`.
    index : int, optional
        Device index.
    """

    __slots__ = ("index", "type")

    def __init__(self, type: Any = "cpu", index: int | None = None) -> None:
        if isinstance(type, device):
            self.type, self.index = type.type, type.index
            return
        if not isinstance(type, str):
            raise TypeError(f"device: expected a string such as 'cpu'; got {type!r}")
        name, _, idx = type.partition(":")
        self.type = name
        self.index = int(idx) if idx else index

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return (
            f"device(type='{self.type}')"
            if self.index is None
            else (f"device(type='{self.type}', index={self.index})")
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))


def check_device(dev: Any, where: str) -> None:
    """Raise :class:`DeviceError` unless ``dev`` names the CPU (or is None).

    Parameters
    ----------
    dev : str, device or None
        The requested device.
    where : str
        The caller, named in the message.
    """
    if dev is None:
        return
    kind = dev.type if isinstance(dev, device) else str(dev).partition(":")[0]
    if kind not in ("cpu", "meta"):
        raise DeviceError(
            f"{where}: cnnkit runs on the CPU; device {str(dev)!r} is not available "
            f"(use 'cpu', e.g. device = ck.device('cuda' if ck.cuda.is_available() else 'cpu'))"
        )
