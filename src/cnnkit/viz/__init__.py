"""Pictures: loss curves, filter grids, activation maps, saliency, DeepDream (matplotlib Agg)."""

from cnnkit.viz.curves import plot_history
from cnnkit.viz.dream import deep_dream, layer_activation, plot_dream, resize_bilinear
from cnnkit.viz.filters import activations, filter_images, plot_activations, plot_filters
from cnnkit.viz.saliency import plot_saliency, saliency, saliency_map

__all__ = [
    "activations",
    "deep_dream",
    "filter_images",
    "layer_activation",
    "plot_activations",
    "plot_dream",
    "plot_filters",
    "plot_history",
    "plot_saliency",
    "resize_bilinear",
    "saliency",
    "saliency_map",
]
