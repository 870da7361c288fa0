"""Training and validation curves with the over/under-fitting diagnosis as caption."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from cnnkit.viz._mpl import pyplot, save_figure

if TYPE_CHECKING:  # cnnkit.train imports this module: no import cycle at run time
    from cnnkit.train.diagnosis import Diagnosis
    from cnnkit.train.history import History


def plot_history(
    history: History,
    path: str | Path,
    diagnosis: Diagnosis | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG with the loss curves (left) and accuracy curves (right, if recorded).

    Parameters
    ----------
    history : History
        Per-epoch metrics from :func:`cnnkit.train.fit`.
    path : str or Path
        Output PNG (written atomically).
    diagnosis : Diagnosis, optional
        Caption; computed with :func:`cnnkit.train.diagnose` when omitted.
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        The written file.
    """
    if len(history) == 0:
        raise ValueError("plot_history: the history is empty")
    from cnnkit.train.diagnosis import diagnose

    plt = pyplot()
    diagnosis = diagnosis or diagnose(history)
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(history.records)]
    has_acc = "train_acc" in history or "val_acc" in history
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(11 if has_acc else 6.5, 4.2))
    axes = list(axes) if has_acc else [axes]

    ax = axes[0]
    ax.plot(epochs, history["train_loss"], "o-", color="tab:blue", label="training", ms=3)
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], "s-", color="tab:orange", label="validation", ms=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if has_acc:
        ax = axes[1]
        if "train_acc" in history:
            acc = [100 * v for v in history["train_acc"]]
            ax.plot(epochs, acc, "o-", color="tab:blue", label="training", ms=3)
        if "val_acc" in history:
            acc = [100 * v for v in history["val_acc"]]
            ax.plot(epochs, acc, "s-", color="tab:orange", label="validation", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("Accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title, fontweight="bold")
    caption = f"Diagnosis: {diagnosis.verdict} — {diagnosis.explanation}"
    fig.text(0.5, -0.02, "\n".join(textwrap.wrap(caption, 110)), ha="center", va="top", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
