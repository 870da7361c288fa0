"""Multi-tensor (foreach-style) optimizer steps over one flat buffer per dtype.

The per-parameter step of :class:`cnnkit.optim.Optimizer` calls ``_update`` once per
parameter: a few NumPy calls each, which for small batches and many small tensors
(biases, BatchNorm scales) cost more than the arithmetic. For optimizers whose update is
elementwise, a :class:`FlatBucket` holds every parameter of one group and dtype as a view
into one contiguous buffer (and likewise each state array), so the same ``_update`` runs
once over the whole buffer: the same operations on the same values, hence the same
results as the per-parameter loop (and as PyTorch's). Only the gradients are gathered
into a buffer per step.

The views are checked by identity on every step; anything that replaced a parameter's
array or a state array (``load_state_dict``, ``Module.to``) makes the bucket rebuild
itself from the current arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def compatible(params: list[Any], state: dict[Any, dict[str, Any]]) -> bool:
    """Whether one flat state can stand for these parameters' states: none has state
    yet, or all have the same keys and the same scalars (step counts)."""
    per = [state.get(p, {}) for p in params]
    if not any(per):
        return True
    first = per[0]
    for p, s in zip(params, per, strict=True):
        if set(s) != set(first):
            return False
        for key, val in s.items():
            if isinstance(val, np.ndarray):
                if val.shape != p.array.shape:
                    return False
            elif val != first[key]:
                return False
    return True


class FlatBucket:
    """The parameters of one group and dtype as views into one flat buffer."""

    def __init__(self, params: list[Any], state: dict[Any, dict[str, Any]]) -> None:
        self.params = params
        self.shapes = [p.array.shape for p in params]
        sizes = [p.array.size for p in params]
        self.bounds = np.cumsum([0, *sizes]).tolist()
        dtype = params[0].array.dtype
        self.flat = np.empty(self.bounds[-1], dtype=dtype)
        self.grad = np.empty_like(self.flat)
        for i, p in enumerate(params):
            self.flat[self.bounds[i] : self.bounds[i + 1]] = p.array.reshape(-1)
        self.views = [self._view(self.flat, i) for i in range(len(params))]
        for p, v in zip(params, self.views, strict=True):
            p.array = v
        self.state: dict[str, Any] = {}
        self._adopt_state(state)

    def _view(self, buf: np.ndarray, i: int) -> np.ndarray:
        return buf[self.bounds[i] : self.bounds[i + 1]].reshape(self.shapes[i])

    def _adopt_state(self, state: dict[Any, dict[str, Any]]) -> None:
        """Flat copies of the per-parameter state arrays (when every parameter has the
        same keys), re-bound as views; scalars (``step``) taken from the first."""
        per = [state.get(p, {}) for p in self.params]
        self.state = {}
        self.bound = {}
        if not any(per):
            return
        for key, val in per[0].items():
            if isinstance(val, np.ndarray):
                buf = np.concatenate([np.asarray(s[key]).reshape(-1) for s in per])
                self.state[key] = buf.astype(self.flat.dtype, copy=False)
            else:
                self.state[key] = val
        self._bind_state(state)

    def _bind_state(self, state: dict[Any, dict[str, Any]]) -> None:
        for i, p in enumerate(self.params):
            s = state.setdefault(p, {})
            for key, val in self.state.items():
                s[key] = self._view(val, i) if isinstance(val, np.ndarray) else val
        self.bound = {
            key: [state[p][key] for p in self.params]
            for key, val in self.state.items()
            if isinstance(val, np.ndarray)
        }

    def valid(self, params: list[Any], state: dict[Any, dict[str, Any]]) -> bool:
        """Whether these parameters and their state still are this bucket's views."""
        if len(params) != len(self.params) or any(
            p is not q or p.array is not v
            for p, q, v in zip(params, self.params, self.views, strict=True)
        ):
            return False
        for key, views in getattr(self, "bound", {}).items():
            if any(state.get(p, {}).get(key) is not v for p, v in zip(params, views, strict=True)):
                return False
        for p in params:
            s = state.get(p, {})
            if set(s) != set(self.state):
                return False
            if any(not isinstance(v, np.ndarray) and s[k] != v for k, v in self.state.items()):
                return False  # a per-parameter step ran meanwhile (step counts moved)
        return True

    def step(self, update: Any, grads: list[np.ndarray], group: dict[str, Any],
             state: dict[Any, dict[str, Any]]) -> None:  # fmt: skip
        """Gather the gradients and run ``update(flat, flat_grad, flat_state, group)``."""
        np.concatenate([g.reshape(-1) for g in grads], out=self.grad)
        had = set(self.state)
        update(self.flat, self.grad, self.state, group)
        if set(self.state) != had or any(
            isinstance(v, np.ndarray) and (k not in self.bound) for k, v in self.state.items()
        ):
            self._bind_state(state)  # new state arrays (first step): per-parameter views
        for p in self.params:  # scalars (step counts) for state_dict
            s = state.setdefault(p, {})
            for key, val in self.state.items():
                if not isinstance(val, np.ndarray):
                    s[key] = val
