"""TensorBoard event files for a training run (the :class:`TensorBoard` callback).

The events are written with tensorboardX's ``SummaryWriter``. TensorBoard's own package
has a summary writer too, but without TensorFlow it writes only scalars; histograms,
images, text and the HParams plugin's records would have to be assembled from protocol
buffers by hand. tensorboardX is maintained, needs only NumPy, protobuf and Pillow, and
writes every kind of summary in the format TensorBoard reads (the tests read the files
back with TensorBoard's own ``EventAccumulator``).

Tags written (step = epoch):

- ``loss/train``, ``loss/val``, ``accuracy/train``, ``accuracy/val``, ``lr``,
  ``epoch_time_s``, and ``metrics/<name>`` for any other number in the epoch record;
- ``weights/<parameter>`` and ``gradients/<parameter>`` histograms (the gradient of
  the epoch's last mini-batch) every ``histogram_every`` epochs;
- ``filters/<first conv>`` and ``activations/<conv>`` images (every convolution's maps
  for one test image, which is shown as ``input/test_image``) every ``images_every``
  epochs;
- ``diagnosis`` text (:func:`cnnkit.train.diagnose` of the history so far) every epoch;
- the HParams plugin's experiment, session start and session end records when
  ``hparams`` are given, with ``loss/val``, ``accuracy/val``, ``loss/train`` and
  ``accuracy/train`` as its metrics, so that the runs of a grid search compare side by
  side under ``tensorboard --logdir GRID_DIR``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.tensor import Tensor
from cnnkit.train.callbacks import Callback, TrainState

SCALAR_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "lr": "lr",
    "time": "epoch_time_s",
}
HPARAM_METRICS = ("loss/val", "accuracy/val", "loss/train", "accuracy/train")
INSTALL_HINT = "pip install 'cnnkit[dashboard]' (or pip install tensorboardX)"


def _writer_class() -> Any:
    """tensorboardX's SummaryWriter, or an ImportError saying how to install it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise ImportError(f"TensorBoard logging needs tensorboardX: {INSTALL_HINT} ({e})") from None
    return SummaryWriter


