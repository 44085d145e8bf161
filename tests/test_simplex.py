"""Exact point-to-simplex cone cosine against independent float64 references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from s3.core.simplex import cone_cosine, kkt_violation, support_inverses


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_nnls(x, verts):
    """float64 NNLS in the ambient space (scipy): the best cosine to the cone, or the best vertex."""
    prod = verts @ x
    if prod.max() <= 0:
        return prod.max()
    c, _ = nnls(verts.T, x)
    p = verts.T @ c
    return float(x @ p / np.linalg.norm(p))


def reference_supports(x, verts):
    """Brute force over every support P: the largest sqrt(b_P G_PP^-1 b_P) with G_PP^-1 b_P >= 0."""
    b, gram = verts @ x, verts @ verts.T
    if b.max() <= 0:
        return b.max()
    best = 0.0
    for r in range(1, len(verts) + 1):
        for support in itertools.combinations(range(len(verts)), r):
            sub = list(support)
            try:
                z = np.linalg.solve(gram[np.ix_(sub, sub)], b[sub])
            except np.linalg.LinAlgError:
                continue
            if np.all(z >= -1e-12) and np.linalg.cond(gram[np.ix_(sub, sub)]) < 1e12:
                best = max(best, float(np.sqrt(max(b[sub] @ z, 0.0))))
    return best


def pack(simplices, dim):
    """Pad a list of (m_s, D) vertex arrays the way StackedSpaces does: zero rows after the real ones."""
    m = max(len(s) for s in simplices)
    verts = np.zeros((len(simplices), m, dim))
    for i, s in enumerate(simplices):
        verts[i, : len(s)] = s
    v = torch.as_tensor(verts, dtype=torch.float32)
    return v, v.abs().sum(-1) > 0, torch.einsum("smd,snd->smn", v, v)


SOLVERS = ("kernel", "batched")  # the compiled per-pair CPU solver and the batched torch active set


@pytest.fixture(params=SOLVERS)
def solver(request):
    return request.param


def solve(points, simplices, dim, solver="auto"):
    v, valid, gram = pack(simplices, dim)
    x = torch.as_tensor(points, dtype=torch.float32)
    b = torch.einsum("nd,smd->nsm", x, v)
    return cone_cosine(b, gram, valid, solver=solver).double().numpy()


def ill_conditioned(rng, m, dim, cosine):
    """m unit vectors at pairwise cosine about ``cosine`` (synonyms that nearly coincide)."""
    base = unit(rng.normal(size=dim))
    spread = np.sqrt(2 * (1 - cosine))  # |a - b| for unit vectors at that cosine, roughly
    return unit(base + spread / np.sqrt(2) * unit(rng.normal(size=(m, dim))))


def points_around(rng, simplices, dim, n_random=20, n_near=20):
    near = [unit(s[rng.integers(len(s))] + 0.2 * rng.normal(size=dim)) for s in
            [simplices[i % len(simplices)] for i in range(n_near)]]
    return unit(np.concatenate([rng.normal(size=(n_random, dim)), np.array(near)]))


def check(points, simplices, dim, solver, atol=1e-6, brute=False):
    got = solve(points, simplices, dim, solver)
    f32 = [np.asarray(s, np.float32).astype(np.float64) for s in simplices]  # the solver sees float32 vertices
    xs = np.asarray(points, np.float32).astype(np.float64)
    ref = np.array([[reference_nnls(x, s) for s in f32] for x in xs])
    np.testing.assert_allclose(got, ref, atol=atol, rtol=0)
    if brute:
        np.testing.assert_allclose(got, [[reference_supports(x, s) for s in f32] for x in xs], atol=atol, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_random_simplices_match_float64_nnls(seed, solver):
    rng = np.random.default_rng(seed)
    dim = 24
    simplices = [unit(rng.normal(size=dim) + 0.7 * rng.normal(size=(m, dim))) for m in (1, 2, 3, 5, 7, 10)]
    check(points_around(rng, simplices, dim), simplices, dim, solver, brute=seed == 0)


@pytest.mark.parametrize("cosine", [0.995, 0.9999])
def test_ill_conditioned_simplices_match_float64_nnls(cosine, solver):
    rng = np.random.default_rng(7)
    dim = 64
    simplices = [ill_conditioned(rng, m, dim, cosine) for m in (10, 10, 6, 3)]
    check(points_around(rng, simplices, dim, n_random=30, n_near=30), simplices, dim, solver)


def test_duplicates_single_vertices_and_padding(solver):
    rng = np.random.default_rng(3)
    dim = 16
    a = unit(rng.normal(size=(4, dim)) * 0.5 + rng.normal(size=dim))
    simplices = [
        np.concatenate([a, a[:2]]),  # exact duplicate vertices: a singular Gram matrix
        a[:1],  # a single vertex, padded to 6 columns
        a[1:3],  # an edge
        np.concatenate([a[:3], a[:3]]),
    ]
    check(points_around(rng, simplices, dim), simplices, dim, solver, brute=True)


def test_all_negative_products_give_the_best_real_vertex_not_the_padding(solver):
    verts = [unit(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])), unit(np.array([[1.0, 0.2, 0.0]]))]
    got = solve(np.array([[-0.6, -0.8, 0.0]]), verts, 3, solver)
    np.testing.assert_allclose(got[0], [-0.6, float(unit(np.array([1.0, 0.2, 0.0])) @ [-0.6, -0.8, 0.0])], atol=1e-6)


def test_bench_scale_world_matches_reference(solver):
    """The benchmark's synthetic world (simplices of up to 9 near-parallel synonyms), a sample of pairs."""
    from s3.analysis.geometry import WorldConfig, make_world
    from s3.core.spaces import SpaceConfig, build_spaces

    synonyms, images, _ = make_world(WorldConfig(num_classes=30, dim=64, synonyms=10, images_per_class=2,
                                                 sigma_lex=0.5, outlier_rate=0.1), seed=1)
    spaces = build_spaces(synonyms, SpaceConfig())
    simplices = [s.embeddings[list(t)] for s in spaces for t in s.simplices]
    check(images[:40], simplices, 64, solver)


