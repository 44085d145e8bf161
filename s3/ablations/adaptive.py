"""The image-adaptive local center: for image x and class c, the normalised mean of the k kept
synonyms of c nearest x (highest cosine); the score is the cosine between x and that mean.

With s_i = x . v_i and S the chosen set, x . normalize(sum_S v_i) = sum_S s_i / ||sum_S v_i||, and
||sum_S v_i||^2 = sum_{i,j in S} G_ij (the class's Gram matrix), so no (N, C, D) tensor is formed.
"""

from __future__ import annotations

from typing import Sequence

import torch

from s3.core.scoring import GroupedItems

__all__ = ["point_to_adaptive_center", "adaptive_from_products"]


def point_to_adaptive_center(images: torch.Tensor, vertices: GroupedItems, k: int,
                             chunk_size: int = 4096) -> torch.Tensor:
    """``(N, C)`` cosine between each image and the normalised mean of its k nearest kept synonyms.

    Args:
        images: ``(N, D)`` unit rows.
        vertices: kept synonym embeddings grouped by class (``StackedSpaces.vertices``).
        k: synonyms per center (a class with fewer uses all of them); k = 1 is point-to-point max.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    items = vertices.items.to(images.device)
    out = images.new_empty(images.shape[0], vertices.num_classes)
    for lo in range(0, images.shape[0], chunk_size):
        x = images[lo : lo + chunk_size]
        sims = x @ items.T  # (n, L)
        for start, classes, m in vertices.blocks:
            block_items = items[start : start + len(classes) * m].reshape(len(classes), m, -1)
            s = sims[:, start : start + len(classes) * m].reshape(x.shape[0], len(classes), m)
            kk = min(k, m)
            top = s.topk(kk, dim=-1).indices  # (n, c, kk)
            mask = torch.zeros_like(s).scatter_(-1, top, 1.0)
            gram = block_items @ block_items.transpose(1, 2)  # (c, m, m)
            norm_sq = torch.einsum("ncm,cmj,ncj->nc", mask, gram, mask)
            score = (s * mask).sum(-1) / norm_sq.clamp_min(1e-12).sqrt()
            out[lo : lo + x.shape[0]].index_copy_(1, classes.to(images.device), score)
    return out


def adaptive_from_products(products_t: torch.Tensor, bank: torch.Tensor, kept: Sequence[Sequence[int]],
                           ks: Sequence[int]) -> dict[int, torch.Tensor]:
    """``point_to_adaptive_center`` for several k at once, from precomputed item-major products.

    One descending ``topk`` at the largest k serves every k (its first k entries), and the squared
    norms grow one chosen synonym at a time: adding row ``r`` adds ``2 sum_a G[a, r] + G[r, r]``.

    Args:
        products_t: ``(B, n)`` products of the bank rows with ``n`` unit images.
        bank: ``(B, D)`` the bank rows (for the Gram matrices of the chosen synonyms).
        kept: per class, the bank rows of its kept synonyms.
        ks: synonyms per center (a class with fewer uses all of them).

    Returns:
        k -> ``(C, n)`` scores.
    """
    if not ks or min(ks) < 1:
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    n, k_max = products_t.shape[1], max(ks)
    out = {k: products_t.new_empty(len(kept), n) for k in ks}
    by_size: dict[int, list[int]] = {}
    for c, rows in enumerate(kept):
        by_size.setdefault(len(rows), []).append(c)
    for m, classes in by_size.items():
        cols = torch.tensor([list(kept[c]) for c in classes], dtype=torch.long)  # (c, m)
        values = products_t[cols.reshape(-1)].reshape(len(classes), m, n)
        top, idx = values.topk(min(k_max, m), dim=1)  # (c, kk, n), descending
        vecs = bank[cols].double()
        flat = (vecs @ vecs.transpose(1, 2)).float().reshape(len(classes), m * m)  # Gram matrices
        target = torch.tensor(classes)
        total, norm_sq = torch.zeros_like(top[:, 0]), torch.zeros_like(top[:, 0])
        for r in range(idx.shape[1]):  # add the r-th nearest synonym
            total += top[:, r]
            norm_sq += flat.gather(1, idx[:, r] * m + idx[:, r])
            for a in range(r):
                norm_sq += 2 * flat.gather(1, idx[:, a] * m + idx[:, r])
            for k in ks:
                if min(k, m) == r + 1:
                    out[k].index_copy_(0, target, total / norm_sq.clamp_min(1e-12).sqrt())
    return out
