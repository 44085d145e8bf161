"""Every compared method, scored from the same cached image features and text embeddings.

Baselines (class name only):
    clip_single      ``a photo of a {}.``
    clip_coop        CoOp's per-dataset template
    clip_ensemble80  the 80 OpenAI templates, embeddings averaged
Synonyms without a space:
    synonyms_mean    normalised mean of all synonym embeddings (prompt ensemble over the bank)
    synonyms_max     max cosine over all synonyms
S^3 (the kept component and its complex), one per point-to-space metric:
    s3_point_to_point_max, s3_point_to_point_mean, s3_point_to_center, s3_point_to_simplex,
    s3_point_to_local_center (the proposed metric)
"""

from __future__ import annotations

import torch

from s3.core.scoring import METRICS, score
from s3.core.text_side import BASELINE_TEMPLATES, TextSide

__all__ = ["BASELINES", "METHODS", "score_method"]

BASELINES = tuple(BASELINE_TEMPLATES)
METHODS = (*BASELINES, "synonyms_mean", "synonyms_max", *(f"s3_{m}" for m in METRICS))


def score_method(
    method: str,
    images: torch.Tensor,
    text: TextSide,
    temperature: float | None = None,
) -> torch.Tensor:
    """``(N, C)`` scores of one method.

    Args:
        images: ``(N, D)`` unit image features, on any device; the class data follow them.
        text: the benchmark's text side (its stacked forms are built once and reused).
    """
    device = images.device
    if method in BASELINES:
        return images @ text.classifiers[method].to(device).T
    if method == "synonyms_mean":
        return images @ text.synonym_centers.to(device).T
    if method == "synonyms_max":
        grouped = text.synonym_items.to(device)
        return grouped.reduce(images @ grouped.items.T, "max")
    if method.startswith("s3_") and method[3:] in METRICS:
        return score(images, text.stacked.to(device), method[3:], temperature=temperature)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
