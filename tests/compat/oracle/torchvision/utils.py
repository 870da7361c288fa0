"""make_grid and save_image (torchvision's documented arguments)."""

import math

import numpy as np
import torch
from PIL import Image


def make_grid(tensor, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False,
              pad_value=0.0):
    if isinstance(tensor, list):
        tensor = torch.stack(tensor)
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 3:
        if tensor.size(0) == 1:
            tensor = torch.cat((tensor, tensor, tensor), 0)
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 4 and tensor.size(1) == 1:
        tensor = torch.cat((tensor, tensor, tensor), 1)
    if normalize:
        tensor = tensor.clone()

        def norm(t, lo, hi):
            t.clamp_(min=lo, max=hi)
            t.sub_(lo).div_(max(hi - lo, 1e-5))

        if scale_each:
            for t in tensor:
                lo, hi = value_range if value_range else (float(t.min()), float(t.max()))
                norm(t, lo, hi)
        else:
            lo, hi = value_range if value_range else (float(tensor.min()), float(tensor.max()))
            norm(tensor, lo, hi)
    if tensor.size(0) == 1:
        return tensor.squeeze(0)
    n = tensor.size(0)
    xmaps = min(nrow, n)
    ymaps = int(math.ceil(float(n) / xmaps))
    h, w = int(tensor.size(2) + padding), int(tensor.size(3) + padding)
    grid = tensor.new_full((tensor.size(1), h * ymaps + padding, w * xmaps + padding), pad_value)
    k = 0
    for y in range(ymaps):
        for x in range(xmaps):
            if k >= n:
                break
            grid[:, y * h + padding : (y + 1) * h, x * w + padding : (x + 1) * w] = tensor[k]
            k += 1
    return grid


def save_image(tensor, fp, **kwargs):
    grid = make_grid(tensor, **kwargs)
    arr = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    Image.fromarray(np.ascontiguousarray(arr)).save(fp)
