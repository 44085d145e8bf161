"""Scoring many class-space variants of one synonym bank at the cost of one image pass.

Every synonym and S^3 method scores an image against a class through *items* made of some of the
class's synonym embeddings (rows of the bank):

    max   the largest product over a set of rows        (synonyms_max, point-to-point max)
    mean  the mean product over a set of rows           (point-to-point mean)
    cos   the cosine to the normalised mean of a set    (synonyms_mean, point-to-center, local centers)
          = sum of the set's products / ||sum of its rows||
    cone  the cosine to the cone of a set               (point-to-simplex: the kept set's cone, then
                                                         its simplices, s3.core.simplex_kernel)

All four are functions of the products of the images with the bank, ``P = X B^T`` (``N x B``). The
ablation grid builds dozens of space variants from the same bank (other radii, K, dimensions) and
most of their items coincide: a class's kept set or simplex is often the same in many variants. So
``SharedItems`` registers the items of every variant, computes ``P`` once per image chunk, scores
each distinct item once, and every (variant, method) is a gather and a per-class reduction of
those item scores (``MethodPlan``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from s3.ablations.set_kernels import argmax_hits, set_max, set_weighted_sum
from s3.core.scoring import GroupedItems, Reduction
from s3.core.simplex_kernel import cone_scores, face_bounds, face_scores, nest_cones, pair_scores
from s3.core.spaces import SynonymSpace

__all__ = ["SharedItems", "MethodPlan", "plan_method", "SPACE_METHODS"]

KINDS = ("max", "mean", "cos", "cone")
SPACE_METHODS = ("synonyms_mean", "synonyms_max", "s3_point_to_point_max", "s3_point_to_point_mean",
                 "s3_point_to_center", "s3_point_to_local_center", "s3_point_to_simplex")


class SharedItems:
    """The distinct items of many space variants over one bank, scored together.

    Args:
        bank: C arrays ``(K_c, D)``: every synonym embedding of each class (row 0 = the label);
            a variant's spaces index these rows (a variant with fewer synonyms uses a prefix).
    """

    def __init__(self, bank: Sequence[np.ndarray]):
        sizes = np.array([len(b) for b in bank])
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)  # (C,) first bank column
        self.bank = torch.as_tensor(np.concatenate(bank), dtype=torch.float32)  # (B, D)
        self._ids: dict[str, dict[tuple[int, ...], int]] = {kind: {} for kind in KINDS}
        self._prepared: dict | None = None
        self._bounds: dict[tuple[bytes, bytes, bytes], np.ndarray] = {}

    def item(self, kind: str, c: int, rows: Sequence[int]) -> int:
        """Register the ``kind`` item of class ``c`` made of its bank ``rows``; returns its id within ``kind``."""
        columns = tuple(int(self.offsets[c] + r) for r in sorted(rows))
        table = self._ids[kind]
        if columns not in table:
            table[columns] = len(table)
            self._prepared, self._bounds = None, {}
        return table[columns]

    def _compressed(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr, indices)`` of the registered ``kind`` sets, in id order (``s3.ablations.set_kernels``)."""
        sets = list(self._ids[kind])  # a dict keeps insertion order: position = id
        indptr = np.concatenate([[0], np.cumsum([len(c) for c in sets])]).astype(np.int64)
        return indptr, np.fromiter((j for c in sets for j in c), np.int64, count=int(indptr[-1]))

    def _prepare(self) -> dict:
        """Row tables of the registered items: compressed sets (max, mean, cos) and padded cones."""
        if self._prepared is not None:
            return self._prepared
        bank64 = self.bank.double()
        sets = {kind: self._compressed(kind) for kind in ("max", "mean", "cos")}
        sizes = {kind: np.diff(indptr) for kind, (indptr, _) in sets.items()}
        # cos: the set's products summed, over ||sum of the set's rows|| (float64 norms)
        indptr, indices = sets["cos"]
        sums = torch.zeros(len(indptr) - 1, bank64.shape[1], dtype=torch.float64).index_add_(
            0, torch.as_tensor(np.repeat(np.arange(len(indptr) - 1), sizes["cos"])), bank64[indices])
        weights = {"max": None, "mean": 1.0 / sizes["mean"], "cos": (1.0 / sums.norm(dim=1)).numpy()}
        cones = list(self._ids["cone"])
        m = max((len(c) for c in cones), default=1)
        columns = np.full((len(cones), m), -1, np.int64)
        for i, c in enumerate(cones):
            columns[i, : len(c)] = c
        safe = torch.as_tensor(columns).clamp_min(0)
        verts = bank64[safe] * torch.as_tensor(columns >= 0)[..., None]
        counts = (columns >= 0).sum(1)
        owner = np.searchsorted(self.offsets, columns[:, 0], side="right") - 1  # a cone's class: nest within it
        self._prepared = {"sets": sets, "weights": weights, "cone_columns": columns, "cone_counts": counts,
                          "cone_gram": torch.einsum("smd,snd->smn", verts, verts).numpy(),
                          "cone_parents": nest_cones(columns, counts, owner)}
        return self._prepared

    def scores(self, images: torch.Tensor, cones: bool = True) -> dict[str, torch.Tensor]:
        """Item scores of a chunk of unit images ``(n, D)``, item-major: kind -> ``(U_kind, n)``.

        ``products`` (the bank's, ``(B, n)``) and ``supports`` (the cones' optimal supports) ride along
        for the simplex plans. ``cones=False`` leaves the cones out (``MethodPlan.top1_hits`` needs
        only the products).
        """
        prepared = self._prepare()
        products = self.bank @ images.T  # (B, n)
        out = {"products": products}
        for kind in ("max", "mean", "cos"):
            indptr, indices = prepared["sets"][kind]
            if len(indptr) == 1:
                out[kind] = products.new_empty(0, images.shape[0])
            elif kind == "max":
                out[kind] = set_max(products, indptr, indices)
            else:
                out[kind] = set_weighted_sum(products, indptr, indices, prepared["weights"][kind])
        if cones and len(prepared["cone_columns"]):
            out["cone"], out["supports"] = cone_scores(products, prepared["cone_columns"], prepared["cone_counts"],
                                                       prepared["cone_gram"], prepared["cone_parents"])
        return out

    def face_bounds(self, union: np.ndarray, starts: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """``s3.core.simplex_kernel.face_bounds`` of simplices over the registered cones, once per plan."""
        key = (union.tobytes(), starts.tobytes(), masks.tobytes())
        if key not in self._bounds:
            _, counts, gram = self.cone_tables()
            self._bounds[key] = face_bounds(union, counts, gram, starts, masks)
        return self._bounds[key]

    def cone_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(columns, counts, gram)`` of the registered cones (``s3.core.simplex_kernel``'s inputs)."""
        prepared = self._prepare()
        return prepared["cone_columns"], prepared["cone_counts"], prepared["cone_gram"]


@dataclass(frozen=True)
class MethodPlan:
    """One method of one variant as a reduction of item scores.

    Attributes:
        kind: which item scores (``SharedItems.scores`` key).
        order: ``(L,)`` long item ids; one per class in class order when ``grouped`` is None.
        grouped: the per-class grouping of ``order`` (several items per class).
        reduction, temperature: as ``GroupedItems.reduce``.
        faces: for point-to-simplex, ``(starts, masks)``: each class's simplices as bitmasks over
            its kept-set cone (``order``), solved by ``s3.core.simplex_kernel.face_scores``.
        tops: for point-to-simplex, the ``max`` item of each class's kept set (``top1_hits``' bounds).
    """

    kind: str
    order: torch.Tensor
    grouped: GroupedItems | None = None
    reduction: Reduction = "max"
    temperature: float = 0.01
    faces: tuple[np.ndarray, np.ndarray] | None = None
    tops: torch.Tensor | None = None

    def key(self) -> tuple:
        """Equal keys score alike (variants often share a method's items: one pass serves them all)."""
        faces = None if self.faces is None else (*(f.tobytes() for f in self.faces), self.tops.numpy().tobytes())
        blocks = None if self.grouped is None else tuple((s, c.numpy().tobytes(), m) for s, c, m in self.grouped.blocks)
        return (self.kind, self.order.numpy().tobytes(), blocks, self.reduction, self.temperature, faces)

    def scores(self, items: dict[str, torch.Tensor], shared: "SharedItems") -> torch.Tensor:
        """``(C, n)`` scores from a chunk's item scores."""
        if self.faces is not None:
            columns, counts, gram = shared.cone_tables()
            bounds = shared.face_bounds(self.order.numpy(), *self.faces)
            return face_scores(items["products"], self.order.numpy(), columns, counts, gram, items["cone"],
                               items["supports"], *self.faces, bounds)
        values = items[self.kind].index_select(0, self.order)
        if self.grouped is None:
            return values
        return self.grouped.reduce(values, self.reduction, self.temperature, item_dim=0)

    def top1_hits(self, items: dict[str, torch.Tensor], shared: "SharedItems", labels: torch.Tensor) -> int:
        """How many of the chunk's ``n`` images the method puts in their class (``labels`` ``(n,)``).

        The count of ``argmax_hits(self.scores(...), labels)``. Point-to-simplex needs no cone
        scores (``SharedItems.scores(..., cones=False)``): a class ``c`` scores at most
        ``t_c beta_c`` (``t_c`` its best kept product, ``beta_c`` its kept set's ``face_bounds``), so
        only the image's own class and the classes whose bound reaches its score are solved
        (``s3.core.simplex_kernel.pair_scores``), usually a handful of the C.
        """
        if self.faces is None:
            return argmax_hits(self.scores(items, shared), labels)
        columns, counts, gram = shared.cone_tables()
        union, (starts, masks) = self.order.numpy(), self.faces
        bounds = shared.face_bounds(union, starts, masks)
        beta = torch.as_tensor(shared.face_bounds(union, np.arange(len(union) + 1), (1 << counts[union]) - 1))
        top = items["max"].index_select(0, self.tops).double()  # (C, n)
        upper = torch.where(top > 0, top * beta[:, None], top)  # no positive product: the score is the top product
        n = labels.shape[0]

        def solve(classes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
            return pair_scores(items["products"], union, columns, counts, gram, starts, masks, bounds,
                               classes.numpy(), points.numpy())

        own = solve(labels, torch.arange(n)).double()  # (n,)
        below = torch.arange(len(union))[:, None] < labels  # ties go to the lowest class, as argmax
        rivals = torch.where(below, upper >= own, upper > own)
        rivals[labels, torch.arange(n)] = False
        classes, points = rivals.nonzero(as_tuple=True)
        theirs = solve(classes, points).double()
        beats = torch.where(classes < labels[points], theirs >= own[points], theirs > own[points])
        return n - int(torch.unique(points[beats]).numel())


def plan_method(method: str, spaces: Sequence[SynonymSpace], shared: SharedItems,
                temperature: float | None = None) -> MethodPlan:
    """Register the items of ``method`` on the variant ``spaces`` and return how to score it.

    The definitions are those of ``s3.core.methods.score_method`` (tests check the two agree).
    """
    def one_per_class(kind: str, rows_of) -> MethodPlan:
        ids = [shared.item(kind, c, rows_of(s)) for c, s in enumerate(spaces)]
        return MethodPlan(kind, torch.tensor(ids, dtype=torch.long))

    everything = lambda s: range(s.num_synonyms)  # noqa: E731
    kept = lambda s: s.kept.tolist()  # noqa: E731
    if method == "synonyms_mean":
        return one_per_class("cos", everything)
    if method == "synonyms_max":
        return one_per_class("max", everything)
    if method == "s3_point_to_point_max":
        return one_per_class("max", kept)
    if method == "s3_point_to_point_mean":
        return one_per_class("mean", kept)
    if method == "s3_point_to_center":
        return one_per_class("cos", kept)
    if method == "s3_point_to_local_center":
        per_class = [np.array([[shared.item("cos", c, simplex)] for simplex in s.simplices]) for c, s in enumerate(spaces)]
        grouped = GroupedItems.from_lists(per_class)
        reduction: Reduction = "softmax" if temperature else "max"
        return MethodPlan("cos", grouped.items[:, 0].long(), grouped, reduction, temperature or 0.01)
    if method == "s3_point_to_simplex":
        # The cone of each class's kept set bounds its simplices (s3.core.simplex_kernel.face_scores).
        plan = one_per_class("cone", kept)
        masks, starts = [], [0]
        for s in spaces:
            rank = {int(j): r for r, j in enumerate(sorted(s.kept.tolist()))}
            masks.extend(sum(1 << rank[j] for j in simplex) for simplex in s.simplices)
            starts.append(len(masks))
        return MethodPlan("cone", plan.order, faces=(np.array(starts, np.int64), np.array(masks, np.int32)),
                          tops=one_per_class("max", kept).order)
    raise ValueError(f"method {method!r} has no item plan; choose from {', '.join(SPACE_METHODS)}")
