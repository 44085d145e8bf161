"""Point-to-space metrics: score N image embeddings against C class spaces.

Every metric returns an ``(N, C)`` score matrix (cosine-like values in [-1, 1]; multiply by 100
for CLIP logits). Nothing loops over images: each metric is one or two matrix products over
stacked class data plus a per-class reduction.

The per-class reduction ("max over the local centers of class c") is done without scatter ops:
items (vertices, local centers, simplices) are ordered by how many items their class has, so all
classes with ``m`` items form one contiguous column block that reshapes to ``(N, n_classes, m)``
and reduces along the last axis. The extra cost over the bare matrix product is one pass over
the score block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from s3.core.simplex import cone_cosine
from s3.core.spaces import SynonymSpace

Reduction = Literal["max", "mean", "softmax"]

__all__ = [
    "GroupedItems",
    "StackedSpaces",
    "point_to_point",
    "point_to_center",
    "point_to_local_center",
    "point_to_simplex",
    "score",
    "METRICS",
]


@dataclass(frozen=True)
class GroupedItems:
    """Per-class items stacked so that a class reduction is a reshape.

    Attributes:
        items: ``(L, ...)`` items ordered by block; within a block, class-major.
        blocks: ``(start, classes, m)``: columns ``start : start + len(classes) * m`` of the item
            axis hold ``m`` items for each class in ``classes`` (a ``(n,)`` long tensor).
        num_classes: C.
    """

    items: torch.Tensor
    blocks: tuple[tuple[int, torch.Tensor, int], ...]
    num_classes: int

    @classmethod
    def from_lists(cls, per_class: Sequence[np.ndarray]) -> "GroupedItems":
        """Group ``per_class[c]`` (an ``(m_c, ...)`` array, m_c >= 1) by item count."""
        if any(len(x) == 0 for x in per_class):
            empty = [c for c, x in enumerate(per_class) if len(x) == 0]
            raise ValueError(f"classes {empty} have no items; every class space needs a vertex")
        counts = np.array([len(x) for x in per_class])
        chunks, blocks, start = [], [], 0
        for m in np.unique(counts):
            classes = np.nonzero(counts == m)[0]
            chunks.extend(np.asarray(per_class[c]) for c in classes)
            blocks.append((start, torch.as_tensor(classes, dtype=torch.long), int(m)))
            start += len(classes) * int(m)
        items = torch.as_tensor(np.concatenate(chunks), dtype=torch.float32)
        return cls(items=items, blocks=tuple(blocks), num_classes=len(per_class))

    def class_order(self) -> list[int]:
        """The class of each run of items, in item order (each class once: its items are contiguous)."""
        return [int(c) for _, classes, _ in self.blocks for c in classes]

    def owners(self) -> torch.Tensor:
        """``(L,)`` long: the class of every item."""
        return torch.cat([classes.repeat_interleave(m) for _, classes, m in self.blocks])

    def first_rows(self) -> np.ndarray:
        """``(C,)`` int64: the row of each class's first item."""
        first = np.zeros(self.num_classes, np.int64)
        for start, classes, m in self.blocks:
            first[classes.cpu().numpy()] = start + m * np.arange(len(classes))
        return first

    def to(self, device: torch.device | str) -> "GroupedItems":
        blocks = tuple((s, c.to(device), m) for s, c, m in self.blocks)
        return GroupedItems(self.items.to(device), blocks, self.num_classes)

    def reduce(self, values: torch.Tensor, reduction: Reduction, temperature: float = 0.01,
               out: torch.Tensor | None = None, item_dim: int = 1) -> torch.Tensor:
        """Reduce ``(N, L)`` per-item values to ``(N, C)`` per-class values (written into ``out`` if given).

        With ``item_dim=0`` the layout is item-major: ``(L, N)`` in, ``(C, N)`` out.
        """
        n = values.shape[1 - item_dim]
        shape = (n, self.num_classes) if item_dim == 1 else (self.num_classes, n)
        out = values.new_empty(shape) if out is None else out
        for start, classes, m in self.blocks:
            block = values.narrow(item_dim, start, len(classes) * m)
            if m > 1:
                axis = -1 if item_dim == 1 else 1
                block = block.reshape(n, len(classes), m) if item_dim == 1 else block.reshape(len(classes), m, n)
                if reduction == "max":
                    block = block.amax(dim=axis)
                elif reduction == "mean":
                    block = block.mean(dim=axis)
                elif reduction == "softmax":
                    # t * log(mean(exp(x / t))): a smooth max that tends to max as t -> 0 and, unlike
                    # logsumexp, does not grow with the number of items (no bias toward big classes).
                    block = temperature * (torch.logsumexp(block / temperature, dim=axis) - math.log(m))
                else:
                    raise ValueError(f"unknown reduction {reduction!r}: use 'max', 'mean' or 'softmax'")
            # index_copy_ is a plain strided copy; `out[:, classes] = ...` is a much slower scatter.
            out.index_copy_(item_dim, classes, block)
        return out


