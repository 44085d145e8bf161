"""Exact point-to-simplex scores on the CPU: one compiled Lawson-Hanson solve per (point, cone) pair.

The problem is the one of ``s3.core.simplex`` (read its docstring): for a unit point with products
``b`` with a simplex's vertices and the vertices' Gram matrix ``G``, the best cosine to the
simplex's cone solves the ``m``-dimensional non-negative least squares problem
``min_{c >= 0} 1 - 2 b.c + c^T G c``. Here each pair is solved on its own, in float64, by the
Lawson-Hanson active-set method with a Cholesky factor of ``G_PP`` on the current support ``P``
(grown a row at a time), inside a numba kernel. The pair's data (``m`` products, the ``m x m``
Gram matrix) stays in cache, so a pair costs a few nanoseconds when its best vertex is optimal
(the common case), a closed-form 2 x 2 solve when an edge is, and a few small solves otherwise;
the batched torch solver of ``s3.core.simplex`` instead streams every step through memory, which
suits a GPU and not a CPU.

Classes with several simplices (``face_scores``): every simplex of a class lies in the class's kept
set ``T``, and a cone only grows with its generators, so ``cone(T)`` bounds every simplex's value.
When the optimal support of ``cone(T)`` lies inside one of the simplices, that simplex attains the
bound and the class's score is ``cone(T)``, exactly; only the other pairs solve each simplex (the
NNLS over ``T`` with the vertices outside the simplex held at zero). So a class costs about one
solve, however many faces its complex has.

Layout: products are item-major, ``(L, n)`` (vertex rows, image columns), so one cone's pairs read
contiguous memory and the kernels run the cones (or classes) in parallel.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

__all__ = ["cone_scores", "nest_cones", "face_scores", "face_bounds", "pair_scores", "MAX_VERTICES"]

# Gradient tolerance of the active set (float64): a vertex enters the support only if it would raise
# the objective's gradient by more than this (tests/test_simplex.py: within 1e-6 of float64 NNLS).
TOLERANCE = 1e-7
# Cholesky pivot under which a vertex is treated as linearly dependent on the support (duplicates).
PIVOT = 1e-12
MAX_VERTICES = 31  # supports are int32 bitmasks

# fastmath without the "no NaN / no inf" assumptions (face bounds use inf); error_model="numpy" on every
# kernel: divisions need no zero check (every divisor is a positive pivot or guarded), about 20% faster.
_FLAGS = {"nsz", "arcp", "contract", "afn", "reassoc"}


@numba.njit(cache=True, error_model="numpy", inline="always", fastmath=_FLAGS)
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


@numba.njit(cache=True, error_model="numpy", inline="always", fastmath=_FLAGS)
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


@numba.njit(cache=True, error_model="numpy", fastmath=_FLAGS)  # not inlined: the rare path, and inlining it doubles compile time
def _active_set(gram, s, m, b, allowed, best, second, z_best, z_second, c, z, w, in_support, blocked, support,
                chol):
    """Lawson-Hanson for one pair over the vertices in the bitmask ``allowed``; returns
    ``(cone cosine, support bitmask)``.

    Starts from the feasible iterate ``c = z_best e_best + z_second e_second`` on the support
    {best, second} when ``second >= 0`` (both coefficients positive), else from {best}.
    """
    for k in range(m):
        c[k] = 0.0
        z[k] = 0.0
        in_support[k] = False
        blocked[k] = ((allowed >> k) & 1) == 0
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
    dot, norm_sq, mask = 0.0, 0.0, 0
    for q in range(p):
        i = support[q]
        mask |= 1 << i
        dot += b[i] * c[i]
        for r in range(p):
            norm_sq += c[i] * gram[s, i, support[r]] * c[support[r]]
    if norm_sq <= 0.0 or dot / math.sqrt(norm_sq) <= b[best]:
        return b[best], 1 << best
    return dot / math.sqrt(norm_sq), mask


@numba.njit(cache=True, error_model="numpy", inline="always", fastmath=_FLAGS)
def _solve_pair(gram, s, m, b, allowed, c, z, w, in_support, blocked, support, chol):
    """Cone cosine and optimal support (bitmask) of one pair, over the vertices in ``allowed``.

    When no allowed vertex has a positive product the value is the best one's product (the
    convention of ``s3.core.scoring``).
    """
    j = -1
    for k in range(m):
        if ((allowed >> k) & 1) == 1 and (j < 0 or b[k] > b[j]):
            j = k
    value = b[j]
    if value <= 0.0:
        return value, 1 << j
    # Support {j} (c = b_j) is optimal unless an allowed vertex has a positive gradient b_k - b_j G_jk.
    k, top = -1, TOLERANCE
    for q in range(m):
        if ((allowed >> q) & 1) == 1:
            gain = b[q] - value * gram[s, j, q]
            if gain > top:
                k, top = q, gain
    if k < 0:
        return value, 1 << j
    # LH's second step in closed form (support {j, k}, a 2 x 2 system): most such pairs end on an edge.
    g, gjj, gkk = gram[s, j, k], gram[s, j, j], gram[s, k, k]
    det = gjj * gkk - g * g
    if det > 1e-8:
        zj, zk = (gkk * b[j] - g * b[k]) / det, (gjj * b[k] - g * b[j]) / det
        if zj > 0.0 and zk > 0.0:
            l, top = -1, TOLERANCE
            for q in range(m):
                if ((allowed >> q) & 1) == 1:
                    gain = b[q] - zj * gram[s, j, q] - zk * gram[s, k, q]
                    if gain > top:
                        l, top = q, gain
            if l < 0:
                return max(math.sqrt(max(b[j] * zj + b[k] * zk, 0.0)), value), (1 << j) | (1 << k)
            # The third step in closed form too (support {j, k, l}, 3 x 3 by its adjugate): most of
            # the remaining pairs end on a triangle. Near-singular triangles go to the active set.
            gll, gjl, gkl = gram[s, l, l], gram[s, j, l], gram[s, k, l]
            a11, a12, a13 = gkk * gll - gkl * gkl, gjl * gkl - g * gll, g * gkl - gkk * gjl
            a22, a23, a33 = gjj * gll - gjl * gjl, g * gjl - gjj * gkl, gjj * gkk - g * g
            det3 = gjj * a11 + g * a12 + gjl * a13
            if det3 > 1e-9:
                tj = (a11 * b[j] + a12 * b[k] + a13 * b[l]) / det3
                tk = (a12 * b[j] + a22 * b[k] + a23 * b[l]) / det3
                tl = (a13 * b[j] + a23 * b[k] + a33 * b[l]) / det3
                if tj > 0.0 and tk > 0.0 and tl > 0.0:
                    optimal = True
                    for q in range(m):
                        if ((allowed >> q) & 1) == 1 and (
                                b[q] - tj * gram[s, j, q] - tk * gram[s, k, q] - tl * gram[s, l, q] > TOLERANCE):
                            optimal = False
                            break
                    if optimal:
                        cosine = math.sqrt(max(b[j] * tj + b[k] * tk + b[l] * tl, 0.0))
                        return max(cosine, value), (1 << j) | (1 << k) | (1 << l)
            return _active_set(gram, s, m, b, allowed, j, k, zj, zk, c, z, w, in_support, blocked, support, chol)
    return _active_set(gram, s, m, b, allowed, j, -1, value, 0.0, c, z, w, in_support, blocked, support, chol)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _scratch(m_max):
    """Per-thread work arrays of one solve: products, iterates, gradient, support flags, factor."""
    return (np.empty(m_max), np.empty(m_max), np.empty(m_max), np.empty(m_max), np.empty(m_max, np.bool_),
            np.empty(m_max, np.bool_), np.empty(m_max, np.int64), np.empty((m_max, m_max)))


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath=_FLAGS)
def _cone_kernel(pt, columns, counts, gram, values, supports):
    n, m_max = pt.shape[1], columns.shape[1]
    for u in numba.prange(columns.shape[0]):
        b, c, z, w, in_support, blocked, support, chol = _scratch(m_max)
        m = counts[u]
        full = (1 << m) - 1
        for i in range(n):
            for k in range(m):
                b[k] = pt[columns[u, k], i]
            value, mask = _solve_pair(gram, u, m, b, full, c, z, w, in_support, blocked, support, chol)
            values[u, i] = value
            supports[u, i] = mask


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath=_FLAGS)
def _nested_cone_kernel(pt, columns, counts, gram, level, parent, position, values, supports):
    n, m_max = pt.shape[1], columns.shape[1]
    for t in numba.prange(level.shape[0]):
        b, c, z, w, in_support, blocked, support, chol = _scratch(m_max)
        u = level[t]
        p, m = parent[u], counts[u]
        full = (1 << m) - 1
        for i in range(n):
            if p >= 0:  # the superset's optimum is feasible here: when it uses only our vertices, it is ours
                theirs, mine, used = supports[p, i], 0, 0
                for k in range(m):
                    if ((theirs >> position[u, k]) & 1) == 1:
                        mine |= 1 << k
                        used += 1
                remaining = theirs
                while remaining:
                    remaining &= remaining - 1
                    used -= 1
                if used == 0:
                    values[u, i] = values[p, i]
                    supports[u, i] = mine
                    continue
            for k in range(m):
                b[k] = pt[columns[u, k], i]
            value, mask = _solve_pair(gram, u, m, b, full, c, z, w, in_support, blocked, support, chol)
            values[u, i] = value
            supports[u, i] = mask


@numba.njit(cache=True, error_model="numpy", inline="always")
def _covered(inside, masks, first, faces):
    """Whether some simplex ``masks[first:first + faces]`` holds the support bitmask ``inside``."""
    for q in range(first, first + faces):
        if (inside & ~masks[q]) == 0:
            return True
    return False


@numba.njit(cache=True, error_model="numpy", inline="always", fastmath=_FLAGS)
def _best_face(gram, u, m, b, ceiling, first, faces, masks, face_ptr, face_vertices, bound, upper, face_b, face_gram,
               c, z, w, in_support, blocked, support, chol):
    """The largest cone cosine over a class's simplices when no simplex holds its kept set's optimum.

    ``b``: the products with the kept set (``m`` vertices, cone ``u`` of ``gram``); ``ceiling``: the
    kept set's cone cosine, which no simplex exceeds.
    """
    best = -2.0
    for k in range(m):
        best = max(best, b[k])  # every kept vertex lies in a simplex: a lower bound
    for r in range(faces):  # each face's upper bound (face_bounds); a face with no positive product scores its best vertex
        top = -2.0
        for t in range(face_ptr[first + r], face_ptr[first + r + 1]):
            top = max(top, b[face_vertices[t]])
        upper[r] = top * bound[first + r] if top > 0.0 else -np.inf
    r_top = 0
    for r in range(faces):
        if upper[r] > upper[r_top]:
            r_top = r
    # The face of highest bound first (it usually wins), then one pass that solves only the faces
    # whose bound still beats the best value (a full best-first order costs more than it saves).
    for step in range(faces + 1):
        r = r_top if step == 0 else step - 1
        if (step > 0 and r == r_top) or upper[r] <= best or best >= ceiling:
            continue
        lo, size = face_ptr[first + r], face_ptr[first + r + 1] - face_ptr[first + r]
        if size == 1:  # a single vertex: its product (upper holds it times the margin)
            best = max(best, b[face_vertices[lo]])
            continue
        for j in range(size):  # the face's own small problem: every step costs its size, not m
            face_b[j] = b[face_vertices[lo + j]]
            for k in range(size):
                face_gram[0, j, k] = gram[u, face_vertices[lo + j], face_vertices[lo + k]]
        value, _ = _solve_pair(face_gram, 0, size, face_b, (1 << size) - 1, c, z, w, in_support, blocked, support, chol)
        best = max(best, value)
    return best


@numba.njit(cache=True, error_model="numpy")
def _most_faces(starts):
    most = 1
    for c_ in range(len(starts) - 1):
        most = max(most, starts[c_ + 1] - starts[c_])
    return most


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath=_FLAGS)
def _face_kernel(pt, union, columns, counts, gram, values, supports, starts, masks, face_ptr, face_vertices, bound,
                 out):
    n, m_max, most = pt.shape[1], columns.shape[1], _most_faces(starts)
    for c_ in numba.prange(union.shape[0]):
        b, c, z, w, in_support, blocked, support, chol = _scratch(m_max)
        upper, face_b, face_gram = np.empty(most), np.empty(m_max), np.empty((1, m_max, m_max))
        u, first, faces = union[c_], starts[c_], starts[c_ + 1] - starts[c_]
        m = counts[u]
        for i in range(n):
            if _covered(supports[u, i], masks, first, faces):  # that simplex attains the kept set's cone cosine
                out[c_, i] = values[u, i]
                continue
            for k in range(m):
                b[k] = pt[columns[u, k], i]
            out[c_, i] = _best_face(gram, u, m, b, values[u, i], first, faces, masks, face_ptr, face_vertices, bound,
                                    upper, face_b, face_gram, c, z, w, in_support, blocked, support, chol)


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath=_FLAGS)
def _pair_kernel(pt, union, columns, counts, gram, starts, masks, face_ptr, face_vertices, bound, pair_class,
                 pair_point, out):
    m_max, most = columns.shape[1], _most_faces(starts)
    for t in numba.prange(len(pair_class)):
        b, c, z, w, in_support, blocked, support, chol = _scratch(m_max)  # per pair: the pairs are few
        upper, face_b, face_gram = np.empty(most), np.empty(m_max), np.empty((1, m_max, m_max))
        c_, i = pair_class[t], pair_point[t]
        u, first, faces = union[c_], starts[c_], starts[c_ + 1] - starts[c_]
        m = counts[u]
        for k in range(m):
            b[k] = pt[columns[u, k], i]
        value, inside = _solve_pair(gram, u, m, b, (1 << m) - 1, c, z, w, in_support, blocked, support, chol)
        ceiling = np.float32(value)  # as cone_scores stores it
        if _covered(inside, masks, first, faces):
            out[t] = ceiling
        else:
            out[t] = _best_face(gram, u, m, b, ceiling, first, faces, masks, face_ptr, face_vertices, bound, upper,
                                face_b, face_gram, c, z, w, in_support, blocked, support, chol)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _face_bounds(union, counts, gram, starts, face_ptr, face_vertices, iterations):
    bound = np.empty(len(face_ptr) - 1)
    for c_ in numba.prange(len(union)):
        u = union[c_]
        for q in range(starts[c_], starts[c_ + 1]):
            vs = face_vertices[face_ptr[q] : face_ptr[q + 1]]
            m = len(vs)
            g = np.empty((m, m))
            for j in range(m):
                for k in range(m):
                    g[j, k] = gram[u, vs[j], vs[k]]
            # Frank-Wolfe on f(a) = a^T G a over the simplex; convexity gives the certified lower
            # bound f(a) + min_k grad_k - grad . a = min_k (2 G a)_k - f(a) at every iterate.
            a = np.full(m, 1.0 / m)
            ga = np.empty(m)
            lower = -np.inf
            for _ in range(iterations):
                f, k = 0.0, 0
                for j in range(m):
                    acc = 0.0
                    for l in range(m):
                        acc += g[j, l] * a[l]
                    ga[j] = acc
                    f += a[j] * acc
                    if acc < ga[k]:
                        k = j
                lower = max(lower, 2.0 * ga[k] - f)
                # exact line search toward vertex k: minimise f(a + t (e_k - a)), t in [0, 1]
                slope = ga[k] - f  # (G a) . (e_k - a)
                curve = g[k, k] - 2.0 * ga[k] + f  # (e_k - a)^T G (e_k - a)
                if slope >= 0.0 or curve <= 0.0:
                    break
                t = min(1.0, -slope / curve)
                for j in range(m):
                    a[j] *= 1.0 - t
                a[k] += t
            bound[q] = (1.0 + 1e-6) / math.sqrt(lower) if lower > 0.0 else np.inf  # margin for round-off
    return bound


def _faces(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each bitmask's set bits as a compressed list: ``(ptr, vertices)``."""
    bits = ((masks.astype(np.int64)[:, None] >> np.arange(MAX_VERTICES)) & 1).astype(bool)  # (F, 31)
    return np.concatenate([[0], np.cumsum(bits.sum(1))]).astype(np.int64), np.nonzero(bits)[1].astype(np.int64)


