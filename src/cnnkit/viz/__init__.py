"""Pictures: loss curves, filter grids, activation maps, saliency, DeepDream (matplotlib Agg)."""

from cnnkit.viz.curves import plot_history
from cnnkit.viz.dream import (
    data_range,
    deep_dream,
    layer_activation,
    layer_norm,
    plot_dream,
    resize_bilinear,
)
from cnnkit.viz.filters import activations, filter_images, plot_activations, plot_filters
from cnnkit.viz.patches import TopPatches, plot_top_patches, top_patches
from cnnkit.viz.saliency import plot_saliency, saliency, saliency_map

__all__ = [
    "TopPatches",
    "activations",
    "data_range",
    "deep_dream",
    "filter_images",
    "layer_activation",
    "layer_norm",
    "plot_activations",
    "plot_dream",
    "plot_filters",
    "plot_history",
    "plot_saliency",
    "plot_top_patches",
    "resize_bilinear",
    "saliency",
    "saliency_map",
    "top_patches",
]
