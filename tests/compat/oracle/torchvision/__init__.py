"""A test-only stand-in for the few torchvision pieces the compat scripts use (torchvision
is not a dependency). Written on torch from torchvision's documented semantics, it is the
PyTorch side's oracle: PIL in, ``ToTensor`` gives CHW float in [0, 1], random transforms
draw from torch's global generator."""

from torchvision import datasets, models, transforms, utils  # noqa: F401
