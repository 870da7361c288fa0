"""How cnnkit runs a module call: the compute scope and the whole-model batch split.

Everything here is explicit machinery around the maths, kept out of ``Module``:

- **The compute scope** (:func:`computing`): while cnnkit computes (a module call on a
  batch, a backward pass, one chunked op) BLAS is held at one thread, because cnnkit's own
  worker threads spread the work over the cores, and, if asked
  (``set_runtime(malloc_tuning=True)``), glibc's allocator keeps freed large blocks for
  reuse (:func:`cnnkit.backend.malloc_tuned`). Both are undone when the outermost scope
  ends, so the host program never sees them. ``ck.tune_malloc()`` applies the allocator
  settings to the whole process instead (the fastest; only when called).
- **The batch split** (:func:`call_module`): when every module inside treats samples
  independently (no batch statistics, nothing hooked), each core runs the whole module on
  its own share of the batch, with no hand-over between threads inside the network.
  Inference concatenates the shares' outputs. With graph recording the split is one node
  of the graph (:class:`BatchShares`) whose backward runs each share's backward pass in
  its own thread and returns the summed gradients like any other op.

:func:`set_runtime` switches each part on or off for the process (the environment
variables ``CNNKIT_MALLOC_TUNING=1``, ``CNNKIT_BLAS_PINNING=0`` and ``CNNKIT_BATCH_SPLIT=0``
set the defaults).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.autograd import Function, is_grad_enabled, retaining_graph, walk
from cnnkit.backend import is_meta
from cnnkit.functional import _parallel as parallel
from cnnkit.functional._parallel import computing, set_runtime
from cnnkit.tensor import Tensor

__all__ = ["BatchShares", "call_module", "computing", "set_runtime"]

SPLIT_MIN = 1 << 15  # input elements under which a batch is not worth splitting


def call_module(module: Any, args: tuple, kwargs: dict) -> Any:
    """``module.forward(*args, **kwargs)`` inside the compute scope, split over the cores
    when the input is a batch that :func:`splittable` allows (otherwise run as is)."""
    data = args[0].array if args and isinstance(args[0], Tensor) else None
    if data is None or data.ndim not in (2, 4) or data.shape[0] <= 1:
        # one sample (a 3-D input may be one unbatched image): nothing is split, and BLAS
        # keeps its threads for the products
        return module.forward(*args, **kwargs)
    with computing():
        if len(args) == 1 and not kwargs and splittable(module, args[0]):
            return split_forward(module, args[0])
        return module.forward(*args, **kwargs)


def splittable(module: Any, x: Tensor) -> bool:
    """A batch through a module with children that all treat samples independently
    and have no hooks: each core can run the whole model on its share of the batch
    (measured: CIFAR-net inference 33 -> 28 ms, LeNet-5 3.5 -> 2.2 ms). A leaf module
    (one op) is not split: its op splits its own work where that pays."""
    if not parallel.runtime_setting("batch_split") or is_meta(x.array):
        return False
    if not any(True for _ in module.children()):
        # one op (a Conv2d, a ReLU): it splits its own work where that pays (measured
        # thresholds); shares would only add a graph per share and GIL hand-overs
        return False
    nwork = parallel.workers()
    if nwork < 2 or x.shape[0] < 2 * nwork or x.array.size < SPLIT_MIN:
        return False
    return all(
        m._per_sample() and (m is module or not (m._forward_hooks or m._forward_pre_hooks))
        for m in module.modules()
    )


def split_forward(module: Any, x: Tensor) -> Tensor:
    """``module.forward`` on one share of the batch per core."""
    try:
        if is_grad_enabled():
            return split_training(module, x)
        return split_inference(module, x)
    except Exception as share_error:
        error = share_error
    # a share's error names the share's shape: run the whole batch in this thread to
    # raise it as the caller sees it (the same cause fails again)
    with parallel.serial():
        module.forward(x)
    raise error


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
