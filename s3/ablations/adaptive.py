"""The image-adaptive local center: for image x and class c, the normalised mean of the k kept
synonyms of c nearest x (highest cosine); the score is the cosine between x and that mean.

With s_i = x . v_i and S the chosen set, x . normalize(sum_S v_i) = sum_S s_i / ||sum_S v_i||, and
||sum_S v_i||^2 = sum_{i,j in S} G_ij (the class's Gram matrix), so no (N, C, D) tensor is formed.
"""

from __future__ import annotations

import torch

from s3.core.scoring import GroupedItems

__all__ = ["point_to_adaptive_center"]


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
