"""``cnnkit.utils.tensorboard``: PyTorch's ``torch.utils.tensorboard.SummaryWriter``.

The events are written by tensorboardX (as :mod:`cnnkit.train.tensorboard` does): the
writer below is tensorboardX's with PyTorch's signatures (``log_dir``, ``add_hparams(...,
hparam_domain_discrete, run_name)``, ``add_scalar(..., new_style, double_precision)``) and
cnnkit tensors accepted wherever PyTorch accepts a tensor (a one-element tensor as a
scalar, any tensor as an image, histogram, embedding, ...). Event files, tags, the
``add_scalars`` sub-runs and the ``add_hparams`` sub-run are laid out as PyTorch lays them
out, so ``tensorboard --logdir runs`` shows a rewritten script's logs as it showed the
original's.

``add_graph`` has no counterpart (PyTorch traces the model with TorchScript): it warns
once and writes nothing.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from cnnkit.tensor import Tensor

try:
    from tensorboardX import SummaryWriter as _TBXWriter
    from tensorboardX.summary import scalar as _scalar_summary
    from tensorboardX.writer import FileWriter
except ImportError as e:  # pragma: no cover - tensorboardX is in the test extra
    raise ImportError(
        "cnnkit.utils.tensorboard needs tensorboardX: pip install 'cnnkit[dashboard]' "
        f"(or pip install tensorboardX) ({e})"
    ) from None

__all__ = ["SummaryWriter"]


def _plain(x: Any) -> Any:
    """``x`` with every cnnkit Tensor (also inside lists, tuples and dicts) as a NumPy array."""
    if isinstance(x, Tensor):
        return np.asarray(x.array)
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    return x


def _scalar(value: Any, what: str) -> float:
    """A Python number from a number, a NumPy scalar or a one-element tensor/array."""
    arr = np.asarray(_plain(value))
    if arr.size != 1:
        raise ValueError(
            f"SummaryWriter.{what}: a scalar value must hold one element, "
            f"got shape {tuple(arr.shape)}"
        )
    return float(arr.reshape(()))


class SummaryWriter(_TBXWriter):
    """Write TensorBoard event files, with ``torch.utils.tensorboard.SummaryWriter``'s API.

    Parameters
    ----------
    log_dir : str, optional
        Folder for the event files; default ``runs/<Mon DD_HH-MM-SS>_<host><comment>``.
    comment : str
        Appended to the default ``log_dir`` (ignored when ``log_dir`` is given).
    purge_step, max_queue, flush_secs, filename_suffix
        As in PyTorch.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        comment: str = "",
        purge_step: int | None = None,
        max_queue: int = 10,
        flush_secs: int = 120,
        filename_suffix: str = "",
    ) -> None:
        if not log_dir:
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")
        super().__init__(
            logdir=os.fspath(log_dir),
            purge_step=purge_step,
            max_queue=max_queue,
            flush_secs=flush_secs,
            filename_suffix=filename_suffix,
        )
        self.log_dir = os.fspath(log_dir)
        self._warned_graph = False

    def get_logdir(self) -> str:
        """The folder the event files go to."""
        return self.log_dir

    def add_scalar(
        self,
        tag: str,
        scalar_value: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        """One scalar (a number or a one-element tensor) under ``tag`` at ``global_step``."""
        super().add_scalar(tag, _scalar(scalar_value, "add_scalar"), global_step, walltime)

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: Mapping[str, Any],
        global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """Several scalars on one chart ``main_tag``, each in the sub-run
        ``<log_dir>/<main_tag with / as _>_<tag>`` (PyTorch's layout; tensorboardX's own
        nests ``<main_tag>/<tag>``)."""
        walltime = time.time() if walltime is None else walltime
        self._get_file_writer()  # creates all_writers on first use
        for tag, value in tag_scalar_dict.items():
            sub = os.path.join(self.log_dir, main_tag.replace("/", "_") + "_" + tag)
            writer = self.all_writers.get(sub)
            if writer is None:
                writer = FileWriter(
                    logdir=sub,
                    max_queue=self._max_queue,
                    flush_secs=self._flush_secs,
                    filename_suffix=self._filename_suffix,
                )
                self.all_writers[sub] = writer
            summary = _scalar_summary(main_tag, _scalar(value, "add_scalars"))
            writer.add_summary(summary, global_step, walltime)

    def add_hparams(
        self,
        hparam_dict: Mapping[str, Any],
        metric_dict: Mapping[str, Any],
        hparam_domain_discrete: Mapping[str, list[Any]] | None = None,
        run_name: str | None = None,
        global_step: int | None = None,
    ) -> None:
        """The HParams plugin's records and the metrics, in the sub-run ``run_name``
        (default: the current time), as PyTorch writes them."""
        if not isinstance(hparam_dict, Mapping) or not isinstance(metric_dict, Mapping):
            raise TypeError("SummaryWriter.add_hparams: hparam_dict and metric_dict must be dicts")
        metrics = {k: _scalar(v, "add_hparams") for k, v in metric_dict.items()}
        hparams = {k: _plain(v) for k, v in hparam_dict.items()}
        super().add_hparams(
            hparams, metrics, name=run_name or str(time.time()), global_step=global_step
        )

    def add_graph(
        self,
        model: Any,
        input_to_model: Any = None,
        verbose: bool = False,
        use_strict_trace: bool = True,
    ) -> None:
        """Not available (PyTorch traces the model with TorchScript): warns once, writes nothing."""
        if not self._warned_graph:
            warnings.warn(
                "SummaryWriter.add_graph: cnnkit cannot trace a model into a TensorBoard graph; "
                "no graph is written (the other summaries are)",
                stacklevel=2,
            )
            self._warned_graph = True


def _converting(name: str) -> Any:
    """A method that passes its arguments to tensorboardX's ``name`` with tensors as arrays."""
    base = getattr(_TBXWriter, name)

    def method(self: SummaryWriter, *args: Any, **kwargs: Any) -> Any:
        return base(self, *_plain(args), **_plain(kwargs))

    method.__name__ = name
    method.__qualname__ = f"SummaryWriter.{name}"
    method.__doc__ = (
        f"PyTorch's ``SummaryWriter.{name}``; cnnkit tensors are passed on as NumPy arrays."
    )
    return method


for _name in (
    "add_histogram",
    "add_image",
    "add_images",
    "add_image_with_boxes",
    "add_text",
    "add_figure",
    "add_embedding",
    "add_pr_curve",
    "add_video",
    "add_audio",
    "add_mesh",
):
    setattr(SummaryWriter, _name, _converting(_name))
del _name