def test_support_inverses_invert_every_principal_submatrix():
    rng = np.random.default_rng(0)
    simplices = [unit(rng.normal(size=(m, 6))) for m in (3, 1, 2)]
    _, valid, gram = pack(simplices, 6)
    table, offsets = support_inverses(gram, valid.sum(-1), torch.float64)
    for s, verts in enumerate(simplices):
        g = verts.astype(np.float32).astype(np.float64) @ verts.astype(np.float32).astype(np.float64).T
        for mask in range(1, 2 ** len(verts)):
            sub = [j for j in range(len(verts)) if mask >> j & 1]
            expected = np.zeros((3, 3))
            expected[np.ix_(sub, sub)] = np.linalg.inv(g[np.ix_(sub, sub)])
            np.testing.assert_allclose(table[offsets[s] + mask].numpy(), expected, atol=1e-5)


def test_kkt_violation_is_zero_at_the_nnls_optimum_and_not_elsewhere():
    rng = np.random.default_rng(1)
    verts = unit(rng.normal(size=(5, 12)) + rng.normal(size=12))
    x = unit(rng.normal(size=12))
    c, _ = nnls(verts.T, x)
    b, gram = torch.as_tensor(verts @ x)[None], torch.as_tensor(verts @ verts.T)[None]
    valid = torch.ones(1, 5, dtype=torch.bool)
    assert kkt_violation(torch.as_tensor(c)[None], b, gram, valid).item() < 1e-10
    assert kkt_violation(torch.as_tensor(c)[None] + 0.01, b, gram, valid).item() > 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_on_ill_conditioned_simplices():
    rng = np.random.default_rng(11)
    simplices = [ill_conditioned(rng, m, 64, 0.995) for m in (10, 7, 3, 1)]
    v, valid, gram = pack(simplices, 64)
    x = torch.as_tensor(points_around(rng, simplices, 64, 50, 50), dtype=torch.float32)
    b = torch.einsum("nd,smd->nsm", x, v)
    cpu = cone_cosine(b, gram, valid, solver="kernel")
    gpu = cone_cosine(b.cuda(), gram.cuda(), valid.cuda())
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cosine", [None, 0.9])
def test_nested_cones_solve_from_their_supersets_to_the_same_optimum(cosine):
    """cone_scores with nest_cones' parents equals solving every cone alone and float64 NNLS."""
    from s3.core.simplex_kernel import cone_scores, nest_cones

    rng = np.random.default_rng(7)
    dim, groups = 16, 4
    bank = np.concatenate([unit(rng.normal(size=(8, dim))) if cosine is None else ill_conditioned(rng, 8, dim, cosine)
                           for _ in range(groups)]).astype(np.float32)
    cones, owner = [], []
    for g in range(groups):  # chains and siblings of subsets of each group's 8 rows, some equal-sized
        for size in (8, 6, 6, 4, 3, 2, 1):
            cones.append(sorted(rng.choice(8, size=size, replace=False) + 8 * g))
            owner.append(g)
    columns = np.full((len(cones), 8), -1, np.int64)
    for u, c in enumerate(cones):
        columns[u, : len(c)] = c
    counts = (columns >= 0).sum(1)
    verts = bank[columns.clip(0)].astype(np.float64) * (columns >= 0)[..., None]
    gram = np.einsum("smd,snd->smn", verts, verts)
    parent, position = nest_cones(columns, counts, np.array(owner))
    assert (parent >= 0).sum() > len(cones) // 2  # the test exercises nesting
    for u in np.flatnonzero(parent >= 0):
        assert set(cones[u]) < set(cones[parent[u]]) and owner[u] == owner[parent[u]]
        np.testing.assert_array_equal(columns[parent[u], position[u, : counts[u]]], cones[u])
    points = points_around(rng, [bank[c] for c in cones], dim, n_random=30, n_near=30).astype(np.float32)
    products = torch.as_tensor(bank @ points.T)
    alone, alone_support = cone_scores(products, columns, counts, gram)
    nested, nested_support = cone_scores(products, columns, counts, gram, (parent, position))
    torch.testing.assert_close(nested, alone, atol=1e-6, rtol=0)
    ref = np.array([[reference_nnls(x, bank[c].astype(np.float64)) for x in points.astype(np.float64)] for c in cones])
    np.testing.assert_allclose(nested.double().numpy(), ref, atol=1e-6, rtol=0)
    for u in range(len(cones)):  # supports stay within each cone's own vertices
        assert (nested_support[u] >> counts[u]).eq(0).all()