def hparam_value(v: Any) -> bool | float | str:
    """A hyper-parameter as the HParams plugin stores it: bool, number or string."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(str(x) for x in v) + ")"
    return str(v)


class TensorBoard(Callback):
    """Write TensorBoard event files while ``fit`` trains.

    Parameters
    ----------
    log_dir : str or Path
        Folder for the event files (created if missing).
    histogram_every : int
        Write weight and gradient histograms every this many epochs (and after the last
        epoch); 0 turns them off.
    images_every : int
        Write the first layer's filters and the activation maps every this many epochs
        (and after the last); 0 turns them off.
    sample : array, optional
        The test image ``(c, h, w)`` whose activation maps are shown; by default the
        first sample of the training data.
    hparams : dict, optional
        Hyper-parameters of this run for the HParams plugin (numbers, bools, strings;
        tuples are written as strings).
    purge : bool
        When training resumes after epoch ``k``, hide events of later epochs left in
        ``log_dir`` by the interrupted run (TensorBoard's ``purge_step``).

    Raises
    ------
    ImportError
        tensorboardX is not installed (``pip install 'cnnkit[dashboard]'``).
    ValueError
        A negative ``histogram_every`` or ``images_every``.
    """

    def __init__(
        self,
        log_dir: str | Path,
        histogram_every: int = 1,
        images_every: int = 1,
        sample: Any = None,
        hparams: Mapping[str, Any] | None = None,
        purge: bool = True,
    ) -> None:
        for name, v in (("histogram_every", histogram_every), ("images_every", images_every)):
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"TensorBoard: {name} must be an int >= 0; got {v!r}")
        self._writer_cls = _writer_class()
        self.log_dir = Path(log_dir)
        self.histogram_every = histogram_every
        self.images_every = images_every
        self.sample = sample
        self.hparams = {k: hparam_value(v) for k, v in (hparams or {}).items() if v is not None}
        self.purge = purge
        self.writer: Any = None

    # -- the callback hooks -------------------------------------------------------------
    def on_train_begin(self, state: TrainState) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        purge_step = state.epoch + 1 if self.purge and state.epoch > 0 else None
        # event files are named by the second and the host: a suffix in nanoseconds keeps a
        # resumed run, started within the same second, from overwriting the first file
        # (and sorts it after that file, as TensorBoard's purge_step needs)
        self.writer = self._writer_cls(
            logdir=str(self.log_dir),
            purge_step=purge_step,
            flush_secs=5,
            filename_suffix=f".{time.time_ns()}",
        )
        if self.sample is None:
            self.sample = _first_sample(state.loader)
        if self.hparams:
            from tensorboardX.summary import hparams

            exp, ssi, _ = hparams(self.hparams, dict.fromkeys(HPARAM_METRICS, 0.0))
            fw = self.writer._get_file_writer()
            fw.add_summary(exp)
            fw.add_summary(ssi)
        if self.sample is not None and self.images_every:
            self.writer.add_image("input/test_image", _input_image(self.sample), 0,
                                  dataformats="HWC")  # fmt: skip
        self.writer.flush()

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(record.get("epoch", state.epoch))
        w = self.writer
        for key, value in record.items():
            if key == "epoch" or not _is_number(value):
                continue
            w.add_scalar(SCALAR_TAGS.get(key, f"metrics/{key}"), float(value), step)
        last = state.epoch >= state.epochs or state.stop
        if self.histogram_every and (step % self.histogram_every == 0 or last):
            self._histograms(state.model, step)
        if self.images_every and (step % self.images_every == 0 or last):
            self._images(state.model, step)
        self._diagnosis(state, step)
        w.flush()

    def on_train_end(self, state: TrainState) -> None:
        if self.writer is None:
            return
        if self.hparams:
            self._session_end(finished=state.epoch >= state.epochs or state.stop)
        self.writer.close()
        self.writer = None

    # -- what is written ----------------------------------------------------------------
    def _histograms(self, model: Any, step: int) -> None:
        for name, p in model.named_parameters():
            values = p.numpy()
            if values.size == 0 or not np.all(np.isfinite(values)):
                continue
            self.writer.add_histogram(f"weights/{name}", values.astype(np.float64), step)
            if p.grad is not None:
                g = p.grad.numpy()
                if np.all(np.isfinite(g)):
                    self.writer.add_histogram(f"gradients/{name}", g.astype(np.float64), step)

    def _images(self, model: Any, step: int) -> None:
        from cnnkit.viz.conv_maps import conv_activations, conv_layers

        convs = conv_layers(model)
        if not convs:
            return
        name, first = convs[0]
        self.writer.add_image(f"filters/{name}", filter_grid(first.weight.numpy()), step,
                              dataformats="HWC")  # fmt: skip
        if self.sample is None:
            return
        maps, _ = conv_activations(model, self.sample)
        for layer, act in maps:
            self.writer.add_image(f"activations/{layer}", activation_grid(act), step,
                                  dataformats="HW")  # fmt: skip

    def _diagnosis(self, state: TrainState, step: int) -> None:
        from cnnkit.train import diagnose

        try:
            text = str(diagnose(state.history))
        except Exception as e:  # a diagnosis that cannot be made must not stop training
            text = f"no diagnosis ({type(e).__name__}: {e})"
        self.writer.add_text("diagnosis", text, step)

    def _session_end(self, finished: bool) -> None:
        from tensorboardX.proto.api_pb2 import Status
        from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
        from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

        status = Status.Value("STATUS_SUCCESS" if finished else "STATUS_ABORTED")
        content = HParamsPluginData(session_end_info=SessionEndInfo(status=status), version=0)
        meta = SummaryMetadata(
            plugin_data=SummaryMetadata.PluginData(
                plugin_name="hparams", content=content.SerializeToString()
            )
        )
        summary = Summary(value=[Summary.Value(tag="_hparams_/session_end_info", metadata=meta)])
        self.writer._get_file_writer().add_summary(summary)


def _is_number(v: Any) -> bool:
    """A finite or infinite real number (bools and strings are not metrics)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _first_sample(loader: Any) -> np.ndarray | None:
    """The first image of a loader's dataset, or None when there is none to take."""
    ds = getattr(loader, "dataset", None)
    if ds is None:
        return None
    try:
        x = ds[0][0]
    except Exception:  # datasets of other shapes: no activation maps, training goes on
        return None
    arr = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    return arr if arr.ndim == 3 else None


def _input_image(sample: Any) -> np.ndarray:
    """A ``(c, h, w)`` sample as an ``(h, w, 3)`` picture in [0, 1], enlarged to be seen."""
    from cnnkit.viz.conv_maps import display_scale, normalise

    arr = np.asarray(sample, dtype=np.float64)
    img = normalise(arr[:3] if arr.shape[0] == 3 else arr[:1])
    img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img
    k = display_scale(img.shape[-1], 112)
    return img.transpose(1, 2, 0).repeat(k, axis=0).repeat(k, axis=1)


def filter_grid(weight: np.ndarray) -> np.ndarray:
    """Convolution weights ``(c_out, c_in, kh, kw)`` as one ``(H, W, 3)`` picture in [0, 1]:
    RGB filters for 3 input channels, else input channel 0 in gray; each filter scaled to
    its own range."""
    from cnnkit.viz.conv_maps import display_scale, normalise, tile

    w = normalise(np.asarray(weight), per_item=True)
    imgs = (
        w.transpose(0, 2, 3, 1)
        if w.shape[1] == 3
        else np.repeat(w[:, :1], 3, 1).transpose(0, 2, 3, 1)
    )
    return tile(imgs, scale=display_scale(w.shape[-1], 40), pad=3, fill=0.5)


def activation_grid(act: np.ndarray, max_maps: int = 64) -> np.ndarray:
    """Activation maps ``(c, h, w)`` as one ``(H, W)`` gray picture in [0, 1], all maps on
    one scale (so strong and weak channels can be told apart); at most ``max_maps``."""
    from cnnkit.viz.conv_maps import display_scale, normalise, tile

    a = np.asarray(act)[:max_maps]
    if not math.prod(a.shape):
        return np.zeros((1, 1), dtype=np.float32)
    return tile(normalise(a), scale=display_scale(a.shape[-1], 48), pad=2)


HPARAM_KEYS = ("model", "data", "epochs", "batch_size", "lr", "optimizer", "weight_decay",
               "scheduler", "augment", "seed")  # fmt: skip


def run_hparams(config: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters of a ``train_run`` configuration (``model_kwargs`` as
    ``model.<name>``), as shown in TensorBoard's HParams table."""
    hp = {k: config[k] for k in HPARAM_KEYS if config.get(k) is not None}
    for k, v in (config.get("model_kwargs") or {}).items():
        hp[f"model.{k}"] = v
    return hp


def tensorboard_callback(
    out: str | Path, config: Mapping[str, Any], test_data: Any, fresh: bool = True
) -> TensorBoard:
    """The :class:`TensorBoard` callback of ``cnnkit train --tensorboard``: events in
    ``out/tensorboard``, the first test image's activation maps, the run's settings as
    hyper-parameters. ``fresh`` removes the event files of an earlier run in that folder
    (an overwritten run); a resumed run keeps them and hides its unfinished epochs."""
    log_dir = Path(out) / "tensorboard"
    sample = None
    if test_data is not None and len(test_data):
        x = test_data[0][0]
        sample = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    cb = TensorBoard(log_dir, sample=sample, hparams=run_hparams(config))
    if fresh and log_dir.is_dir():
        for f in log_dir.glob("events.out.tfevents.*"):
            f.unlink()
    return cb
