"""Resource limits checked against a file's headers before memory is allocated.

Every file cnnkit reads is treated as untrusted: a few bytes can ask for gigabytes (a
gzip bomb, a PNG header claiming 100,000 x 100,000 pixels, an architecture with a
10^12-parameter layer). Each limit below is read at the moment of the check, so raise it
for one process by assigning the attribute (``cnnkit.limits.MAX_PARAMETERS = 5e9``) or
for every process with the environment variable of the same name prefixed ``CNNKIT_``
(``CNNKIT_MAX_PARAMETERS=5000000000``). Exceeding one raises :class:`LimitError`, which
names the file, the limit and how to raise it.
"""

from __future__ import annotations

import os


class LimitError(ValueError):
    """A file asks for more memory than a documented limit allows."""


def _env(name: str, default: int) -> int:
    text = os.environ.get(f"CNNKIT_{name}")
    if text is None:
        return default
    try:
        return int(float(text))
    except ValueError:
        raise ValueError(
            f"environment variable CNNKIT_{name}: expected a number; got {text!r}"
        ) from None


#: Parameters (and buffers) of a model rebuilt from a file's architecture description.
MAX_PARAMETERS: int = _env("MAX_PARAMETERS", 1_000_000_000)
#: Pixels of one decoded image (Pillow's own decompression-bomb threshold is 89,478,485).
MAX_IMAGE_PIXELS: int = _env("MAX_IMAGE_PIXELS", 89_478_485)
#: Bytes of one decoded data file (an IDX file after gunzip, a CIFAR batch).
MAX_DATA_BYTES: int = _env("MAX_DATA_BYTES", 4 * 2**30)


def check(what: str, amount: int, name: str, unit: str) -> None:
    """Raise :class:`LimitError` if ``amount`` exceeds the limit ``name`` of this module."""
    limit = int(globals()[name])
    if amount > limit:
        raise LimitError(
            f"{what}: {amount:,} {unit} exceeds the limit of {limit:,} (cnnkit.limits.{name}; "
            f"raise it with cnnkit.limits.{name} = N or the environment variable CNNKIT_{name})"
        )
