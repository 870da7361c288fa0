"""Export a model to ONNX by tracing one forward pass through the autograd graph.

The model runs once (evaluation mode) on a float32 input with graph recording on; the
recorded DAG of :class:`cnnkit.autograd.Function` nodes is walked from the output back
to the input and each node becomes one or a few ONNX operators. Parameters become
initializers under their ``state_dict`` names. ``onnx`` is an optional dependency
(``pip install cnnkit[onnx]``) imported on use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.autograd import Function, _topological_order, enable_grad
from cnnkit.functional import activation, arith, conv, linear, norm, pool, shape
from cnnkit.functional._parallel import serial
from cnnkit.io.atomic import atomic_write_bytes
from cnnkit.tensor import Tensor

MIN_OPSET = 13  # Softmax/LogSoftmax with a single axis, Reshape/Pad/Clip with tensor inputs


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            "export_onnx needs the optional 'onnx' package; install it with "
            "`pip install cnnkit[onnx]`"
        ) from exc
    return onnx


class _Builder:
    """Collects ONNX nodes and initializers while the graph is walked."""

    def __init__(
        self,
        onnx: Any,
        model: Any,
        x: Tensor,
        input_name: str,
        dynamic_batch: bool,
    ) -> None:
        self.onnx = onnx
        self.helper = onnx.helper
        self.nph = onnx.numpy_helper
        self.dynamic = dynamic_batch
        self.batch = x.shape[0] if x.ndim else None
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.used: set[str] = {input_name}
        self.names: dict[int, str] = {id(x): input_name}
        self.counter = 0
        self.param_names: dict[int, str] = {}
        for name, t in model.state_dict(keep_vars=True).items():
            self.param_names.setdefault(id(t), name)
        self.bn_modules: dict[int, tuple[str, Any]] = {}
        from cnnkit.nn.norm import _BatchNorm

        for prefix, m in model.named_modules():
            if isinstance(m, _BatchNorm) and m.weight is not None:
                self.bn_modules[id(m.weight)] = (prefix, m)

    # ------------------------------------------------------------------ naming
    def fresh(self, base: str) -> str:
        while True:
            self.counter += 1
            name = f"{base}_{self.counter}"
            if name not in self.used:
                self.used.add(name)
                return name

    def initializer(self, array: np.ndarray, name: str | None = None, base: str = "const") -> str:
        if name is None or name in self.used:
            name = self.fresh(base)
        self.used.add(name)
        self.inits.append(self.nph.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, array: Any, base: str = "const") -> str:
        """A float32 constant (the exported graph is float32 throughout)."""
        return self.initializer(np.asarray(array, dtype=np.float32), base=base)

    def ints(self, values: Sequence[int], base: str = "shape") -> str:
        return self.initializer(np.asarray(values, dtype=np.int64), base=base)

    def ref(self, t: Any) -> str:
        """The ONNX name of a graph tensor, a parameter or a constant operand."""
        if not isinstance(t, Tensor):
            return self.const(t)
        key = id(t)
        if key not in self.names:
            if t._ctx is not None:
                raise RuntimeError("export_onnx: internal error, a node was visited too early")
            pname = self.param_names.get(key)
            if pname is not None:
                self.names[key] = self.initializer(np.asarray(t.array, np.float32), pname)
            else:
                self.names[key] = self.const(t.array)
        return self.names[key]

    def node(self, op: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        out = out if out is not None else self.fresh(op)
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    # ------------------------------------------------------------------ the walk
    def emit(self, t: Tensor, out: str | None) -> None:
        fn = t._ctx
        emitter = _EMITTERS.get(type(fn))
        if emitter is None:
            raise NotImplementedError(
                f"export_onnx: the operation {type(fn).__name__} "
                f"({type(fn).__module__}.{type(fn).__qualname__}) has no ONNX conversion"
            )
        self.names[id(t)] = emitter(self, fn, t, fn.params, out)


# ---------------------------------------------------------------------- emitters
Emitter = Callable[[_Builder, Function, Tensor, dict[str, Any], str | None], str]


def _onnx_pads(p: Sequence[int]) -> list[int]:
    """cnnkit's ``(top, bottom, left, right)`` as ONNX's ``[top, left, bottom, right]``."""
    return [int(p[0]), int(p[2]), int(p[1]), int(p[3])]


def _emit_conv(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    x, w, bias = fn.parents
    ins = [b.ref(x), b.ref(w)] + ([b.ref(bias)] if bias is not None else [])
    geom = kw["geom"]
    return b.node(
        "Conv",
        ins,
        out,
        kernel_shape=list(w.shape[2:]),
        strides=list(geom.stride),
        pads=_onnx_pads(geom.pads),
        dilations=list(geom.dilation),
        group=int(geom.groups),
    )


def _emit_lc(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    """im2col as a grouped Conv with a one-hot kernel bank, then one batched MatMul with
    the per-position weights: ``(P, N, K) @ (P, K, OC)``."""
    x, w, bias = fn.parents
    oh, ow, oc, c, kh, kw_ = w.shape
    k, p = c * kh * kw_, oh * ow
    bank = np.zeros((c, kh, kw_, 1, kh, kw_), dtype=np.float32)
    for i in range(kh):
        for j in range(kw_):
            bank[:, i, j, 0, i, j] = 1.0
    cols = b.node(
        "Conv",
        [b.ref(x), b.const(bank.reshape(k, 1, kh, kw_), "im2col_kernel")],
        kernel_shape=[kh, kw_],
        strides=list(kw["stride"]),
        pads=_onnx_pads(kw["pads"]),
        group=c,
    )  # (N, C*KH*KW, OH, OW), channel order (c, i, j) as the weight's last three axes
    cols = b.node("Reshape", [cols, b.ints([0, k, p])])
    cols = b.node("Transpose", [cols], perm=[2, 0, 1])  # (P, N, K)
    wm = b.node("Reshape", [b.ref(w), b.ints([p, oc, k])])
    wm = b.node("Transpose", [wm], perm=[0, 2, 1])  # (P, K, OC)
    y = b.node("MatMul", [cols, wm])  # (P, N, OC)
    y = b.node("Transpose", [y], perm=[1, 2, 0])  # (N, OC, P)
    if bias is None:
        return b.node("Reshape", [y, b.ints([0, oc, oh, ow])], out)
    y = b.node("Reshape", [y, b.ints([0, oc, oh, ow])])
    return b.node("Add", [y, b.ref(bias)], out)


def _pool_input(
    b: _Builder, x: Tensor, kernel: Sequence[int], pads: Sequence[int], fill: float
) -> tuple[str, list[int]]:
    """ONNX Runtime wants pool padding smaller than the kernel: pad explicitly otherwise."""
    if max(pads[0], pads[1]) < kernel[0] and max(pads[2], pads[3]) < kernel[1]:
        return b.ref(x), _onnx_pads(pads)
    top, bottom, left, right = (int(v) for v in pads)
    padded = b.node(
        "Pad", [b.ref(x), b.ints([0, 0, top, left, 0, 0, bottom, right]), b.const(fill)]
    )
    return padded, [0, 0, 0, 0]


def _check_pool_size(where: str, x: Tensor, t: Tensor, kw: dict, dilation: Sequence[int]) -> None:
    h, w = x.shape[2:]
    geom = kw["geom"]
    k, s, p = geom.kernel, geom.stride, geom.pads
    got = tuple(
        (size + p[2 * i] + p[2 * i + 1] - dilation[i] * (k[i] - 1) - 1) // s[i] + 1
        for i, size in enumerate((h, w))
    )
    if got != tuple(t.shape[2:]):
        raise NotImplementedError(
            f"export_onnx: {where} with this padding/ceil_mode gives {got} as an ONNX pool "
            f"but {tuple(t.shape[2:])} in cnnkit"
        )


def _emit_maxpool(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    (x,) = fn.parents
    geom = kw["geom"]
    _check_pool_size("MaxPool2d", x, t, kw, geom.dilation)
    src, pads = _pool_input(b, x, geom.kernel, geom.pads, -np.inf)
    return b.node(
        "MaxPool",
        [src],
        out,
        kernel_shape=list(geom.kernel),
        strides=list(geom.stride),
        pads=pads,
        dilations=list(geom.dilation),
        ceil_mode=0,
    )


def _emit_avgpool(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    """AveragePool over windows that all lie inside the explicitly padded input (so ONNX
    divides by KH*KW everywhere), then a per-position correction to cnnkit's divisor."""
    (x,) = fn.parents
    geom = kw["geom"]
    k, s, pads, out_hw = geom.kernel, geom.stride, geom.pads, geom.out_hw
    _check_pool_size("AvgPool2d", x, t, kw, (1, 1))
    if kw.get("divisor_override") is not None:
        raise NotImplementedError(
            "export_onnx: AvgPool2d with divisor_override has no ONNX AveragePool equivalent"
        )
    h, w = x.shape[2:]
    include = bool(kw["count_include_pad"])
    dh = pool._avg_divisor(h, k[0], s[0], pads[0], out_hw[0], include)
    dw = pool._avg_divisor(w, k[1], s[1], pads[2], out_hw[1], include)
    divisor = np.outer(dh, dw)
    src, onnx_pads = _pool_input(b, x, k, pads, 0.0)
    attrs = {"kernel_shape": list(k), "strides": list(s), "pads": onnx_pads, "ceil_mode": 0}
    full = float(k[0] * k[1])
    if np.all(divisor == full):
        return b.node("AveragePool", [src], out, count_include_pad=1, **attrs)
    if not include and any(onnx_pads):
        # ONNX counts the non-pad elements of each window, which is PyTorch's rule
        return b.node("AveragePool", [src], out, count_include_pad=0, **attrs)
    y = b.node("AveragePool", [src], count_include_pad=1, **attrs)
    return b.node("Mul", [y, b.const(full / divisor, "avgpool_divisor")], out)


