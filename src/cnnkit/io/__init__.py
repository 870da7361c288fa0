"""Files: checkpoints (safetensors + JSON header), atomic writes, interchange."""

from cnnkit.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from cnnkit.io.checkpoint import Checkpoint, CheckpointError, load, read_header, save

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "load",
    "read_header",
    "save",
]
