"""Finite-difference gradient checks for Functions, compositions of ops and whole models.

:func:`gradcheck` builds two Jacobians of ``fn`` at ``inputs`` and compares them entry by
entry:

* analytic: one backward pass per output element with a one-hot upstream gradient, so
  row ``j`` of ``J`` is the gradient of output element ``j`` w.r.t. every input;
* numeric: column ``k`` by central differences,
  ``J[:, k] = (f(x + eps e_k) - f(x - eps e_k)) / (2 eps)``, whose error is
  ``O(eps^2)`` truncation plus ``O(ulp / eps)`` rounding — hence float64 only.

An entry passes when ``|analytic - numeric| <= atol + rtol |numeric|``.

:func:`gradcheck_module` runs the check on every leaf layer of a model, w.r.t. the
layer's input (captured with forward hooks during one forward pass) and each of its
parameters.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cnnkit.autograd import enable_grad, no_grad
from cnnkit.tensor import Tensor

__all__ = ["GradcheckError", "gradcheck", "gradcheck_module"]


class GradcheckError(AssertionError):
    """The analytic gradient of an op disagrees with its finite-difference estimate."""


def _as_list(inputs: Any) -> list[Any]:
    if isinstance(inputs, Tensor):
        return [inputs]
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    return [inputs]


def _outputs(out: Any) -> list[Tensor]:
    """The floating-point tensors among ``fn``'s outputs (integer ones carry no gradient)."""
    items = _as_list(out)
    tensors = [t for t in items if isinstance(t, Tensor) and t.dtype.kind == "f"]
    if not tensors:
        raise TypeError(
            f"gradcheck: fn must return a floating-point Tensor or a tuple of them; "
            f"got {type(out).__name__}"
        )
    return tensors


def _flat_output(fn: Callable[..., Any], inputs: list[Any]) -> np.ndarray:
    with no_grad():
        outs = _outputs(fn(*inputs))
    return np.concatenate([np.asarray(o.array, dtype=np.float64).ravel() for o in outs])


def _label(i: int, names: Sequence[str] | None) -> str:
    if names is not None and i < len(names) and names[i]:
        return f"input {i} ({names[i]!r})"
    return f"input {i}"


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(v) for v in np.unravel_index(flat, shape)) if shape else ()


def _analytic(
    fn: Callable[..., Any],
    inputs: list[Any],
    check: list[int],
    fast_mode: bool | None,
    max_outputs: int,
    n_proj: int,
    seed: int,
) -> tuple[list[np.ndarray], list[tuple[int, ...]], np.ndarray | None, list[str]]:
    """Jacobian blocks ``(n_out, n_in_i)``, one backward per output element; or, with
    ``n_proj``, the blocks ``V^T J`` for ``n_proj`` random upstream vectors ``V``."""
    problems: list[str] = []
    with enable_grad():
        outs = _outputs(fn(*inputs))
    shapes = [tuple(o.shape) for o in outs]
    sizes = [int(np.prod(s)) for s in shapes]
    n_out = sum(sizes)
    proj = None
    if fast_mode or (fast_mode is None and n_out > max_outputs):
        proj = np.random.default_rng(seed).standard_normal((n_out, n_proj))
    n_rows = n_out if proj is None else n_proj
    jac = [np.zeros((n_rows, inputs[i].array.size), dtype=np.float64) for i in check]
    if not any(o.requires_grad for o in outs):
        return jac, shapes, proj, problems  # nothing recorded: the analytic Jacobian is 0
    starts = np.cumsum([0, *sizes])
    for row in range(n_rows):
        for i in check:
            inputs[i].grad = None
        for o, (lo, hi) in zip(outs, itertools.pairwise(starts), strict=True):
            if not o.requires_grad:
                continue
            if proj is None:
                if not lo <= row < hi:
                    continue
                upstream = np.zeros(o.shape, dtype=o.dtype)
                upstream.reshape(-1)[row - lo] = 1.0
            else:
                upstream = proj[lo:hi, row].reshape(o.shape).astype(o.dtype)
            o.backward(upstream, retain_graph=True)
        for b, i in enumerate(check):
            g = inputs[i].grad
            if g is None:
                continue
            if g.shape != inputs[i].shape or g.dtype != inputs[i].dtype:
                problems.append(
                    f"{i}: gradient of shape {g.shape} and dtype {g.dtype} for an "
                    f"input of shape {inputs[i].shape} and dtype {inputs[i].dtype}"
                )
                continue
            jac[b][row] = np.asarray(g.array, dtype=np.float64).ravel()
    return jac, shapes, proj, problems