def _emit_adaptive(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    x, ah, aw = fn.parents
    h, w = x.shape[2:]
    oh, ow = t.shape[2:]
    if oh == 1 and ow == 1:
        return b.node("GlobalAveragePool", [b.ref(x)], out)
    if h % oh == 0 and w % ow == 0:
        kern = [h // oh, w // ow]
        return b.node("AveragePool", [b.ref(x)], out, kernel_shape=kern, strides=kern)
    # general windows: the same two averaging matrices cnnkit multiplies by
    y = b.node("MatMul", [b.ref(x), b.const(np.asarray(aw).T, "adaptive_w")])
    return b.node("MatMul", [b.const(ah, "adaptive_h"), y], out)


def _emit_linear(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    x, w, bias = fn.parents
    if x.ndim == 2:
        ins = [b.ref(x), b.ref(w)] + ([b.ref(bias)] if bias is not None else [])
        return b.node("Gemm", ins, out, transB=1)
    wt = b.node("Transpose", [b.ref(w)], perm=[1, 0])
    if bias is None:
        return b.node("MatMul", [b.ref(x), wt], out)
    y = b.node("MatMul", [b.ref(x), wt])
    return b.node("Add", [y, b.ref(bias)], out)


def _emit_batchnorm(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    x, gamma, beta = fn.parents
    if kw.get("relu"):  # BatchNorm fused with the ReLU after it: two ONNX nodes
        y = _emit_batchnorm(b, fn, t, {**kw, "relu": False}, None)
        return b.node("Relu", [y], out)
    if kw.get("batch_stats", True):
        raise NotImplementedError(
            "export_onnx: BatchNorm with batch statistics (training mode or "
            "track_running_stats=False) cannot be exported; call model.eval() and keep "
            "running statistics"
        )
    mean = np.asarray(kw["mean"], np.float64)
    invstd = np.asarray(kw["invstd"], np.float64)
    c = x.shape[1]
    found = b.bn_modules.get(id(gamma)) if gamma is not None else None
    if found is not None:
        prefix, m = found
        rm, rv = m.running_mean.array.astype(np.float64), m.running_var.array.astype(np.float64)
        same = np.allclose(rm, mean, rtol=1e-6, atol=1e-7) and np.allclose(
            1.0 / np.sqrt(rv + m.eps), invstd, rtol=1e-5, atol=0
        )
        if same:
            pre = f"{prefix}." if prefix else ""
            shift = b.ref(beta) if beta is not None else b.const(np.zeros(c), "bn_beta")
            ins = [b.ref(x), b.ref(gamma), shift]
            mean_name = b.initializer(rm.astype(np.float32), f"{pre}running_mean")
            var_name = b.initializer(rv.astype(np.float32), f"{pre}running_var")
            return b.node(
                "BatchNormalization", [*ins, mean_name, var_name], out, epsilon=float(m.eps)
            )
    # no module to read eps from: fold eps into the variance, 1 / invstd^2
    scale = b.ref(gamma) if gamma is not None else b.const(np.ones(c), "bn_scale")
    shift = b.ref(beta) if beta is not None else b.const(np.zeros(c), "bn_shift")
    ins = [b.ref(x), scale, shift, b.const(mean, "bn_mean"), b.const(1.0 / invstd**2, "bn_var")]
    return b.node("BatchNormalization", ins, out, epsilon=0.0)


def _emit_add_relu(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    x, y = fn.parents
    return b.node("Relu", [b.node("Add", [b.ref(x), b.ref(y)])], out)


def _unary(op: str, **attrs: Any) -> Emitter:
    def emit(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
        return b.node(op, [b.ref(fn.parents[0])], out, **attrs)

    return emit


def _binary(op: str) -> Emitter:
    def emit(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
        x, y = fn.parents
        return b.node(op, [b.ref(x), b.ref(y)], out)

    return emit


def _emit_leaky(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    slope = float(kw.get("negative_slope", 0.01))
    return b.node("LeakyRelu", [b.ref(fn.parents[0])], out, alpha=slope)


def _emit_softmax(op: str) -> Emitter:
    def emit(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
        return b.node(op, [b.ref(fn.parents[0])], out, axis=int(kw["dim"]))

    return emit


def _emit_reshape(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    (x,) = fn.parents
    target = [int(v) for v in t.shape]
    if b.dynamic and target and x.ndim and target[0] == x.shape[0] == b.batch:
        target[0] = 0  # ONNX Reshape: 0 copies the (batch) dimension of the input
    return b.node("Reshape", [b.ref(x), b.ints(target)], out)


def _emit_permute(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    (x,) = fn.parents
    dims = [int(d) % max(x.ndim, 1) for d in kw["dims"]]
    return b.node("Transpose", [b.ref(x)], out, perm=dims)


def _emit_cat(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    ins = [b.ref(p) for p in fn.parents]
    axis = int(kw.get("dim", 0)) % t.ndim
    return b.node("Concat", ins, out, axis=axis)


def _emit_clamp(b: _Builder, fn: Function, t: Tensor, kw: dict, out: str | None) -> str:
    lo, hi = kw.get("lo"), kw.get("hi")
    ins = [b.ref(fn.parents[0]), b.const(lo) if lo is not None else ""]
    if hi is not None:
        ins.append(b.const(hi))
    return b.node("Clip", ins, out)


_EMITTERS: dict[type, Emitter] = {
    conv.Conv2d: _emit_conv,
    conv.LocallyConnected2d: _emit_lc,
    pool.MaxPool2d: _emit_maxpool,
    pool.AvgPool2d: _emit_avgpool,
    pool.AdaptiveAvgPool2d: _emit_adaptive,
    linear.Linear: _emit_linear,
    norm.BatchNorm: _emit_batchnorm,
    activation.ReLU: _unary("Relu"),
    activation.AddReLU: _emit_add_relu,
    activation.LeakyReLU: _emit_leaky,
    activation.Sigmoid: _unary("Sigmoid"),
    activation.Tanh: _unary("Tanh"),
    activation.Softmax: _emit_softmax("Softmax"),
    activation.LogSoftmax: _emit_softmax("LogSoftmax"),
    arith.Add: _binary("Add"),
    arith.Sub: _binary("Sub"),
    arith.Mul: _binary("Mul"),
    arith.Div: _binary("Div"),
    arith.Pow: _binary("Pow"),
    arith.MatMul: _binary("MatMul"),
    arith.Neg: _unary("Neg"),
    arith.Exp: _unary("Exp"),
    arith.Log: _unary("Log"),
    arith.Sqrt: _unary("Sqrt"),
    arith.Abs: _unary("Abs"),
    arith.Clamp: _emit_clamp,
    shape.Reshape: _emit_reshape,
    shape.Permute: _emit_permute,
    shape.Cat: _emit_cat,
}


# ---------------------------------------------------------------------- entry point
def export_onnx(
    model: Any,
    path: str | Path,
    input_size: Sequence[int],
    opset: int = 17,
    input_name: str = "input",
    output_name: str = "output",
    dynamic_batch: bool = True,
) -> Path:
    """Write ``model`` as an ONNX file traced on a float32 input of shape ``input_size``.

    Parameters
    ----------
    model : Module
        Put in evaluation mode for the trace (its mode and the parameters'
        ``requires_grad`` flags are restored afterwards).
    path : str or Path
        Destination, written atomically after ``onnx.checker.check_model`` passed.
    input_size : sequence of int
        Shape of the example input, batch included (as in :func:`cnnkit.summary`),
        e.g. ``(1, 1, 28, 28)``.
    opset : int
        ONNX opset (13 or newer).
    input_name, output_name : str
        Names of the graph's input and output.
    dynamic_batch : bool
        Make the first dimension symbolic (``"batch"``) so any batch size runs.

    Returns
    -------
    Path to the written file.

    Raises
    ------
    ImportError
        When ``onnx`` is not installed (``pip install cnnkit[onnx]``).
    NotImplementedError
        For an operation with no ONNX conversion (the message names its Function).
    """
    onnx = _import_onnx()
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= int(opset) <= newest:
        raise ValueError(
            f"export_onnx: opset must be between {MIN_OPSET} and {newest}; got {opset}"
        )
    if input_name == output_name:
        raise ValueError("export_onnx: input_name and output_name must differ")
    size = tuple(int(s) for s in input_size)
    if not size or min(size) < 1:
        raise ValueError(f"export_onnx: input_size must be positive ints; got {input_size!r}")

    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    was_training = [(m, m.training) for m in model.modules()]
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal(size).astype(np.float32), requires_grad=True)
    try:
        model.eval()
        for p in params:
            p.requires_grad_(True)
        with enable_grad(), serial():  # op by op: no batch split into one graph node
            y = model(x)
        if not isinstance(y, Tensor):
            raise TypeError(
                f"export_onnx: the model must return one Tensor; got {type(y).__name__}"
            )
        b = _Builder(onnx, model, x, input_name, dynamic_batch)
        b.used.add(output_name)
        for t in _topological_order(y, every_parent=True):
            if t._ctx is not None:
                b.emit(t, output_name if t is y else None)
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad = f
        for m, mode in was_training:
            object.__setattr__(m, "training", mode)

    if y is x:
        b.node("Identity", [input_name], output_name)
    elif y._ctx is None:
        b.node("Identity", [b.ref(y)], output_name)
    helper, tp = onnx.helper, onnx.TensorProto

    def dims(shape_: tuple[int, ...]) -> list[Any]:
        out: list[Any] = list(shape_)
        if dynamic_batch and out and out[0] == size[0]:
            out[0] = "batch"
        return out

    graph = helper.make_graph(
        b.nodes,
        "cnnkit",
        [helper.make_tensor_value_info(input_name, tp.FLOAT, dims(size))],
        [helper.make_tensor_value_info(output_name, tp.FLOAT, dims(tuple(y.shape)))],
        initializer=b.inits,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", int(opset))],
        producer_name="cnnkit",
        doc_string=f"exported from {type(model).__name__}",
    )
    onnx.checker.check_model(proto, full_check=True)
    return atomic_write_bytes(path, proto.SerializeToString())


__all__ = ["export_onnx"]
