"""One pickle-free file for a whole run: weights, optimizer state, history, metadata.

The file is a safetensors file. Its tensors are the model's state dict (prefix
``model.``) and the optimizer's per-parameter buffers (``optim.<index>.<name>``); its
metadata holds a JSON header: format version, cnnkit version, the architecture (to
rebuild built-in and zoo models), the optimizer's class and hyper-parameters, the
history and user metadata. Writing goes to a temporary file that is fsynced and
renamed, so a crash never leaves a half-written checkpoint under the real name.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import nn
from cnnkit.io.architecture import build, describe
from cnnkit.io.atomic import atomic_write_bytes
from cnnkit.tensor import Tensor
from cnnkit.train.history import History

FORMAT = "cnnkit-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, of another format, or does not fit the model."""


def _array(v: Any) -> np.ndarray:
    """A contiguous array from a Tensor or array-like."""
    a = v.array if isinstance(v, Tensor) else np.asarray(v)
    # not np.ascontiguousarray: it turns a 0-d array (e.g. num_batches_tracked) into 1-d
    return a if a.flags.c_contiguous else a.copy(order="C")


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Optimizer state dict -> (array buffers by name, JSON-able rest)."""
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state.get("state", {}).items():
        for name, v in entry.items():
            if isinstance(v, (Tensor, np.ndarray)) and np.ndim(_array(v)) > 0:
                arrays[f"optim.{idx}.{name}"] = _array(v)
            else:
                scalars.setdefault(str(idx), {})[name] = _to_json(v)
    groups = [{k: _to_json(v) for k, v in g.items()} for g in state.get("param_groups", [])]
    return arrays, {"param_groups": groups, "scalars": scalars}


def _to_json(v: Any) -> Any:
    """Numbers, tuples and 0-d arrays as JSON values."""
    if isinstance(v, Tensor):
        v = v.array
    if isinstance(v, np.ndarray):
        return v.item() if v.ndim == 0 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_to_json(x) for x in v]
    return v


def save(
    path: str | Path,
    model: nn.Module,
    optimizer: Any = None,
    history: History | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint of ``model`` (and optionally optimizer, history, metadata).

    Parameters
    ----------
    path : str or Path
        Destination, conventionally ``*.safetensors``; written atomically.
    model : Module
        Its state dict (parameters and buffers) is stored, plus its architecture when
        it is a zoo model or a Sequential of built-in layers.
    optimizer : Optimizer, optional
        Its class, hyper-parameters and buffers (momentum, Adam moments).
    history : History, optional
    meta : dict, optional
        Any JSON-able user data.

    Returns
    -------
    Path
    """
    from safetensors.numpy import save as st_save

    import cnnkit

    tensors = {f"model.{k}": _array(v) for k, v in model.state_dict().items()}
    header: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cnnkit_version": cnnkit.__version__,
        "architecture": describe(model),
        "model_class": type(model).__name__,
        "history": history.to_dict() if history is not None else None,
        "meta": meta or {},
        "optimizer": None,
    }
    if optimizer is not None:
        arrays, rest = _split_optimizer(optimizer.state_dict())
        tensors.update(arrays)
        header["optimizer"] = {"class": type(optimizer).__name__, **rest}
    try:
        text = json.dumps(header)
    except TypeError as e:
        raise TypeError(f"save({path}): metadata is not JSON-serialisable: {e}") from None
    data = st_save(tensors, metadata={"format": FORMAT, "cnnkit": text})
    return atomic_write_bytes(path, data)


