"""Training: the fit loop, History, callbacks, the over/under-fitting diagnosis, grid search."""

from cnnkit.train.callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint, TrainState
from cnnkit.train.diagnosis import Diagnosis, diagnose
from cnnkit.train.grid import grid_search
from cnnkit.train.history import History
from cnnkit.train.loop import EvalResult, TrainingError, evaluate, fit, predict
from cnnkit.viz.curves import plot_history

__all__ = [
    "CSVLogger",
    "Callback",
    "Diagnosis",
    "EarlyStopping",
    "EvalResult",
    "History",
    "ModelCheckpoint",
    "TrainState",
    "TrainingError",
    "diagnose",
    "evaluate",
    "fit",
    "grid_search",
    "plot_history",
    "predict",
]
