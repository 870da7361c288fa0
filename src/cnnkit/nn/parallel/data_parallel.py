"""``nn.DataParallel`` on the CPU: PyTorch's wrapper, with one device to run on."""

from __future__ import annotations

from typing import Any

from cnnkit.nn.module import Module


class DataParallel(Module):
    """Wrap ``module`` as ``torch.nn.DataParallel`` does, for scripts that wrap unconditionally.

    PyTorch splits each batch over its GPUs; cnnkit has one CPU device, so the wrapped
    module runs the whole batch (the result is what DataParallel computes on one device).
    What scripts see is PyTorch's: the model is ``.module`` and the state dict's keys carry
    the ``module.`` prefix, so checkpoints saved from a wrapped model load into a wrapped
    one (and ``model.module.state_dict()`` into a bare one), in either library.

    Parameters
    ----------
    module : Module
        The model.
    device_ids, output_device
        Ignored, as PyTorch ignores them on a machine without CUDA.
    dim : int
        The batch dimension (only recorded: the batch is not split).
    """

    def __init__(
        self, module: Module, device_ids: Any = None, output_device: Any = None, dim: int = 0
    ) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel: expected a Module, got {type(module).__name__}")
        self.module = module
        self.dim = dim
        self.device_ids: list[Any] = []

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        return self.module(*inputs, **kwargs)
