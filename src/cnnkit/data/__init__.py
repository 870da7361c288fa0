"""Datasets, data loading and per-sample transforms (PyTorch's ``torch.utils.data`` names).

Everything here works on NumPy arrays; :class:`DataLoader` yields
:class:`cnnkit.tensor.Tensor` batches.
"""

from cnnkit.data import transforms
from cnnkit.data.cifar import CIFAR10, RestrictedUnpickler, safe_load_pickle
from cnnkit.data.dataset import (
    ConcatDataset,
    Dataset,
    LabeledArrays,
    Subset,
    TensorDataset,
    random_split,
)
from cnnkit.data.digits import Digits
from cnnkit.data.distributed import DistributedSampler
from cnnkit.data.download import (
    DownloadError,
    download_dataset,
    download_from_mirrors,
    download_url,
    md5sum,
)
from cnnkit.data.folder import IMG_EXTENSIONS, ImageFolder, load_image
from cnnkit.data.loader import DataLoader, default_collate
from cnnkit.data.mnist import MNIST, FashionMNIST, read_idx
from cnnkit.data.scenes import DigitScenes, detection_collate
from cnnkit.data.transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip, ToFloat

__all__ = [
    "CIFAR10",
    "IMG_EXTENSIONS",
    "MNIST",
    "Compose",
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "DigitScenes",
    "Digits",
    "DistributedSampler",
    "DownloadError",
    "FashionMNIST",
    "ImageFolder",
    "LabeledArrays",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RestrictedUnpickler",
    "Subset",
    "TensorDataset",
    "ToFloat",
    "default_collate",
    "detection_collate",
    "download_dataset",
    "download_from_mirrors",
    "download_url",
    "load_image",
    "md5sum",
    "random_split",
    "read_idx",
    "safe_load_pickle",
    "transforms",
]
