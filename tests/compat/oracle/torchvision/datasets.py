"""MNIST / FashionMNIST (IDX under root/<Name>/raw) and CIFAR10 (root/cifar-10-batches-py)."""

import gzip
import os
import pickle

import numpy as np
import torch
from PIL import Image


def _read_idx(path):
    if not os.path.exists(path):
        path = path + ".gz"
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


class MNIST(torch.utils.data.Dataset):
    classes = [str(i) for i in range(10)]

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        raw = os.path.join(root, type(self).__name__, "raw")
        p = "train" if train else "t10k"
        self.data = torch.from_numpy(_read_idx(os.path.join(raw, f"{p}-images-idx3-ubyte")).copy())
        self.targets = torch.from_numpy(
            _read_idx(os.path.join(raw, f"{p}-labels-idx1-ubyte")).astype(np.int64)
        )
        self.transform, self.target_transform = transform, target_transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        img = Image.fromarray(self.data[i].numpy(), mode="L")
        target = int(self.targets[i])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


class FashionMNIST(MNIST):
    pass


class CIFAR10(torch.utils.data.Dataset):
    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        folder = os.path.join(root, "cifar-10-batches-py")
        names = [f"data_batch_{k}" for k in range(1, 6)] if train else ["test_batch"]
        xs, ys = [], []
        for n in names:
            with open(os.path.join(folder, n), "rb") as f:
                d = pickle.load(f, encoding="latin1")  # test-generated files only
            xs.append(d[b"data"] if b"data" in d else d["data"])
            ys.extend(d[b"labels"] if b"labels" in d else d["labels"])
        self.data = np.concatenate(xs).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.targets = list(ys)
        with open(os.path.join(folder, "batches.meta"), "rb") as f:
            meta = pickle.load(f, encoding="latin1")
        self.classes = [c.decode() if isinstance(c, bytes) else c for c in meta[b"label_names"]]
        self.transform, self.target_transform = transform, target_transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        img, target = Image.fromarray(self.data[i]), self.targets[i]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target
