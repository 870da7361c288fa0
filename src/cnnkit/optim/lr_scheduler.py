"""Learning-rate schedulers with PyTorch's API and learning-rate sequences."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from cnnkit.optim.optimizer import Optimizer

__all__ = [
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]


def _check_optimizer(optimizer: Any, name: str) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{name}: expected a cnnkit Optimizer, got {type(optimizer).__name__}")


class LRScheduler:
    """Base class of epoch-indexed learning-rate schedulers.

    On construction every parameter group gets an ``'initial_lr'`` (its current
    ``'lr'``) and the scheduler takes its first step, setting the learning rates of
    epoch ``last_epoch + 1``.

    Parameters
    ----------
    optimizer : Optimizer
        The wrapped optimizer.
    last_epoch : int
        Index of the last epoch; ``-1`` starts a new schedule. When resuming
        (``last_epoch >= 0``) every group must already have ``'initial_lr'``.

    Attributes
    ----------
    base_lrs : list of float
        The groups' initial learning rates.
    last_epoch : int
        The epoch index of the current learning rates.
    """

    _state_keys: tuple[str, ...] = ()

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer, type(self).__name__)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"{type(self).__name__}: param 'initial_lr' is not specified in "
                        f"param_groups[{i}] when resuming with last_epoch={last_epoch}"
                    )
        self.base_lrs: list[float] = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._step_count = 0
        self._last_lr: list[float] = [float(g["lr"]) for g in optimizer.param_groups]
        self.step()

    def get_lr(self) -> list[float]:
        """Compute the learning rates of epoch ``last_epoch``.

        Returns
        -------
        list of float
            One learning rate per parameter group.
        """
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """Return the learning rates set by the last call to :meth:`step`.

        Returns
        -------
        list of float
            One learning rate per parameter group.
        """
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and set the groups' learning rates."""
        self._step_count += 1
        self.last_epoch += 1
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def _closed_form_lr(self) -> list[float]:
        """The learning rates of epoch ``last_epoch`` from the base rates alone (not from
        the current ones); schedulers whose :meth:`get_lr` is recursive override it."""
        return self.get_lr()

    def _step_to(self, epoch: int) -> None:
        """Jump to ``epoch`` and set its learning rates by the closed form (how
        :class:`SequentialLR` restarts a scheduler at its milestone)."""
        self.last_epoch = int(epoch)
        for group, lr in zip(self.optimizer.param_groups, self._closed_form_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Return the scheduler's state as a JSON-serialisable dict.

        Returns
        -------
        dict
            Epoch counter, base and last learning rates, and the scheduler's options.
        """
        sd: dict[str, Any] = {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "base_lrs": list(self.base_lrs),
            "_last_lr": list(self._last_lr),
        }
        for key in self._state_keys:
            value = getattr(self, key)
            sd[key] = list(value) if isinstance(value, list | tuple) else value
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`.

        Parameters
        ----------
        state_dict : dict
            The saved state.
        """
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self._step_count))
        self.base_lrs = [float(v) for v in state_dict["base_lrs"]]
        self._last_lr = [float(v) for v in state_dict.get("_last_lr", self._last_lr)]
        for key in self._state_keys:
            if key in state_dict:
                setattr(self, key, state_dict[key])


