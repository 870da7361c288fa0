"""Images sorted into one folder per class."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cnnkit.data.dataset import LabeledArrays

__all__ = ["IMG_EXTENSIONS", "ImageFolder", "load_image"]

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _size_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        hw = (int(size), int(size))
    else:
        if len(size) != 2:
            raise ValueError(f"ImageFolder: size must be an int or (h, w); got {size!r}")
        hw = (int(size[0]), int(size[1]))
    if min(hw) < 1:
        raise ValueError(f"ImageFolder: size must be positive; got {size!r}")
    return hw


def load_image(
    path: str | os.PathLike, size: tuple[int, int] | None = None, grayscale: bool = False
) -> np.ndarray:
    """Load one image as a float32 ``(C, H, W)`` array in ``[0, 1]`` (see
    :func:`cnnkit.data.images.decode_image`, the one image decoder).

    Parameters
    ----------
    path : path-like
        The image file (any format Pillow reads).
    size : (int, int), optional
        Resize to ``(H, W)`` (bilinear).
    grayscale : bool
        Convert to one channel (``L``) instead of three (``RGB``).

    Returns
    -------
    np.ndarray
        Shape ``(1, H, W)`` or ``(3, H, W)``, float32.

    Raises
    ------
    ValueError
        Pillow cannot read the file, or it has more pixels than
        :data:`cnnkit.limits.MAX_IMAGE_PIXELS`; the message names it.
    """
    from cnnkit.data.images import decode_image

    try:
        return decode_image(path, size, grayscale)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None


class ImageFolder(LabeledArrays):
    """Images laid out as ``root/<class>/<image>``, loaded into memory.

    Parameters
    ----------
    root : path-like
        Folder with one sub-folder per class (sorted names give the class indices).
    transform : callable, optional
        Applied to each ``(C, H, W)`` image in ``__getitem__``.
    size : int or (int, int), optional
        Resize every image to ``(H, W)`` (an int means square).
    grayscale : bool
        Load one channel instead of RGB.

    Attributes
    ----------
    classes : list of str
        Sorted class folder names.
    samples : list of (str, int)
        ``(path, class index)`` per image, in class then file-name order.
    data : np.ndarray
        float32 images in ``[0, 1]``, shape ``(N, C, H, W)``.
    targets : np.ndarray
        int64 class indices, shape ``(N,)``.

    Raises
    ------
    FileNotFoundError
        ``root`` is missing, holds no class folder with images, or a class folder holds
        no image (refused, as torchvision's default ``allow_empty=False``).
    ValueError
        An image cannot be read, or images differ in size (pass ``size=``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        size: int | Sequence[int] | None = None,
        grayscale: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolder: no such folder {self.root}")
        hw = _size_hw(size)
        classes = sorted(
            d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        samples: list[tuple[str, int]] = []
        empty = []
        for k, c in enumerate(classes):
            found = [
                (str(f), k)
                for f in sorted((self.root / c).rglob("*"))
                if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS and not f.name.startswith(".")
            ]
            if not found:
                empty.append(c)
            samples.extend(found)
        if empty and samples:  # torchvision's default (allow_empty=False): refuse
            raise FileNotFoundError(
                f"ImageFolder: class folder(s) {', '.join(str(self.root / c) for c in empty)} "
                f"hold no images ({', '.join(IMG_EXTENSIONS)}); add images or remove the "
                "folder (an empty class would get an index and never a sample)"
            )
        if not samples:
            raise FileNotFoundError(
                f"ImageFolder: no images ({', '.join(IMG_EXTENSIONS)}) in class folders "
                f"under {self.root}"
            )
        images = []
        first: tuple[str, tuple[int, ...]] | None = None
        for path, _ in samples:
            img = load_image(path, hw, grayscale)
            if first is None:
                first = (path, img.shape)
            elif img.shape != first[1]:
                raise ValueError(
                    f"{path}: image size {img.shape[1:]} differs from {first[1][1:]} of "
                    f"{first[0]}; pass size=(h, w) to resize all images"
                )
            images.append(img)
        self.samples = samples
        self.grayscale = grayscale
        self.size = hw
        super().__init__(
            np.stack(images), np.array([t for _, t in samples]), classes, transform=transform
        )
