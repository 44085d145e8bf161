"""Exact batched cosine between points and simplex cones (non-negative least squares, Gram form).

For a unit vector x and a simplex with unit vertices ``V`` (rows), the best cosine between x and
a point of the simplex's convex hull is the best cosine to its cone ``{V^T c : c >= 0}`` (cosine
ignores scale). With ``b = V x`` (the point-to-vertex products) and ``G = V V^T`` that is the
non-negative least squares problem

    min_{c >= 0}  1 - 2 b.c + c^T G c,

an ``m``-dimensional problem (``m`` vertices) that never touches ``D`` again. At its optimum
``c*`` the cosine is ``b.c* / sqrt(c*^T G c*)``. When no vertex has a positive product the cone
projection is 0 and, by the convention of ``s3.core.scoring``, the answer is the best vertex.

Two solvers of the same problem: on the CPU, ``s3.core.simplex_kernel`` solves each pair on its
own in a compiled kernel (float64, fast where memory traffic dominates); this module's batched
solver is the GPU path (``cone_cosine(..., solver=...)`` picks; the tests run both).

Batched solver: Lawson-Hanson active set, run on every (point, simplex) pair at once. The first step
(support = the best vertex) is done densely for all pairs and closes most of them; the others are
compacted into one flat batch. Each later step needs ``G_PP^{-1} b_P`` for the pair's support
``P``; those inverses are tabulated once per simplex for every subset of its vertices (at most
``2^m``, m <= 10), so a step is a gather and two tiny matrix products, with no per-pair solve and
no Python loop over pairs. A pair is done when the KKT conditions hold (``c >= 0``, zero gradient
on the support, non-positive gradient off it, to ``tolerance``); pairs that never get there in
float32 (ill-conditioned supports) are solved again in float64.
"""

from __future__ import annotations

import torch

__all__ = ["support_inverses", "cone_cosine", "kkt_violation"]


def _masks(m: int, device: torch.device) -> torch.Tensor:
    """``(2^m, m)`` bool: row ``k`` holds the bits of ``k`` (bit j = vertex j in the support)."""
    k = torch.arange(2**m, device=device)
    return (k[:, None] >> torch.arange(m, device=device)) & 1 == 1


