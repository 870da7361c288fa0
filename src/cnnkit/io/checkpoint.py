"""One pickle-free file for a whole run: weights, optimizer state, history, metadata.

The file is a safetensors file. Its tensors are the model's state dict (prefix
``model.``) and the optimizer's per-parameter buffers (``optim.<index>.<name>``); its
metadata holds a JSON header: format version, cnnkit version, the architecture (to
rebuild built-in and zoo models), the optimizer's class and hyper-parameters, the
history and user metadata. Writing goes to a temporary file that is fsynced and
renamed, so a crash never leaves a half-written checkpoint under the real name.

Integrity (format version 2): the header stores the SHA-256 of every tensor (of its
dtype, shape and bytes) and the metadata the SHA-256 of the header text; :func:`load`
verifies both, so a flipped byte anywhere is a :class:`CheckpointError` naming the file
and the tensor (or the header). Files of format version 1 (written before checksums)
still load, unverified, with a warning; saving them again adds the checksums. Every
field of the header is validated before use (:mod:`cnnkit.io.schema`).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import nn
from cnnkit.io.architecture import build, describe
from cnnkit.io.atomic import atomic_write_bytes
from cnnkit.io.schema import Schema
from cnnkit.tensor import Tensor
from cnnkit.train.history import History

FORMAT = "cnnkit-checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: no checksums (loaded unverified, with a warning)


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, of another format, or does not fit the model."""


def _array(v: Any) -> np.ndarray:
    """A contiguous array from a Tensor or array-like."""
    a = v.array if isinstance(v, Tensor) else np.asarray(v)
    # not np.ascontiguousarray: it turns a 0-d array (e.g. num_batches_tracked) into 1-d
    return a if a.flags.c_contiguous else a.copy(order="C")


def tensor_digest(a: np.ndarray) -> str:
    """SHA-256 (hex) of an array's dtype, shape and little-endian bytes."""
    le = a.astype(a.dtype.newbyteorder("<"), copy=False) if a.dtype.byteorder == ">" else a
    le = le if le.flags.c_contiguous else np.ascontiguousarray(le)
    h = hashlib.sha256(f"{le.dtype.name}{tuple(le.shape)}".encode())
    h.update(le.reshape(-1).view(np.uint8) if le.size else b"")
    return h.hexdigest()


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
    header["checksums"] = {
        "algorithm": "sha256",
        "tensors": {k: tensor_digest(v) for k, v in tensors.items()},
    }
    try:
        text = json.dumps(header, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"save({path}): metadata is not JSON-serialisable: {e}") from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    data = st_save(tensors, metadata={"format": FORMAT, "cnnkit": text, "cnnkit_sha256": digest})
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
        _check_optimizer_state(self.path, self.optimizer_state, optimizer)
        try:
            optimizer.load_state_dict(self.optimizer_state)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise CheckpointError(
                f"{self.path}: the optimizer state (field 'optimizer') does not fit "
                f"{type(optimizer).__name__}: {e}"
            ) from None
        return optimizer

    def build_optimizer(self, params: Any = None) -> Any:
        """A new optimizer of the saved class on ``params`` (default: the model's), restored."""
        from cnnkit import optim

        if self.optimizer_state is None or self.optimizer_class is None:
            raise CheckpointError(f"{self.path}: the checkpoint holds no optimizer state")
        cls = getattr(optim, self.optimizer_class, None)
        if not (isinstance(cls, type) and hasattr(cls, "load_state_dict")):
            raise CheckpointError(f"{self.path}: unknown optimizer {self.optimizer_class!r}")
        if params is None:
            if self.model is None:
                raise CheckpointError(f"{self.path}: no model to take parameters from")
            params = list(self.model.parameters())
        group = {k: v for k, v in self.optimizer_state["param_groups"][0].items() if k != "params"}
        try:
            opt = cls(params, **_init_kwargs(cls, group))
        except (TypeError, ValueError) as e:
            raise CheckpointError(
                f"{self.path}: field 'optimizer.param_groups[0]': cannot build "
                f"{self.optimizer_class}: {e}"
            ) from None
        return self.restore_optimizer(opt)