def face_bounds(union: np.ndarray, counts: np.ndarray, gram: np.ndarray, starts: np.ndarray, masks: np.ndarray,
                iterations: int = 64) -> np.ndarray:
    """Per simplex ``F``, a factor ``beta_F`` with ``cos(x, cone F) <= beta_F max_{k in F} x . v_k``.

    With ``y = sum_k a_k v_k`` (``a`` on the probability simplex, a scaling of any cone point),
    ``x . y <= max_k x . v_k`` and ``||y||^2 = a^T G_F a >= d_F^2``, the squared distance from the
    origin to the simplex's convex hull; ``beta_F = 1 / d_F``, with ``d_F^2`` bounded from below by
    Frank-Wolfe's duality gap (exact for one vertex, tight after a few dozen steps, and never
    above the true minimum whatever the number of steps). inf where the hull reaches the origin.
    Inputs as ``face_scores``; ``(F,)`` float64.
    """
    union, counts = np.ascontiguousarray(union, np.int64), np.ascontiguousarray(counts, np.int64)
    starts, masks = np.ascontiguousarray(starts, np.int64), np.ascontiguousarray(masks, np.int32)
    face_ptr, face_vertices = _faces(masks)
    _threads()
    return _face_bounds(union, counts, np.ascontiguousarray(gram, np.float64), starts, face_ptr, face_vertices,
                        iterations)


