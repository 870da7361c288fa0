"""Optimizer base class: parameter groups, per-parameter state and (de)serialisation."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from cnnkit.tensor import Tensor

__all__ = ["Optimizer"]

_FLOAT_KINDS = ("f",)


class _Required:
    """Sentinel for an option that has no default and must be given."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


class Optimizer:
    """Base class of all optimizers.

    Parameters
    ----------
    params : iterable of Tensor or iterable of dict
        The tensors to optimise, or parameter groups: dicts with a ``'params'``
        key (the tensors) and optional per-group options overriding ``defaults``.
    defaults : dict
        The default value of every option (learning rate, momentum, ...).

    Attributes
    ----------
    param_groups : list of dict
        One dict per group: ``'params'`` (list of tensors) and the group's options.
    state : dict
        Per-parameter state, keyed by the parameter tensor itself; each value is a
        dict of NumPy arrays and numbers.
    defaults : dict
        The default options.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict) -> None:
        self.defaults: dict[str, Any] = dict(defaults)
        self._validate_group(self.defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError(
                f"{self._name}: params must be an iterable of Tensors or dicts, "
                f"got a single Tensor; wrap it in a list"
            )
        param_list = list(params)
        if len(param_list) == 0:
            raise ValueError(f"{self._name} got an empty parameter list")
        if not isinstance(param_list[0], dict):
            param_list = [{"params": param_list}]
        for group in param_list:
            self.add_param_group(group)

    # ------------------------------------------------------------------ helpers
    @property
    def _name(self) -> str:
        return type(self).__name__

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Check a group's options; subclasses raise ``ValueError`` on bad values.

        Parameters
        ----------
        group : dict
            The options (and possibly ``'params'``) to check.
        """

    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group (e.g. layers unfrozen during fine-tuning).

        Parameters
        ----------
        param_group : dict
            ``'params'`` (a Tensor or an iterable of Tensors) and optional options;
            missing options take the optimizer's defaults.

        Raises
        ------
        TypeError
            If a parameter is not a Tensor or not floating point.
        ValueError
            If a parameter does not require gradients, appears twice, or an
            option is missing or invalid.
        """
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{self._name}: a parameter group must be a dict, got {type(param_group).__name__}"
            )
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError(f"{self._name}: a parameter group needs a 'params' key")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                f"{self._name}: parameters must be an ordered collection, not a set; "
                f"use a list instead"
            )
        params = list(params)
        if len(params) == 0:
            raise ValueError(f"{self._name} got a parameter group with no parameters")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{self._name} can only optimize Tensors, but parameter {i} of the group "
                    f"is a {type(p).__name__}"
                )
            if p.dtype.kind not in _FLOAT_KINDS:
                raise TypeError(
                    f"{self._name} can only optimize floating-point tensors, but parameter {i} "
                    f"of the group has dtype {p.dtype}"
                )
            # as PyTorch: frozen parameters (requires_grad=False) are accepted and simply
            # never stepped (their .grad stays None); a non-leaf cannot be optimised
            if not p.is_leaf:
                raise ValueError(
                    f"{self._name} can't optimize a non-leaf Tensor: parameter {i} of the "
                    f"group (shape {p.shape}) was computed by {type(p.grad_fn).__name__}; "
                    f"pass the leaf tensors (e.g. model.parameters())"
                )
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self._name}: a parameter group contains the same tensor twice")
        group["params"] = params
        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise ValueError(
                    f"{self._name}: parameter group didn't specify a value of required "
                    f"option '{key}'"
                )
            group.setdefault(key, default)
        self._validate_group(group)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if existing.intersection(ids):
            raise ValueError(f"{self._name}: some parameters appear in more than one group")
        self.param_groups.append(group)

    # ------------------------------------------------------------------ updates
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimised parameters.

        Parameters
        ----------
        set_to_none : bool
            Set ``.grad`` to ``None`` (default) instead of filling it with zeros.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.array[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimisation step on every parameter that has a gradient.

        The skeleton shared by all optimizers: for each group and each parameter with a
        gradient, negate it when ``maximize`` and hand it to :meth:`_update`, which
        applies the variant's terms in place.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss.

        Returns
        -------
        object
            The closure's return value, or ``None``.
        """
        loss = closure() if closure is not None else None
        for gi, group in enumerate(self.param_groups):
            maximize = group.get("maximize", False)
            pending = []
            for p in group["params"]:
                grad = self._grad_array(p)
                if grad is None:
                    continue
                g = np.negative(grad) if maximize else grad
                pending.append((p, g))
            stepped = [p for p, _ in pending]
            if self._elementwise and self.foreach and len(pending) > 1:
                pending = self._flat_step(gi, group, pending)
            for p, g in pending:
                self._update(p.array, g, self.state.setdefault(p, {}), group)
            for p in stepped:  # an in-place change: backward checks it (version counter)
                p._bump_version(f"{self._name}.step()")
        return loss

    #: ``_update`` is elementwise (the same on any split of the arrays), so parameters
    #: may be updated together as one flat buffer (see :mod:`cnnkit.optim._flat`)
    _elementwise = False
    #: use the flat (multi-tensor) step where ``_elementwise``; False: one call per tensor
    foreach = True

    def _flat_step(self, gi: int, group: dict[str, Any], pending: list) -> list:
        """The multi-tensor step for every dtype whose parameters all have gradients;
        returns the pairs left for the per-parameter loop."""
        from cnnkit.optim._flat import FlatBucket, compatible

        buckets = self.__dict__.setdefault("_flat_buckets", {})
        if len(pending) != len(group["params"]):  # some without gradient: one by one
            return pending
        by_dtype: dict[Any, list] = {}
        for p, g in pending:
            by_dtype.setdefault(p.array.dtype, []).append((p, g))
        rest = []
        for dtype, pairs in by_dtype.items():
            params = [p for p, _ in pairs]
            if len(pairs) < 2 or not all(p.array.flags.c_contiguous for p in params):
                rest += pairs
                continue
            key = (gi, dtype.str)
            bucket = buckets.get(key)
            if bucket is None or not bucket.valid(params, self.state):
                if not compatible(params, self.state):  # states that differ: one by one
                    buckets.pop(key, None)
                    rest += pairs
                    continue
                bucket = buckets[key] = FlatBucket(params, self.state)
            bucket.step(self._update, [g for _, g in pairs], group, self.state)
        return rest

    def _update(
        self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        """Update one parameter array in place from its (sign-corrected) gradient."""
        raise NotImplementedError

    @staticmethod
    def _grad_array(p: Tensor) -> np.ndarray | None:
        """The gradient of ``p`` as an array of ``p``'s dtype and shape, or ``None``."""
        g = p.grad
        if g is None:
            return None
        arr = g.array if isinstance(g, Tensor) else np.asarray(g)
        if arr.dtype != p.array.dtype:
            arr = arr.astype(p.array.dtype)
        if arr.shape != p.array.shape:
            raise ValueError(
                f"gradient shape {arr.shape} does not match parameter shape {p.array.shape}"
            )
        return arr

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> dict[str, Any]:
        """Return the optimizer's state in PyTorch's format.

        Returns
        -------
        dict
            ``'state'``: ``{index: {name: array copy or number}}`` for parameters
            with state; ``'param_groups'``: the groups' options with ``'params'``
            replaced by the parameters' integer indices (numbered across groups).
        """
        index: dict[int, int] = {}
        groups = []
        next_index = 0
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                if id(p) not in index:
                    index[id(p)] = next_index
                    next_index += 1
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state: dict[int, dict[str, Any]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {
                        k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v))
                        for k, v in self.state[p].items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state produced by :meth:`state_dict`.

        Parameters
        ----------
        state_dict : dict
            With keys ``'state'`` and ``'param_groups'``.

        Raises
        ------
        ValueError
            If the number of groups or the size of a group differs.
        """
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict:
            raise ValueError(
                f"{self._name}.load_state_dict expects a dict with keys 'state' and 'param_groups'"
            )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{self._name}.load_state_dict: loaded state dict has {len(saved_groups)} "
                f"parameter groups, but the optimizer has {len(self.param_groups)}"
            )
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{self._name}.load_state_dict: parameter group {i} of the loaded state "
                    f"dict has {len(saved['params'])} parameters, but the optimizer's group "
                    f"has {len(group['params'])}"
                )
        id_map: dict[int, Tensor] = {}
        for saved, group in zip(saved_groups, self.param_groups, strict=True):
            for idx, p in zip(saved["params"], group["params"], strict=True):
                id_map[int(idx)] = p
        new_state: dict[Tensor, dict[str, Any]] = {}
        for key, value in state_dict.get("state", {}).items():
            k = int(key)
            if k not in id_map:
                continue
            p = id_map[k]
            entry: dict[str, Any] = {}
            for name, v in value.items():
                if isinstance(v, Tensor):  # read back by cnnkit.load / torch.load
                    v = np.asarray(v.array)
                if name == "step" and isinstance(v, np.ndarray) and v.ndim == 0:
                    # PyTorch keeps the step count as a 0-d tensor; here it is a number
                    v = v.item()
                if isinstance(v, np.ndarray):
                    if v.shape != p.array.shape and name != "step":
                        raise ValueError(
                            f"{self._name}.load_state_dict: state '{name}' of parameter {k} "
                            f"has shape {v.shape}, but the parameter has shape {p.array.shape}"
                        )
                    if v.dtype.kind == "f" and name != "step":
                        entry[name] = v.astype(p.array.dtype, copy=True)
                    else:
                        entry[name] = v.copy()
                else:
                    entry[name] = copy.deepcopy(v)
            new_state[p] = entry
        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups, strict=True):
            merged = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            merged["params"] = group["params"]
            new_groups.append(merged)
        self.state = new_state
        self.param_groups = new_groups