class StepLR(LRScheduler):
    """Multiply the learning rates by ``gamma`` every ``step_size`` epochs.

    Parameters
    ----------
    optimizer : Optimizer
        The wrapped optimizer.
    step_size : int
        Period of the decay, in epochs (positive).
    gamma : float
        Multiplicative factor of the decay.
    last_epoch : int
        Index of the last epoch.
    """

    _state_keys = ("step_size", "gamma")

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        if int(step_size) != step_size or step_size <= 0:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size}")
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Learning rates of epoch ``last_epoch`` (decayed at multiples of ``step_size``)."""
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [g["lr"] for g in groups]
        return [g["lr"] * self.gamma for g in groups]

    def _closed_form_lr(self) -> list[float]:
        return [b * self.gamma ** (self.last_epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the learning rates by ``gamma`` at each milestone epoch.

    Parameters
    ----------
    optimizer : Optimizer
        The wrapped optimizer.
    milestones : iterable of int
        Epoch indices (a repeated milestone decays several times).
    gamma : float
        Multiplicative factor of the decay.
    last_epoch : int
        Index of the last epoch.
    """

    _state_keys = ("milestones", "gamma")

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Iterable[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Learning rates of epoch ``last_epoch`` (decayed at the milestones)."""
        groups = self.optimizer.param_groups
        count = Counter(self.milestones)[self.last_epoch]
        if count == 0:
            return [g["lr"] for g in groups]
        return [g["lr"] * self.gamma**count for g in groups]

    def _closed_form_lr(self) -> list[float]:
        passed = bisect.bisect_right(self.milestones, self.last_epoch)
        return [b * self.gamma**passed for b in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply the learning rates by ``gamma`` every epoch.

    Parameters
    ----------
    optimizer : Optimizer
        The wrapped optimizer.
    gamma : float
        Multiplicative factor of the decay.
    last_epoch : int
        Index of the last epoch.
    """

    _state_keys = ("gamma",)

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Learning rates of epoch ``last_epoch``."""
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [g["lr"] for g in groups]
        return [g["lr"] * self.gamma for g in groups]

    def _closed_form_lr(self) -> list[float]:
        return [b * self.gamma**self.last_epoch for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base learning rate to ``eta_min`` over ``T_max`` epochs.

    .. math::

        \eta_t = \eta_{min} + \frac{1}{2}(\eta_{base} - \eta_{min})
            \left(1 + \cos\frac{t \pi}{T_{max}}\right)

    Past ``T_max`` the learning rate rises again (the cosine is periodic), as in PyTorch.

    Parameters
    ----------
    optimizer : Optimizer
        The wrapped optimizer.
    T_max : int
        Number of epochs of the half period (positive).
    eta_min : float
        Minimum learning rate.
    last_epoch : int
        Index of the last epoch.
    """

    _state_keys = ("T_max", "eta_min")

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        if T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be positive, got {T_max}")
        self.T_max = T_max
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Learning rates of epoch ``last_epoch`` (closed form)."""
        factor = (1.0 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2.0
        return [self.eta_min + (base - self.eta_min) * factor for base in self.base_lrs]


class LambdaLR(LRScheduler):
    """Set each learning rate to its base value times a function of the epoch.

    Parameters
    ----------
    optimizer : Optimizer
        The wrapped optimizer.
    lr_lambda : callable or list of callable
        ``epoch -> factor``; one function for all groups or one per group.
    last_epoch : int
        Index of the last epoch.

    Notes
    -----
    ``state_dict`` does not include the functions; pass them again when resuming.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer, "LambdaLR")
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, list | tuple):
            if len(lr_lambda) != n:
                raise ValueError(
                    f"LambdaLR: expected {n} lr_lambdas (one per parameter group), "
                    f"got {len(lr_lambda)}"
                )
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        for f in self.lr_lambdas:
            if not callable(f):
                raise TypeError(f"LambdaLR: lr_lambda must be callable, got {type(f).__name__}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Learning rates of epoch ``last_epoch``."""
        return [
            base * f(self.last_epoch)
            for base, f in zip(self.base_lrs, self.lr_lambdas, strict=True)
        ]


class ReduceLROnPlateau:
    """Reduce the learning rates when a metric has stopped improving.

    Parameters
    ----------
    optimizer : Optimizer
        The wrapped optimizer.
    mode : {'min', 'max'}
        Whether the metric should decrease or increase.
    factor : float
        Multiplicative factor of the reduction (``< 1``).
    patience : int
        Number of epochs without improvement tolerated before reducing.
    threshold : float
        Minimum change counted as an improvement.
    threshold_mode : {'rel', 'abs'}
        Relative (``best * (1 -/+ threshold)``) or absolute (``best -/+ threshold``).
    cooldown : int
        Epochs to wait after a reduction before counting bad epochs again.
    min_lr : float or list of float
        Lower bound on the learning rate (one for all groups or one per group).
    eps : float
        Reductions smaller than this are skipped.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0,
        eps: float = 1e-8,
    ) -> None:
        _check_optimizer(optimizer, "ReduceLROnPlateau")
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor should be < 1.0, got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
            )
        self.optimizer = optimizer
        n = len(optimizer.param_groups)
        if isinstance(min_lr, list | tuple):
            if len(min_lr) != n:
                raise ValueError(
                    f"ReduceLROnPlateau: expected {n} min_lrs (one per parameter group), "
                    f"got {len(min_lr)}"
                )
            self.min_lrs = [float(v) for v in min_lr]
        else:
            self.min_lrs = [float(min_lr)] * n
        self.factor = float(factor)
        self.patience = int(patience)
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.cooldown = int(cooldown)
        self.mode = mode
        self.eps = float(eps)
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = [float(g["lr"]) for g in optimizer.param_groups]
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        """Whether the scheduler is waiting out the cooldown after a reduction."""
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether metric value ``a`` improves on ``best`` by more than the threshold.

        Parameters
        ----------
        a : float
            The new metric value.
        best : float
            The best value so far.

        Returns
        -------
        bool
            ``True`` when ``a`` counts as an improvement.
        """
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics: float) -> None:
        """Record one epoch's metric and reduce the learning rates if it plateaued.

        Parameters
        ----------
        metrics : float
            The monitored quantity (e.g. validation loss).
        """
        current = float(metrics)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def _reduce_lr(self) -> None:
        for i, group in enumerate(self.optimizer.param_groups):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def get_last_lr(self) -> list[float]:
        """Return the learning rates after the last :meth:`step`.

        Returns
        -------
        list of float
            One learning rate per parameter group.
        """
        return list(self._last_lr)

    _state_keys = (
        "mode",
        "factor",
        "patience",
        "threshold",
        "threshold_mode",
        "cooldown",
        "min_lrs",
        "eps",
        "mode_worse",
        "best",
        "cooldown_counter",
        "num_bad_epochs",
        "last_epoch",
        "_last_lr",
    )

    def state_dict(self) -> dict[str, Any]:
        """Return the scheduler's state as a JSON-serialisable dict.

        Returns
        -------
        dict
            Options, counters and the best metric so far.
        """
        return {
            k: (list(v) if isinstance(v, list) else v)
            for k in self._state_keys
            for v in (getattr(self, k),)
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`.

        Parameters
        ----------
        state_dict : dict
            The saved state.
        """
        for key in self._state_keys:
            if key in state_dict:
                value = state_dict[key]
                setattr(self, key, list(value) if isinstance(value, list) else value)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin 2018): per batch, warm up to ``max_lr``, then anneal
    far below the start; momentum moves the opposite way (``lr_scheduler.OneCycleLR``).

    Parameters
    ----------
    optimizer : Optimizer
    max_lr : float or list of float
        Peak learning rate (per group).
    total_steps : int, optional
        Steps in the cycle; or give ``epochs`` and ``steps_per_epoch``.
    epochs, steps_per_epoch : int, optional
    pct_start : float
        Fraction of the cycle spent increasing the learning rate.
    anneal_strategy : {'cos', 'linear'}
    cycle_momentum : bool
        Cycle ``momentum`` (SGD) or ``betas[0]`` (Adam) between ``max_momentum`` and
        ``base_momentum``.
    base_momentum, max_momentum : float or list of float
    div_factor : float
        ``initial_lr = max_lr / div_factor``.
    final_div_factor : float
        ``min_lr = initial_lr / final_div_factor``.
    three_phase : bool
        Warm up, come back down symmetrically to ``initial_lr``, then anneal to ``min_lr``.
    last_epoch : int
        Index of the last step taken (-1 to start).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer, "OneCycleLR")
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: give total_steps, or epochs and steps_per_epoch")
            if epochs <= 0 or steps_per_epoch <= 0:
                raise ValueError(
                    f"OneCycleLR: epochs and steps_per_epoch must be positive; got {epochs}, "
                    f"{steps_per_epoch}"
                )
            total_steps = int(epochs) * int(steps_per_epoch)
        if total_steps <= 0:
            raise ValueError(f"OneCycleLR: total_steps must be positive; got {total_steps}")
        if not 0.0 <= pct_start <= 1.0:
            raise ValueError(f"OneCycleLR: pct_start must be in [0, 1]; got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"OneCycleLR: anneal_strategy must be 'cos' or 'linear'; got {anneal_strategy!r}"
            )
        self.total_steps = int(total_steps)
        self.anneal_strategy = anneal_strategy
        self.cycle_momentum = bool(cycle_momentum)
        t, p = float(self.total_steps), float(pct_start)
        if three_phase:
            self._phases = [
                (p * t - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (2 * p * t - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                (t - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._phases = [
                (p * t - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (t - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        n = len(optimizer.param_groups)

        def per_group(v: Any, name: str) -> list[float]:
            if isinstance(v, list | tuple):
                if len(v) != n:
                    raise ValueError(f"OneCycleLR: expected {n} values of {name}; got {len(v)}")
                return [float(x) for x in v]
            return [float(v)] * n

        max_lrs = per_group(max_lr, "max_lr")
        if last_epoch == -1:
            for g, m in zip(optimizer.param_groups, max_lrs, strict=True):
                g["initial_lr"] = m / div_factor
                g["max_lr"] = m
                g["min_lr"] = g["initial_lr"] / final_div_factor
        self._use_beta1 = False
        if self.cycle_momentum:
            groups = optimizer.param_groups
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(
                    "OneCycleLR: optimizer must support momentum or betas with cycle_momentum"
                )
            self._use_beta1 = "betas" in optimizer.defaults
            bases = per_group(base_momentum, "base_momentum")
            maxes = per_group(max_momentum, "max_momentum")
            if last_epoch == -1:
                for g, b, m in zip(groups, bases, maxes, strict=True):
                    self._set_momentum(g, m)
                    g["base_momentum"], g["max_momentum"] = b, m
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group: dict[str, Any], m: float) -> None:
        if self._use_beta1:
            group["betas"] = (m, *tuple(group["betas"])[1:])
        else:
            group["momentum"] = m

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        """Learning rates of step ``last_epoch`` (and the momentum, set on the groups)."""
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR: tried to step {step} times; the schedule has {self.total_steps} "
                "steps (total_steps, or epochs * steps_per_epoch)"
            )
        lrs = []
        for g in self.optimizer.param_groups:
            start_step = 0.0
            for i, (end_step, lr0, lr1, m0, m1) in enumerate(self._phases):
                if step <= end_step or i == len(self._phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(g[lr0], g[lr1], pct))
                    if self.cycle_momentum:
                        self._set_momentum(g, self._anneal(g[m0], g[m1], pct))
                    break
                start_step = end_step
        return lrs


class LinearLR(LRScheduler):
    """Scale the learning rates by a factor that moves linearly from ``start_factor`` to
    ``end_factor`` over ``total_iters`` epochs, then stays at ``end_factor`` (warm-up):
    ``lr_t = base * (s + (e - s) * min(t, T) / T)``.

    As PyTorch, each step multiplies the current rate by ``f(t) / f(t - 1)`` (so it
    composes with other schedulers on the same optimizer).

    Parameters
    ----------
    optimizer : Optimizer
        The wrapped optimizer.
    start_factor : float in (0, 1]
    end_factor : float in [0, 1]
    total_iters : int
        Epochs until ``end_factor`` is reached.
    last_epoch : int
        Index of the last epoch.
    """

    _state_keys = ("start_factor", "end_factor", "total_iters")

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if not 0 < start_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1]; got {start_factor}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1]; got {end_factor}")
        if int(total_iters) != total_iters or total_iters < 1:
            raise ValueError(f"LinearLR: total_iters must be a positive integer; got {total_iters}")
        self.start_factor = float(start_factor)
        self.end_factor = float(end_factor)
        self.total_iters = int(total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Learning rates of epoch ``last_epoch`` from the current ones."""
        groups = self.optimizer.param_groups
        t, s, e, n = self.last_epoch, self.start_factor, self.end_factor, self.total_iters
        if t == 0:
            return [g["lr"] * s for g in groups]
        if t > n:
            return [g["lr"] for g in groups]
        ratio = 1.0 + (e - s) / (n * s + (t - 1) * (e - s))  # f(t) / f(t - 1)
        return [g["lr"] * ratio for g in groups]

    def _closed_form_lr(self) -> list[float]:
        s, e = self.start_factor, self.end_factor
        frac = min(self.total_iters, self.last_epoch) / self.total_iters
        return [b * (s + (e - s) * frac) for b in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

    .. math::

        \eta = \eta_{min} + \frac{1}{2}(\eta_{base} - \eta_{min})
            \left(1 + \cos\frac{T_{cur} \pi}{T_i}\right)

    ``T_cur`` counts epochs since the last restart; a restart happens when it reaches
    ``T_i``, and the next period is ``T_i * T_mult`` (the first is ``T_0``).
    :meth:`step` may be given a (fractional) epoch, e.g. ``epoch + i / iters`` per batch.

    Parameters
    ----------
    optimizer : Optimizer
        The wrapped optimizer.
    T_0 : int
        Epochs of the first period (positive).
    T_mult : int
        Growth factor of the period after each restart (>= 1).
    eta_min : float
        Minimum learning rate.
    last_epoch : int
        Index of the last epoch.
    """

    _state_keys = ("T_0", "T_i", "T_mult", "T_cur", "eta_min")

    def __init__(
        self,
        optimizer: Optimizer,
        T_0: int,
        T_mult: int = 1,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        where = "CosineAnnealingWarmRestarts"
        if isinstance(T_0, bool) or not isinstance(T_0, int) or T_0 < 1:
            raise ValueError(f"{where}: T_0 must be a positive integer; got {T_0!r}")
        if isinstance(T_mult, bool) or not isinstance(T_mult, int) or T_mult < 1:
            raise ValueError(f"{where}: T_mult must be an integer >= 1; got {T_mult!r}")
        self.T_0 = T_0
        self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = float(eta_min)
        self.T_cur: float = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Learning rates at ``T_cur`` epochs into the current period."""
        factor = (1.0 + math.cos(math.pi * self.T_cur / self.T_i)) / 2.0
        return [self.eta_min + (base - self.eta_min) * factor for base in self.base_lrs]

    def step(self, epoch: float | None = None) -> None:
        """Advance one epoch, or jump to ``epoch`` (may be fractional), and set the rates."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            self.T_cur += 1
            if self.T_cur >= self.T_i:
                self.T_cur -= self.T_i
                self.T_i *= self.T_mult
            self.last_epoch += 1
        else:
            if epoch < 0:
                raise ValueError(f"CosineAnnealingWarmRestarts: epoch must be >= 0; got {epoch}")
            self._place(epoch)
            self.last_epoch = math.floor(epoch)
        self._step_count += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def _place(self, epoch: float) -> None:
        """Set ``T_i`` and ``T_cur`` for an absolute ``epoch``: with ``T_mult = m > 1`` the
        periods ``T_0 m^k`` end at ``T_0 (m^(k+1) - 1) / (m - 1)``, so ``epoch`` lies in
        period ``n = floor(log_m(epoch (m - 1) / T_0 + 1))``."""
        t0, m = self.T_0, self.T_mult
        if epoch < t0:
            self.T_i, self.T_cur = t0, epoch
        elif m == 1:
            self.T_i, self.T_cur = t0, epoch % t0
        else:
            n = int(math.log(epoch / t0 * (m - 1) + 1, m))
            self.T_i = t0 * m**n
            self.T_cur = epoch - t0 * (m**n - 1) / (m - 1)


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after another, switching at the ``milestones`` epochs (e.g.
    a :class:`LinearLR` warm-up, then :class:`CosineAnnealingLR`), as PyTorch's.

    On construction the learning rates go back to their initial values, the steps the
    schedulers took when built are undone and the first one takes its first step. At a
    milestone the next scheduler restarts at its epoch 0 from the base rates (its closed
    form); otherwise the active scheduler takes an ordinary step.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer every scheduler wraps.
    schedulers : list of LRScheduler
    milestones : list of int
        ``len(schedulers) - 1`` increasing epochs.
    last_epoch : int
        Index of the last epoch.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: list[LRScheduler],
        milestones: list[int],
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer, "SequentialLR")
        if len(schedulers) < 1:
            raise ValueError("SequentialLR: expected at least one scheduler; got none")
        for i, sched in enumerate(schedulers):
            if isinstance(sched, ReduceLROnPlateau):
                raise ValueError(
                    f"SequentialLR: scheduler {i} is a ReduceLROnPlateau, whose step needs a "
                    "metric; it cannot be sequenced"
                )
            if not isinstance(sched, LRScheduler):
                raise TypeError(
                    f"SequentialLR: scheduler {i} must be an LRScheduler; got "
                    f"{type(sched).__name__}"
                )
            if sched.optimizer is not optimizer:
                raise ValueError(
                    f"SequentialLR: scheduler {i} ({type(sched).__name__}) wraps another "
                    "optimizer; all must wrap the one given"
                )
        milestones = [int(m) for m in milestones]
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR: expected {len(schedulers) - 1} milestones (one fewer than the "
                f"{len(schedulers)} schedulers); got {len(milestones)}"
            )
        if milestones != sorted(milestones):
            raise ValueError(f"SequentialLR: milestones must be increasing; got {milestones}")
        self.optimizer = optimizer
        self._schedulers = list(schedulers)
        self._milestones = milestones
        self.last_epoch = int(last_epoch) + 1
        self._step_count = 0
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        _undo_initial_steps(self)
        first = self._schedulers[bisect.bisect_right(self._milestones, 0)]
        first._step_count = 0
        first.step()
        self._last_lr = first.get_last_lr()

    def get_lr(self) -> list[float]:
        """The active scheduler's last learning rates."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch: restart the next scheduler at a milestone, else step the
        active one."""
        self.last_epoch += 1
        self._step_count += 1
        idx = bisect.bisect_right(self._milestones, self.last_epoch)
        sched = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            sched._step_to(0)
        else:
            sched.step()
        self._last_lr = sched.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        """The epoch counter, the milestones and each scheduler's own state."""
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "_milestones": list(self._milestones),
            "_last_lr": list(self._last_lr),
            "_schedulers": [s.state_dict() for s in self._schedulers],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict` (the schedulers' too)."""
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self._step_count))
        self._milestones = [int(m) for m in state_dict["_milestones"]]
        self._last_lr = [float(v) for v in state_dict["_last_lr"]]
        saved = state_dict["_schedulers"]
        if len(saved) != len(self._schedulers):
            raise ValueError(
                f"SequentialLR.load_state_dict: the state has {len(saved)} schedulers; this "
                f"one has {len(self._schedulers)}"
            )
        for sched, sd in zip(self._schedulers, saved, strict=True):
            sched.load_state_dict(sd)


def _undo_initial_steps(sched: Any) -> None:
    """Take back the first step each (nested) scheduler took when it was built."""
    if isinstance(sched, SequentialLR):
        for s in sched._schedulers:
            _undo_initial_steps(s)
    else:
        sched.last_epoch -= 1
