"""Small local data in torchvision's folder layouts (no network): MNIST-style IDX files made
from scikit-learn's 8x8 digits, and CIFAR-10-style pickled batches of coloured patterns."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def digits_28(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 scikit-learn digits on 28x28 uint8: each glyph (upscaled to 20x20, shifted
    by up to 2 pixels) blended with its class's mean glyph, plus noise: easy enough that a
    small CNN gets (nearly) all test images right after one short epoch."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    glyphs = np.stack(
        [
            np.asarray(
                Image.fromarray((im * (255 / 16)).astype(np.uint8)).resize(
                    (20, 20), Image.BILINEAR
                ),
                dtype=np.float64,
            )
            for im in d.images
        ]
    )
    means = np.stack([glyphs[d.target == k].mean(0) for k in range(10)])
    out = np.zeros((len(glyphs), 28, 28))
    for k, g in enumerate(glyphs):
        dy, dx = rng.integers(-2, 3, 2)
        out[k, 4 + dy : 24 + dy, 4 + dx : 24 + dx] = 0.1 * g + 0.9 * means[d.target[k]]
    out += rng.normal(0, 12, out.shape)
    out = np.clip(out, 0, 255).astype(np.uint8)
    perm = rng.permutation(len(out))
    return out[perm], d.target[perm].astype(np.uint8)


def _idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    dims = arr.shape
    magic = 0x0803 if arr.ndim == 3 else 0x0801
    head = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in dims)
    raw = head + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def write_mnist(root: Path, name: str = "MNIST", n_train: int = 1200, gz: bool = False) -> None:
    """``root/<name>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` from :func:`digits_28`."""
    x, y = digits_28()
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    _idx(raw / "train-images-idx3-ubyte", x[:n_train], gz)
    _idx(raw / "train-labels-idx1-ubyte", y[:n_train], gz)
    _idx(raw / "t10k-images-idx3-ubyte", x[n_train:], gz)
    _idx(raw / "t10k-labels-idx1-ubyte", y[n_train:], gz)


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]  # fmt: skip


_PALETTE = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 0.5, 0],
     [0.5, 0, 1], [0.2, 0.2, 0.2], [1, 1, 1]]
)  # fmt: skip


def cifar_like(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """``n`` 32x32 RGB images (N, 3072) uint8: class k is a colour and a stripe orientation."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    imgs = np.zeros((n, 3, 32, 32))
    for i, k in enumerate(labels):
        angle = np.pi * (k % 5) / 5
        freq = 2 + 2 * (k // 5)
        phase = rng.uniform(0, 2 * np.pi)
        wave = 0.5 + 0.5 * np.sin(
            2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase
        )
        colour = _PALETTE[k]
        imgs[i] = colour[:, None, None] * (0.55 + 0.45 * wave[None])
    imgs += rng.normal(0, 0.05, imgs.shape)
    data = (np.clip(imgs, 0, 1) * 255).astype(np.uint8).reshape(n, 3072)
    return data, [int(v) for v in labels]


def write_cifar(root: Path, n_train: int = 500, n_test: int = 200, rare: tuple[int, ...] = (),
                rare_keep: int = 5) -> None:  # fmt: skip
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``.

    The training images of the classes in ``rare`` are thinned to one in ``rare_keep`` (an
    imbalanced training set; the test set keeps every class)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    x, y = cifar_like(n_train + n_test, seed=1)
    labels = np.array(y[:n_train])
    keep = np.ones(n_train, bool)
    for k in rare:
        idx = np.flatnonzero(labels == k)
        keep[idx] = np.arange(len(idx)) % rare_keep == 0
    train_x, train_y = x[:n_train][keep], [int(v) for v in labels[keep]]
    for b, sl in enumerate(np.array_split(np.arange(len(train_y)), 5)):
        part = [train_y[i] for i in sl]
        batch = {b"batch_label": b"training batch", b"labels": part, b"data": train_x[sl],
                 b"filenames": [b"x.png"] * len(part)}  # fmt: skip
        (folder / f"data_batch_{b + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"batch_label": b"testing batch", b"labels": y[n_train:], b"data": x[n_train:],
            b"filenames": [b"x.png"] * n_test}  # fmt: skip
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"label_names": [c.encode() for c in CIFAR_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