@dataclass(frozen=True)
class StackedSpaces:
    """All class spaces of a benchmark, stacked for vectorised scoring.

    Attributes:
        vertices: kept synonym embeddings, grouped by class.
        centers: ``(C, D)`` normalised mean of each class's kept vertices.
        local_centers: local centers (normalised simplex means), grouped by class.
        simplices: ``(S, m_max, D)`` simplex vertices, grouped by class; a simplex with fewer than
            ``m_max`` vertices is padded with zero rows.
        simplex_columns: ``(S, m_max)`` long, the row of ``vertices.items`` of each simplex vertex
            (-1 on padding), in the order of ``simplices.items``; lets point-to-simplex start from
            the point-to-point products.
    """

    vertices: GroupedItems
    centers: torch.Tensor
    local_centers: GroupedItems
    simplices: GroupedItems
    simplex_columns: torch.Tensor | None = None

    @classmethod
    def from_spaces(cls, spaces: Sequence[SynonymSpace]) -> "StackedSpaces":
        m_max = max(len(s) for space in spaces for s in space.simplices)

        def padded(space: SynonymSpace) -> np.ndarray:
            out = np.zeros((len(space.simplices), m_max, space.embeddings.shape[1]), np.float32)
            for i, s in enumerate(space.simplices):
                out[i, : len(s)] = space.embeddings[list(s)]
            return out  # (S_c, m_max, D)

        vertices = GroupedItems.from_lists([s.vertices for s in spaces])
        simplices = GroupedItems.from_lists([padded(s) for s in spaces])
        first_vertex = vertices.first_rows()  # (C,) row of each class's first kept vertex
        columns = [np.full((len(space.simplices), m_max), -1, np.int64) for space in spaces]
        for c, space in enumerate(spaces):
            rank = {int(j): r for r, j in enumerate(space.kept)}
            for i, simplex in enumerate(space.simplices):
                columns[c][i, : len(simplex)] = [first_vertex[c] + rank[j] for j in simplex]
        return cls(
            vertices=vertices,
            centers=torch.as_tensor(np.stack([s.center for s in spaces]), dtype=torch.float32),
            local_centers=GroupedItems.from_lists([s.local_centers for s in spaces]),
            simplices=simplices,
            simplex_columns=torch.as_tensor(np.concatenate([columns[c] for c in simplices.class_order()])),
        )

    @property
    def num_classes(self) -> int:
        return int(self.centers.shape[0])

    def to(self, device: torch.device | str) -> "StackedSpaces":
        return StackedSpaces(
            self.vertices.to(device),
            self.centers.to(device),
            self.local_centers.to(device),
            self.simplices.to(device),
            None if self.simplex_columns is None else self.simplex_columns.to(device),
        )


def _chunked(images: torch.Tensor, num_classes: int, chunk_size: int, fn) -> torch.Tensor:
    """Call ``fn(rows, out_rows)`` on row chunks (bounded memory), filling one ``(N, C)`` output."""
    out = images.new_empty(images.shape[0], num_classes)
    for start in range(0, images.shape[0], chunk_size):
        fn(images[start : start + chunk_size], out[start : start + chunk_size])
    return out


def point_to_point(
    images: torch.Tensor, spaces: StackedSpaces, reduction: Reduction = "max", chunk_size: int = 8192
) -> torch.Tensor:
    """``(N, C)``: max (or mean) cosine between each image and a class's kept synonyms.

    Args:
        images: ``(N, D)`` unit rows.
    """
    vertices = spaces.vertices
    return _chunked(images, spaces.num_classes, chunk_size,
                    lambda x, out: vertices.reduce(x @ vertices.items.T, reduction, out=out))


def point_to_center(images: torch.Tensor, spaces: StackedSpaces) -> torch.Tensor:
    """``(N, C)``: cosine to the normalised mean of a class's kept synonyms (= prompt ensemble)."""
    return images @ spaces.centers.T


def point_to_local_center(
    images: torch.Tensor,
    spaces: StackedSpaces,
    reduction: Reduction = "max",
    temperature: float = 0.01,
    chunk_size: int = 8192,
) -> torch.Tensor:
    """``(N, C)``: the proposed metric, max (or soft-max) cosine over a class's local centers."""
    centers = spaces.local_centers
    return _chunked(images, spaces.num_classes, chunk_size,
                    lambda x, out: centers.reduce(x @ centers.items.T, reduction, temperature, out))


