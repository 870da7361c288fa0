"""``mpiexec -n P python run_worker.py OUT full|cut``: ``train_run`` of LeNet-5 on the
digits for 2 epochs, either whole or interrupted (KeyboardInterrupt on rank 0) after
epoch 1, to be resumed with ``mpiexec -n P cnnkit train --resume --out OUT``."""

from __future__ import annotations

import sys
from typing import Any

from cnnkit.train.callbacks import Callback
from cnnkit.train.run import train_run


class InterruptAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state: Any, record: dict[str, Any]) -> None:
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


def main() -> None:
    out, mode = sys.argv[1], sys.argv[2]
    callbacks = [InterruptAfter(1)] if mode == "cut" else []
    train_run(out, model="lenet5", data="digits", epochs=2, batch_size=32, verbose=False,
              callbacks=callbacks)  # fmt: skip


if __name__ == "__main__":
    main()
