"""``cnnkit.utils``: PyTorch's ``torch.utils`` namespace (``cnnkit.utils.data``)."""

from cnnkit.utils import data

__all__ = ["data"]
