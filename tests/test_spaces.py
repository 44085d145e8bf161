"""The space construction against independent brute force (cliques, single linkage)."""

from itertools import combinations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from s3.core.spaces import (
    SpaceConfig,
    build_space,
    choose_radius,
    components_at,
    h0_death_times,
    keep_largest_component,
    pairwise_distances,
    vietoris_rips_maximal_simplices,
)


def unit_rows(rng, k, d=6):
    x = rng.normal(size=(k, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force_maximal_cliques(dist, eps, top):
    k = len(dist)
    cliques = [
        frozenset(s)
        for size in range(1, top + 2)
        for s in combinations(range(k), size)
        if all(dist[i, j] <= eps for i, j in combinations(s, 2))
    ]
    return sorted(tuple(sorted(c)) for c in cliques if not any(c < other for other in cliques))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("max_dimension", [None, 0, 1, 2, 3])
def test_vietoris_rips_matches_clique_enumeration(seed, max_dimension):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 9))
    dist = pairwise_distances(unit_rows(rng, k))
    eps = float(np.quantile(dist[np.triu_indices(k, 1)], rng.uniform(0.1, 0.9)))
    top = k - 1 if max_dimension is None else min(max_dimension, k - 1)
    assert vietoris_rips_maximal_simplices(dist, eps, max_dimension) == brute_force_maximal_cliques(dist, eps, top)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("distance", ["cosine", "angular"])
def test_h0_matches_single_linkage(seed, distance):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 15))
    dist = pairwise_distances(unit_rows(rng, k), distance)
    z = linkage(squareform(dist, checks=False), method="single")
    np.testing.assert_allclose(h0_death_times(dist), np.sort(z[:, 2]), atol=1e-9)
    for eps in np.quantile(z[:, 2], [0.0, 0.3, 0.6, 0.99]):
        ours = components_at(dist, eps)
        theirs = fcluster(z, t=eps, criterion="distance")
        # Same partition: the two labelings are in bijection.
        pairs = set(zip(ours.tolist(), theirs.tolist()))
        assert len(pairs) == len(set(ours.tolist())) == len(set(theirs.tolist()))


def test_largest_component_tie_goes_to_label():
    labels = np.array([1, 1, 0, 0, 2])
    assert keep_largest_component(labels).tolist() == [0, 1]
    labels = np.array([2, 0, 0, 1, 1])  # label alone; tie between 0 and 1 -> smallest vertex index
    assert keep_largest_component(labels).tolist() == [1, 2]


def test_outlier_synonym_is_dropped():
    rng = np.random.default_rng(0)
    core = rng.normal(size=64)
    emb = core + 0.2 * rng.normal(size=(6, 64))
    emb[4] = rng.normal(size=64)  # an unrelated "synonym"
    space = build_space(emb, SpaceConfig(radius_rule="largest_gap", min_gap=0.05))
    assert space.kept.tolist() == [0, 1, 2, 3, 5]
    assert all(4 not in s for s in space.simplices)


def test_identical_synonyms_keep_their_zero_length_bars():
    rng = np.random.default_rng(4)
    base = rng.normal(size=16)
    exact = np.stack([base, base, base, rng.normal(size=16)])
    nudged = exact.copy()
    nudged[1:3] += 1e-7
    assert len(h0_death_times(pairwise_distances(exact / np.linalg.norm(exact, axis=1, keepdims=True)))) == 3
    config = SpaceConfig(radius_rule="largest_gap", min_gap=0.05)
    assert build_space(exact, config).kept.tolist() == build_space(nudged, config).kept.tolist()


def test_largest_gap_ignores_near_duplicates_merging_first():
    # Two near-identical synonyms merge at ~0; the big gap after them must not split the class.
    deaths = np.array([1e-12, 0.30, 0.31])
    assert choose_radius(deaths, SpaceConfig(radius_rule="largest_gap", min_gap=0.05)) == 0.31


def test_radius_rules():
    deaths = np.array([0.1, 0.12, 0.13, 0.5])
    assert choose_radius(deaths, SpaceConfig(radius_rule="global", epsilon=0.3)) == 0.3
    assert choose_radius(deaths, SpaceConfig(radius_rule="largest_gap", min_gap=0.05)) == pytest.approx(0.315)
    assert choose_radius(deaths, SpaceConfig(radius_rule="largest_gap", min_gap=0.5)) == 0.5
    assert choose_radius(deaths, SpaceConfig(radius_rule="mst_quantile", mst_quantile=1.0)) == 0.5
    assert choose_radius(deaths, SpaceConfig(radius_rule="mst_quantile", mst_quantile=0.0)) == 0.1


def test_single_synonym():
    space = build_space(np.array([[3.0, 4.0]]), SpaceConfig())
    assert space.kept.tolist() == [0] and space.simplices == ((0,),)
    np.testing.assert_allclose(space.local_centers, [[0.6, 0.8]], atol=1e-6)


def test_identical_synonyms_form_one_simplex():
    emb = np.tile(np.array([[1.0, 2.0, 2.0]]), (4, 1))
    space = build_space(emb, SpaceConfig(radius_rule="global", epsilon=0.0))
    assert space.kept.tolist() == [0, 1, 2, 3] and space.simplices == ((0, 1, 2, 3),)


def test_all_synonyms_farther_than_epsilon_keeps_the_label():
    emb = np.eye(4)  # pairwise cosine distance 1
    space = build_space(emb, SpaceConfig(radius_rule="global", epsilon=0.5))
    assert space.kept.tolist() == [0] and space.simplices == ((0,),)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_embedding_is_a_clear_error(bad):
    emb = np.eye(3)
    emb[1, 0] = bad
    with pytest.raises(ValueError, match=r"beagle: synonym embedding\(s\) \[1\] contain NaN"):
        build_space(emb, SpaceConfig(), name="beagle")


def test_zero_embedding_is_a_clear_error():
    emb = np.eye(3)
    emb[2] = 0
    with pytest.raises(ValueError, match=r"\[2\] are zero vectors"):
        build_space(emb, SpaceConfig())


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="radius_rule"):
        SpaceConfig(radius_rule="median")


def gudhi_maximal_simplices(dist, eps, top):
    """Reference: gudhi's Vietoris-Rips simplex tree, maximal = top-dimensional or without a coface."""
    import gudhi

    tree = gudhi.RipsComplex(distance_matrix=dist, max_edge_length=float(np.nextafter(eps, np.inf))
                             ).create_simplex_tree(max_dimension=top)
    simplices = [frozenset(s) for s, _ in tree.get_simplices() if len(s) - 1 <= top]
    return sorted(tuple(sorted(s)) for s in simplices
                  if len(s) == top + 1 or not any(s < other for other in simplices))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("max_dimension", [None, 0, 2, 4])
def test_maximal_cliques_equal_gudhis_maximal_simplices(seed, max_dimension):
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(1, 13))
    dist = pairwise_distances(unit_rows(rng, k, d=4))
    eps = float(np.quantile(dist, rng.uniform(0.05, 0.95)))
    top = k - 1 if max_dimension is None else min(max_dimension, k - 1)
    assert vietoris_rips_maximal_simplices(dist, eps, max_dimension) == gudhi_maximal_simplices(dist, eps, top)


@pytest.mark.parametrize("seed", range(10))
def test_components_are_numbered_like_scipy(seed):
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 14))
    dist = pairwise_distances(unit_rows(rng, k, d=3))
    eps = float(np.quantile(dist, rng.uniform(0.0, 0.9)))
    np.testing.assert_array_equal(components_at(dist, eps), connected_components(dist <= eps, directed=False)[1])
