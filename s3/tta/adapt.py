"""The TS^3 shift: one offset per class added to every item of its space, fitted per image.

For an image with views ``x_1..x_V`` (view 0 = the original) and class items ``t`` (local
centers, vertices or a single prototype; unit rows), TS^3 (as we reconstruct it):

1. scores every view against the unshifted spaces and keeps the ``selection`` fraction with the
   lowest prediction entropy (``s3.tta.select``);
2. shifts class c's items to ``normalize(t + o_c)`` with one offset ``o_c`` per class (zero at
   first) and takes ``steps`` AdamW steps on the entropy of the mean prediction
   ``mean_k softmax(100 * score(x_k))`` over the selected views;
3. classifies the original view with the shifted items. Episodic: offsets start at zero for
   every image.

The shifted cosine is computed without materialising shifted items: for a unit item t,
``x . normalize(s t + o) = (s x.t + x.o) / sqrt(s^2 + 2 s t.o + |o|^2)``, so one image costs a
``(V, L)`` product with the shared items plus ``(V, C)`` and ``(L,)`` products with its offsets.
Offsets of a batch of B images are one ``(B, C, D)`` tensor; the loss is the *sum* of the images'
entropies, so each image's gradient is its own and AdamW (elementwise) updates each image
exactly as it would alone: no Python loop over images, and no dependence on the batch.

Training-free variant (``mode="free"``): each item moves toward the normalised mean m of the
selected views in proportion to the class probability p_c of their mean prediction,
``t' = normalize((1 - a p_c) t + a p_c m)`` (``a`` = ``free_alpha``), with no gradient.
Baseline ``mode="average"``: the mean prediction of the selected views, no shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from s3.core.scoring import GroupedItems
from s3.core.text_side import BASELINE_TEMPLATES, TextSide
from s3.errors import S3Error
from s3.tta.select import LOGIT_SCALE, select_confident

__all__ = ["TTAConfig", "Prototypes", "prototypes_for", "shifted_scores", "mean_prediction_entropy",
           "adapt_offsets", "adapt_batch", "run_tta", "MODES", "TTA_METHODS", "TTAError"]

MODES = ("shift", "free", "average")

# Test-time method -> (the scoring method it adapts, mode).
TTA_METHODS = {
    "ts3": ("s3_point_to_local_center", "shift"),
    "ts3_free": ("s3_point_to_local_center", "free"),
    "views_average": ("s3_point_to_local_center", "average"),
    "tps_clip_ensemble80": ("clip_ensemble80", "shift"),
    "tps_synonyms_mean": ("synonyms_mean", "shift"),
}


class TTAError(S3Error):
    """A test-time setting that cannot be run."""


@dataclass(frozen=True)
class TTAConfig:
    """The adaptation's parameters (``tta`` section of ``params.yaml``).

    Attributes:
        steps: AdamW steps per image (0: no shift, TS^3 == S^3).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay (torch's default).
        selection: fraction of the candidate views kept by confidence.
        include_original: whether the original view is a selection candidate.
        free_alpha: step of the training-free variant (1: a class of probability 1 moves to the views' mean).
    """

    steps: int = 1
    lr: float = 5e-3
    weight_decay: float = 0.01
    selection: float = 0.1
    include_original: bool = True
    free_alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise TTAError(f"tta.steps must be >= 0, got {self.steps}")
        if not 0 < self.selection <= 1:
            raise TTAError(f"tta.selection must be in (0, 1], got {self.selection}")
        if self.lr <= 0:
            raise TTAError(f"tta.lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class Prototypes:
    """What a class is scored against: items grouped by class and the per-class reduction."""

    items: GroupedItems
    reduction: str = "max"
    temperature: float = 0.01

    @property
    def num_classes(self) -> int:
        return self.items.num_classes

    def to(self, device: torch.device | str) -> "Prototypes":
        return Prototypes(self.items.to(device), self.reduction, self.temperature)


def _single(rows: torch.Tensor) -> GroupedItems:
    """One item per class from ``(C, D)`` rows."""
    return GroupedItems.from_lists([r[None].numpy() for r in rows.float().cpu()])


def prototypes_for(method: str, text: TextSide, temperature: float | None = None) -> Prototypes:
    """The items of a scoring method (``s3.core.methods.METHODS``) that the shift moves.

    ``s3_point_to_simplex`` is not supported (a shifted simplex has no closed-form cosine here).
    """
    if method in BASELINE_TEMPLATES:
        return Prototypes(_single(text.classifiers[method]))
    if method == "synonyms_mean":
        return Prototypes(_single(text.synonym_centers))
    if method == "synonyms_max":
        return Prototypes(text.synonym_items)
    stacked = text.stacked
    if method == "s3_point_to_local_center":
        if temperature:
            return Prototypes(stacked.local_centers, "softmax", float(temperature))
        return Prototypes(stacked.local_centers)
    if method in ("s3_point_to_point_max", "s3_point_to_point_mean"):
        return Prototypes(stacked.vertices, method.rsplit("_", 1)[1])
    if method == "s3_point_to_center":
        return Prototypes(_single(stacked.centers))
    raise TTAError(f"test-time adaptation cannot shift method {method!r}: use s3_point_to_local_center, "
                   "s3_point_to_point_max/mean, s3_point_to_center, synonyms_mean/max or a clip_* baseline")


def _reduce(block: torch.Tensor, reduction: str, temperature: float) -> torch.Tensor:
    """``(..., m)`` -> ``(...)``, as ``GroupedItems.reduce`` does (same ops, so identical values)."""
    m = block.shape[-1]
    if m == 1:
        return block[..., 0]
    if reduction == "max":
        return block.amax(dim=-1)
    if reduction == "mean":
        return block.mean(dim=-1)
    return temperature * (torch.logsumexp(block / temperature, dim=-1) - math.log(m))


def shifted_scores(views: torch.Tensor, protos: Prototypes, offsets: torch.Tensor | None = None,
                   scale: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, V, C)`` scores of each image's views against its own shifted items.

    Item t of class c becomes ``normalize(s_c t + o_c)`` (t is a unit row).

    Args:
        views: ``(B, V, D)`` unit view features.
        offsets: ``(B, C, D)`` per-image class offsets (None: no shift).
        scale: ``(B, C)`` per-image class scales ``s_c`` (None: 1).
    """
    b, v, d = views.shape
    grouped = protos.items
    items = grouped.items.to(views.dtype)
    base = (views.reshape(b * v, d) @ items.T).reshape(b, v, -1)  # (B, V, L)
    if offsets is not None:
        view_offset = torch.einsum("bvd,bcd->bvc", views, offsets)  # (B, V, C)
        offset_sq = (offsets * offsets).sum(-1)  # (B, C)
    parts, order = [], []
    for start, classes, m in grouped.blocks:
        n = len(classes)
        block = base[:, :, start : start + n * m].reshape(b, v, n, m)
        if offsets is not None:
            o = offsets[:, classes]  # (B, n, D)
            item_offset = torch.einsum("nmd,bnd->bnm", items[start : start + n * m].reshape(n, m, d), o)
            if scale is None:
                norm_sq = 1 + 2 * item_offset + offset_sq[:, classes, None]
                block = (block + view_offset[:, :, classes, None]) / norm_sq.sqrt()[:, None]
            else:
                s = scale[:, classes, None]  # (B, n, 1)
                norm_sq = s * s + 2 * s * item_offset + offset_sq[:, classes, None]
                block = (s[:, None] * block + view_offset[:, :, classes, None]) / norm_sq.clamp_min(1e-24).sqrt()[:, None]
        parts.append(_reduce(block, protos.reduction, protos.temperature))
        order.append(classes)
    # Blocks are grouped by item count; put the classes back in order.
    inverse = torch.argsort(torch.cat(order).to(views.device))
    return torch.cat(parts, dim=-1)[..., inverse]


def mean_prediction_entropy(scores: torch.Tensor) -> torch.Tensor:
    """``(B,)`` entropy of ``mean_k softmax(100 * scores[:, k])`` for ``(B, k, C)`` scores."""
    log_p = torch.log_softmax(LOGIT_SCALE * scores, dim=-1)
    log_mean = torch.logsumexp(log_p, dim=1) - math.log(scores.shape[1])  # (B, C), stable log of the mean
    return -(log_mean.exp() * log_mean).sum(dim=-1)


def _gather_views(views: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(views, 1, index[..., None].expand(-1, -1, views.shape[-1]))


def adapt_offsets(selected: torch.Tensor, protos: Prototypes, config: TTAConfig) -> torch.Tensor:
    """``(B, C, D)`` offsets after ``config.steps`` AdamW steps from zero, one set per image.

    Args:
        selected: ``(B, k, D)`` the selected views of each image.
    """
    offsets = torch.zeros(selected.shape[0], protos.num_classes, selected.shape[-1], dtype=selected.dtype,
                          device=selected.device, requires_grad=True)
    if config.steps == 0:
        return offsets.detach()
    optimizer = torch.optim.AdamW([offsets], lr=config.lr, weight_decay=config.weight_decay)
    with torch.enable_grad():
        for _ in range(config.steps):
            optimizer.zero_grad(set_to_none=True)
            # Sum, not mean: each image's gradient is its own, whatever shares its batch.
            mean_prediction_entropy(shifted_scores(selected, protos, offsets)).sum().backward()
            optimizer.step()
    return offsets.detach()


@torch.no_grad()
def adapt_batch(views: torch.Tensor, protos: Prototypes, config: TTAConfig, mode: str = "shift") -> dict[str, torch.Tensor]:
    """Adapt to a batch of images and classify each original view.

    Args:
        views: ``(B, V, D)`` unit view features (view 0 = the original image).
        mode: ``shift`` (TS^3 / prototype shift), ``free`` (training-free) or ``average`` (no shift).

    Returns:
        ``scores`` ``(B, C)`` (``average``: the mean probability of the selected views),
        ``entropy_before`` / ``entropy_after`` ``(B,)`` of the selected views' mean prediction,
        ``shift`` ``(B,)`` the mean over classes of the offset norm (``free``: the step fraction of the
        most probable class), ``selected`` ``(B, k)``.
    """
    if mode not in MODES:
        raise TTAError(f"unknown test-time mode {mode!r}; choose one of {', '.join(MODES)}")
    views = views.float()
    plain = shifted_scores(views, protos)  # (B, V, C) unshifted
    index = select_confident(plain, config.selection, config.include_original)
    selected_scores = torch.gather(plain, 1, index[..., None].expand(-1, -1, plain.shape[-1]))
    before = mean_prediction_entropy(selected_scores)
    original = views[:, :1].contiguous()
    zero = torch.zeros(views.shape[0], device=views.device)
    if mode == "average":
        probs = torch.softmax(LOGIT_SCALE * selected_scores, dim=-1).mean(1)
        return {"scores": probs, "entropy_before": before, "entropy_after": before, "shift": zero, "selected": index}
    selected = _gather_views(views, index)
    if mode == "shift":
        offsets = adapt_offsets(selected, protos, config)
        scale = None
        after = mean_prediction_entropy(shifted_scores(selected, protos, offsets))
        moved = offsets.norm(dim=-1).mean(-1)
    else:  # free: move toward the selected views' mean by alpha * p_c
        probs = torch.softmax(LOGIT_SCALE * selected_scores, dim=-1).mean(1)  # (B, C)
        a = config.free_alpha * probs
        mean_view = torch.nn.functional.normalize(selected.mean(1), dim=-1)  # (B, D)
        scale, offsets = 1 - a, a[..., None] * mean_view[:, None]
        after = mean_prediction_entropy(shifted_scores(selected, protos, offsets, scale))
        moved = a.amax(-1)  # the step fraction of the most probable class
    scores = shifted_scores(original, protos, offsets, scale)[:, 0]
    return {"scores": scores, "entropy_before": before, "entropy_after": after, "shift": moved, "selected": index}


def run_tta(views: torch.Tensor, protos: Prototypes, config: TTAConfig, mode: str = "shift",
            batch_size: int = 32, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """``adapt_batch`` over ``(N, V, D)`` views in batches of images (bounded memory); results on the CPU."""
    device = torch.device(device) if device is not None else views.device
    protos = protos.to(device)
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, views.shape[0], batch_size):
        out = adapt_batch(views[start : start + batch_size].to(device), protos, config, mode)
        for name, value in out.items():
            parts.setdefault(name, []).append(value.cpu())
    return {name: torch.cat(values) for name, values in parts.items()}