def _numeric(
    fn: Callable[..., Any],
    inputs: list[Any],
    check: list[int],
    eps: float,
    proj: np.ndarray | None,
) -> list[np.ndarray]:
    """Jacobian blocks by central differences, one input element at a time (projected
    on ``proj`` when given)."""
    jac = []
    for i in check:
        t = inputs[i]
        flat = t.array.reshape(-1)  # t.array is a private contiguous copy here
        cols = []
        for k in range(flat.size):
            orig = flat[k]
            flat[k] = orig + eps
            plus = _flat_output(fn, inputs)
            flat[k] = orig - eps
            minus = _flat_output(fn, inputs)
            flat[k] = orig
            col = (plus - minus) / (2.0 * eps)
            if proj is not None:
                if col.shape[0] != proj.shape[0]:
                    raise GradcheckError(
                        f"gradcheck: the output size changed from {proj.shape[0]} to "
                        f"{col.shape[0]} elements under a perturbation"
                    )
                col = col @ proj
            cols.append(col)
        jac.append(np.stack(cols, axis=1) if cols else np.zeros((0, 0)))
    return jac


def gradcheck(
    fn: Callable[..., Any],
    inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    names: Sequence[str] | None = None,
    fast_mode: bool | None = False,
    max_outputs: int = 4096,
    n_projections: int = 8,
    seed: int = 0,
) -> bool:
    """Compare ``fn``'s backward with central finite differences (full Jacobian).

    Parameters
    ----------
    fn : callable
        Called as ``fn(*inputs)``; returns a Tensor or a tuple of Tensors (integer
        outputs such as argmax indices are ignored).
    inputs : Tensor or sequence
        Tensors with ``requires_grad`` are checked and must be float64 (TypeError
        otherwise, as float32 finite differences are meaningless at ``eps=1e-6``);
        anything else (integer targets, ints, None) is passed through unchanged.
    eps, atol, rtol : float
        Step of the central differences; an entry passes when
        ``|analytic - numeric| <= atol + rtol |numeric|``.
    raise_exception : bool
        Raise :class:`GradcheckError` on a mismatch (default) or return False.
    names : sequence of str, optional
        Names of the inputs, used in the error message.
    fast_mode : bool or None
        False (default): the full Jacobian, one backward per output element. True:
        compare ``V^T J`` for ``n_projections`` random upstream vectors ``V`` (seeded
        by ``seed``) instead, which needs that many backward passes and
        ``O(n_projections)`` memory per input element. None: fast mode only when the
        outputs have more than ``max_outputs`` elements.

    Returns
    -------
    bool
        True when every entry of every checked input's Jacobian matches.

    Notes
    -----
    ``fn`` runs ``1 + 2 * (number of checked input elements)`` times and backward once
    per output element (or per projection), so keep the sizes small. The inputs'
    ``.grad`` and values are restored afterwards. Ops with kinks (ReLU at 0, max with
    ties, L1 at 0) must be checked away from them.
    """
    items = _as_list(inputs)
    check: list[int] = []
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            continue
        if t.requires_grad and t.dtype != np.float64:
            raise TypeError(
                f"gradcheck: {_label(i, names)} has dtype {t.dtype}; checked inputs must be "
                "float64 (finite differences in lower precision are dominated by rounding)"
            )
        if t.requires_grad:
            if not t.is_leaf:  # check at its value; keep its graph's leaves untouched
                items[i] = Tensor(np.array(t.array, copy=True), requires_grad=True)
            check.append(i)
    if not check:
        raise ValueError("gradcheck: no input requires grad; nothing to check")

    saved = [(items[i].grad, items[i].array) for i in check]
    try:
        analytic, shapes, proj, problems = _analytic(
            fn, items, check, fast_mode, max_outputs, n_projections, seed
        )
        if problems:
            i, _, msg = problems[0].partition(": ")
            message = f"gradcheck: backward returned a bad gradient for {_label(int(i), names)}"
            message += f": {msg}"
            if raise_exception:
                raise GradcheckError(message)
            return False
        for i in check:
            items[i].array = np.array(items[i].array, dtype=np.float64, copy=True, order="C")
        numeric = _numeric(fn, items, check, eps, proj)
    finally:
        for i, (grad, data) in zip(check, saved, strict=True):
            items[i].grad = grad
            items[i].array = data

    for b, i in enumerate(check):
        a, n = analytic[b], numeric[b]
        if a.shape != n.shape:
            message = (
                f"gradcheck: output size changed under perturbation of {_label(i, names)} "
                f"({a.shape[0]} vs {n.shape[0]} elements)"
            )
            if raise_exception:
                raise GradcheckError(message)
            return False
        bad = ~(np.abs(a - n) <= atol + rtol * np.abs(n))
        if not bad.any():
            continue
        if not raise_exception:
            return False
        err = np.where(bad, np.abs(a - n), -1.0)
        r, k = np.unravel_index(int(np.argmax(err)), err.shape)
        if proj is None:
            out_idx, row = 0, int(r)
            while row >= int(np.prod(shapes[out_idx])):
                row -= int(np.prod(shapes[out_idx]))
                out_idx += 1
            where_out = f"output {out_idx}" if len(shapes) > 1 else "the output"
            where_out = f"w.r.t. {where_out} element {_index(row, shapes[out_idx])}"
        else:
            where_out = f"output projected on random vector {int(r)}"
        raise GradcheckError(
            f"gradcheck: Jacobian mismatch for {_label(i, names)} at element "
            f"{_index(int(k), tuple(items[i].shape))} ({where_out}): "
            f"analytic {a[r, k]:.10g}, numeric "
            f"{n[r, k]:.10g} (atol={atol:g}, rtol={rtol:g}; {int(bad.sum())} of {bad.size} "
            f"entries differ)"
        )
    return True