def _check_optimizer_state(path: Path, state: dict[str, Any], optimizer: Any) -> None:
    """The saved optimizer state against ``optimizer`` (fresh, of the saved class): every
    hyper-parameter it has is present and of its kind (a boolean stays a boolean, a
    non-negative number stays one, a tuple keeps its length; betas below 1), the
    parameter indices are those of its parameters, each once, and step counts are
    whole numbers >= 0."""
    sc = Schema(path, CheckpointError)
    groups = state["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        sc.fail("optimizer.param_groups", f"{len(optimizer.param_groups)} group(s)",
                found=f"{len(groups)}")  # fmt: skip
    seen: list[int] = []
    for i, (saved, fresh) in enumerate(zip(groups, optimizer.param_groups, strict=True)):
        where = f"optimizer.param_groups[{i}]"
        if len(saved["params"]) != len(fresh["params"]):
            sc.fail(f"{where}.params", f"{len(fresh['params'])} parameter indices",
                    found=f"{len(saved['params'])}")  # fmt: skip
        seen += saved["params"]
        for key, ref in fresh.items():
            if key != "params":
                _check_like(sc, saved.get(key, ...), ref, f"{where}.{key}")
    if sorted(seen) != list(range(len(seen))):
        sc.fail("optimizer.param_groups[*].params",
                f"each of the indices 0..{len(seen) - 1} once", seen)  # fmt: skip
    names = _state_names(optimizer, groups[0])
    for idx, entry in state.get("state", {}).items():
        if int(idx) >= len(seen):
            sc.fail(f"optimizer state of parameter {idx}", f"a parameter index < {len(seen)}",
                    int(idx))  # fmt: skip
        if entry and names is not None and set(entry) != names:
            sc.fail(f"optimizer state of parameter {idx}",
                    f"the buffers {sorted(names)} (optimizer.scalars.{idx} and optim.{idx}.*)",
                    found=str(sorted(entry)))  # fmt: skip
        if "step" in entry:
            step = entry["step"]
            value = step.item() if isinstance(step, np.ndarray) and step.size == 1 else step
            if not (
                isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and value >= 0 and value == int(value)
            ):  # fmt: skip
                sc.fail(f"optimizer.scalars.{idx}.step", "a whole number >= 0", value)


def _state_names(optimizer: Any, group: dict[str, Any]) -> set[str] | None:
    """The per-parameter state an optimizer of this class and these hyper-parameters
    keeps (found by one step on a throwaway parameter); None if it cannot tell."""
    from cnnkit.nn import Parameter

    try:
        p = Parameter(np.zeros(1, dtype=np.float32))
        p.grad = Tensor(np.ones(1, dtype=np.float32))
        kwargs = _init_kwargs(type(optimizer), {k: v for k, v in group.items() if k != "params"})
        probe = type(optimizer)([p], **kwargs)
        probe.step()
        return {str(k) for entry in probe.state.values() for k in entry}
    except Exception:  # an optimizer that cannot be probed: its own checks remain
        return None


def _check_like(sc: Schema, v: Any, ref: Any, field: str) -> None:
    """``v`` of the kind of the optimizer's own value ``ref``."""
    if v is ...:
        sc.fail(field, f"a value like {ref!r}")
    if isinstance(ref, bool):
        sc.value(v, "bool", field)
    elif isinstance(ref, (int, float)):
        beta = field.endswith(("betas[0]", "betas[1]"))
        sc.value(v, "number", field, min=0 if ref >= 0 else None, max=1 - 1e-12 if beta else None)
    elif isinstance(ref, (tuple, list)):
        sc.value(v, "list", field)
        if len(v) != len(ref):
            sc.fail(field, f"a list of {len(ref)} values", v)
        for j, (x, r) in enumerate(zip(v, ref, strict=True)):
            _check_like(sc, x, r, f"{field}[{j}]")
    elif isinstance(ref, str):
        sc.value(v, "str", field)
    elif ref is None:
        sc.value(v, "number|null", field)


def _init_kwargs(cls: type, group: dict[str, Any]) -> dict[str, Any]:
    """The hyper-parameters of a saved group that ``cls`` accepts."""
    import inspect

    names = inspect.signature(cls.__init__).parameters
    return {k: tuple(v) if isinstance(v, list) else v for k, v in group.items() if k in names}


def read_header(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """Validate the safetensors framing and the cnnkit header (its checksum and every
    field); return (header, file bytes)."""
    from cnnkit.io.reading import read_regular_bytes

    path = Path(path)
    try:
        data = read_regular_bytes(path, "checkpoint file", CheckpointError)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
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
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    meta = raw.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "cnnkit" not in meta:
        raise CheckpointError(
            f"{path}: not a cnnkit checkpoint (a plain safetensors file? use "
            "cnnkit.io.load_torch_state_dict for bare state dicts)"
        )
    text = meta["cnnkit"]
    if not isinstance(text, str):
        raise CheckpointError(f"{path}: corrupt cnnkit header (not a string)")
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: corrupt cnnkit header ({e})") from None
    sc = Schema(path, CheckpointError)
    header = sc.obj(header, "header")
    version = header.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}; this cnnkit reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    if version >= 2:
        want = meta.get("cnnkit_sha256")
        if not isinstance(want, str):
            raise CheckpointError(f"{path}: the header's checksum (cnnkit_sha256) is missing")
        if hashlib.sha256(text.encode()).hexdigest() != want:
            raise CheckpointError(
                f"{path}: header checksum mismatch: the checkpoint's header is corrupt"
            )
    _validate_header(header, sc)
    return header, data