def test_face_bounds_hold_and_are_tight_on_the_hull_distance():
    """face_bounds: beta_F max_k b_k >= the face's cone cosine, and 1 / beta_F^2 <= d_F^2 (the hull's
    squared distance to the origin, by scipy), close to it; exactly 1 for a single unit vertex."""
    from scipy.optimize import minimize

    from s3.core.simplex_kernel import cone_scores, face_bounds

    rng = np.random.default_rng(11)
    dim, m = 12, 7
    kept = ill_conditioned(rng, m, dim, 0.8).astype(np.float32)
    gram = (kept.astype(np.float64) @ kept.T.astype(np.float64))[None]
    faces = [[0], [1, 2], [0, 3, 5], [1, 2, 4, 6], list(range(m))]
    masks = np.array([sum(1 << k for k in f) for f in faces], np.int32)
    bounds = face_bounds(np.array([0]), np.array([m]), gram, np.array([0, len(faces)]), masks)
    assert bounds[0] == pytest.approx(1.0, abs=1e-5)
    for f, beta in zip(faces, bounds):
        g = gram[0][np.ix_(f, f)]
        hull = minimize(lambda a: a @ g @ a, np.full(len(f), 1 / len(f)), bounds=[(0, 1)] * len(f),
                        constraints=[{"type": "eq", "fun": lambda a: a.sum() - 1}], method="SLSQP").fun
        assert 1 / beta**2 <= hull + 1e-9 and 1 / beta**2 >= hull - 1e-3, f
    points = unit(rng.normal(size=(200, dim)) + 2 * kept.mean(0)).astype(np.float32)
    columns = np.full((len(faces), m), -1, np.int64)
    for q, f in enumerate(faces):
        columns[q, : len(f)] = f
    counts = (columns >= 0).sum(1)
    grams = np.stack([np.pad(gram[0][np.ix_(f, f)], (0, m - len(f))) for f in faces])
    products = torch.as_tensor(kept @ points.T)
    values, _ = cone_scores(products, columns, counts, grams)
    for q, f in enumerate(faces):
        top = products[f].amax(0).double()
        positive = top > 0  # the bound is for a positive best product (else the face scores its best vertex)
        assert positive.sum() > 100
        assert torch.all(values[q].double()[positive] <= top[positive] * bounds[q] + 1e-6)