@dataclass
class Checkpoint:
    """A loaded checkpoint; ``model`` is rebuilt (or the one passed in, loaded)."""

    path: Path
    model: nn.Module | None
    state_dict: dict[str, np.ndarray]
    optimizer_state: dict[str, Any] | None
    optimizer_class: str | None
    history: History | None
    meta: dict[str, Any] = field(default_factory=dict)
    architecture: dict[str, Any] | None = None
    cnnkit_version: str = ""

    def restore_optimizer(self, optimizer: Any) -> Any:
        """Load the saved optimizer state into ``optimizer`` (built on the same parameters)."""
        if self.optimizer_state is None:
            raise CheckpointError(f"{self.path}: the checkpoint holds no optimizer state")
        if self.optimizer_class and type(optimizer).__name__ != self.optimizer_class:
            raise CheckpointError(
                f"{self.path}: saved optimizer is {self.optimizer_class}; "
                f"got {type(optimizer).__name__}"
            )
        optimizer.load_state_dict(self.optimizer_state)
        return optimizer

    def build_optimizer(self, params: Any = None) -> Any:
        """A new optimizer of the saved class on ``params`` (default: the model's), restored."""
        from cnnkit import optim

        if self.optimizer_state is None or self.optimizer_class is None:
            raise CheckpointError(f"{self.path}: the checkpoint holds no optimizer state")
        cls = getattr(optim, self.optimizer_class, None)
        if cls is None:
            raise CheckpointError(f"{self.path}: unknown optimizer {self.optimizer_class!r}")
        if params is None:
            if self.model is None:
                raise CheckpointError(f"{self.path}: no model to take parameters from")
            params = list(self.model.parameters())
        group = {k: v for k, v in self.optimizer_state["param_groups"][0].items() if k != "params"}
        opt = cls(params, **_init_kwargs(cls, group))
        opt.load_state_dict(self.optimizer_state)
        return opt


def _init_kwargs(cls: type, group: dict[str, Any]) -> dict[str, Any]:
    """The hyper-parameters of a saved group that ``cls`` accepts."""
    import inspect

    names = inspect.signature(cls.__init__).parameters
    return {k: tuple(v) if isinstance(v, list) else v for k, v in group.items() if k in names}


def read_header(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """Validate the safetensors framing and cnnkit header; return (header, file bytes)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    data = path.read_bytes()
    if len(data) < 8:
        raise CheckpointError(f"{path}: truncated ({len(data)} bytes): not a checkpoint")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CheckpointError(
            f"{path}: truncated or not a safetensors file: header length {n} but only "
            f"{len(data) - 8} bytes follow"
        )
    try:
        raw = json.loads(data[8 : 8 + n].decode("utf-8"))
        meta = raw.get("__metadata__") or {}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if meta.get("format") != FORMAT or "cnnkit" not in meta:
        raise CheckpointError(
            f"{path}: not a cnnkit checkpoint (a plain safetensors file? use "
            "cnnkit.io.load_torch_state_dict for bare state dicts)"
        )
    try:
        header = json.loads(meta["cnnkit"])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: corrupt cnnkit header ({e})") from None
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}; this cnnkit reads version "
            f"{FORMAT_VERSION}"
        )
    return header, data


def load(path: str | Path, model: nn.Module | None = None, strict: bool = True) -> Checkpoint:
    """Read a checkpoint written by :func:`save`.

    Parameters
    ----------
    path : str or Path
    model : Module, optional
        Load the weights into this module (needed for custom Module subclasses);
        otherwise the model is rebuilt from the stored architecture.
    strict : bool
        Require the state dict keys and shapes to match exactly.

    Raises
    ------
    CheckpointError
        Missing, truncated or corrupt file, wrong format or version, or keys/shapes
        that do not fit the model (the message lists missing, unexpected and
        mismatched keys).
    """
    from safetensors.numpy import load as st_load

    path = Path(path)
    header, data = read_header(path)
    try:
        tensors = st_load(data)
    except Exception as e:  # safetensors raises its own error types for bad offsets
        raise CheckpointError(f"{path}: corrupt tensor data ({e})") from None
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    arch = header.get("architecture")
    if model is None:
        if arch is None:
            raise CheckpointError(
                f"{path}: the model ({header.get('model_class')}) is a custom Module; "
                "pass model= an instance of it to load the weights"
            )
        try:
            model = build(arch)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: cannot rebuild the architecture: {e}") from None
    try:
        model.load_state_dict(state, strict=strict)
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: weights do not fit the model: {e}") from None
    opt_state = None
    opt_header = header.get("optimizer")
    if opt_header is not None:
        per_param: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                per_param.setdefault(int(idx), {})[name] = v
        for idx, entry in opt_header.get("scalars", {}).items():
            per_param.setdefault(int(idx), {}).update(entry)
        opt_state = {"state": per_param, "param_groups": opt_header["param_groups"]}
    hist = header.get("history")
    return Checkpoint(
        path=path,
        model=model,
        state_dict=state,
        optimizer_state=opt_state,
        optimizer_class=opt_header.get("class") if opt_header else None,
        history=History.from_dict(hist) if hist is not None else None,
        meta=header.get("meta", {}),
        architecture=arch,
        cnnkit_version=header.get("cnnkit_version", ""),
    )
