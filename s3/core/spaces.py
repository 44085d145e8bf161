"""Synonymous semantic spaces: from K synonym embeddings of one class to a simplicial space.

Recipe (the paper's abstract names the ingredients; the choices below are our reconstruction,
each one a parameter, see README "What is reconstructed"):

1. distances between the class's K unit synonym embeddings (cosine ``1 - a.b`` or angular);
2. the 0-dimensional persistence of the Vietoris-Rips filtration (gudhi) gives the H0 death times,
   which are the minimum-spanning-tree edge lengths;
3. a radius ``epsilon`` is chosen by a rule (global value, MST quantile, largest H0 gap);
4. the connected components of the epsilon-graph: the largest one is kept (ties go to the component
   holding the class label, vertex 0), the others are outlier synonyms;
5. the Vietoris-Rips complex of the kept vertices at epsilon, up to ``max_dimension`` (its maximal
   simplices are the maximal cliques of the epsilon-graph, found directly; tested against gudhi);
   they are the space, and their normalised vertex means are the *local centers*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal, Sequence

import gudhi
import numpy as np

Distance = Literal["cosine", "angular"]
RadiusRule = Literal["global", "mst_quantile", "largest_gap"]

__all__ = [
    "SpaceConfig",
    "SynonymSpace",
    "pairwise_distances",
    "h0_death_times",
    "choose_radius",
    "components_at",
    "keep_largest_component",
    "vietoris_rips_maximal_simplices",
    "build_space",
    "build_spaces",
]


@dataclass(frozen=True)
class SpaceConfig:
    """How a class space is built (the ``spaces`` section of ``params.yaml``).

    Attributes:
        distance: ``cosine`` (1 - a.b, in [0, 2]) or ``angular`` (arccos(a.b), in [0, pi]).
        radius_rule: ``global`` uses ``epsilon``; ``mst_quantile`` uses the ``mst_quantile``
            quantile of the class's MST edge lengths; ``largest_gap`` cuts in the middle of the
            largest gap between consecutive sorted H0 death times in their upper half (so at
            least half of the MST edges stay), but only when that gap is at least ``min_gap``
            (otherwise every synonym stays connected).
        epsilon: the global radius, in units of ``distance``.
        mst_quantile: quantile in [0, 1] for ``mst_quantile``.
        min_gap: smallest H0 gap that counts as an outlier split for ``largest_gap``.
        max_dimension: largest simplex dimension of the complex (``None``: K - 1, the full
            clique complex).
    """

    distance: Distance = "cosine"
    radius_rule: RadiusRule = "largest_gap"
    epsilon: float = 0.25
    mst_quantile: float = 0.9
    min_gap: float = 0.05
    max_dimension: int | None = None

    def __post_init__(self) -> None:
        if self.distance not in ("cosine", "angular"):
            raise ValueError(f"spaces.distance must be 'cosine' or 'angular', got {self.distance!r}")
        if self.radius_rule not in ("global", "mst_quantile", "largest_gap"):
            raise ValueError(
                "spaces.radius_rule must be 'global', 'mst_quantile' or 'largest_gap', "
                f"got {self.radius_rule!r}"
            )
        if not 0.0 <= self.mst_quantile <= 1.0:
            raise ValueError(f"spaces.mst_quantile must lie in [0, 1], got {self.mst_quantile}")
        if self.epsilon < 0 or self.min_gap < 0:
            raise ValueError("spaces.epsilon and spaces.min_gap must be non-negative")
        if self.max_dimension is not None and self.max_dimension < 0:
            raise ValueError(f"spaces.max_dimension must be >= 0 or null, got {self.max_dimension}")


@dataclass(frozen=True)
class SynonymSpace:
    """One class's synonymous semantic space.

    Attributes:
        embeddings: ``(K, D)`` float32 unit rows, every synonym of the class (row 0 = the label).
        kept: ``(k,)`` int indices (into ``embeddings``) of the kept component, sorted.
        simplices: maximal simplices, each a sorted tuple of indices into ``embeddings``.
        epsilon: the radius the complex was built at.
        death_times: ``(K - 1,)`` sorted finite H0 death times (the MST edge lengths).
    """

    embeddings: np.ndarray
    kept: np.ndarray
    simplices: tuple[tuple[int, ...], ...]
    epsilon: float
    death_times: np.ndarray = field(repr=False)

    @property
    def num_synonyms(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def vertices(self) -> np.ndarray:
        """``(k, D)`` embeddings of the kept synonyms."""
        return self.embeddings[self.kept]

    @property
    def center(self) -> np.ndarray:
        """``(D,)`` normalised mean of the kept synonyms (the classic prompt ensemble)."""
        return _normalize(self.vertices.mean(axis=0))

    @property
    def local_centers(self) -> np.ndarray:
        """``(S, D)`` normalised mean of each maximal simplex's vertices."""
        return np.stack([_normalize(self.embeddings[list(s)].mean(axis=0)) for s in self.simplices])


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _check_embeddings(embeddings: np.ndarray, name: str) -> np.ndarray:
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise ValueError(f"{name}: expected a (K, D) array with K >= 1 synonyms, got shape {emb.shape}")
    if not np.isfinite(emb).all():
        bad = sorted(set(np.nonzero(~np.isfinite(emb))[0].tolist()))
        raise ValueError(f"{name}: synonym embedding(s) {bad} contain NaN or inf; re-embed the synonyms")
    norms = np.linalg.norm(emb, axis=1)
    zero = np.nonzero(norms < 1e-8)[0].tolist()
    if zero:
        raise ValueError(
            f"{name}: synonym embedding(s) {zero} are zero vectors; an empty or degenerate text "
            "cannot be placed on the sphere, remove it from the synonym bank"
        )
    return emb / norms[:, None]


