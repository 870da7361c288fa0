"""``cnnkit.nn.functional`` (``F``): the functional ops under PyTorch's names.

Each name is defined once in a module of :mod:`cnnkit.functional`; this module only
re-exports them, resolving each on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "linear": "linear",
    "conv2d": "conv",
    "locally_connected2d": "conv",
    "conv_output_size": "conv",
    "max_pool2d": "pool",
    "avg_pool2d": "pool",
    "adaptive_avg_pool2d": "pool",
    "adaptive_max_pool2d": "pool",
    "interpolate": "resize",
    "gelu": "activation",
    "dropout2d": "activation",
    "relu": "activation",
    "add_relu": "activation",
    "leaky_relu": "activation",
    "elu": "activation",
    "silu": "activation",
    "relu6": "activation",
    "sigmoid": "activation",
    "tanh": "activation",
    "softmax": "activation",
    "log_softmax": "activation",
    "dropout": "activation",
    "mse_loss": "loss",
    "l1_loss": "loss",
    "binary_cross_entropy": "loss",
    "binary_cross_entropy_with_logits": "loss",
    "cross_entropy": "loss",
    "nll_loss": "loss",
    "kl_div": "loss",
    "smooth_l1_loss": "loss",
    "huber_loss": "loss",
    "softplus": "activation",
    "normalize": "norm",
    "cosine_similarity": "norm",
    "batch_norm": "norm",
    "layer_norm": "norm",
    "group_norm": "norm",
    "prelu": "activation",
    "conv_transpose2d": "conv",
    "embedding": "embedding",
    "pad": "shape",
    "flatten": "shape",
    "one_hot": "shape",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"cnnkit.nn.functional has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cnnkit.functional.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
