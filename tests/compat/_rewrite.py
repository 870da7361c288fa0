"""The README's import table applied as text: a PyTorch script becomes a cnnkit script.

``torchvision`` -> ``cnnkit.vision`` and ``torch`` -> ``cnnkit`` as whole words (so
``torch.utils.data`` -> ``cnnkit.utils.data``); nothing else in the script changes.
"""

from __future__ import annotations

import re

TABLE: list[tuple[str, str]] = [
    (r"\btorchvision\b", "cnnkit.vision"),
    (r"\btorch\b", "cnnkit"),
]


def rewrite(source: str) -> str:
    """Apply :data:`TABLE` to a script's text."""
    for pat, rep in TABLE:
        source = re.sub(pat, rep, source)
    return source
