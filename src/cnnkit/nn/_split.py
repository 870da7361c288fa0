"""A batch split over the cores at the level of a whole module.

When every module inside treats samples independently (no batch statistics, nothing
hooked), each core can run the module on its own share of the batch from start to end:
no hand-over between threads inside the network, and every elementwise pass runs on all
cores. Inference just concatenates the shares' outputs. With graph recording, the split
is one node of the graph (:class:`BatchShares`) whose backward runs each share's backward
pass in its own thread and returns the summed gradients like any other op.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.autograd import Function, retaining_graph, walk
from cnnkit.functional import _parallel as parallel
from cnnkit.tensor import Tensor


def _check_batched(module: Any, outs: list[Tensor], bounds: list[tuple[int, int]]) -> None:
    for out, (a, z) in zip(outs, bounds, strict=True):
        if not (isinstance(out, Tensor) and out.ndim and out.shape[0] == z - a):
            raise RuntimeError(
                f"{type(module).__name__}: marked as treating samples independently, but "
                f"its output for {z - a} samples is not a batch of {z - a}"
            )


def split_inference(module: Any, x: Tensor) -> Tensor:
    """``module.forward`` on one share of ``x`` per core, outputs concatenated."""
    bounds = parallel.shares(x.shape[0])
    outs = parallel.run_shares(len(bounds), lambda i: module.forward(x[slice(*bounds[i])]))
    _check_batched(module, outs, bounds)
    return Tensor._wrap(np.concatenate([o.array for o in outs]), False)


def split_training(module: Any, x: Tensor) -> Tensor:
    """The same with graph recording: one :class:`BatchShares` node."""
    params = [p for p in module.parameters() if p.requires_grad]
    return BatchShares.apply(x, *params, module=module, params=params)


class BatchShares(Function):
    """``module.forward`` on one share of the batch per core, recorded per share.

    Forward: each worker runs the module on ``x[a:z]`` as a fresh leaf, so each share has
    a graph of its own whose leaves are that input and the module's parameters. Backward:
    each worker runs its share's backward pass with the leaf gradients collected rather
    than stored; the input gradient is the shares' gradients concatenated, a parameter's
    gradient their sum (the gradient of the whole batch).
    """

    def forward(self, x: np.ndarray, *_arrays: np.ndarray, module: Any, params: list) -> np.ndarray:
        needs_x = bool(self.needs_input_grad and self.needs_input_grad[0])
        bounds = parallel.shares(len(x))

        def share(i: int) -> tuple[Tensor, Tensor]:
            xs = Tensor._wrap(x[slice(*bounds[i])], needs_x)  # the share's graph stops here
            return xs, module.forward(xs)

        pairs = parallel.run_shares(len(bounds), share)
        _check_batched(module, [out for _, out in pairs], bounds)
        self.pairs, self.bounds, self.tensors = pairs, bounds, params
        return np.concatenate([out.array for _, out in pairs])

    def backward(self, grad: np.ndarray) -> tuple:
        retain = retaining_graph()

        def share(i: int) -> dict:
            out = self.pairs[i][1]
            sink: dict[int, tuple[Tensor, np.ndarray]] = {}
            if out.requires_grad:
                walk(out, grad[slice(*self.bounds[i])], retain, sink)
            return sink

        sinks = parallel.run_shares(len(self.pairs), share)
        dx = None
        if self.needs_input_grad[0]:
            parts = []
            for (xs, _), sink in zip(self.pairs, sinks, strict=True):
                got = sink.get(id(xs))
                parts.append(got[1] if got is not None else np.zeros_like(xs.array))
            dx = np.concatenate(parts)
        dparams = []
        for p in self.tensors:
            found = [sink[id(p)][1] for sink in sinks if id(p) in sink]
            total = found[0] if found else None
            for extra in found[1:]:
                total = total + extra
            dparams.append(total)
        if not retain:
            self.pairs = None
        return (dx, *dparams)
