"""Files: checkpoints (safetensors + JSON header), atomic writes, interchange."""

from cnnkit.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from cnnkit.io.checkpoint import Checkpoint, CheckpointError, load, read_header, save
from cnnkit.io.onnx_export import export_onnx
from cnnkit.io.torch_io import (
    TorchLoadLimits,
    TorchPickleError,
    load_torch_object,
    load_torch_state_dict,
    save_torch_state_dict,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "TorchLoadLimits",
    "TorchPickleError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "export_onnx",
    "load",
    "load_torch_object",
    "load_torch_state_dict",
    "read_header",
    "save",
    "save_torch_state_dict",
]