def _threads() -> None:
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def nest_cones(columns: np.ndarray, counts: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each cone, its smallest strict superset among the cones of its group, to solve from.

    A cone only grows with its generators, so a superset's optimum bounds the cone's value; when
    that optimum uses only the cone's own vertices it is feasible for the cone and therefore its
    optimum (``cone_scores`` with ``parents``). The grid's variants of one class nest often.

    Args:
        columns, counts: as ``cone_scores``.
        groups: ``(U,)`` int: cones may nest only within a group (one class's cones).

    Returns:
        ``parent`` ``(U,)`` int64 (-1: none) and ``position`` ``(U, m)`` int64: the index of cone
        ``u``'s vertex ``k`` among its parent's vertices (0 where there is no parent or padding).
    """
    sets = [frozenset(row[:k].tolist()) for row, k in zip(columns, counts)]
    parent = np.full(len(columns), -1, np.int64)
    position = np.zeros(columns.shape, np.int64)
    members: dict[int, list[int]] = {}
    for u, g in enumerate(np.asarray(groups).tolist()):
        members.setdefault(g, []).append(u)
    for cones in members.values():
        by_size = sorted(cones, key=lambda u: counts[u])
        for i, u in enumerate(by_size):
            for v in by_size[i + 1:]:  # the first strict superset in size order is a smallest one
                if counts[v] > counts[u] and sets[u] < sets[v]:
                    parent[u] = v
                    where = {int(j): r for r, j in enumerate(columns[v, : counts[v]])}
                    position[u, : counts[u]] = [where[int(j)] for j in columns[u, : counts[u]]]
                    break
    return parent, position


def _levels(parent: np.ndarray) -> list[np.ndarray]:
    """Cones in solve order: roots first, then each cone one level after its parent."""
    depth = np.full(len(parent), -1, np.int64)
    for u in range(len(parent)):
        chain = []
        while u >= 0 and depth[u] < 0:
            chain.append(u)
            u = parent[u]
        base = depth[u] if u >= 0 else -1
        for v in reversed(chain):
            base += 1
            depth[v] = base
    return [np.flatnonzero(depth == d) for d in range(int(depth.max(initial=-1)) + 1)]


def cone_scores(products_t: torch.Tensor, columns: np.ndarray, counts: np.ndarray, gram: np.ndarray,
                parents: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact cone cosine of every (cone, point) pair, and its optimal support.

    Args:
        products_t: ``(L, n)`` float32 CPU products of the vertices with ``n`` unit points.
        columns: ``(U, m)`` int64: cone ``u``'s vertex ``k`` is row ``columns[u, k]`` of
            ``products_t`` for ``k < counts[u]`` (the rest is padding, never read).
        counts: ``(U,)`` int64 vertices per cone (1 to ``MAX_VERTICES``).
        gram: ``(U, m, m)`` float64 vertex Gram matrices.
        parents: ``nest_cones``'s ``(parent, position)``: each cone with a parent copies its
            parent's optimum wherever that optimum uses only the cone's vertices (same values,
            fewer solves when the cones nest).

    Returns:
        ``values`` ``(U, n)`` float32 (a cone with no positive product scores its best vertex's
        product) and ``supports`` ``(U, n)`` int32, bit ``k`` set when vertex ``k`` carries weight
        at the optimum.
    """
    if columns.shape[1] > MAX_VERTICES:
        raise ValueError(f"simplices of {columns.shape[1]} vertices: at most {MAX_VERTICES} are supported")
    _threads()
    n = products_t.shape[1]
    values = np.empty((len(columns), n), np.float32)
    supports = np.empty((len(columns), n), np.int32)
    pt, columns = products_t.detach().contiguous().numpy(), np.ascontiguousarray(columns, np.int64)
    counts, gram = np.ascontiguousarray(counts, np.int64), np.ascontiguousarray(gram, np.float64)
    if parents is None:
        _cone_kernel(pt, columns, counts, gram, values, supports)
    else:
        parent, position = (np.ascontiguousarray(a, np.int64) for a in parents)
        for level in _levels(parent):
            _nested_cone_kernel(pt, columns, counts, gram, level, parent, position, values, supports)
    return torch.from_numpy(values), torch.from_numpy(supports)


def face_scores(products_t: torch.Tensor, union: np.ndarray, columns: np.ndarray, counts: np.ndarray,
                gram: np.ndarray, values: torch.Tensor, supports: torch.Tensor, starts: np.ndarray,
                masks: np.ndarray, bounds: np.ndarray | None = None) -> torch.Tensor:
    """Per class, the largest cone cosine over its simplices (module docstring), ``(C, n)`` float32.

    Args:
        products_t, columns, counts, gram: as ``cone_scores``; the cones are the classes' kept sets.
        union: ``(C,)`` int64, the kept-set cone of each class.
        values, supports: ``cone_scores`` of those cones on the same points.
        starts: ``(C + 1,)`` int64; class ``c``'s simplices are ``masks[starts[c]:starts[c + 1]]``.
        masks: int32 bitmasks of each simplex's vertices, over its class's kept-set cone's columns.
        bounds: ``face_bounds`` of the same simplices (computed when None; pass them to score many
            chunks of points).

    Where the kept set's optimum lies in no simplex, the simplices are solved best bound first
    (``face_bounds``) until no remaining bound beats the best value found.
    """
    _threads()
    union, counts = np.ascontiguousarray(union, np.int64), np.ascontiguousarray(counts, np.int64)
    gram, starts = np.ascontiguousarray(gram, np.float64), np.ascontiguousarray(starts, np.int64)
    masks = np.ascontiguousarray(masks, np.int32)
    if bounds is None:
        bounds = face_bounds(union, counts, gram, starts, masks)
    face_ptr, face_vertices = _faces(masks)
    out = np.empty((len(union), products_t.shape[1]), np.float32)
    _face_kernel(products_t.detach().contiguous().numpy(), union, np.ascontiguousarray(columns, np.int64), counts,
                 gram, values.numpy(), supports.numpy(), starts, masks, face_ptr, face_vertices,
                 np.ascontiguousarray(bounds, np.float64), out)
    return torch.from_numpy(out)


def pair_scores(products_t: torch.Tensor, union: np.ndarray, columns: np.ndarray, counts: np.ndarray,
                gram: np.ndarray, starts: np.ndarray, masks: np.ndarray, bounds: np.ndarray,
                pair_class: np.ndarray, pair_point: np.ndarray) -> torch.Tensor:
    """``face_scores`` of chosen (class, point) pairs only, ``(P,)`` float32, the same values.

    For scores that are needed at a few pairs (the ablation grid's argmax, s3.ablations.items):
    each pair solves its class's kept-set cone, then its simplices as ``face_scores`` does.
    Inputs as ``face_scores`` (``bounds`` from ``face_bounds``); ``pair_class``, ``pair_point``: ``(P,)``.
    """
    _threads()
    union, counts = np.ascontiguousarray(union, np.int64), np.ascontiguousarray(counts, np.int64)
    starts, masks = np.ascontiguousarray(starts, np.int64), np.ascontiguousarray(masks, np.int32)
    face_ptr, face_vertices = _faces(masks)
    out = np.empty(len(pair_class), np.float32)
    _pair_kernel(products_t.detach().contiguous().numpy(), union, np.ascontiguousarray(columns, np.int64), counts,
                 np.ascontiguousarray(gram, np.float64), starts, masks, face_ptr, face_vertices,
                 np.ascontiguousarray(bounds, np.float64), np.ascontiguousarray(pair_class, np.int64),
                 np.ascontiguousarray(pair_point, np.int64), out)
    return torch.from_numpy(out)
