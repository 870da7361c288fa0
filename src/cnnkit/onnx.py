"""``cnnkit.onnx.export``: PyTorch's ONNX export signature over :func:`cnnkit.io.export_onnx`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["export"]


def export(
    model: Any,
    args: Any,
    f: str | os.PathLike,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: dict[str, Any] | None = None,
    opset_version: int | None = None,
    **_kw: Any,
) -> None:
    """Export ``model`` traced on ``args`` to an ONNX file, as ``torch.onnx.export``.

    Parameters
    ----------
    model : Module
        The model.
    args : Tensor or tuple of one Tensor
        An example input ``(N, ...)``; only its shape is used.
    f : path
        Destination ``.onnx`` file.
    input_names, output_names : list of str, optional
        Names of the graph's (single) input and output.
    dynamic_axes : dict, optional
        As in PyTorch; a dynamic dimension 0 of the input makes the batch symbolic.
        Without it the batch size is fixed to the example's, as in PyTorch.
    opset_version : int, optional
        ONNX opset (default 17).
    """
    from cnnkit.io.onnx_export import export_onnx

    x = args[0] if isinstance(args, (tuple, list)) else args
    if isinstance(args, (tuple, list)) and len(args) != 1:
        raise ValueError(f"onnx.export: cnnkit exports single-input models; got {len(args)} inputs")
    in_name = input_names[0] if input_names else "input"
    out_name = output_names[0] if output_names else "output"
    dyn = False
    if dynamic_axes:
        axes = dynamic_axes.get(in_name, {})
        dyn = 0 in (axes if isinstance(axes, (list, tuple, dict)) else [])
    export_onnx(
        model,
        f,
        tuple(x.shape),
        opset=17 if opset_version is None else int(opset_version),
        input_name=in_name,
        output_name=out_name,
        dynamic_batch=dyn,
    )
