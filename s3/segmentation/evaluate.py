"""Segmentation of a whole dataset: every image's window features (``s3.segmentation.windows``,
from the window cache when one is given) scored by every method, confusion matrices accumulated.

Dense inference and scoring are apart: the window features depend only on the model and the
window settings, the scores on the class side too. With a cache, a change of ``spaces``, ``text``,
the methods, the temperature or the background settings re-scores the cached windows without a
forward pass (only the masks, and the few images of the example figure, are read again).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image

from s3.core.methods import score_method
from s3.core.metrics import confusion_matrix
from s3.core.text_side import TextSide
from s3.encoders.cache import EmbeddingCache
from s3.encoders.models import LoadedModel
from s3.progress import progress
from s3.segmentation.datasets import IGNORE_INDEX, SegImageList, read_mask
from s3.segmentation.slide import SlideConfig, predict, slide_scores, window_boxes
from s3.segmentation.windows import image_windows

__all__ = ["evaluate_segmentation"]


def evaluate_segmentation(
    loaded: LoadedModel,
    dataset: SegImageList,
    text: TextSide,
    methods: Sequence[str],
    config: SlideConfig,
    temperature: float | None = None,
    max_images: int | None = None,
    keep_examples: int = 0,
    cache: EmbeddingCache | None = None,
    shard_size: int = 64,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Confusion matrix of every method over the dataset, and a few examples for a figure.

    Dense features of each window are computed once (or read from ``cache``: the window cache,
    shards of ``shard_size`` images) and scored by every method.

    Returns:
        ``confusions``: method -> ``(C, C)``; ``examples``: dicts with ``image`` (PIL), ``mask``
        and ``predictions`` (method -> ``(H, W)``) for the first ``keep_examples`` images.
    """
    if config.background == "names" and text.classnames[0] != "background" and not dataset.reduce_zero_label:
        raise ValueError("background: names needs 'background' as class 0 of the class list; use "
                         "background: threshold, or a 20/59-class protocol (voc20, context59) that ignores it")
    num_classes = len(text.classnames)
    confusions = {m: torch.zeros(num_classes, num_classes, dtype=torch.long) for m in methods}
    examples = []
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    windows = image_windows(loaded, dataset, config, count, cache, shard_size)
    for i, features, size in progress(windows, total=count, desc=f"segment {dataset.benchmark}", unit="image"):
        mask = torch.from_numpy(read_mask(dataset.masks[i], dataset.reduce_zero_label))
        padded = (max(size[0], config.window), max(size[1], config.window))
        boxes = window_boxes(*padded, config.window, config.stride)
        if len(boxes) != len(features):
            raise ValueError(f"{dataset.images[i]}: {len(features)} cached windows, {len(boxes)} expected")
        flat = features.float().reshape(-1, features.shape[-1])
        predictions = {}
        for method in methods:
            scores = score_method(method, flat, text, temperature)
            scores = scores.reshape(*features.shape[:3], -1)
            scores = slide_scores(boxes, scores, padded, size, config.window)
            predictions[method] = predict(scores, tuple(mask.shape), config.background, config.bg_threshold)
            confusions[method] += confusion_matrix(predictions[method], mask, num_classes, IGNORE_INDEX)
        if i < keep_examples:
            with Image.open(dataset.images[i]) as raw:
                examples.append({"image": raw.convert("RGB"), "mask": mask, "predictions": predictions})
    return confusions, examples