# ------------------------------------------------------------------ whole models
_RANDOM_LAYERS = ("Dropout",)
_TIE_LAYERS = ("MaxPool",)
_KINK_AT_ZERO = ("ReLU",)


def _untie(x: np.ndarray, eps: float, rng: np.random.Generator) -> np.ndarray:
    """Make every value distinct by far more than ``eps`` (so no max-pool window has a
    near-tie that a ``+-eps`` step could flip): add a random permutation of
    ``0, step, 2 step, ...``; if that still leaves a near-tie, keep only the ordering."""
    step = max(1e-4, 1e3 * eps)
    flat = x.ravel() + rng.permutation(x.size) * step
    srt = np.sort(flat)
    if flat.size > 1 and np.min(np.diff(srt)) < 100 * eps:
        ranks = np.empty(flat.size)
        ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size)
        flat = srt[0] + ranks * step
    return flat.reshape(x.shape)


def _away_from_zero(x: np.ndarray, margin: float) -> np.ndarray:
    near = np.abs(x) < margin
    return np.where(near, np.where(x < 0, -margin, margin) + x, x)


def _leaf_modules(module: Any) -> list[tuple[str, Any]]:
    """Modules without sub-modules, with their dotted names."""
    return [(n, m) for n, m in module.named_modules() if not any(True for _ in m.children())]


def _to_double(model: Any) -> Any:
    if hasattr(model, "double"):
        out = model.double()
        model = out if out is not None else model
    else:
        for p in model.parameters():
            p.array = p.array.astype(np.float64)
    for p in model.parameters():
        if p.dtype != np.float64:
            p.array = p.array.astype(np.float64)
    return model


