"""Metrics: classification (CLIP_benchmark's names acc1, acc5, mean_per_class_recall) and
segmentation (mIoU from a confusion matrix, as mmsegmentation computes it)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["classification_metrics", "confusion_matrix", "segmentation_metrics"]


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


def confusion_matrix(prediction: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """``(C, C)`` int64 pixel counts, rows = ground truth, columns = prediction; ignored pixels skipped."""
    keep = target != ignore_index
    target, prediction = target[keep].long(), prediction[keep].long()
    if target.numel() and int(target.max()) >= num_classes:
        raise ValueError(f"mask label {int(target.max())} but only {num_classes} classes: wrong class list for the masks")
    return torch.bincount(target * num_classes + prediction, minlength=num_classes**2).reshape(num_classes, num_classes)


def segmentation_metrics(confusion: torch.Tensor) -> dict[str, Any]:
    """mIoU, per-class IoU, pixel accuracy and mean class accuracy (percent) from a confusion matrix.

    A class absent from both ground truth and prediction has no IoU (``None``) and is left out of
    the mean, as in mmsegmentation.
    """
    confusion = confusion.double()
    intersection = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    gt = confusion.sum(1)
    iou = [float(i / u * 100) if u > 0 else None for i, u in zip(intersection, union)]
    acc = [float(i / g * 100) if g > 0 else None for i, g in zip(intersection, gt)]
    present_iou = [v for v in iou if v is not None]
    present_acc = [v for v in acc if v is not None]
    return {
        "miou": sum(present_iou) / len(present_iou) if present_iou else float("nan"),
        "per_class_iou": iou,
        "pixel_accuracy": float(intersection.sum() / confusion.sum() * 100) if confusion.sum() > 0 else float("nan"),
        "mean_accuracy": sum(present_acc) / len(present_acc) if present_acc else float("nan"),
    }
