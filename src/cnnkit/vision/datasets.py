"""``cnnkit.vision.datasets``: torchvision's MNIST, FashionMNIST, CIFAR10 and ImageFolder.

Thin doors onto :mod:`cnnkit.data` (which finds, downloads, validates and reads the
files, in torchvision's folder layouts ``root/MNIST/raw/...`` and
``root/cifar-10-batches-py/...``); these classes add torchvision's sample format: a
sample is ``(PIL image, int label)`` passed through ``transform`` / ``target_transform``,
and ``.data`` holds the uint8 images as torchvision keeps them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.data import cifar as _cifar
from cnnkit.data import mnist as _mnist
from cnnkit.data.folder import IMG_EXTENSIONS
from cnnkit.tensor import Tensor
from cnnkit.utils.data import Dataset

__all__ = ["CIFAR10", "MNIST", "FashionMNIST", "ImageFolder"]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """float32 ``k / 255`` back to the file's uint8 ``k`` (exact)."""
    return np.rint(x * np.float32(255.0)).astype(np.uint8)


class _VisionDataset(Dataset):
    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable[[Any], Any] | None,
        target_transform: Callable[[Any], Any] | None,
    ) -> None:
        self.root = str(root)
        self.transform = transform
        self.target_transform = target_transform

    def _finish(self, img: Any, target: int) -> tuple[Any, Any]:
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def __repr__(self) -> str:
        return (
            f"Dataset {type(self).__name__}\n    Number of datapoints: {len(self)}\n"
            f"    Root location: {self.root}"
        )


class MNIST(_VisionDataset):
    """MNIST as ``torchvision.datasets.MNIST(root, train, transform, target_transform, download)``.

    Parameters
    ----------
    root : path-like
        Holds ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (also found
        directly in ``root``).
    train : bool
        Training (60,000) or test (10,000) split.
    transform, target_transform : callable, optional
        Applied to the PIL image (mode ``L``, 28x28) and to the int label.
    download : bool
        Fetch missing files with cnnkit's downloader.

    Attributes
    ----------
    data : Tensor
        uint8 images, ``(N, 28, 28)``.
    targets : Tensor
        int64 labels, ``(N,)``.
    """

    _source = _mnist.MNIST

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, transform, target_transform)
        self.train = bool(train)
        src = self._source(root, train=train, download=download)
        self.data = Tensor(_to_uint8(src.data[:, 0]))
        self.targets = Tensor(np.asarray(src.targets, dtype=np.int64))
        self.classes = list(getattr(self, "class_labels", src.classes))

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        img = Image.fromarray(self.data.array[index], mode="L")
        return self._finish(img, int(self.targets.array[index]))


class FashionMNIST(MNIST):
    """Fashion-MNIST in MNIST's layout (``root/FashionMNIST/raw/...``)."""

    _source = _mnist.FashionMNIST
    class_labels = _mnist.FashionMNIST.class_names


class CIFAR10(_VisionDataset):
    """CIFAR-10 as ``torchvision.datasets.CIFAR10(root, train, transform, target_transform,
    download)``.

    Parameters
    ----------
    root : path-like
        Holds ``cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta).
    train : bool
        Training (50,000) or test (10,000) split.
    transform, target_transform : callable, optional
        Applied to the PIL image (RGB, 32x32) and to the int label.
    download : bool
        Fetch and unpack the archive with cnnkit's downloader when missing.

    Attributes
    ----------
    data : np.ndarray
        uint8 images, ``(N, 32, 32, 3)``.
    targets : list of int
    classes : list of str
    """

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, transform, target_transform)
        self.train = bool(train)
        src = _cifar.CIFAR10(root, train=train, download=download)
        self.data = np.ascontiguousarray(_to_uint8(src.data).transpose(0, 2, 3, 1))
        self.targets = [int(t) for t in src.targets]
        self.classes = list(src.classes)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        return self._finish(Image.fromarray(self.data[index]), self.targets[index])


def _pil_loader(path: str) -> Any:
    from PIL import Image

    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


class ImageFolder(_VisionDataset):
    """``root/<class>/<image>`` as ``torchvision.datasets.ImageFolder``, images read lazily.

    Parameters
    ----------
    root : path-like
        One sub-folder per class; sorted folder names give the class indices.
    transform, target_transform : callable, optional
        Applied to the PIL image (RGB) and to the int label.
    loader : callable, optional
        Path -> image; default opens the file with Pillow as RGB.
    is_valid_file : callable, optional
        Path -> bool choosing the files (default: by image extension).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        loader: Callable[[str], Any] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> None:
        super().__init__(root, transform, target_transform)
        base = Path(root)
        if not base.is_dir():
            raise FileNotFoundError(f"ImageFolder: no such folder {base}")
        self.loader = loader or _pil_loader
        ok = is_valid_file or (
            lambda p: p.lower().endswith((*IMG_EXTENSIONS, ".ppm", ".tif", ".tiff", ".webp"))
        )
        self.classes = sorted(e.name for e in os.scandir(base) if e.is_dir())
        self.samples: list[tuple[str, int]] = []
        for k, c in enumerate(self.classes):
            found = [
                os.path.join(d, f)
                for d, _, files in sorted(os.walk(base / c, followlinks=True))
                for f in sorted(files)
                if ok(os.path.join(d, f))
            ]
            if not found and not allow_empty:
                raise FileNotFoundError(
                    f"ImageFolder: found no valid file for class folder {base / c}"
                )
            self.samples.extend((p, k) for p in found)
        if not self.samples:
            raise FileNotFoundError(f"ImageFolder: no class folders with images under {base}")
        self.imgs = self.samples
        self.targets = [k for _, k in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        path, target = self.samples[index]
        return self._finish(self.loader(path), target)