def gradcheck_module(
    module: Any,
    input: Any,
    seed: int = 0,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    train: bool = True,
    raise_exception: bool = True,
    fast_mode: bool | None = None,
    max_outputs: int = 4096,
) -> dict[str, bool]:
    """Gradcheck every leaf layer of a model in one call.

    A deep copy of ``module`` is converted to float64 (the original is untouched) and
    run once on the input with forward hooks capturing each leaf layer's input. Each
    leaf layer is then checked with :func:`gradcheck` w.r.t. that input and each of its
    parameters.

    * Layers with randomness (``Dropout``) are checked in eval mode; the rest in train
      mode (``train=True``, so BatchNorm uses batch statistics) or eval mode.
    * Max-pool inputs get a tiny random offset ``permutation(n) * step`` (``step =
      max(1e-4, 1000 eps)``) that makes all values distinct, so no window holds a
      near-tie that a finite-difference step could flip (the max is not differentiable
      at a tie). ReLU inputs are moved at least ``1000 eps`` away from the kink at 0.

    Parameters
    ----------
    module : cnnkit.nn.Module
    input : tuple of int or Tensor
        An input shape (a standard normal input is drawn with ``seed``) or an input.
    seed : int
        Seeds the drawn input, the tie-breaking offsets and the fast-mode projections.
    fast_mode, max_outputs
        As in :func:`gradcheck`; by default a layer whose output has more than
        ``max_outputs`` elements is checked through random projections.

    Returns
    -------
    dict
        Layer name -> True (False only with ``raise_exception=False``).

    Raises
    ------
    GradcheckError
        Naming the layer, its type and the mismatching input or parameter.
    """
    rng = np.random.default_rng(seed)
    if isinstance(input, Tensor):
        x0 = np.array(input.array, dtype=np.float64, copy=True)
    elif isinstance(input, np.ndarray):
        x0 = np.array(input, dtype=np.float64, copy=True)
    else:
        x0 = rng.standard_normal(tuple(int(s) for s in input))
    model = _to_double(copy.deepcopy(module))
    model.train(train)
    leaves = _leaf_modules(model)
    for _, layer in leaves:
        if any(key in type(layer).__name__ for key in _RANDOM_LAYERS):
            layer.eval()

    captured: dict[str, tuple[Any, ...]] = {}
    handles = []
    for name, layer in leaves:

        def hook(mod: Any, args: Any, output: Any, name: str = name) -> None:
            if name not in captured:
                captured[name] = tuple(
                    np.array(a.array, copy=True) if isinstance(a, Tensor) else a
                    for a in _as_list(args)
                )

        handles.append(layer.register_forward_hook(hook))
    try:
        with no_grad():
            model(Tensor(x0))
    finally:
        for h in handles:
            h.remove()

    results: dict[str, bool] = {}
    for name, layer in leaves:
        if name not in captured:
            continue  # never called in forward (or an unused container)
        args = list(captured[name])
        kind = type(layer).__name__
        for a, value in enumerate(args):
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                continue
            value = value.astype(np.float64)
            if any(key in kind for key in _TIE_LAYERS):
                value = _untie(value, eps, rng)
            if any(key in kind for key in _KINK_AT_ZERO):
                value = _away_from_zero(value, max(1e-4, 1e3 * eps))
            args[a] = Tensor(value, requires_grad=True)
        named_params = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]
        n_args = len(args)
        labels = [f"input {a}" if n_args > 1 else "input" for a in range(n_args)]
        labels += [f"parameter {n}" for n, _ in named_params]

        def fn(*xs: Any, layer: Any = layer, n_args: int = n_args) -> Any:
            return layer(*xs[:n_args])

        try:
            ok = gradcheck(
                fn,
                [*args, *(p for _, p in named_params)],
                eps=eps,
                atol=atol,
                rtol=rtol,
                raise_exception=raise_exception,
                names=labels,
                fast_mode=fast_mode,
                max_outputs=max_outputs,
                seed=seed,
            )
        except GradcheckError as e:
            raise GradcheckError(f"layer {name!r} ({kind}): {e}") from None
        results[name] = ok
    return results
