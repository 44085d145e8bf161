"""Confidence selection of test-time views: keep the views whose prediction entropy is lowest."""

from __future__ import annotations

import torch

__all__ = ["LOGIT_SCALE", "prediction_entropy", "num_selected", "select_confident"]

LOGIT_SCALE = 100.0  # CLIP's logit scale: predictions are softmax(100 x cosine scores)


def prediction_entropy(scores: torch.Tensor) -> torch.Tensor:
    """``(...,)`` entropy (nats) of ``softmax(100 * scores)`` over the last (class) axis."""
    log_p = torch.log_softmax(LOGIT_SCALE * scores, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def num_selected(n_views: int, selection: float, include_original: bool) -> int:
    """How many views are kept: ``int(selection * candidates)``, at least 1 (TPT keeps 6 of 64)."""
    candidates = n_views if include_original else n_views - 1
    if candidates < 1:
        raise ValueError(f"{n_views} views leave no candidate for selection; use at least 2 views")
    return max(1, min(candidates, int(selection * candidates)))


def select_confident(scores: torch.Tensor, selection: float, include_original: bool = True) -> torch.Tensor:
    """Indices of the lowest-entropy views of each image.

    Args:
        scores: ``(B, V, C)`` scores of every view (view 0 = the original image).
        selection: fraction of the candidate views kept.
        include_original: whether view 0 is a candidate (otherwise only the augmented views are).

    Returns:
        ``(B, k)`` long view indices, lowest entropy first (ties: lower index first).
    """
    entropy = prediction_entropy(scores)  # (B, V)
    first = 0 if include_original else 1
    k = num_selected(scores.shape[1], selection, include_original)
    order = torch.argsort(entropy[:, first:], dim=1, stable=True)[:, :k]
    return order + first
