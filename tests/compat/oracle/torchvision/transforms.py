"""ToTensor, Normalize, Compose, Resize, RandomCrop, RandomHorizontalFlip on PIL images."""

import numpy as np
import torch
from PIL import Image


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class ToTensor:
    def __call__(self, pic):
        a = np.asarray(pic)
        if a.ndim == 2:
            a = a[:, :, None]
        return torch.from_numpy(a.transpose(2, 0, 1).copy()).float().div(255)


class Normalize:
    def __init__(self, mean, std, inplace=False):
        self.mean, self.std = mean, std

    def __call__(self, t):
        m = torch.as_tensor(self.mean, dtype=t.dtype).view(-1, 1, 1)
        s = torch.as_tensor(self.std, dtype=t.dtype).view(-1, 1, 1)
        return (t - m) / s


class Resize:
    def __init__(self, size):
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, img):
        return img.resize((self.size[1], self.size[0]), Image.BILINEAR)


class RandomCrop:
    def __init__(self, size, padding=None):
        self.size, self.padding = size, padding

    def __call__(self, img):
        a = np.asarray(img)
        if self.padding:
            p = self.padding
            a = np.pad(a, ((p, p), (p, p)) + (((0, 0),) if a.ndim == 3 else ()))
        h, w = a.shape[:2]
        i = int(torch.randint(0, h - self.size + 1, size=(1,)).item())
        j = int(torch.randint(0, w - self.size + 1, size=(1,)).item())
        return Image.fromarray(a[i : i + self.size, j : j + self.size])


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        if torch.rand(1) < self.p:
            return img.transpose(Image.FLIP_LEFT_RIGHT)
        return img
