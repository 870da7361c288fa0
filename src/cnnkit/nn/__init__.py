"""``cnnkit.nn``: Module, Parameter, layers, losses and initialisation (PyTorch's names)."""

from cnnkit.nn import functional, init
from cnnkit.nn.container import ModuleDict, ModuleList, Sequential
from cnnkit.nn.detection import YOLOv1Loss
from cnnkit.nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    Dropout,
    Flatten,
    LeakyReLU,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from cnnkit.nn.linear import Conv2d, Identity, Linear, LocallyConnected2d
from cnnkit.nn.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
)
from cnnkit.nn.module import Module, Parameter
from cnnkit.nn.norm import BatchNorm1d, BatchNorm2d

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "Identity",
    "L1Loss",
    "LeakyReLU",
    "Linear",
    "LocallyConnected2d",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ModuleDict",
    "ModuleList",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "YOLOv1Loss",
    "functional",
    "init",
]
