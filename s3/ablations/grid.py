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

from s3.ablations.adaptive import adaptive_from_products
from s3.ablations.items import SharedItems, plan_method
from s3.ablations.set_kernels import argmax_hits
from s3.core.spaces import SpaceConfig, build_spaces
from s3.core.text_side import TextSide

__all__ = ["AXES", "variant", "accuracy", "run_grid"]

AXES = ("num_synonyms", "epsilon", "mst_quantile", "min_gap", "max_dimension", "templates", "local_center", "temperature")


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


def _variants(text: TextSide, template_embeddings: dict[str, list[np.ndarray]], spaces: dict[str, Any],
              ablations: dict[str, Any]) -> list[tuple[str, Any, str, list, list[str], float | None]]:
    """Every grid cell but the adaptive centers: ``(axis, value, bank, spaces, methods, temperature)``.

    ``bank`` names the synonym embeddings the variant's spaces index: ``text`` (the text side's own
    template set) or a template set of ``template_embeddings``.
    """
    methods = list(ablations["methods"])
    s3_methods = [m for m in methods if m.startswith("s3_")]
    base = [s.embeddings for s in text.spaces]
    out = []
    for k in ablations["num_synonyms"]:
        out.append(("num_synonyms", k, "text", variant(text, [e[:k] if k else e for e in base], spaces).spaces, methods, None))
    for rule, key in (("global", "epsilon"), ("mst_quantile", "mst_quantile"), ("largest_gap", "min_gap")):
        for value in ablations[key]:
            side = variant(text, base, {**spaces, "radius_rule": rule, key: value})
            out.append((key, value, "text", side.spaces, s3_methods, None))
    for dim in ablations["max_dimension"]:
        out.append(("max_dimension", dim, "text", variant(text, base, {**spaces, "max_dimension": dim}).spaces,
                    s3_methods, None))
    for kind in ablations["templates"]:
        side = variant(text, template_embeddings[kind], {**spaces, "templates": kind})
        same = all(np.array_equal(a, b) for a, b in zip(template_embeddings[kind], base))  # the text side's own set
        out.append(("templates", kind, "text" if same else kind, side.spaces, methods, None))
    if "s3_point_to_local_center" in methods:
        out.append(("local_center", "simplex", "text", text.spaces, ["s3_point_to_local_center"], None))
        for t in ablations["temperature"]:
            out.append(("temperature", t, "text", text.spaces, ["s3_point_to_local_center"], t))
    return out


def run_grid(images: torch.Tensor, labels: torch.Tensor, text: TextSide,
             template_embeddings: dict[str, list[np.ndarray]], spaces: dict[str, Any],
             ablations: dict[str, Any], timings: dict[str, float] | None = None,
             chunk_size: int = 2048) -> pd.DataFrame:
    """Every (axis, value, method) accuracy.

    All variants of one synonym bank are scored in one pass over the images: the distinct items
    of every variant are scored once per image chunk (``s3.ablations.items``), and each (variant,
    method) is a reduction of those scores.

    Args:
        images: ``(N, D)`` unit image features; ``labels``: ``(N,)``.
        text: the benchmark's saved text side (built with ``spaces``).
        template_embeddings: template set -> C arrays ``(K_c, D)`` of synonym embeddings.
        spaces: the ``spaces`` section (the values of every axis not varied).
        ablations: the ``ablations`` section.
        timings: if given, filled with the wall seconds of each part (``spaces``: building the
            variants; ``scoring``: the image pass, image-adaptive centers included).

    Returns:
        Rows ``axis, value, method, acc1`` (value as a string; null is ``all``, ``hard`` for the temperature).
    """
    clock = [time.perf_counter()]

    def tick(part: str) -> None:
        now = time.perf_counter()
        if timings is not None:
            timings[part] = timings.get(part, 0.0) + now - clock[0]
        clock[0] = now

    cells = _variants(text, template_embeddings, spaces, ablations)
    tick("spaces")
    banks = {"text": [s.embeddings for s in text.spaces], **template_embeddings}
    shared = {name: SharedItems(banks[name]) for name in {bank for _, _, bank, _, _, _ in cells}}
    plans = [(i, method, shared[bank], plan_method(method, side, shared[bank], t if method == "s3_point_to_local_center" else None))
             for i, (_, _, bank, side, methods, t) in enumerate(cells) for method in methods]
    adaptive_k = list(ablations["adaptive_k"]) if "s3_point_to_local_center" in ablations["methods"] else []
    if adaptive_k and "text" not in shared:
        shared["text"] = SharedItems(banks["text"])
    kept_rows = [(shared["text"].offsets[c] + s.kept).tolist() for c, s in enumerate(text.spaces)] if adaptive_k else []
    adaptive_hits = dict.fromkeys(adaptive_k, 0)
    correct = {(i, method): 0 for i, method, _, _ in plans}
    keys = {(i, method): plan.key() for i, method, _, plan in plans}
    with torch.no_grad():
        for lo in range(0, images.shape[0], chunk_size):
            x, y = images[lo : lo + chunk_size].float(), labels[lo : lo + chunk_size]
            item_scores = {id(items): items.scores(x, cones=False) for items in shared.values()}
            hits: dict[tuple, int] = {}  # plan key -> correct predictions in this chunk
            for i, method, items, plan in plans:
                key = (id(items), keys[i, method])
                if key not in hits:
                    hits[key] = plan.top1_hits(item_scores[id(items)], items, y)
                correct[i, method] += hits[key]
            if adaptive_k:
                products = item_scores[id(shared["text"])]["products"]
                for k, scores in adaptive_from_products(products, shared["text"].bank, kept_rows, adaptive_k).items():
                    adaptive_hits[k] += argmax_hits(scores, y)
    tick("scoring")
    rows = [{"axis": axis, "value": _label(value, axis), "method": method,
             "acc1": 100.0 * correct[i, method] / max(len(labels), 1)}
            for i, (axis, value, _, _, methods, _) in enumerate(cells) for method in methods]
    rows += [{"axis": "local_center", "value": f"adaptive-{k}", "method": "s3_point_to_local_center",
              "acc1": 100.0 * adaptive_hits[k] / max(len(labels), 1)} for k in adaptive_k]
    order = {axis: i for i, axis in enumerate(AXES)}
    rows.sort(key=lambda r: order[r["axis"]])  # stable: the values keep their params.yaml order
    return pd.DataFrame(rows, columns=["axis", "value", "method", "acc1"])
