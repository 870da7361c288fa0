"""``cnnkit.vision``: torchvision's ``datasets``, ``transforms``, ``utils`` over :mod:`cnnkit.data`,
and ``models`` (the ResNets, architecture only).

``from torchvision import datasets, transforms`` becomes
``from cnnkit.vision import datasets, transforms``.
"""

from cnnkit.vision import datasets, models, transforms, utils

__all__ = ["datasets", "models", "transforms", "utils"]