def _validate_header(h: dict[str, Any], sc: Schema) -> None:
    """Types and required keys of every header field (see :func:`save`)."""
    sc.get(h, "cnnkit_version", "str", required=False)
    sc.get(h, "model_class", "str|null", required=False)
    sc.get(h, "format", "str", required=False, choices=(FORMAT,))
    arch = sc.get(h, "architecture", "object|null", required=False)
    if arch is not None:
        validate_architecture(arch, sc, "architecture")
    sc.get(h, "meta", "object|null", required=False)
    hist = sc.get(h, "history", "object|null", required=False)
    if hist is not None:
        validate_history(hist, sc, "history")
    opt = sc.get(h, "optimizer", "object|null", required=False)
    if opt is not None:
        sc.get(opt, "class", "str", "optimizer.class")
        groups = sc.get(opt, "param_groups", "list", "optimizer.param_groups")
        if not groups:
            sc.fail("optimizer.param_groups", "at least one group", groups)
        for i, g in enumerate(groups):
            g = sc.obj(g, f"optimizer.param_groups[{i}]")
            params = sc.get(g, "params", "list", f"optimizer.param_groups[{i}].params")
            for j, idx in enumerate(params):
                sc.value(idx, "int", f"optimizer.param_groups[{i}].params[{j}]", min=0)
            for key, v in g.items():
                if key != "params":
                    _check_hyper(v, sc, f"optimizer.param_groups[{i}].{key}")
        scalars = sc.get(opt, "scalars", "object", "optimizer.scalars", required=False, default={})
        for idx, entry in scalars.items():
            if not (idx.isascii() and idx.isdigit()):
                sc.fail(f"optimizer.scalars.{idx}", "a parameter index (digits)", idx)
            entry = sc.obj(entry, f"optimizer.scalars.{idx}")
            for name, v in entry.items():
                sc.value(v, "number|bool|null", f"optimizer.scalars.{idx}.{name}")
    if h.get("format_version", 1) >= 2:
        sums = sc.obj(h.get("checksums"), "checksums")
        sc.get(sums, "algorithm", "str", "checksums.algorithm", choices=("sha256",))
        for name, d in sc.get(sums, "tensors", "object", "checksums.tensors").items():
            sc.value(d, "str", f"checksums.tensors.{name}")


def validate_architecture(d: Any, sc: Schema, field: str, depth: int = 0) -> None:
    """An :func:`~cnnkit.io.architecture.describe` result: ``kind`` zoo (``type``,
    ``config``), sequential (``children``: ``[name, description]`` pairs) or layer
    (``type``, ``args``, ``dtype``); every number in it finite."""
    if depth > 64:
        sc.fail(field, "at most 64 nested Sequential containers", found="deeper nesting")
    d = sc.obj(d, field)
    kind = sc.get(d, "kind", "str", f"{field}.kind", choices=("zoo", "sequential", "layer"))
    sc.get(d, "type", "str", f"{field}.type")
    if kind == "zoo":
        _check_args(sc.get(d, "config", "object", f"{field}.config", required=False), sc,
                    f"{field}.config")  # fmt: skip
    elif kind == "layer":
        _check_args(sc.get(d, "args", "object", f"{field}.args", required=False), sc,
                    f"{field}.args")  # fmt: skip
        sc.get(d, "dtype", "str|null", f"{field}.dtype", required=False,
               choices=("float16", "float32", "float64", None))  # fmt: skip
    else:
        children = sc.get(d, "children", "list", f"{field}.children")
        for i, pair in enumerate(children):
            where = f"{field}.children[{i}]"
            if not (isinstance(pair, list) and len(pair) == 2):
                sc.fail(where, "a [name, description] pair", pair)
            name = sc.value(pair[0], "str", f"{where}[0]")
            if not name or "." in name:
                sc.fail(f"{where}[0]", "a non-empty module name without '.'", name)
            validate_architecture(pair[1], sc, f"{where}[1]", depth + 1)


