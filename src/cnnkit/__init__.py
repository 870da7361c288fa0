"""cnnkit: convolutional networks on NumPy with every forward and backward pass written out.

>>> import cnnkit as ck, cnnkit.nn as nn, cnnkit.nn.functional as F
"""

from cnnkit.autograd import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from cnnkit.backend import get_default_dtype, manual_seed, set_default_dtype, tune_malloc
from cnnkit.tensor import (
    Tensor,
    arange,
    as_tensor,
    cat,
    full,
    ones,
    ones_like,
    rand,
    randn,
    stack,
    tensor,
    where,
    zeros,
    zeros_like,
)

float32 = "float32"
float64 = "float64"
int64 = "int64"

__version__ = "0.1.0"


_LAZY = {
    "set_runtime": "cnnkit.runtime",
    "summary": "cnnkit.inspect.summary",
    "Summary": "cnnkit.inspect.summary",
    "gradcheck": "cnnkit.inspect.gradcheck",
    "gradcheck_module": "cnnkit.inspect.gradcheck",
    "GradcheckError": "cnnkit.inspect.gradcheck",
}


def __getattr__(name: str) -> object:
    # ck.summary / ck.gradcheck live in cnnkit.inspect (which needs cnnkit.nn): load on use
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")


__all__ = [
    "Function",
    "GradcheckError",
    "Summary",
    "Tensor",
    "__version__",
    "arange",
    "as_tensor",
    "cat",
    "enable_grad",
    "float32",
    "float64",
    "full",
    "get_default_dtype",
    "gradcheck",
    "gradcheck_module",
    "int64",
    "is_grad_enabled",
    "manual_seed",
    "no_grad",
    "ones",
    "ones_like",
    "rand",
    "randn",
    "set_default_dtype",
    "set_grad_enabled",
    "set_runtime",
    "stack",
    "summary",
    "tensor",
    "tune_malloc",
    "where",
    "zeros",
    "zeros_like",
]
