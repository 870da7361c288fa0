"""Optimizers (SGD, Adam, AdamW, Adadelta, Adagrad, RMSprop) and LR schedulers (PyTorch's API)."""

from cnnkit.optim import lr_scheduler
from cnnkit.optim.adadelta import Adadelta
from cnnkit.optim.adagrad import Adagrad
from cnnkit.optim.adam import Adam, AdamW
from cnnkit.optim.optimizer import Optimizer
from cnnkit.optim.rmsprop import RMSprop
from cnnkit.optim.sgd import SGD

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
