"""Functions (an op's forward and backward on raw arrays) and the graph walk.

A :class:`Function` subclass implements ``forward(*arrays, **params)`` returning an
array and ``backward(grad)`` returning one gradient per tensor input (``None`` where
``self.needs_input_grad[i]`` is False). Large buffers needed by backward go through
:meth:`Function.save_for_backward` so the engine can free them as soon as backward ran.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.backend import MetaArray, meta_array

if TYPE_CHECKING:
    from cnnkit.tensor import Tensor

_grad_enabled = True


def is_grad_enabled() -> bool:
    """Whether operations are being recorded for backward."""
    return _grad_enabled


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> None:
        global _grad_enabled
        self.prev = _grad_enabled
        _grad_enabled = self.enabled

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self.prev


def no_grad() -> _GradMode:
    """Context manager / decorator that disables graph recording (inference)."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Context manager / decorator that re-enables graph recording."""
    return _GradMode(True)


def set_grad_enabled(mode: bool) -> _GradMode:
    """Context manager that sets graph recording on or off."""
    return _GradMode(bool(mode))


class Function:
    """One differentiable op: ``forward`` and ``backward`` side by side on raw arrays.

    Use :meth:`apply` to run it on tensors. Inside ``forward``,
    ``self.needs_input_grad`` tells which tensor inputs need a gradient, so the op can
    skip saving what backward will not use; ``backward`` must return, for each tensor
    input, its gradient (same shape as that input) or ``None``.
    """

    __slots__ = ("__dict__", "needs_input_grad", "params", "parents", "saved", "versions")
    # inputs (by position) whose in-place change backward reports even when the op did
    # not keep them (to raise where PyTorch does)
    version_checked: tuple[int, ...] = ()

    def __init__(self) -> None:
        self.needs_input_grad: tuple[bool, ...] = ()
        self.parents: tuple[Tensor | None, ...] = ()
        self.params: dict[str, Any] = {}
        self.saved: tuple[Any, ...] | None = ()
        # in-place versions of the inputs (then of the output) when the node was recorded
        self.versions: list[int] = []

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep arrays for backward; the engine releases them right after backward ran."""
        self.saved = arrays

    def forward(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    def infer(self, *args: Any, **kwargs: Any) -> tuple[tuple[int, ...], np.dtype]:
        """Output ``(shape, dtype)`` for inputs on the 'meta' device (no values).

        The default runs ``forward`` on zeros of the input shapes; ops whose cost lies
        in large weights (linear, convolution) override it with shape arithmetic.
        """
        real = [np.zeros(a.shape, a.dtype) if isinstance(a, MetaArray) else a for a in args]
        out = self.forward(*real, **kwargs)
        return out.shape, out.dtype

    def backward(self, grad: np.ndarray) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Tensor:
        """Run the op on tensors (``None`` allowed for optional inputs such as a bias)."""
        from cnnkit.tensor import Tensor

        fn = cls()
        arrays = []
        needs = []
        counters = []
        meta = False
        for t in inputs:
            if isinstance(t, Tensor):
                data = t.array
                arrays.append(data)
                needs.append(t.requires_grad)
                counters.append(t._version)
                meta = meta or type(data) is MetaArray
            else:
                arrays.append(t)
                needs.append(False)
                counters.append(None)
        record = _grad_enabled and True in needs
        fn.needs_input_grad = tuple(needs) if record else (False,) * len(needs)
        if meta:
            if not isinstance(arrays[0], MetaArray):
                raise RuntimeError(
                    f"{cls.__name__}: parameters are on the 'meta' device (shapes only, no "
                    "values); build the model without device='meta' to run it on data"
                )
            fn.needs_input_grad = (False,) * len(needs)
            shape, dtype = fn.infer(*arrays, **params)
            fn.saved = None  # shapes only: backward is impossible
            result = Tensor._wrap(meta_array(shape, dtype), record)
            if record:
                fn.parents = inputs
                fn.params = params
                result._ctx = fn
            return result
        out = fn.forward(*arrays, **params)
        result = Tensor._wrap(out, record)
        base = getattr(out, "base", None)
        if base is not None:
            _share_version(result, base, inputs)
        if record:
            # in-place versions of the inputs and the output now (checked by backward)
            counters.append(result._version)
            fn.versions = [0 if c is None else c[0] for c in counters]
            fn.parents = inputs
            fn.params = params  # the op's settings, for graph readers such as the ONNX export
            result._ctx = fn
        return result

    @property
    def name(self) -> str:
        return type(self).__name__

    def release(self) -> None:
        """Drop saved buffers (called by the engine after backward)."""
        self.saved = None
        self.params = {}
        self.__dict__.clear()


def _share_version(result: Tensor, base: Any, inputs: tuple[Any, ...]) -> None:
    """A view of an input shares that input's version counter (as in PyTorch), so an
    in-place change through either is seen by the nodes that saved the other."""
    from cnnkit.tensor import Tensor

    for t in inputs:
        if isinstance(t, Tensor) and (t.array is base or t.array.base is base):
            if t._version is None:
                t._version = [0, ""]
            result._version = t._version
            return


def _saved_array_ids(ctx: Function) -> set[Any]:
    """Ids of the arrays (and of their owners) that ``ctx`` keeps for backward, and their
    ``(shape, dtype)`` (a parameter's array may have been rebound since the forward, e.g.
    into an optimizer's flat buffer)."""
    ids: set[Any] = set()
    items: list[Any] = list(ctx.saved or ())
    items.extend(ctx.__dict__.values())
    while items:
        a = items.pop()
        if isinstance(a, np.ndarray):
            ids.add(id(a))
            ids.add((a.shape, a.dtype.str))
            if a.base is not None:
                ids.add(id(a.base))
        elif isinstance(a, (tuple, list)):
            items.extend(a)
    return ids


def _check_versions(ctx: Function, out: Tensor) -> None:
    """Raise if a tensor whose values ``ctx`` saved was changed in place since the forward
    pass (PyTorch's version-counter check); changes to inputs it did not keep are fine."""
    vs = ctx.versions
    changed = []
    for i, t in enumerate(ctx.parents):
        c = getattr(t, "_version", None)
        if c is not None and c[0] != vs[i]:
            changed.append((i, t, c[0]))
    c = out._version
    if c is not None and c[0] != vs[-1]:
        changed.append((len(vs) - 1, out, c[0]))
    if not changed:
        return
    tensors = (*ctx.parents, out)
    saved = _saved_array_ids(ctx)
    for i, t, now in changed:
        arr = t.array
        rebound = t._ctx is None and t.requires_grad and (arr.shape, arr.dtype.str) in saved
        kept = i in ctx.version_checked or id(arr) in saved or rebound
        if kept or (arr.base is not None and id(arr.base) in saved):
            what = "its output" if i == len(tensors) - 1 else f"its input {i}"
            kind = "Parameter" if type(t).__name__ == "Parameter" else "Tensor"
            raise RuntimeError(
                "one of the tensors needed for gradient computation has been modified by an "
                f"inplace operation: {ctx.name} saved {what}, a {kind} of shape "
                f"{tuple(arr.shape)} and dtype {arr.dtype}, at version {ctx.versions[i]}; "
                f"{t._version[1] or 'an in-place op'} changed it to version {now} between "
                "forward and backward. Run backward() before changing it, or change a clone()"
            )


def _topological_order(root: Tensor, every_parent: bool = False) -> list[Tensor]:
    """Tensors reachable from ``root`` through recorded nodes, inputs before outputs.

    Only parents that require a gradient are followed, unless ``every_parent`` (then
    constant inputs are listed too, in argument order). Iterative depth-first search, so
    graph depth is limited by memory only.
    """
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        ctx = t._ctx
        if ctx is not None:
            if every_parent:
                parents: Any = reversed(ctx.parents)
            else:  # leaves onto the stack first: they finish last, so the backward walk
                # reaches a parameter right after the node that uses it (its gradient is
                # complete then; data-parallel training starts reducing it early)
                parents = sorted(ctx.parents, key=lambda p: getattr(p, "_ctx", None) is not None)
            for p in parents:
                if not hasattr(p, "_ctx") or id(p) in visited:
                    continue
                if every_parent or p.requires_grad:
                    stack.append((p, False))
    return order


def backward(root: Tensor, grad: np.ndarray, retain_graph: bool = False) -> None:
    """Backpropagate ``grad`` from ``root`` through the recorded DAG.

    Walks the tensors in reverse topological order; each node applies its local
    Jacobian to the incoming gradient, and gradients are summed where a tensor feeds
    several nodes. Leaves accumulate into ``.grad``. BLAS runs on one thread meanwhile
    (the ops spread their work over the cores themselves).
    """
    from cnnkit.functional._parallel import computing

    with computing():
        walk(root, grad, retain_graph)


# ------------------------------------------------------------- leaf gradient hooks
# id(leaf) -> (weak reference to the leaf, {handle id: hook}); kept outside Tensor so a
# tensor without hooks carries nothing. Data-parallel training (DDP) uses it to start a
# gradient bucket's allreduce as soon as the bucket's last gradient is complete.
_leaf_hooks: dict[int, tuple[weakref.ref, dict[int, Callable[[Tensor], None]]]] = {}
_next_hook_id = [0]


class HookHandle:
    """Returned by :meth:`Tensor.register_post_accumulate_grad_hook`; ``remove()`` it."""

    def __init__(self, key: int, hook_id: int) -> None:
        self.key, self.hook_id = key, hook_id

    def remove(self) -> None:
        entry = _leaf_hooks.get(self.key)
        if entry is not None:
            entry[1].pop(self.hook_id, None)
            if not entry[1]:
                _leaf_hooks.pop(self.key, None)


def register_post_accumulate_grad_hook(leaf: Tensor, hook: Callable[[Tensor], None]) -> HookHandle:
    """Call ``hook(leaf)`` during backward right after ``leaf.grad`` received this pass's
    gradient (complete: all of the graph's contributions to it were summed first).
    PyTorch's ``Tensor.register_post_accumulate_grad_hook``; hooks do not run in the
    per-core share walks of a split batch, only when the gradient reaches ``.grad``."""
    if leaf._ctx is not None:
        raise RuntimeError(
            "register_post_accumulate_grad_hook: post accumulate grad hooks cannot be "
            "registered on non-leaf tensors"
        )
    if not leaf.requires_grad:
        raise RuntimeError(
            "register_post_accumulate_grad_hook: the tensor does not require grad, so no "
            "gradient is ever accumulated into it"
        )
    key = id(leaf)
    entry = _leaf_hooks.get(key)
    if entry is None or entry[0]() is not leaf:
        ref = weakref.ref(leaf, lambda r, key=key, hooks=_leaf_hooks: _drop_hooks(hooks, key, r))
        entry = (ref, {})
        _leaf_hooks[key] = entry
    _next_hook_id[0] += 1
    entry[1][_next_hook_id[0]] = hook
    return HookHandle(key, _next_hook_id[0])


def _drop_hooks(hooks: dict, key: int, ref: weakref.ref) -> None:
    # the registry comes bound: at interpreter exit the module's globals may be gone
    entry = hooks.get(key)
    if entry is not None and entry[0] is ref:
        del hooks[key]


def _run_leaf_hooks(leaf: Tensor) -> None:
    entry = _leaf_hooks.get(id(leaf))
    if entry is not None and entry[0]() is leaf:
        for hook in list(entry[1].values()):
            hook(leaf)


_walking = threading.local()  # .retain: retain_graph of the backward pass in this thread


def retaining_graph() -> bool:
    """``retain_graph`` of the backward pass running in this thread (for ops that run a
    backward pass of their own, such as a batch split over the cores)."""
    return getattr(_walking, "retain", False)


def walk(
    root: Tensor,
    grad: np.ndarray,
    retain_graph: bool,
    sink: dict[int, tuple[Tensor, np.ndarray]] | None = None,
) -> None:
    """The backward pass from ``root``. With ``sink``, leaf gradients are collected there
    (``id(leaf) -> (leaf, gradient)``) instead of being added to ``.grad``."""
    prev = retaining_graph()
    _walking.retain = retain_graph
    try:
        _walk(root, grad, retain_graph, sink)
    finally:
        _walking.retain = prev


def _walk(
    root: Tensor,
    grad: np.ndarray,
    retain_graph: bool,
    sink: dict[int, tuple[Tensor, np.ndarray]] | None,
) -> None:
    from cnnkit.tensor import Tensor

    order = _topological_order(root)
    grads: dict[int, np.ndarray] = {id(root): grad}
    for t in reversed(order):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        ctx = t._ctx
        if sink is not None and ctx is None:
            prev_g = sink.get(id(t))
            sink[id(t)] = (t, g if prev_g is None else prev_g[1] + g)
        elif ctx is None or t._retains_grad:
            if t.grad is None:
                t.grad = Tensor._wrap(g, False)
            else:
                t.grad = Tensor._wrap(t.grad.array + g, False)
            if ctx is None and _leaf_hooks:
                _run_leaf_hooks(t)
        if ctx is None:
            continue
        if ctx.saved is None:
            if isinstance(t.array, MetaArray):
                raise RuntimeError(
                    f"backward through {ctx.name}: tensors on the 'meta' device have no "
                    "values to differentiate"
                )
            raise RuntimeError(
                f"backward through {ctx.name} a second time: its saved buffers were freed; "
                "pass retain_graph=True to the first backward() to keep them"
            )
        if ctx.versions:
            _check_versions(ctx, t)
        in_grads = ctx.backward(g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        for p, need, pg in zip(ctx.parents, ctx.needs_input_grad, in_grads, strict=False):
            if not need or pg is None:
                continue
            if pg.shape != p.array.shape:
                raise RuntimeError(
                    f"{ctx.name}.backward returned a gradient of shape {pg.shape} "
                    f"for an input of shape {p.array.shape}"
                )
            key = id(p)
            prev = grads.get(key)
            grads[key] = pg if prev is None else prev + pg
        if not retain_graph:
            ctx.release()
            ctx.parents = ()


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` back to ``shape`` after NumPy broadcasting (the one rule for it)."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def iter_graph(root: Tensor) -> Iterator[Function]:
    """Yield the recorded Functions reachable from ``root`` (outputs first)."""
    for t in reversed(_topological_order(root)):
        if t._ctx is not None:
            yield t._ctx


def Variable(data: Any, requires_grad: bool = False, volatile: bool = False) -> Any:
    """PyTorch's deprecated ``autograd.Variable(tensor)`` of pre-0.4 scripts: a tensor
    sharing ``data``'s values, detached from its graph, with ``requires_grad`` as given."""
    from cnnkit.tensor import Tensor

    if not isinstance(data, Tensor):
        raise TypeError(f"Variable(): expected a Tensor, got {type(data).__name__}")
    out = data.detach()
    return out.requires_grad_(True) if requires_grad else out
