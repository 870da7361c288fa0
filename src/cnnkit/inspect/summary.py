"""Model summary: output shapes, parameters, receptive fields, MACs and memory.

Receptive-field arithmetic per layer with kernel ``k``, stride ``s``, padding ``p``
and dilation ``d`` (effective kernel ``k' = d (k - 1) + 1``), from the input side:
``r_out = r_in + (k' - 1) j_in``, ``j_out = j_in s``,
``start_out = start_in + ((k' - 1) / 2 - p) j_in``.
Two 5x5 convolutions see 9x9 input pixels; a 2x2/2 pool after them 10x10. Where
branches merge (Inception, residual sums), the larger field wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit import nn
from cnnkit.backend import meta_array
from cnnkit.tensor import Tensor


@dataclass(frozen=True)
class Field:
    """Receptive field of one feature-map position: size, jump (effective stride), start."""

    size: tuple[float, float]
    jump: tuple[float, float]
    start: tuple[float, float]

    def merge(self, other: Field) -> Field:
        """Field of a merge of two branches: the larger one wins (max over DAG paths)."""
        return Field(
            tuple(max(a, b) for a, b in zip(self.size, other.size, strict=True)),
            tuple(max(a, b) for a, b in zip(self.jump, other.jump, strict=True)),
            tuple(min(a, b) for a, b in zip(self.start, other.start, strict=True)),
        )

    def through(self, k: Sequence[int], s: Sequence[int], p: Sequence[int], d: Sequence[int]):
        """Field after a sliding-window layer."""
        size, jump, start = [], [], []
        for i in range(2):
            keff = d[i] * (k[i] - 1) + 1
            size.append(self.size[i] + (keff - 1) * self.jump[i])
            start.append(self.start[i] + ((keff - 1) / 2 - p[i]) * self.jump[i])
            jump.append(self.jump[i] * s[i])
        return Field(tuple(size), tuple(jump), tuple(start))


@dataclass
class LayerRow:
    """One row of a summary (a leaf layer)."""

    name: str
    layer: str
    output_shape: tuple[int, ...]
    params: int
    trainable: int
    receptive_field: tuple[int, int] | None
    jump: tuple[int, int] | None
    start: tuple[float, float] | None
    macs: int
    activation_bytes: int


@dataclass(repr=False)
class Summary:
    """A model's table: see :func:`summary`. ``print(s)``, ``str(s)`` and ``repr(s)`` (what
    a REPL or notebook shows for a bare ``ck.summary(...)``) all give the table."""

    model_name: str
    input_size: tuple[int, ...]
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    total_macs: int
    param_bytes: int
    activation_bytes: int
    workspace_bytes: int
    dtype: str = "float32"
    notes: list[str] = field(default_factory=list)

    @property
    def training_bytes(self) -> int:
        """Parameters + their gradients + activations kept for backward and their gradients."""
        return 2 * self.param_bytes + 2 * self.activation_bytes + self.workspace_bytes

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython
        printer.text(str(self))

    def __str__(self) -> str:
        head = ["Layer (type)", "Output shape", "Param #", "RF", "Jump", "MACs"]
        body = []
        for r in self.rows:
            rf = f"{r.receptive_field[0]}x{r.receptive_field[1]}" if r.receptive_field else "-"
            jp = f"{r.jump[0]}x{r.jump[1]}" if r.jump else "-"
            body.append(
                [
                    f"{r.name} ({r.layer})" if r.name else r.layer,
                    str(tuple(r.output_shape)),
                    f"{r.params:,}",
                    rf,
                    jp,
                    f"{r.macs:,}",
                ]
            )
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
                  for i, h in enumerate(head)]  # fmt: skip
        right = {2, 5}

        def line(cells: list[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        rule = "=" * len(line(head))
        out = [f"{self.model_name} on input {tuple(self.input_size)} ({self.dtype})", rule]
        out += [line(head), "-" * len(rule)]
        out += [line(b) for b in body]
        out += [
            rule,
            f"Total params:          {self.total_params:,}",
            f"Trainable params:      {self.trainable_params:,}",
            f"Non-trainable params:  {self.total_params - self.trainable_params:,}",
            f"Total MACs:            {self.total_macs:,}",
            "-" * len(rule),
            f"Parameters:            {_mb(self.param_bytes)}",
            f"Activations (fwd+bwd): {_mb(2 * self.activation_bytes)}",
            f"im2col workspace:      {_mb(self.workspace_bytes)}",
            f"Training estimate:     {_mb(self.training_bytes)}"
            " (params + grads + activations + their grads + workspace)",
            rule,
        ]
        out += self.notes
        return "\n".join(out)


def _mb(n: int) -> str:
    """Bytes as MB with thousands separators."""
    return f"{n / 1e6:,.2f} MB ({n:,} bytes)"


def _pair(v: Any) -> tuple[int, int]:
    """An int or pair as a pair."""
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _geometry(m: nn.Module, in_shape: tuple[int, ...]) -> tuple | None:
    """(kernel, stride, padding, dilation) pairs of a sliding-window layer, else None."""
    if not hasattr(m, "kernel_size") or isinstance(m, nn.Linear):
        if type(m).__name__ == "AdaptiveAvgPool2d":
            out = _pair(m.output_size if m.output_size is not None else 1)
            h, w = in_shape[-2:]
            k = (-(-h // out[0]), -(-w // out[1]))
            return k, (h // out[0], w // out[1]), (0, 0), (1, 1)
        return None
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    d = _pair(getattr(m, "dilation", 1))
    pad = m.padding
    if isinstance(pad, str):
        pad = (
            (0, 0)
            if pad == "valid"
            else tuple((di * (ki - 1)) // 2 for ki, di in zip(k, d, strict=True))
        )
    return k, s, _pair(pad), d


def _macs(m: nn.Module, out_shape: tuple[int, ...], in_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of a layer for the whole batch."""
    name = type(m).__name__
    out_elems = int(np.prod(out_shape))
    if name == "Conv2d":
        k = _pair(m.kernel_size)
        return out_elems * (m.in_channels // m.groups) * k[0] * k[1]
    if name == "LocallyConnected2d":
        k = _pair(m.kernel_size)
        return out_elems * m.in_channels * k[0] * k[1]
    if name == "Linear":
        return out_elems * m.in_features
    return 0


def _workspace(m: nn.Module, out_shape: tuple[int, ...], itemsize: int) -> int:
    """Bytes of the im2col buffer a convolution needs for the whole batch."""
    if type(m).__name__ not in ("Conv2d", "LocallyConnected2d"):
        return 0
    k = _pair(m.kernel_size)
    groups = getattr(m, "groups", 1)
    n, _, oh, ow = out_shape
    return n * oh * ow * (m.in_channels // groups) * k[0] * k[1] * itemsize


def _own_params(m: nn.Module, flag_of: dict[int, bool]) -> tuple[int, int]:
    """(all, trainable) parameter counts of a module without its children; ``flag_of``
    holds each parameter's requires_grad from before the summary froze them."""
    total = trainable = 0
    for p in m.parameters(recurse=False):
        total += p.numel()
        trainable += p.numel() if flag_of.get(id(p), p.requires_grad) else 0
    return total, trainable


def summary(
    model: nn.Module,
    input_size: Sequence[int],
    dtype: Any = None,
) -> Summary:
    """Summarise ``model`` for an input of shape ``input_size`` (batch included).

    Runs one forward pass in eval mode with forward hooks on the leaf layers; the graph
    is recorded from the input only (parameters are frozen meanwhile) so that fields
    through merges of branches can be traced.

    Parameters
    ----------
    model : Module
    input_size : sequence of int
        ``(n, c, h, w)`` for image models (``(n, features)`` for an MLP).
    dtype : dtype, optional
        Input dtype (default: the model's parameter dtype).

    Returns
    -------
    Summary
        ``rows`` (name, layer, output_shape, params, trainable, receptive_field, jump,
        start, macs, activation_bytes), ``total_params``, ``total_macs`` and memory.
    """
    input_size = tuple(int(s) for s in input_size)
    params = list(model.parameters())
    if dtype is None:
        dtype = params[0].dtype if params else np.dtype(np.float32)
    dtype = np.dtype(dtype)
    x = Tensor(meta_array(input_size, dtype))  # shapes only: no values, no big allocations
    image = len(input_size) == 4
    fields: dict[int, Field] = {}
    if image:
        fields[id(x)] = Field((1.0, 1.0), (1.0, 1.0), (0.5, 0.5))
    full = Field((float(input_size[-2]), float(input_size[-1])), (1.0, 1.0), (0.5, 0.5)) \
        if image else None  # fmt: skip
    keep: list[Tensor] = [x]  # keep tensors alive so their ids stay unique
    rows: list[LayerRow] = []
    workspace = [0]
    names = {id(m): n for n, m in model.named_modules()}
    flag_of: dict[int, bool] = {}

    def field_of(t: Tensor) -> Field | None:
        # A tensor made outside a layer (a residual sum, a concat): merge its inputs' fields.
        if not image:
            return None
        stack, order, seen = [t], [], set()
        while stack:
            u = stack.pop()
            if id(u) in fields or id(u) in seen:
                continue
            seen.add(id(u))
            order.append(u)
            if u._ctx is not None:
                stack.extend(p for p in u._ctx.parents if isinstance(p, Tensor))
        for u in reversed(order):
            if u._ctx is None:
                continue
            parents = [fields[id(p)] for p in u._ctx.parents if id(p) in fields]
            if parents:
                f = parents[0]
                for g in parents[1:]:
                    f = f.merge(g)
                fields[id(u)] = f
        return fields.get(id(t))

    def hook(m: nn.Module, inputs: tuple, output: Any) -> None:
        inp = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
        in_shape = inp.shape if inp is not None else ()
        keep.append(output)
        fin = field_of(inp) if inp is not None else None
        f = None
        if fin is not None:
            geo = _geometry(m, in_shape)
            if type(m).__name__ == "AdaptiveAvgPool2d" and tuple(output.shape[-2:]) == (1, 1):
                f = full  # a global average: each output sees the whole input, no more
            elif geo is not None:
                f = fin.through(*geo)
            elif output.ndim == 4 and output.shape[-2:] == tuple(in_shape[-2:]):
                f = fin
            else:
                f = full
        if f is not None:
            fields[id(output)] = f
        total, trainable = _own_params(m, flag_of)
        rows.append(
            LayerRow(
                name=names.get(id(m), type(m).__name__),
                layer=type(m).__name__,
                output_shape=tuple(output.shape),
                params=total,
                trainable=trainable,
                receptive_field=(round(f.size[0]), round(f.size[1])) if f else None,
                jump=(round(f.jump[0]), round(f.jump[1])) if f else None,
                start=f.start if f else None,
                macs=_macs(m, output.shape, in_shape),
                activation_bytes=int(output.array.nbytes),
            )
        )
        workspace[0] = max(workspace[0], _workspace(m, output.shape, dtype.itemsize))

    leaves = [m for _, m in model.named_modules() if not any(True for _ in m.children())]
    if not leaves:
        leaves = [model]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    flags = [p.requires_grad for p in params]
    flag_of.update({id(p): f for p, f in zip(params, flags, strict=True)})
    try:
        model.eval()
        for p in params:
            p.requires_grad = False
        x.requires_grad = True  # record the graph so merges of branches can be traced
        model(x)
    finally:
        for h in handles:
            h.remove()
        for p, f in zip(params, flags, strict=True):
            p.requires_grad = f
        model.train(was_training)
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p, f in zip(params, flags, strict=True) if f)
    return Summary(
        model_name=type(model).__name__,
        input_size=input_size,
        rows=rows,
        total_params=total,
        trainable_params=trainable,
        total_macs=sum(r.macs for r in rows),
        param_bytes=sum(p.array.nbytes for p in params),
        activation_bytes=sum(r.activation_bytes for r in rows),
        workspace_bytes=workspace[0],
        dtype=str(dtype),
    )
