"""Classification metrics with CLIP_benchmark's names: acc1, acc5, mean_per_class_recall."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["classification_metrics"]


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Top-1/top-5 accuracy, mean per-class recall and per-class accuracy, in percent.

    Args:
        scores: ``(N, C)`` class scores (higher is better).
        labels: ``(N,)`` int labels in ``0 .. C-1``.

    Returns:
        ``{"acc1", "acc5", "mean_per_class_recall": float, "per_class_accuracy": list[float | None]}``;
        a class without test images gets ``None`` and is left out of the mean.
    """
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} do not match")
    num_classes = scores.shape[1]
    if labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(
            f"label {int(labels.max())} but only {num_classes} classes scored: the class list and the "
            "dataset disagree (check the benchmark's class count)"
        )
    k = min(5, num_classes)
    topk = scores.topk(k, dim=1).indices
    correct1 = topk[:, 0] == labels
    acc5 = (topk == labels[:, None]).any(dim=1).float().mean().item() * 100
    per_class: list[float | None] = []
    for c in range(num_classes):
        mask = labels == c
        per_class.append(correct1[mask].float().mean().item() * 100 if mask.any() else None)
    present = [a for a in per_class if a is not None]
    return {
        "acc1": correct1.float().mean().item() * 100,
        "acc5": acc5,
        "mean_per_class_recall": sum(present) / len(present) if present else float("nan"),
        "per_class_accuracy": per_class,
    }
