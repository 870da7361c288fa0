"""``cnnkit.vision``: torchvision's ``datasets``, ``transforms``, ``utils`` over :mod:`cnnkit.data`.

``from torchvision import datasets, transforms`` becomes
``from cnnkit.vision import datasets, transforms``.
"""

from cnnkit.vision import datasets, transforms, utils

__all__ = ["datasets", "transforms", "utils"]
