"""The model zoo: LeNet-5, an MLP, a small VGG-style net, ResNets (small, and the CIFAR
ResNet-20/32/44/56/110 of He et al.), MiniInception and TinyYOLO (detection).

Each class records its constructor arguments in ``self.config`` so a checkpoint can
rebuild it; :func:`get_model` builds one by name (used by the CLI).
"""

from __future__ import annotations

from typing import Any

from cnnkit.models.inception import Inception, MiniInception
from cnnkit.models.lenet import LeNet5
from cnnkit.models.mlp import MLP
from cnnkit.models.resnet import BasicBlock, SmallResNet
from cnnkit.models.resnet_cifar import ResNetCIFAR, resnet_cifar
from cnnkit.models.vgg import SmallVGG
from cnnkit.models.yolo import TinyYOLO

MODELS: dict[str, type] = {
    "lenet5": LeNet5,
    "mlp": MLP,
    "smallvgg": SmallVGG,
    "vgg": SmallVGG,
    "smallresnet": SmallResNet,
    "resnet": SmallResNet,
    "resnetcifar": ResNetCIFAR,
    "miniinception": MiniInception,
    "inception": MiniInception,
    "tinyyolo": TinyYOLO,
    "yolo": TinyYOLO,
}


_MAIN = ("lenet5", "mlp", "smallvgg", "smallresnet", "resnetcifar", "miniinception", "tinyyolo")


def model_key(name: str) -> str:
    """The zoo's key for a model name (case, ``-`` and ``_`` ignored).

    Raises
    ------
    ValueError
        An unknown name: the message suggests the closest names and lists the zoo.
    """
    import difflib

    key = name.lower().replace("-", "").replace("_", "")
    if key in MODELS:
        return key
    names = [k for k in MODELS if k in _MAIN]
    aliases = [k for k in MODELS if k not in names]
    close = difflib.get_close_matches(key, list(MODELS), n=2, cutoff=0.75)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ValueError(
        f"unknown model {name!r}; {hint}choose one of {', '.join(names)} "
        f"(also accepted: {', '.join(aliases)})"
    )


def get_model(name: str, **kwargs: Any) -> Any:
    """Build a zoo model by (case-insensitive) name, e.g. ``get_model('lenet5', input_size=8)``."""
    return MODELS[model_key(name)](**kwargs)


__all__ = [
    "MLP",
    "MODELS",
    "BasicBlock",
    "Inception",
    "LeNet5",
    "MiniInception",
    "ResNetCIFAR",
    "SmallResNet",
    "SmallVGG",
    "TinyYOLO",
    "get_model",
    "model_key",
    "resnet_cifar",
]
