"""cnnkit: convolutional networks on NumPy with every forward and backward pass written out.

>>> import cnnkit as ck, cnnkit.nn as nn, cnnkit.nn.functional as F
"""

from cnnkit._device import device
from cnnkit.autograd import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from cnnkit.backend import get_default_dtype, manual_seed, set_default_dtype, tune_malloc
from cnnkit.tensor import (
    Size,
    Tensor,
    arange,
    as_tensor,
    cat,
    empty,
    eye,
    full,
    linspace,
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
from cnnkit.torch_functions import (
    BoolTensor,
    DoubleTensor,
    FloatTensor,
    Generator,
    IntTensor,
    LongTensor,
    abs,
    argmax,
    argmin,
    argsort,
    bincount,
    bmm,
    ceil,
    chunk,
    clamp,
    cumsum,
    einsum,
    eq,
    exp,
    flatten,
    flip,
    floor,
    from_numpy,
    get_num_threads,
    inference_mode,
    is_tensor,
    log,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    mm,
    narrow,
    numel,
    permute,
    prod,
    randint,
    randperm,
    repeat_interleave,
    reshape,
    round,
    set_num_threads,
    sigmoid,
    sign,
    softmax,
    sort,
    split,
    sqrt,
    squeeze,
    std,
    sum,
    tanh,
    tile,
    topk,
    transpose,
    trunc,
    unbind,
    unflatten,
    unique,
    unsqueeze,
)

float32 = "float32"
float64 = "float64"
float16 = "float16"
int64 = "int64"
int32 = "int32"
uint8 = "uint8"
# PyTorch's short dtype names (they shadow the builtins only inside this namespace)
float = "float32"
double = "float64"
long = "int64"
int = "int32"
bool = "bool"

__version__ = "0.1.0"


_LAZY = {
    "set_runtime": "cnnkit.runtime",
    "summary": "cnnkit.inspect.summary",
    "Summary": "cnnkit.inspect.summary",
    "gradcheck": "cnnkit.inspect.gradcheck",
    "gradcheck_module": "cnnkit.inspect.gradcheck",
    "GradcheckError": "cnnkit.inspect.gradcheck",
    "save": "cnnkit.io.torch_save",
    "load": "cnnkit.io.torch_save",
}
# subpackages reachable as attributes after ``import cnnkit`` (as ``torch.nn`` after
# ``import torch``), imported on first use
_SUBMODULES = {
    "nn",
    "optim",
    "utils",
    "vision",
    "data",
    "io",
    "cuda",
    "accelerator",
    "backends",
    "onnx",
    "functional",
    "inspect",
    "models",
    "train",
    "viz",
}


def __getattr__(name: str) -> object:
    # ck.summary / ck.gradcheck live in cnnkit.inspect (which needs cnnkit.nn): load on use
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"cnnkit.{name}")
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")


__all__ = [
    "BoolTensor",
    "DoubleTensor",
    "FloatTensor",
    "Function",
    "Generator",
    "GradcheckError",
    "IntTensor",
    "LongTensor",
    "Size",
    "Summary",
    "Tensor",
    "__version__",
    "abs",
    "arange",
    "argmax",
    "argmin",
    "argsort",
    "as_tensor",
    "bincount",
    "bmm",
    "bool",
    "cat",
    "ceil",
    "chunk",
    "clamp",
    "cumsum",
    "device",
    "double",
    "einsum",
    "empty",
    "enable_grad",
    "eq",
    "exp",
    "eye",
    "flatten",
    "flip",
    "float",
    "float16",
    "float32",
    "float64",
    "floor",
    "from_numpy",
    "full",
    "get_default_dtype",
    "get_num_threads",
    "gradcheck",
    "gradcheck_module",
    "inference_mode",
    "int",
    "int32",
    "int64",
    "is_grad_enabled",
    "is_tensor",
    "linspace",
    "log",
    "log_softmax",
    "logsumexp",
    "long",
    "manual_seed",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "mm",
    "narrow",
    "no_grad",
    "numel",
    "ones",
    "ones_like",
    "permute",
    "prod",
    "rand",
    "randint",
    "randn",
    "randperm",
    "repeat_interleave",
    "reshape",
    "round",
    "set_default_dtype",
    "set_grad_enabled",
    "set_num_threads",
    "set_runtime",
    "sigmoid",
    "sign",
    "softmax",
    "sort",
    "split",
    "sqrt",
    "squeeze",
    "stack",
    "std",
    "sum",
    "summary",
    "tanh",
    "tensor",
    "tile",
    "topk",
    "transpose",
    "trunc",
    "tune_malloc",
    "uint8",
    "unbind",
    "unflatten",
    "unique",
    "unsqueeze",
    "where",
    "zeros",
    "zeros_like",
]