def _check_args(v: Any, sc: Schema, field: str) -> None:
    """Constructor arguments: JSON values whose numbers are finite."""
    if isinstance(v, dict):
        for k, x in v.items():
            _check_args(x, sc, f"{field}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _check_args(x, sc, f"{field}[{i}]")
    elif isinstance(v, float) and not math.isfinite(v):
        sc.fail(field, "a finite number", v)


def _check_hyper(v: Any, sc: Schema, field: str) -> None:
    """An optimizer hyper-parameter: a number, bool, string, null or a list of those."""
    if isinstance(v, list):
        for i, x in enumerate(v):
            sc.value(x, "number|bool|str|null", f"{field}[{i}]")
    else:
        sc.value(v, "number|bool|str|null", field)


def validate_history(d: Any, sc: Schema, field: str = "history") -> None:
    """A :meth:`History.to_dict` result: ``{"records": [{column: number, ...}, ...]}``;
    ``epoch`` is a whole number >= 1, every other column a number (NaN and infinities
    included: a diverged loss is a fact worth keeping)."""
    d = sc.obj(d, field)
    records = sc.get(d, "records", "list", f"{field}.records", required=False, default=[])
    for i, r in enumerate(records):
        r = sc.obj(r, f"{field}.records[{i}]")
        for k, v in r.items():
            where = f"{field}.records[{i}].{k}"
            if k == "epoch":
                sc.value(v, "int", where, min=1)
            elif not (isinstance(v, (int, float)) and not isinstance(v, bool)):
                sc.fail(where, "a number", v)


def _verify(path: Path, header: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
    """Compare every tensor with the checksum stored for it (format version 2)."""
    if header.get("format_version", 1) < 2:
        warnings.warn(
            f"{path}: checkpoint format version 1 has no checksums; loaded unverified "
            "(save it again to add them)",
            stacklevel=3,
        )
        return
    sums = header["checksums"]["tensors"]
    for name in tensors:
        if name not in sums:
            raise CheckpointError(f"{path}: tensor {name!r} has no checksum in the header")
    for name, digest in sums.items():
        if name not in tensors:
            raise CheckpointError(f"{path}: tensor {name!r} listed in the header is missing")
        if tensor_digest(tensors[name]) != digest:
            raise CheckpointError(
                f"{path}: checksum mismatch in tensor {name!r} (shape "
                f"{tuple(tensors[name].shape)}, {tensors[name].dtype}): the file is corrupt"
            )


def load(path: str | Path, model: nn.Module | None = None, strict: bool = True) -> Checkpoint:
    """Read a checkpoint written by :func:`save`.

    Parameters
    ----------
    path : str or Path
    model : Module, optional
        Load the weights into this module (needed for custom Module subclasses);
        otherwise the model is rebuilt from the stored architecture (at most
        :data:`cnnkit.limits.MAX_PARAMETERS` parameters, checked before allocation).
    strict : bool
        Require the state dict keys and shapes to match exactly.

    Raises
    ------
    CheckpointError
        Missing, truncated or corrupt file (a checksum mismatch names the tensor), wrong
        format or version, a malformed header field (named), or keys/shapes/dtypes that
        do not fit the model (the message lists each problem; the model is unchanged).
    """
    from safetensors.numpy import load as st_load

    from cnnkit.limits import LimitError
    from cnnkit.nn._util import parameter_budget

    path = Path(path)
    header, data = read_header(path)
    try:
        tensors = st_load(data)
    except Exception as e:  # safetensors raises its own error types for bad offsets
        raise CheckpointError(f"{path}: corrupt tensor data ({e})") from None
    _verify(path, header, tensors)
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    for k in tensors:
        if not k.startswith(("model.", "optim.")):
            raise CheckpointError(f"{path}: unexpected tensor {k!r} (not model.* or optim.*)")
    arch = header.get("architecture")
    if model is None:
        if arch is None:
            raise CheckpointError(
                f"{path}: the model ({header.get('model_class')}) is a custom Module; "
                "pass model= an instance of it to load the weights"
            )
        try:
            with parameter_budget(f"{path}: architecture"):
                build(arch)  # dry run on 'meta': counts parameters, allocates nothing
            model = build(arch)
        except LimitError as e:
            raise CheckpointError(str(e)) from None
        except Exception as e:  # constructor arguments come from the file: any failure is its
            raise CheckpointError(
                f"{path}: cannot rebuild the architecture (field 'architecture'): "
                f"{type(e).__name__}: {e}"
            ) from None
    try:
        model.load_state_dict(state, strict=strict)
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: weights do not fit the model: {e}") from None
    opt_state = None
    opt_header = header.get("optimizer")
    if opt_header is not None:
        per_param: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = [*k.split(".", 2), "", ""][:3]
                if not (idx.isascii() and idx.isdigit()) or not name:
                    raise CheckpointError(
                        f"{path}: malformed optimizer tensor name {k!r} (expected "
                        "optim.<index>.<name>)"
                    )
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
        meta=header.get("meta") or {},
        architecture=arch,
        cnnkit_version=header.get("cnnkit_version", ""),
    )
