"""The ablation grid: accuracy of the synonym and S^3 methods as one choice varies, the others at
their ``spaces`` values. Everything is scored from cached image features and saved text embeddings
(the ``spaces`` stage's text side and its per-template synonym embeddings); nothing is encoded.

Axes (the ``ablations`` section of params.yaml):
    num_synonyms   first K synonyms of each class in bank order (label first); null = all
    epsilon        radius_rule global at each value
    mst_quantile   radius_rule mst_quantile at each value
    min_gap        radius_rule largest_gap at each value
    max_dimension  largest simplex dimension; null = full clique complex
    templates      prompt set the synonyms go through (single, coop, ensemble80)
    local_center   ``simplex`` (normalised mean of a maximal simplex) or ``adaptive-k`` (the k kept
                   synonyms nearest the image, s3.ablations.adaptive)
    temperature    soft-max over local centers; null = hard max
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from s3.ablations.adaptive import point_to_adaptive_center
from s3.core.methods import score_method
from s3.core.spaces import SpaceConfig, build_spaces
from s3.core.text_side import TextSide

__all__ = ["AXES", "variant", "accuracy", "run_grid"]

AXES = ("num_synonyms", "epsilon", "mst_quantile", "min_gap", "max_dimension", "templates", "local_center", "temperature")
SPACE_METHODS = ("synonyms_mean", "synonyms_max")


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent of ``(N, C)`` scores against ``(N,)`` labels."""
    return float((scores.argmax(dim=1) == labels).float().mean() * 100.0)


def variant(text: TextSide, embeddings: Sequence[np.ndarray], spaces: dict[str, Any]) -> TextSide:
    """A text side with the same baselines and new class spaces built from ``embeddings`` (C arrays)."""
    config = SpaceConfig(**{k: v for k, v in spaces.items() if k != "templates"})
    return TextSide(text.benchmark, text.classnames, text.classifiers, text.synonyms,
                    build_spaces(embeddings, config, text.classnames), {**text.info, "spaces": dict(spaces)})


def _label(value: Any, axis: str = "") -> str:
    if value is None:  # null means "no limit" for K and max_dimension, "hard max" for the temperature
        return "hard" if axis == "temperature" else "all"
    return str(value)


def run_grid(images: torch.Tensor, labels: torch.Tensor, text: TextSide,
             template_embeddings: dict[str, list[np.ndarray]], spaces: dict[str, Any],
             ablations: dict[str, Any], timings: dict[str, float] | None = None) -> pd.DataFrame:
    """Every (axis, value, method) accuracy.

    Args:
        images: ``(N, D)`` unit image features; ``labels``: ``(N,)``.
        text: the benchmark's saved text side (built with ``spaces``).
        template_embeddings: template set -> C arrays ``(K_c, D)`` of synonym embeddings.
        spaces: the ``spaces`` section (the values of every axis not varied).
        ablations: the ``ablations`` section.
        timings: if given, filled with the wall seconds of each axis (space builds included).

    Returns:
        Rows ``axis, value, method, acc1`` (value as a string; null is ``all``, ``hard`` for the temperature).
    """
    methods = list(ablations["methods"])
    base = [s.embeddings for s in text.spaces]
    rows: list[dict[str, Any]] = []

    def add(axis: str, value: Any, side: TextSide, chosen: Sequence[str] = methods, temperature=None) -> None:
        for method in chosen:
            t = temperature if method == "s3_point_to_local_center" else None
            rows.append({"axis": axis, "value": _label(value, axis), "method": method,
                         "acc1": accuracy(score_method(method, images, side, t), labels)})

    clock = [time.perf_counter()]

    def tick(axis: str) -> None:
        now = time.perf_counter()
        if timings is not None:
            timings[axis] = timings.get(axis, 0.0) + now - clock[0]
        clock[0] = now

    with torch.no_grad():
        for k in ablations["num_synonyms"]:
            add("num_synonyms", k, variant(text, [e[:k] if k else e for e in base], spaces))
        tick("num_synonyms")
        for rule, key in (("global", "epsilon"), ("mst_quantile", "mst_quantile"), ("largest_gap", "min_gap")):
            for value in ablations[key]:
                add(key, value, variant(text, base, {**spaces, "radius_rule": rule, key: value}),
                    [m for m in methods if m.startswith("s3_")])
            tick(key)
        for dim in ablations["max_dimension"]:
            add("max_dimension", dim, variant(text, base, {**spaces, "max_dimension": dim}),
                [m for m in methods if m.startswith("s3_")])
        tick("max_dimension")
        for kind in ablations["templates"]:
            add("templates", kind, variant(text, template_embeddings[kind], {**spaces, "templates": kind}))
        tick("templates")
        if "s3_point_to_local_center" in methods:
            add("local_center", "simplex", text, ["s3_point_to_local_center"])
        for k in ablations["adaptive_k"]:
            scores = point_to_adaptive_center(images, text.stacked.vertices, k)
            rows.append({"axis": "local_center", "value": f"adaptive-{k}", "method": "s3_point_to_local_center",
                         "acc1": accuracy(scores, labels)})
        tick("local_center")
        for t in ablations["temperature"]:
            add("temperature", t, text, ["s3_point_to_local_center"], temperature=t)
        tick("temperature")
    return pd.DataFrame(rows, columns=["axis", "value", "method", "acc1"])
