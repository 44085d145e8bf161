"""Exact point-to-simplex scores on the CPU: one compiled Lawson-Hanson solve per (point, simplex) pair.

The problem is the one of ``s3.core.simplex`` (read its docstring): for a unit point with products
``b`` with a simplex's vertices and the vertices' Gram matrix ``G``, the best cosine to the
simplex's cone solves the ``m``-dimensional non-negative least squares problem
``min_{c >= 0} 1 - 2 b.c + c^T G c``. Here each pair is solved on its own, in float64, by the
Lawson-Hanson active-set method with a Cholesky solve of ``G_PP`` on the current support ``P``,
inside a numba kernel that runs the images in parallel. The pair's data (``m <= 12`` products, the
``m x m`` Gram matrix) stays in cache, so a pair costs tens of nanoseconds when its best vertex is
already optimal (the common case) and a few small solves otherwise; the batched torch solver of
``s3.core.simplex`` instead streams every step through memory, which is right on a GPU and slow on
a CPU.

The kernel reads the products straight from the ``(n, L)`` image-vertex product matrix through a
column table, and reduces to classes (max over a class's simplices) as it goes, so no ``(n, S, m)``
tensor is ever formed.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

__all__ = ["simplex_scores"]

# Gradient tolerance of the active set (float64): a vertex enters the support only if it would raise
# the objective's gradient by more than this. The cosine's error is of the order of the tolerance.
TOLERANCE = 1e-7
# Cholesky pivot under which a vertex is treated as linearly dependent on the support (duplicates).
PIVOT = 1e-12


_FLAGS = {"nsz", "arcp", "contract", "afn", "reassoc"}  # fastmath without "no NaN / no inf" assumptions


@numba.njit(cache=True, inline="always", fastmath=_FLAGS)
def _append_row(gram, s, support, p, chol):
    """Extend the Cholesky factor of ``G_PP`` (support[:p]) by the vertex ``support[p]``.

    Returns False (factor unchanged in rows < p) when that vertex depends linearly on the support.
    """
    e = support[p]
    d = gram[s, e, e]
    for r in range(p):
        acc = gram[s, e, support[r]]
        for t in range(r):
            acc -= chol[p, t] * chol[r, t]
        acc /= chol[r, r]
        chol[p, r] = acc
        d -= acc * acc
    if d <= PIVOT:
        return False
    chol[p, p] = math.sqrt(d)
    return True


@numba.njit(cache=True, inline="always", fastmath=_FLAGS)
def _solve(chol, support, p, b, z):
    """``z[support[:p]] = G_PP^{-1} b_P`` from the Cholesky factor (forward, then backward)."""
    for r in range(p):
        acc = b[support[r]]
        for t in range(r):
            acc -= chol[r, t] * z[support[t]]
        z[support[r]] = acc / chol[r, r]
    for r in range(p - 1, -1, -1):
        acc = z[support[r]]
        for t in range(r + 1, p):
            acc -= chol[t, r] * z[support[t]]
        z[support[r]] = acc / chol[r, r]


@numba.njit(cache=True, inline="always", fastmath=_FLAGS)
def _active_set(gram, s, m, b, best, second, z_best, z_second, c, z, w, in_support, blocked, support, chol):
    """Lawson-Hanson for one pair; returns its cone cosine.

    Starts from the feasible iterate ``c = z_best e_best + z_second e_second`` on the support
    {best, second} when ``second >= 0`` (both coefficients positive), else from {best}.
    """
    for k in range(m):
        c[k] = 0.0
        z[k] = 0.0
        in_support[k] = False
        blocked[k] = False
    c[best] = z_best
    in_support[best] = True
    support[0] = best
    chol[0, 0] = math.sqrt(gram[s, best, best])
    p = 1
    if second >= 0:
        support[1] = second
        if _append_row(gram, s, support, 1, chol):
            c[second] = z_second
            in_support[second] = True
            p = 2
        else:
            c[best] = b[best]
    for k in range(m):
        acc = b[k]
        for q in range(p):
            acc -= gram[s, k, support[q]] * c[support[q]]
        w[k] = acc
    for _ in range(6 * m + 6):  # Lawson-Hanson terminates; the cap only guards round-off cycling
        enter, top = -1, TOLERANCE
        for k in range(m):
            if not in_support[k] and not blocked[k] and w[k] > top:
                enter, top = k, w[k]
        if enter < 0:
            break
        support[p] = enter
        if not _append_row(gram, s, support, p, chol):
            blocked[enter] = True  # a duplicate of the support: it can never help
            continue
        p += 1
        in_support[enter] = True
        first = True
        while p > 0:
            _solve(chol, support, p, b, z)
            if first and z[enter] <= 0.0:  # cannot move off zero in this precision: leave it out
                p -= 1  # it is the last row, so the factor of the rest is unchanged
                in_support[enter] = False
                blocked[enter] = True
                break
            first = False
            alpha, leave = 2.0, -1
            for q in range(p):
                k = support[q]
                if z[k] <= 0.0:
                    ratio = c[k] / (c[k] - z[k])
                    if ratio < alpha:
                        alpha, leave = ratio, k
            if leave < 0:  # feasible: the solution on the support is the new iterate
                for q in range(p):
                    c[support[q]] = z[support[q]]
                break
            # Move toward z until the first support coefficient reaches zero; drop it (and any other at 0).
            kept = 0
            for q in range(p):
                k = support[q]
                c[k] += alpha * (z[k] - c[k])
                if k == leave or c[k] <= 0.0:
                    c[k] = 0.0
                    in_support[k] = False
                else:
                    support[kept] = k
                    kept += 1
            p = 0
            for q in range(kept):  # refactor the smaller support (a principal submatrix: definite)
                if not _append_row(gram, s, support, q, chol):
                    break
                p += 1
        for k in range(m):  # gradient at the new iterate
            acc = b[k]
            for q in range(p):
                acc -= gram[s, k, support[q]] * c[support[q]]
            w[k] = acc
    dot, norm_sq = 0.0, 0.0
    for q in range(p):
        i = support[q]
        dot += b[i] * c[i]
        for r in range(p):
            norm_sq += c[i] * gram[s, i, support[r]] * c[support[r]]
    if norm_sq <= 0.0:
        return b[best]
    return max(dot / math.sqrt(norm_sq), b[best])


@numba.njit(cache=True, inline="always", fastmath=_FLAGS)
def _edge_or_active_set(gram, s, m, b, j, k, c, z, w, in_support, blocked, support, chol):
    """The pair's second Lawson-Hanson step in closed form (support {j, k}, a 2 x 2 system): most
    pairs that leave the vertex are optimal on an edge. Otherwise the general active set, from there."""
    g, gjj, gkk = gram[s, j, k], gram[s, j, j], gram[s, k, k]
    det = gjj * gkk - g * g
    if det > 1e-8:
        zj, zk = (gkk * b[j] - g * b[k]) / det, (gjj * b[k] - g * b[j]) / det
        if zj > 0.0 and zk > 0.0:
            for i in range(m):
                if b[i] - zj * gram[s, j, i] - zk * gram[s, k, i] > TOLERANCE:
                    return _active_set(gram, s, m, b, j, k, zj, zk, c, z, w, in_support, blocked, support, chol)
            return max(math.sqrt(max(b[j] * zj + b[k] * zk, 0.0)), b[j])
    return _active_set(gram, s, m, b, j, -1, b[j], 0.0, c, z, w, in_support, blocked, support, chol)


@numba.njit(parallel=True, cache=True, fastmath=_FLAGS)
def _scores(products, columns, counts, gram, owner, out):
    n, m_max = products.shape[0], columns.shape[1]
    for i in numba.prange(n):
        b, c, z, w = np.empty(m_max), np.empty(m_max), np.empty(m_max), np.empty(m_max)
        in_support, blocked = np.empty(m_max, np.bool_), np.empty(m_max, np.bool_)
        support = np.empty(m_max, np.int64)
        chol = np.empty((m_max, m_max))
        for s in range(columns.shape[0]):
            m = counts[s]
            best = 0
            for k in range(m):
                b[k] = products[i, columns[s, k]]
                if b[k] > b[best]:
                    best = k
            value = b[best]
            if value > 0.0:
                # Support {best vertex} (c = b_best) is optimal unless some vertex has a positive
                # gradient b_k - b_best G[best, k]; then the full active set (about half the pairs).
                enter, top = -1, TOLERANCE
                for k in range(m):
                    gain = b[k] - value * gram[s, best, k]
                    if gain > top:
                        enter, top = k, gain
                if enter >= 0:
                    value = _edge_or_active_set(gram, s, m, b, best, enter, c, z, w, in_support, blocked,
                                                support, chol)
            if value > out[i, owner[s]]:
                out[i, owner[s]] = value


def simplex_scores(products: torch.Tensor, columns: np.ndarray, counts: np.ndarray, gram: np.ndarray,
                   owner: np.ndarray, num_classes: int) -> torch.Tensor:
    """Per class, the largest cone cosine over its simplices, exact (float64 NNLS per pair).

    Args:
        products: ``(n, L)`` float32 CPU products of unit points with the vertices.
        columns: ``(S, m)`` int64: simplex ``s``'s vertex ``k`` is column ``columns[s, k]`` of
            ``products`` for ``k < counts[s]`` (the rest is padding, never read).
        counts: ``(S,)`` int64 vertices per simplex (>= 1).
        gram: ``(S, m, m)`` float64 vertex Gram matrices (unit diagonal on real vertices).
        owner: ``(S,)`` int64 class of each simplex, in ``[0, num_classes)``; every class owns one.

    Returns:
        ``(n, num_classes)`` float32. When no vertex of a simplex has a positive product, its value
        is its best vertex's product (the convention of ``s3.core.scoring``).
    """
    if columns.shape[1] > 12:
        raise ValueError(f"simplices of {columns.shape[1]} vertices: use max_dimension <= 11")
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    out = np.full((products.shape[0], num_classes), -np.inf, dtype=np.float32)
    _scores(products.detach().contiguous().numpy(), np.ascontiguousarray(columns, np.int64),
            np.ascontiguousarray(counts, np.int64), np.ascontiguousarray(gram, np.float64),
            np.ascontiguousarray(owner, np.int64), out)
    return torch.from_numpy(out)