def pairwise_distances(embeddings: np.ndarray, distance: Distance = "cosine") -> np.ndarray:
    """Distances between unit rows.

    Args:
        embeddings: ``(K, D)`` unit rows.
        distance: ``cosine`` (1 - a.b) or ``angular`` (arccos(a.b), radians).

    Returns:
        ``(K, K)`` float64 symmetric, zero diagonal.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    # Both distances come from the chord length |a - b|, which stays exact for (near-)identical
    # synonyms where 1 - a.b and arccos(a.b) would amplify rounding noise.
    diff = emb[:, None, :] - emb[None, :, :]
    chord_sq = (diff * diff).sum(axis=-1)
    if distance == "cosine":
        dist = chord_sq / 2.0
    else:
        dist = 2.0 * np.arcsin(np.clip(np.sqrt(chord_sq) / 2.0, 0.0, 1.0))
    np.fill_diagonal(dist, 0.0)
    return dist


def h0_death_times(distances: np.ndarray) -> np.ndarray:
    """Finite H0 death times of the Vietoris-Rips filtration, sorted ascending.

    Args:
        distances: ``(K, K)`` distance matrix.

    Returns:
        ``(K - 1,)`` float64; they equal the edge lengths of a minimum spanning tree.
    """
    k = distances.shape[0]
    if k == 1:
        return np.zeros(0)
    # Only edges matter for H0, so the filtration stops at dimension 1.
    tree = gudhi.RipsComplex(distance_matrix=distances).create_simplex_tree(max_dimension=1)
    # min_persistence=-1 keeps zero-length bars (identical synonyms), so there are always K - 1.
    tree.compute_persistence(persistence_dim_max=False, min_persistence=-1)
    deaths = tree.persistence_intervals_in_dimension(0)[:, 1]
    return np.sort(deaths[np.isfinite(deaths)])


def choose_radius(death_times: np.ndarray, config: SpaceConfig) -> float:
    """The radius epsilon for one class, from its sorted H0 death times and the rule."""
    if config.radius_rule == "global":
        return float(config.epsilon)
    if death_times.size == 0:  # a single synonym: nothing to connect
        return 0.0
    if config.radius_rule == "mst_quantile":
        return float(np.quantile(death_times, config.mst_quantile))
    # largest_gap: outliers join the rest last, so the biggest jump between consecutive deaths in
    # the upper half separates them from the core. (A gap in the lower half would only split off
    # near-duplicate synonyms, which merge first.)
    if death_times.size == 1:
        return float(death_times[0])
    gaps = np.diff(death_times)
    lowest = (death_times.size - 1) // 2  # keep at least half of the tree's edges below the cut
    i = lowest + int(np.argmax(gaps[lowest:]))
    if gaps[i] < config.min_gap:
        return float(death_times[-1])
    return float((death_times[i] + death_times[i + 1]) / 2.0)


def components_at(distances: np.ndarray, epsilon: float) -> np.ndarray:
    """Connected-component label of each vertex in the graph of edges with length <= epsilon.

    Reachability by repeated squaring of the (tiny, K x K) adjacency matrix; components are
    numbered in the order of their lowest vertex (as scipy's ``connected_components`` does).

    Returns:
        ``(K,)`` int labels in ``0 .. n_components - 1``.
    """
    reach = (distances <= epsilon) | np.eye(len(distances), dtype=bool)
    for _ in range(max(1, int(np.ceil(np.log2(max(len(distances), 2)))))):
        reach = (reach.astype(np.int32) @ reach.astype(np.int32)) > 0
    _, labels = np.unique(reach.argmax(axis=1), return_inverse=True)  # lowest reachable vertex
    return labels.reshape(-1)


def keep_largest_component(labels: np.ndarray, label_vertex: int = 0) -> np.ndarray:
    """Indices of the largest component; ties go to the one holding ``label_vertex``.

    Among tied components that do not hold the label, the one with the smallest vertex index wins,
    so the result is deterministic.
    """
    sizes = np.bincount(labels)
    tied = np.nonzero(sizes == sizes.max())[0]
    if labels[label_vertex] in tied:
        winner = labels[label_vertex]
    else:
        winner = min(tied, key=lambda comp: int(np.nonzero(labels == comp)[0][0]))
    return np.nonzero(labels == winner)[0]


def _maximal_cliques(adjacent: np.ndarray) -> list[int]:
    """Maximal cliques of a small graph as vertex bitmasks (Bron-Kerbosch with pivoting)."""
    k = len(adjacent)
    rows = (adjacent & ~np.eye(k, dtype=bool)).astype(np.int64)
    neighbours = [int(n) for n in rows @ (np.int64(1) << np.arange(k, dtype=np.int64))]
    cliques: list[int] = []

    def expand(clique: int, candidates: int, excluded: int) -> None:
        if not candidates and not excluded:
            cliques.append(clique)
            return
        pool = candidates | excluded
        pivot = max((u for u in range(k) if pool >> u & 1), key=lambda u: (candidates & neighbours[u]).bit_count())
        for v in range(k):
            if (candidates & ~neighbours[pivot]) >> v & 1:
                expand(clique | 1 << v, candidates & neighbours[v], excluded & neighbours[v])
                candidates &= ~(1 << v)
                excluded |= 1 << v

    expand(0, (1 << k) - 1, 0)
    return cliques


def vietoris_rips_maximal_simplices(
    distances: np.ndarray, epsilon: float, max_dimension: int | None = None
) -> list[tuple[int, ...]]:
    """Maximal simplices of the Vietoris-Rips complex at radius epsilon.

    The Vietoris-Rips complex is the clique complex of the epsilon-graph, so its maximal simplices
    are the graph's maximal cliques (Bron-Kerbosch on bitmasks; K is small). Truncated at
    ``max_dimension``, a simplex is maximal when it has the top allowed dimension or is a maximal
    clique: the top-dimensional ones are every (top + 1)-subset of a larger maximal clique.
    (tests/test_spaces.py checks this against gudhi's complex and a brute-force enumeration.)

    Args:
        distances: ``(k, k)`` distance matrix.
        epsilon: edges of length <= epsilon are in the complex.
        max_dimension: largest simplex dimension (``None``: k - 1).

    Returns:
        Sorted list of sorted vertex tuples.
    """
    k = distances.shape[0]
    top = k - 1 if max_dimension is None else min(max_dimension, k - 1)
    maximal: set[tuple[int, ...]] = set()
    for mask in _maximal_cliques(distances <= epsilon):
        clique = tuple(v for v in range(k) if mask >> v & 1)
        if len(clique) <= top + 1:
            maximal.add(clique)
        else:
            maximal.update(combinations(clique, top + 1))
    return sorted(maximal)


def build_space(embeddings: np.ndarray, config: SpaceConfig, name: str = "class") -> SynonymSpace:
    """Build one class's space from its synonym embeddings (row 0 = the class label).

    Args:
        embeddings: ``(K, D)`` synonym embeddings; rows are re-normalised.
        config: the space recipe.
        name: used in error messages.
    """
    emb = _check_embeddings(embeddings, name)
    dist = pairwise_distances(emb, config.distance)
    deaths = h0_death_times(dist)
    epsilon = choose_radius(deaths, config)
    kept = keep_largest_component(components_at(dist, epsilon))
    local = vietoris_rips_maximal_simplices(dist[np.ix_(kept, kept)], epsilon, config.max_dimension)
    simplices = tuple(tuple(int(kept[v]) for v in s) for s in local)
    return SynonymSpace(
        embeddings=emb.astype(np.float32),
        kept=kept,
        simplices=simplices,
        epsilon=epsilon,
        death_times=deaths,
    )


def build_spaces(
    embeddings_per_class: Sequence[np.ndarray], config: SpaceConfig, names: Sequence[str] | None = None
) -> list[SynonymSpace]:
    """Build every class's space; ``names`` (one per class) label error messages."""
    names = names if names is not None else [f"class {i}" for i in range(len(embeddings_per_class))]
    if len(names) != len(embeddings_per_class):
        raise ValueError(
            f"{len(names)} class names for {len(embeddings_per_class)} classes: pass one name per class"
        )
    return [build_space(e, config, n) for e, n in zip(embeddings_per_class, names)]