def support_inverses(gram: torch.Tensor, counts: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of ``G_PP`` for every support ``P`` of every simplex, zero-padded to ``(m, m)``.

    Args:
        gram: ``(S, m, m)`` Gram matrices; simplex ``s`` has its ``counts[s]`` real vertices first.
        counts: ``(S,)`` long, number of real vertices per simplex.
        dtype: dtype of the table (the inverses are computed in float64 either way).

    Returns:
        ``table`` ``(T, m, m)`` and ``offsets`` ``(S,)``: the inverse for simplex ``s`` and support
        bitmask ``k`` (``k < 2^counts[s]``) is ``table[offsets[s] + k]``. Singular supports get NaN.
    """
    m, device = gram.shape[-1], gram.device
    sizes = 2 ** counts
    offsets = torch.cumsum(sizes, 0) - sizes
    owner = torch.repeat_interleave(torch.arange(len(counts), device=device), sizes)  # (T,)
    local = torch.arange(int(sizes.sum()), device=device) - offsets[owner]  # bitmask per entry
    mask = _masks(m, device)[local].double()  # (T, m)
    outer = mask[:, :, None] * mask[:, None, :]
    eye = torch.eye(m, dtype=torch.float64, device=device)
    system = gram.double()[owner] * outer + eye * (1 - mask[:, None, :])
    inverse, info = torch.linalg.inv_ex(system)
    inverse = inverse * outer
    inverse[info != 0] = float("nan")
    return inverse.to(dtype), offsets


def kkt_violation(c: torch.Tensor, b: torch.Tensor, gram: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Largest violation of the NNLS optimality conditions, per pair.

    Shapes: ``c``, ``b`` ``(n, m)``; ``gram`` ``(n, m, m)``; ``valid`` ``(n, m)``. The gradient is
    ``w = b - G c``; KKT: ``c >= 0``, ``w = 0`` where ``c > 0``, ``w <= 0`` where ``c = 0``.
    Returns ``(n,)``.
    """
    w = b - torch.einsum("nij,nj->ni", gram, c)
    per = torch.where(c > 0, w.abs(), w.clamp_min(0)).maximum((-c).clamp_min(0))
    return per.masked_fill(~valid, 0).amax(dim=-1)


def _active_set(b: torch.Tensor, gram: torch.Tensor, valid: torch.Tensor, table: torch.Tensor,
                base: torch.Tensor, c: torch.Tensor, mask: torch.Tensor, tolerance: float,
                max_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lawson-Hanson steps on a flat batch of pairs, from a feasible ``c`` on support ``mask``.

    Shapes: ``b``, ``c``, ``valid`` ``(n, m)``; ``gram`` ``(n, m, m)``; ``base`` ``(n,)`` row of
    the pair's simplex in ``table`` (its support ``k`` is at ``base + k``); ``mask`` ``(n, m)``
    bool, the support that is solved next (``c`` is zero off it). Returns ``(c, done)``: the
    last iterate of every pair and whether it met the KKT conditions.
    """
    n, m = b.shape
    bits = 2 ** torch.arange(m, device=b.device)
    c_out = c.clone()
    done = torch.zeros(n, dtype=torch.bool, device=b.device)
    idx = torch.arange(n, device=b.device)  # the pairs still running, compacted every step
    for _ in range(max_steps):
        if idx.numel() == 0:
            break
        key = base + (mask.long() * bits).sum(-1)
        z = torch.einsum("nij,nj->ni", table.index_select(0, key), b)  # solution on the support
        bad = ~torch.isfinite(z).all(-1)  # singular support: left to the caller's fallback
        feasible = ((z > 0) | ~mask).all(-1) & ~bad
        # Feasible: accept z; optimal, or add the most violated vertex.
        w = b - torch.einsum("nij,nj->ni", gram, z)
        gain = w.masked_fill(mask | ~valid, float("-inf"))
        top, enter = gain.max(-1)
        optimal = feasible & (top <= tolerance)
        grow = feasible & ~optimal
        # Infeasible: move from c toward z until the first support coefficient reaches 0; drop it.
        shrink = ~feasible & ~bad
        ratio = torch.where(mask & (z <= 0), c / (c - z).clamp_min(1e-30), torch.full_like(z, float("inf")))
        alpha, leave = ratio.min(-1)
        stepped = c + alpha.clamp(0, 1)[:, None] * (z - c)
        c = torch.where(feasible[:, None], z, torch.where(shrink[:, None], stepped, c))
        positions = torch.arange(m, device=b.device)
        mask = (mask | (grow[:, None] & (positions == enter[:, None])))
        mask = mask & ~(shrink[:, None] & ((stepped <= 0) | (positions == leave[:, None])))
        c = (c * mask).clamp_min(0)
        c_out[idx[optimal]] = z[optimal]
        done[idx[optimal]] = True
        keep = (~optimal & ~bad & mask.any(-1)).nonzero(as_tuple=True)[0]
        c_out[idx[~optimal]] = c[~optimal]
        idx, b, gram, valid, base, c, mask = (t.index_select(0, keep) for t in (idx, b, gram, valid, base, c, mask))
    return c_out, done


def _cosine(c: torch.Tensor, b: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """``b.c / sqrt(c^T G c)``: the cosine of the actual cone point ``V^T c``."""
    norm_sq = torch.einsum("ni,nij,nj->n", c, gram, c).clamp_min(1e-30)
    return (b * c).sum(-1) / norm_sq.sqrt()


def _edge_step(b, gram_flat, s, j, k, m):
    """Lawson-Hanson step from support {j} to {j, k} in closed form (2 x 2 system), flat pairs.

    Returns ``(z_j, z_k, w)``: the solution on {j, k} and its gradient ``b - G z`` (``(n, m)``).
    """
    row_j = gram_flat.index_select(0, s * m + j)  # (n, m) rows G[s, j, :]
    row_k = gram_flat.index_select(0, s * m + k)
    g = row_j.gather(1, k[:, None]).squeeze(1)
    bj, bk = b.gather(1, j[:, None]).squeeze(1), b.gather(1, k[:, None]).squeeze(1)
    det = 1 - g * g
    zj, zk = (bj - g * bk) / det, (bk - g * bj) / det
    w = b - zj[:, None] * row_j - zk[:, None] * row_k
    return zj, zk, g, w


def cone_cosine(b: torch.Tensor, gram: torch.Tensor, valid: torch.Tensor, tolerance: float = 1e-6,
                tables: dict | None = None, solver: str = "auto") -> torch.Tensor:
    """Largest cosine between unit points and the cones of simplices, exact (NNLS, KKT-checked).

    ``solver``: ``batched`` (this module's batched active set, any device), ``kernel`` (the
    compiled per-pair CPU solver of ``s3.core.simplex_kernel``, float64), or ``auto``: the kernel
    for CPU tensors, else batched.

    Args:
        b: ``(n, S, m)`` products of each point with each simplex's vertices; 0 on padding
            vertices (zero rows, as ``StackedSpaces`` pads).
        gram: ``(S, m, m)`` vertex Gram matrices (unit diagonal on real vertices, zero rows and
            columns on padding).
        valid: ``(S, m)`` bool, real vertices first in each row, False on padding.
        tolerance: KKT tolerance of the float32 pass (the float64 pass uses 1e-12).
        tables: optional cache (a dict) for the float32 per-support inverse table, reused across chunks.

    Returns:
        ``(n, S)`` in ``b``'s dtype.
    """
    n, S, m = b.shape
    if solver == "auto":
        solver = "kernel" if b.device.type == "cpu" else "batched"
    if solver == "batched" and m > 12:
        raise ValueError(f"simplices of {m} vertices: the batched solver tabulates 2^m supports; "
                         "use max_dimension <= 11 or solver='kernel' (CPU)")
    if solver == "kernel":
        from s3.core.simplex_kernel import cone_scores

        columns = torch.arange(S * m).reshape(S, m).masked_fill(~valid.cpu(), -1)
        values, _ = cone_scores(b.reshape(n, S * m).T.float().cpu(), columns.numpy(), valid.sum(-1).cpu().numpy(),
                                gram.double().cpu().numpy())
        return values.T.to(b.dtype)
    if solver != "batched":
        raise ValueError(f"unknown solver {solver!r}: use 'auto', 'kernel' or 'batched'")
    tables = {} if tables is None else tables
    device = b.device
    best, vertex = b.max(-1)  # (n, S); padding holds 0, so it only wins when no vertex is positive
    nonpositive = (best <= 0).nonzero(as_tuple=True)
    if nonpositive[0].numel():  # no positive vertex: the answer is the best real vertex (rare)
        sub = b[nonpositive].masked_fill(~valid[nonpositive[1]], float("-inf"))
        best[nonpositive] = sub.amax(-1)
    # Step 1 for all pairs: support {best vertex}, gradient w = b - b_j G[j, :]; w_j = 0 and
    # w = 0 on padding, so the support is optimal iff max(w) <= tolerance.
    gram_flat = gram.reshape(S * m, m)
    rows = gram_flat.index_select(0, (vertex + torch.arange(S, device=device) * m).reshape(-1)).reshape(n, S, m)
    top = torch.addcmul(b, best[..., None], rows, value=-1).amax(-1)
    out = best  # the vertex answer, kept where step 1 is optimal or no vertex is positive
    hard = ((best > 0) & (top > tolerance)).nonzero(as_tuple=True)
    if hard[0].numel() == 0:
        return out
    hi, hs = hard
    flat = hi * S + hs
    pb = b.reshape(n * S, m).index_select(0, flat)
    pv = valid.index_select(0, hs)
    j = vertex.reshape(-1).index_select(0, flat)
    # Step 2 in closed form: add the most violated vertex k.
    w1 = torch.addcmul(pb, pb.gather(1, j[:, None]), gram_flat.index_select(0, hs * m + j), value=-1)
    k = w1.argmax(-1)
    zj, zk, g, w = _edge_step(pb, gram_flat, hs, j, k, m)
    ok2 = (zj > 0) & (zk > 0) & (g * g < 1 - 1e-4)
    done2 = ok2 & (w.amax(-1) <= tolerance)
    norm_sq = (zj * zj + zk * zk + 2 * g * zj * zk).clamp_min(1e-30)
    result = torch.where(done2, (zj * pb.gather(1, j[:, None]).squeeze(1) + zk * pb.gather(1, k[:, None]).squeeze(1))
                         / norm_sq.sqrt(), torch.full_like(zj, float("nan")))
    # The rest: general active set from the feasible vertex solution, next solve on {j, k}.
    rest = (~done2).nonzero(as_tuple=True)[0]
    if rest.numel():
        rb, rs, rj, rk = pb[rest], hs[rest], j[rest], k[rest]
        rv = pv[rest]
        c0 = torch.zeros_like(rb).scatter_(-1, rj[:, None], rb.gather(1, rj[:, None]))
        mask0 = torch.zeros_like(rv).scatter_(-1, rj[:, None], True).scatter_(-1, rk[:, None], True)
        sub = torch.full((len(rest),), float("nan"), dtype=b.dtype, device=device)
        for dtype, tol in ((b.dtype, tolerance), (torch.float64, 1e-12)):
            todo = torch.isnan(sub).nonzero(as_tuple=True)[0]
            if todo.numel() == 0:
                break
            if dtype == b.dtype:  # one table for every simplex, cached across chunks
                if dtype not in tables:
                    tables[dtype] = support_inverses(gram, valid.sum(-1), dtype)
                (table, offsets), row = tables[dtype], rs[todo]
            else:  # the float64 fallback: only the simplices of the few pairs that need it
                needed, row = torch.unique(rs[todo], return_inverse=True)
                table, offsets = support_inverses(gram[needed], valid[needed].sum(-1), dtype)
            sb, sg, sv = rb[todo].to(dtype), gram.index_select(0, rs[todo]).to(dtype), rv[todo]
            c, done = _active_set(sb, sg, sv, table, offsets[row], c0[todo].to(dtype), mask0[todo].clone(),
                                  tol, max_steps=3 * m + 2)
            if dtype == torch.float64:
                done[:] = True  # last resort: the best cone point found (never above the optimum)
            value = _cosine(c, sb, sg).to(b.dtype)
            sub[todo[done]] = value[done]
        result[rest] = sub
    out[hi, hs] = torch.maximum(result.nan_to_num(float("-inf")), best[hi, hs])
    return out
