"""Score every test-time method from cached view features: accuracy, entropy, shift and cost."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import torch

from s3.analysis.costs import Cost, measure
from s3.core.methods import score_method
from s3.core.metrics import classification_metrics
from s3.core.text_side import TextSide
from s3.tta.adapt import TTA_METHODS, TTAConfig, TTAError, prototypes_for, run_tta

__all__ = ["config_from_params", "evaluate_tta", "sweep"]


def config_from_params(tta: dict[str, Any], **changes: Any) -> TTAConfig:
    """The adaptation settings of a ``tta`` params section (with ``changes`` applied)."""
    keys = ("steps", "lr", "weight_decay", "selection", "include_original", "free_alpha")
    return TTAConfig(**({k: tta[k] for k in keys} | changes))


def evaluate_tta(views: torch.Tensor, labels: torch.Tensor, text: TextSide, config: TTAConfig,
                 methods: Sequence[str], temperature: float | None = None, batch_size: int = 32,
                 device: torch.device | str = "cpu") -> tuple[dict[str, dict[str, Any]], list[Cost]]:
    """Every test-time method (``TTA_METHODS``) plus its unadapted method, on the same views.

    Args:
        views: ``(N, V, D)`` view features (float16 from the cache is fine; view 0 = original).

    Returns:
        ``(records, costs)``: method -> metrics (``classification_metrics``) plus ``entropy_before``/
        ``entropy_after``/``shift`` (means over images); one ``Cost`` (``tta/<method>``, adaptation and
        scoring from cached views: wall time and peak memory on ``device``) per test-time method.
    """
    unknown = [m for m in methods if m not in TTA_METHODS]
    if unknown:
        raise TTAError(f"unknown test-time methods {unknown}; choose from {', '.join(TTA_METHODS)}")
    device = torch.device(device)
    views = views.float()
    out: dict[str, dict[str, Any]] = {}
    costs: list[Cost] = []
    for method in methods:
        base, mode = TTA_METHODS[method]
        protos = prototypes_for(base, text, temperature)
        with measure(device, f"tta/{method}", items=len(labels)) as cost:
            result = run_tta(views, protos, config, mode, batch_size, device)
        cost.extra = {"n_views": int(views.shape[1]), "batch_size": batch_size, "steps": config.steps}
        costs.append(cost)
        out[method] = classification_metrics(result["scores"], labels) | {
            "adapts": base, "mode": mode, "entropy_before": float(result["entropy_before"].mean()),
            "entropy_after": float(result["entropy_after"].mean()), "shift": float(result["shift"].mean())}
        if base not in out:
            with torch.no_grad():
                plain = score_method(base, views[:, 0].contiguous(), text, temperature)
            out[base] = classification_metrics(plain, labels) | {"adapts": None, "mode": "none"}
    return out, costs


def sweep(views: torch.Tensor, labels: torch.Tensor, text: TextSide, config: TTAConfig,
          n_views: Sequence[int], selections: Sequence[float], temperature: float | None = None,
          method: str = "ts3", batch_size: int = 32, device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """Top-1 of ``method`` on the first ``n`` views of each image (view 0 + n-1 augmentations) for
    every ``n`` in ``n_views`` (at the configured selection), and for every selection fraction (all views)."""
    base, mode = TTA_METHODS[method]
    protos = prototypes_for(base, text, temperature)
    rows = []
    views = views.float()
    for n in sorted({min(int(n), views.shape[1]) for n in n_views}):
        acc = classification_metrics(run_tta(views[:, :n], protos, config, mode, batch_size, device)["scores"], labels)
        rows.append({"sweep": "n_views", "n_views": n, "selection": config.selection, "acc1": acc["acc1"]})
    for fraction in selections:
        changed = replace(config, selection=float(fraction))
        acc = classification_metrics(run_tta(views, protos, changed, mode, batch_size, device)["scores"], labels)
        rows.append({"sweep": "selection", "n_views": int(views.shape[1]), "selection": float(fraction),
                     "acc1": acc["acc1"]})
    return rows
