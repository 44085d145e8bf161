"""Training-free open-vocabulary segmentation with any class representation of the harness.

Per image: resize the short side (as the baselines do), cut overlapping windows, take dense
patch features of every window (``s3.segmentation.dense``), score every patch with a method (single
template, ensembles, synonyms, S^3 metrics: ``s3.core.methods.score_method``), upsample each window's
scores to its pixels, average where windows overlap, upsample to the label size, take the argmax.
The background is either a class with its own names (``names``), or assigned where the best
foreground probability is below a threshold (``threshold``), or absent (``none``: 20/59-class
protocols ignore background pixels). ``s3.segmentation.evaluate`` runs it over a dataset, with the
window features from ``s3.segmentation.windows`` (cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import Normalize

from s3.encoders.models import LoadedModel
from s3.segmentation.dense import dense_features

__all__ = ["SlideConfig", "normalization", "prepare_image", "window_boxes", "window_features", "slide_scores",
           "predict"]


@dataclass(frozen=True)
class SlideConfig:
    """Sliding-window inference settings (the ``segmentation`` section of params.yaml).

    Attributes:
        variant: last-block variant (``s3.segmentation.dense.VARIANTS``).
        short_side: the image is resized so its short side has this many pixels.
        window, stride: square window and step, in pixels of the resized image.
        background: ``names`` (class 0 is background, scored by its names), ``threshold`` or ``none``.
        bg_threshold: foreground probability under which a pixel is background (``threshold``).
    """

    variant: str = "naclip"
    naclip_sigma: float = 5.0
    short_side: int = 336
    window: int = 224
    stride: int = 112
    background: str = "names"
    bg_threshold: float = 0.5
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.background not in ("names", "threshold", "none"):
            raise ValueError(f"segmentation.background must be 'names', 'threshold' or 'none', got {self.background!r}")
        if self.window <= 0 or self.stride <= 0 or self.short_side <= 0:
            raise ValueError("segmentation.window, stride and short_side must be positive")


def normalization(preprocess: Callable) -> Normalize:
    """The ``Normalize`` step of an open_clip preprocessing pipeline."""
    for transform in getattr(preprocess, "transforms", []):
        if isinstance(transform, Normalize):
            return transform
    raise ValueError("the model's preprocessing has no Normalize step")


def prepare_image(image: Image.Image, short_side: int, normalize: Normalize) -> torch.Tensor:
    """``(3, h, w)``: RGB, short side resized to ``short_side`` (bicubic), normalised."""
    image = image.convert("RGB")
    scale = short_side / min(image.size)
    size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    pixels = torch.from_numpy(np.asarray(image.resize(size, Image.BICUBIC), dtype=np.float32) / 255.0)
    return normalize(pixels.permute(2, 0, 1))


def window_boxes(height: int, width: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the windows covering an image (the last ones flush with the border)."""
    def starts(size: int) -> list[int]:
        count = max(size - window + stride - 1, 0) // stride + 1
        return sorted({max(min(i * stride, size - window), 0) for i in range(count)})

    return [(y, x) for y in starts(height) for x in starts(width)]


def window_features(loaded: LoadedModel, image: torch.Tensor, config: SlideConfig
                    ) -> tuple[list[tuple[int, int]], torch.Tensor, tuple[int, int]]:
    """Dense unit features of every window.

    Returns:
        ``boxes``, ``features`` ``(n, gh, gw, D)`` and the padded image size; images smaller than a
        window are zero-padded (bottom/right) to the window.
    """
    _, h, w = image.shape
    padded = (max(h, config.window), max(w, config.window))
    image = F.pad(image, (0, padded[1] - w, 0, padded[0] - h))
    boxes = window_boxes(*padded, config.window, config.stride)
    crops = torch.stack([image[:, y : y + config.window, x : x + config.window] for y, x in boxes])
    chunks = []
    for start in range(0, len(crops), config.batch_size):
        batch = crops[start : start + config.batch_size].to(loaded.device)
        with loaded.autocast():
            _, patches = dense_features(loaded.model.visual, batch, config.variant, config.naclip_sigma)
        chunks.append(F.normalize(patches.float(), dim=-1).cpu())
    return boxes, torch.cat(chunks), padded


def slide_scores(boxes: Sequence[tuple[int, int]], window_scores: torch.Tensor, padded: tuple[int, int],
                 image_size: tuple[int, int], window: int) -> torch.Tensor:
    """Average overlapping windows' scores into one ``(C, h, w)`` map.

    Args:
        window_scores: ``(n, gh, gw, C)`` per-patch scores of each window.
        padded: the padded image size the boxes refer to; ``image_size``: the size before padding.
    """
    num_classes = window_scores.shape[-1]
    total = torch.zeros(num_classes, *padded)
    count = torch.zeros(1, *padded)
    per_pixel = F.interpolate(window_scores.permute(0, 3, 1, 2), size=(window, window), mode="bilinear",
                              align_corners=False)
    for (y, x), scores in zip(boxes, per_pixel):
        total[:, y : y + window, x : x + window] += scores
        count[:, y : y + window, x : x + window] += 1
    return (total / count)[:, : image_size[0], : image_size[1]]


def predict(scores: torch.Tensor, label_size: tuple[int, int], background: str, threshold: float,
            logit_scale: float = 100.0) -> torch.Tensor:
    """``(H, W)`` labels from ``(C, h, w)`` scores, upsampled to the label size."""
    scores = F.interpolate(scores[None], size=label_size, mode="bilinear", align_corners=False)[0]
    if background != "threshold":
        return scores.argmax(0)
    probabilities = (logit_scale * scores[1:]).softmax(0)  # foreground classes only
    best, label = probabilities.max(0)
    return torch.where(best < threshold, torch.zeros_like(label), label + 1)
