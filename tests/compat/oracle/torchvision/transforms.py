"""ToTensor, Normalize, Compose, Resize, RandomCrop, RandomHorizontalFlip, RandomResizedCrop,
ColorJitter (no hue) on PIL images; RandomErasing on tensors."""

import math

import numpy as np
import torch
from PIL import Image, ImageEnhance


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


def _uniform(lo, hi):
    return float(torch.empty(1).uniform_(lo, hi).item())


class RandomResizedCrop:
    """A region of area scale * (h w), aspect ratio w / h log-uniform in ratio (10 draws,
    else the central crop clamped to ratio), resized to size with bilinear filtering."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scale, self.ratio = scale, ratio

    def __call__(self, img):
        width, height = img.size
        area = height * width
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * _uniform(*self.scale)
            aspect = math.exp(_uniform(lo, hi))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                i = int(torch.randint(0, height - h + 1, size=(1,)).item())
                j = int(torch.randint(0, width - w + 1, size=(1,)).item())
                break
        else:
            r = width / height
            if r < min(self.ratio):
                w, h = width, int(round(width / min(self.ratio)))
            elif r > max(self.ratio):
                h, w = height, int(round(height * max(self.ratio)))
            else:
                w, h = width, height
            i, j = (height - h) // 2, (width - w) // 2
        img = img.crop((j, i, j + w, i + h))
        return img.resize((self.size[1], self.size[0]), Image.BILINEAR)


class ColorJitter:
    """Brightness, contrast, saturation (ImageEnhance on PIL) in a random order (randperm)."""

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0):
        def rng(v):
            return None if v == 0 else (max(0.0, 1 - v), 1 + v)

        self.ranges = [rng(brightness), rng(contrast), rng(saturation)]
        assert hue == 0, "the stand-in has no hue jitter"

    def __call__(self, img):
        order = torch.randperm(4).tolist()
        factors = [None if r is None else _uniform(*r) for r in self.ranges]
        ops = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
        for k in order:
            if k < 3 and factors[k] is not None:
                img = ops[k](img).enhance(factors[k])
        return img


class RandomErasing:
    """With probability p, a rectangle of area scale * (h w), h / w log-uniform in ratio,
    set to value (10 draws; none fitting leaves the tensor)."""

    def __init__(self, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0):
        self.p, self.scale, self.ratio, self.value = p, scale, ratio, value

    def __call__(self, t):
        if torch.rand(1) >= self.p:
            return t
        _, height, width = t.shape
        area = height * width
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * _uniform(*self.scale)
            aspect = math.exp(_uniform(lo, hi))
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if not (h < height and w < width):
                continue
            i = int(torch.randint(0, height - h + 1, size=(1,)).item())
            j = int(torch.randint(0, width - w + 1, size=(1,)).item())
            t = t.clone()
            t[:, i : i + h, j : j + w] = self.value
            return t
        return t
