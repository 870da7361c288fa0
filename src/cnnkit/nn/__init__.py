"""``cnnkit.nn``: Module, Parameter, layers, losses and initialisation (PyTorch's names)."""

from cnnkit.nn import functional, init, parallel, utils
from cnnkit.nn.container import ModuleDict, ModuleList, Sequential
from cnnkit.nn.detection import YOLOv1Loss
from cnnkit.nn.layers import (
    ELU,
    GELU,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool2d,
    Dropout,
    Dropout2d,
    Flatten,
    LeakyReLU,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softmax2d,
    Tanh,
)
from cnnkit.nn.lazy import LazyConv2d, LazyLinear
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
from cnnkit.nn.norm import BatchNorm1d, BatchNorm2d, SyncBatchNorm
from cnnkit.nn.parallel import DataParallel

__all__ = [
    "ELU",
    "GELU",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "DataParallel",
    "Dropout",
    "Dropout2d",
    "Flatten",
    "Identity",
    "L1Loss",
    "LazyConv2d",
    "LazyLinear",
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
    "ReLU6",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softmax2d",
    "SyncBatchNorm",
    "Tanh",
    "YOLOv1Loss",
    "functional",
    "init",
    "parallel",
    "utils",
]