def point_to_simplex(images: torch.Tensor, spaces: StackedSpaces, chunk_size: int = 4096,
                     solver: Literal["auto", "kernel", "batched"] = "auto") -> torch.Tensor:
    """``(N, C)``: the largest cosine between an image and any point of a class's simplices.

    For each simplex, the best point of its convex hull lies on the ray of the non-negative least
    squares projection of the image onto the simplex's cone (cosine ignores scale); it is solved
    exactly in the simplex's own coordinates from the image-vertex products and the vertices' Gram
    matrices. ``solver``: ``kernel`` solves each pair in a compiled CPU kernel
    (``s3.core.simplex_kernel``, from the point-to-point products), ``batched`` runs the batched
    torch active set of ``s3.core.simplex`` (the GPU path); ``auto`` picks by the images' device.
    """
    if solver == "auto":
        solver = "kernel" if images.device.type == "cpu" and spaces.simplex_columns is not None else "batched"
    simplices = spaces.simplices
    verts = simplices.items  # (S, m, D), zero rows pad smaller simplices (after the real ones)
    if solver == "kernel":
        from s3.core.simplex_kernel import cone_scores, face_bounds, face_scores

        if spaces.simplex_columns is None:
            raise ValueError("solver='kernel' needs StackedSpaces.simplex_columns (build with StackedSpaces.from_spaces)")
        vertices = spaces.vertices.items.cpu()
        kept, masks, starts = _kept_sets(spaces)
        counts = (kept >= 0).sum(1)
        v64 = vertices.double()[torch.as_tensor(kept).clamp_min(0)] * torch.as_tensor(kept >= 0)[..., None]
        gram = torch.einsum("cmd,cnd->cmn", v64, v64).numpy()  # (C, k, k), the float32 vertices in float64
        classes = np.arange(len(kept))
        # The common case: every class is one simplex, its whole kept set; its cone is the answer.
        whole = len(masks) == len(kept) and bool(np.all(masks == (1 << counts) - 1))
        bounds = None if whole else face_bounds(classes, counts, gram, starts, masks)

        def chunk_scores(x: torch.Tensor, out: torch.Tensor) -> None:
            products_t = vertices @ x.T  # (V, n): item-major, as the kernels read it
            values, supports = cone_scores(products_t, kept, counts, gram)  # each class's kept set
            if not whole:
                values = face_scores(products_t, classes, kept, counts, gram, values, supports, starts, masks, bounds)
            out.copy_(values.T)

        return _chunked(images, spaces.num_classes, chunk_size, chunk_scores)
    if solver != "batched":
        raise ValueError(f"unknown solver {solver!r}: use 'auto', 'kernel' or 'batched'")
    valid = verts.abs().sum(dim=-1) > 0
    gram = torch.einsum("smd,snd->smn", verts, verts)  # (S, m, m), once per call
    flat = verts.reshape(-1, verts.shape[-1])
    tables: dict = {}  # per-support inverses, built on the first chunk and reused

    def chunk_scores(x: torch.Tensor, out: torch.Tensor) -> None:
        b = (x @ flat.T).reshape(x.shape[0], verts.shape[0], verts.shape[1])
        simplices.reduce(cone_cosine(b, gram, valid, tables=tables), "max", out=out)

    return _chunked(images, spaces.num_classes, chunk_size, chunk_scores)


def _kept_sets(spaces: StackedSpaces) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's view of the spaces: each class's kept set and its simplices as bitmasks.

    Returns ``kept`` ``(C, k_max)`` int64 rows of ``vertices.items`` (-1 padding), ``masks``
    ``(S,)`` int32 (bit ``r``: the class's ``r``-th kept vertex), and ``starts`` ``(C + 1,)``:
    class ``c``'s simplices are ``masks[starts[c]:starts[c + 1]]``.
    """
    first = spaces.vertices.first_rows()
    sizes = np.zeros(spaces.num_classes, np.int64)
    for _, classes, m in spaces.vertices.blocks:
        sizes[classes.cpu().numpy()] = m
    kept = np.full((spaces.num_classes, int(sizes.max())), -1, np.int64)
    for c in range(spaces.num_classes):
        kept[c, : sizes[c]] = first[c] + np.arange(sizes[c])
    owner = spaces.simplices.owners().cpu().numpy()
    columns = spaces.simplex_columns.cpu().numpy()
    rank = np.where(columns >= 0, columns - first[owner][:, None], 0)
    bits = np.where(columns >= 0, np.left_shift(1, rank), 0).sum(1)
    order = np.argsort(owner, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=spaces.num_classes))])
    return kept, bits[order].astype(np.int32), starts.astype(np.int64)


METRICS = ("point_to_point_max", "point_to_point_mean", "point_to_center", "point_to_simplex", "point_to_local_center")


def score(
    images: torch.Tensor,
    spaces: StackedSpaces,
    metric: str,
    temperature: float | None = None,
) -> torch.Tensor:
    """Dispatch by metric name (one of ``METRICS``); ``temperature`` switches local centers to soft-max."""
    if metric == "point_to_point_max":
        return point_to_point(images, spaces, "max")
    if metric == "point_to_point_mean":
        return point_to_point(images, spaces, "mean")
    if metric == "point_to_center":
        return point_to_center(images, spaces)
    if metric == "point_to_simplex":
        return point_to_simplex(images, spaces)
    if metric == "point_to_local_center":
        if temperature:
            return point_to_local_center(images, spaces, "softmax", temperature)
        return point_to_local_center(images, spaces, "max")
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
