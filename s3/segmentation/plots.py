"""Segmentation figure: images, ground truth and the predictions of a few methods."""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np

from s3.segmentation.datasets import IGNORE_INDEX

__all__ = ["examples_figure"]


def _colour(labels: np.ndarray, num_classes: int) -> np.ndarray:
    palette = (plt.get_cmap("tab20", max(num_classes, 2))(np.arange(max(num_classes, 2)))[:, :3] * 255).astype(np.uint8)
    rgb = palette[np.clip(labels, 0, num_classes - 1)]
    rgb[labels == IGNORE_INDEX] = 255
    return rgb


def examples_figure(examples: Sequence[dict[str, Any]], methods: Sequence[str], num_classes: int) -> plt.Figure:
    """One row per example: image, ground truth, then each method's prediction (ignore = white)."""
    if not examples:
        raise ValueError("no examples to draw: set segmentation.examples to at least 1 (the figure is a stage output)")
    columns = 2 + len(methods)
    fig, axes = plt.subplots(len(examples), columns, figsize=(2.2 * columns, 2.2 * len(examples)), squeeze=False)
    for row, example in zip(axes, examples):
        panels = [np.asarray(example["image"]), _colour(example["mask"].numpy(), num_classes)]
        panels += [_colour(example["predictions"][m].numpy(), num_classes) for m in methods]
        for ax, panel, title in zip(row, panels, ["image", "ground truth", *methods]):
            ax.imshow(panel)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    return fig
