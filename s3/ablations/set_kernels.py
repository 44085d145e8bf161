"""Compiled reductions over row sets of item-major products, for the ablation grid's image pass.

The grid scores tens of thousands of small row sets (a class's kept synonyms, each simplex of each
variant) against every image of a chunk. With the products item-major, ``(B, n)`` (bank rows,
image columns), a set's score is an elementwise max or a weighted sum of a few contiguous rows, so
one compiled loop per set streams memory once; torch's gathers materialise ``(U, m, n)`` first and
its sparse product runs at a fraction of the bandwidth.

Sets are given in compressed form: set ``u`` is ``indices[indptr[u]:indptr[u + 1]]`` (bank rows).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

__all__ = ["set_max", "set_weighted_sum", "argmax_hits"]


def _threads() -> None:
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


@numba.njit(parallel=True, cache=True)
def _set_max(pt, indptr, indices, out):
    n = pt.shape[1]
    for u in numba.prange(len(indptr) - 1):
        row = out[u]
        first = pt[indices[indptr[u]]]
        for i in range(n):
            row[i] = first[i]
        for j in range(indptr[u] + 1, indptr[u + 1]):
            other = pt[indices[j]]
            for i in range(n):
                row[i] = max(row[i], other[i])


@numba.njit(parallel=True, cache=True)
def _set_weighted_sum(pt, indptr, indices, weights, out):
    n = pt.shape[1]
    for u in numba.prange(len(indptr) - 1):
        row = out[u]
        first = pt[indices[indptr[u]]]
        for i in range(n):
            row[i] = first[i]
        for j in range(indptr[u] + 1, indptr[u + 1]):
            other = pt[indices[j]]
            for i in range(n):
                row[i] += other[i]
        w = weights[u]
        for i in range(n):
            row[i] *= w


@numba.njit(cache=True)
def _argmax_hits(scores, labels):
    n = scores.shape[1]
    best = scores[0].copy()
    arg = np.zeros(n, np.int64)
    for c in range(1, scores.shape[0]):
        row = scores[c]
        for i in range(n):
            if row[i] > best[i]:  # strict: ties stay with the lowest class, as argmax
                best[i] = row[i]
                arg[i] = c
    hits = 0
    for i in range(n):
        hits += arg[i] == labels[i]
    return hits


def _compressed(indptr: np.ndarray, indices: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    indptr, indices = np.ascontiguousarray(indptr, np.int64), np.ascontiguousarray(indices, np.int64)
    if len(indptr) < 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 1) or indptr[-1] != len(indices):
        raise ValueError("every set needs at least one row and indptr must run from 0 to len(indices)")
    if len(indices) and (indices.min() < 0 or indices.max() >= rows):
        raise ValueError(f"set rows must lie in [0, {rows})")
    return indptr, indices


def set_max(products_t: torch.Tensor, indptr: np.ndarray, indices: np.ndarray) -> torch.Tensor:
    """``(U, n)``: per set, the elementwise max of its rows of the float32 CPU ``(B, n)`` products."""
    indptr, indices = _compressed(indptr, indices, products_t.shape[0])
    _threads()
    out = np.empty((len(indptr) - 1, products_t.shape[1]), np.float32)
    _set_max(products_t.detach().contiguous().numpy(), indptr, indices, out)
    return torch.from_numpy(out)


def set_weighted_sum(products_t: torch.Tensor, indptr: np.ndarray, indices: np.ndarray,
                     weights: np.ndarray) -> torch.Tensor:
    """``(U, n)``: per set ``u``, ``weights[u]`` times the sum of its rows of the ``(B, n)`` products.

    With ``weights = 1 / m`` that is the mean product; with ``1 / ||sum of the set's embeddings||``
    the cosine to the set's normalised mean.
    """
    indptr, indices = _compressed(indptr, indices, products_t.shape[0])
    weights = np.ascontiguousarray(weights, np.float32)
    if weights.shape != (len(indptr) - 1,):
        raise ValueError(f"need one weight per set ({len(indptr) - 1}), got shape {weights.shape}")
    _threads()
    out = np.empty((len(indptr) - 1, products_t.shape[1]), np.float32)
    _set_weighted_sum(products_t.detach().contiguous().numpy(), indptr, indices, weights, out)
    return torch.from_numpy(out)


def argmax_hits(scores: torch.Tensor, labels: torch.Tensor) -> int:
    """How many columns of item-major ``(C, n)`` float32 scores have their argmax at ``labels`` ``(n,)``.

    Ties go to the lowest class, as ``scores.argmax(0)``; one pass over the rows, no strided reduction.
    """
    if scores.ndim != 2 or labels.shape != (scores.shape[1],):
        raise ValueError(f"need (C, n) scores and (n,) labels, got {tuple(scores.shape)} and {tuple(labels.shape)}")
    if scores.shape[0] == 0:
        return 0
    return int(_argmax_hits(scores.detach().float().contiguous().numpy(), labels.detach().long().contiguous().numpy()))
