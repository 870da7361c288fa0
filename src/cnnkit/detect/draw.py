"""Pictures of detections: scenes with predicted boxes, labels and scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_detections"]


def plot_detections(
    images: Any,
    preds: Sequence[dict[str, Any]],
    path: str | Path,
    targets: Sequence[dict[str, Any]] | None = None,
    classes: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    title: str | None = None,
    cols: int = 4,
) -> Path:
    """Draw images in a grid with predicted boxes (red, ``label score``) and, when given,
    ground-truth boxes (green, dashed); written atomically as PNG.

    Parameters
    ----------
    images : array, shape (N, C, H, W)
        Images in [0, 1] (1 or 3 channels).
    preds : list of dict
        ``boxes`` ``(K, 4)`` pixel ``x1, y1, x2, y2``, ``scores``, ``labels`` per image.
    path : path-like
        Output PNG.
    targets : list of dict, optional
        Ground-truth ``boxes`` and ``labels`` per image.
    classes : sequence of str, optional
        Class names (default: the label numbers).
    titles : sequence of str, optional
        One caption per image.
    title : str, optional
        Figure title.
    cols : int
        Images per row.
    """
    from matplotlib.patches import Rectangle

    from cnnkit.viz._mpl import pyplot, save_figure

    plt = pyplot()

    imgs = np.asarray(images)
    n = len(imgs)
    if n == 0:
        raise ValueError("plot_detections: no images")
    if len(preds) != n or (targets is not None and len(targets) != n):
        raise ValueError(
            f"plot_detections: {n} images but {len(preds)} predictions"
            + (f" and {len(targets)} targets" if targets is not None else "")
        )
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    names = list(classes) if classes else None
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = imgs[k]
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(np.clip(img.transpose(1, 2, 0), 0, 1))
        if targets is not None:
            for b in np.asarray(targets[k]["boxes"]).reshape(-1, 4):
                ax.add_patch(
                    Rectangle(
                        (b[0] - 0.5, b[1] - 0.5),
                        b[2] - b[0],
                        b[3] - b[1],
                        fill=False,
                        ec="#33dd33",
                        lw=1.2,
                        ls="--",
                    )
                )
        p = preds[k]
        for b, s, l in zip(
            np.asarray(p["boxes"]).reshape(-1, 4),
            np.asarray(p["scores"]),
            np.asarray(p["labels"]),
            strict=True,
        ):
            ax.add_patch(
                Rectangle(
                    (b[0] - 0.5, b[1] - 0.5),
                    b[2] - b[0],
                    b[3] - b[1],
                    fill=False,
                    ec="#ff3030",
                    lw=1.5,
                )
            )
            name = names[int(l)] if names and int(l) < len(names) else str(int(l))
            ax.text(
                b[0] - 0.5,
                b[1] - 1.5,
                f"{name} {s:.2f}",
                color="white",
                fontsize=8,
                va="bottom",
                bbox={"fc": "#ff3030", "ec": "none", "pad": 0.8},
            )
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100, bbox_inches=None)
