"""Point-to-space metrics against independent brute force."""

import numpy as np
import pytest
import torch

from s3.core.scoring import (
    METRICS,
    GroupedItems,
    StackedSpaces,
    point_to_point,
    point_to_simplex,
    score,
)
from s3.core.spaces import SpaceConfig, build_space, build_spaces


def random_spaces(seed, num_classes=5, d=8, config=SpaceConfig(radius_rule="mst_quantile", mst_quantile=0.6)):
    rng = np.random.default_rng(seed)
    spaces = []
    for _ in range(num_classes):
        k = int(rng.integers(1, 7))
        base = rng.normal(size=d)
        spaces.append(build_space(base + 0.7 * rng.normal(size=(k, d)), config))
    return spaces


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_grouped_reduce_matches_a_python_loop():
    rng = np.random.default_rng(1)
    per_class = [rng.normal(size=(int(m), 3)) for m in rng.integers(1, 5, size=9)]
    grouped = GroupedItems.from_lists(per_class)
    x = torch.randn(4, 3)
    values = x @ grouped.items.T
    expected = torch.stack(
        [torch.stack([(x @ torch.as_tensor(p, dtype=torch.float32).T)[i].max() for p in per_class]) for i in range(4)]
    )
    torch.testing.assert_close(grouped.reduce(values, "max"), expected)


@pytest.mark.parametrize("seed", range(5))
def test_point_metrics_match_brute_force(seed):
    spaces = random_spaces(seed)
    stacked = StackedSpaces.from_spaces(spaces)
    images = unit(np.random.default_rng(seed + 100).normal(size=(7, 8))).astype(np.float32)
    x = torch.as_tensor(images)
    brute = {
        "point_to_point_max": [[(s.vertices @ v).max() for s in spaces] for v in images],
        "point_to_point_mean": [[(s.vertices @ v).mean() for s in spaces] for v in images],
        # The classic prompt ensemble: normalised mean of the (kept) synonym embeddings.
        "point_to_center": [[v @ unit(s.vertices.mean(0)) for s in spaces] for v in images],
        "point_to_local_center": [
            [max(v @ unit(s.embeddings[list(sx)].mean(0)) for sx in s.simplices) for s in spaces] for v in images
        ],
    }
    for metric, expected in brute.items():
        np.testing.assert_allclose(score(x, stacked, metric).numpy(), np.array(expected), atol=1e-5, err_msg=metric)


def test_point_to_center_is_the_prompt_ensemble_when_all_synonyms_are_kept():
    rng = np.random.default_rng(3)
    emb = unit(rng.normal(size=(6, 16)))
    space = build_space(emb, SpaceConfig(radius_rule="global", epsilon=2.0))
    assert len(space.kept) == 6
    v = unit(rng.normal(size=(1, 16))).astype(np.float32)
    ensemble = unit(emb.mean(0))
    got = score(torch.as_tensor(v), StackedSpaces.from_spaces([space]), "point_to_center")
    np.testing.assert_allclose(got.numpy()[0, 0], v[0] @ ensemble, atol=1e-6)
    # One maximal simplex: its local center is the center itself.
    got_local = score(torch.as_tensor(v), StackedSpaces.from_spaces([space]), "point_to_local_center")
    np.testing.assert_allclose(got_local.numpy(), got.numpy(), atol=1e-6)


def barycentric_grid(m, steps):
    if m == 1:
        return np.ones((1, 1))
    grid = [np.array(p) / steps for p in np.ndindex(*(steps + 1,) * (m - 1)) if sum(p) <= steps]
    grid = np.array(grid)
    return np.hstack([grid, 1 - grid.sum(1, keepdims=True)])


@pytest.mark.parametrize("solver", ["kernel", "batched"])
@pytest.mark.parametrize("seed", range(6))
def test_point_to_simplex_matches_dense_sampling(seed, solver):
    rng = np.random.default_rng(seed)
    d = 5
    spaces = []
    for _ in range(3):
        base = rng.normal(size=d)
        spaces.append(build_space(base + 0.8 * rng.normal(size=(4, d)), SpaceConfig(radius_rule="global", epsilon=2.0, max_dimension=2)))
    images = unit(np.concatenate([rng.normal(size=(6, d)), [s.center + 0.3 * rng.normal(size=d) for s in spaces]]))
    got = point_to_simplex(torch.as_tensor(images, dtype=torch.float32), StackedSpaces.from_spaces(spaces),
                           solver=solver).numpy()
    for c, space in enumerate(spaces):
        sampled = np.concatenate(
            [barycentric_grid(len(s), 120) @ space.embeddings[list(s)].astype(np.float64) for s in space.simplices]
        )
        best = (images @ unit(sampled).T).max(axis=1)
        assert np.all(got[:, c] >= best - 1e-5), "never worse than a sampled hull point"
        np.testing.assert_allclose(got[:, c], best, atol=1e-3)


def test_simplex_columns_point_at_each_simplex_vertex():
    """The kernel reads simplex vertices from the point-to-point products through this map."""
    spaces = random_spaces(3)
    stacked = StackedSpaces.from_spaces(spaces)
    columns, verts = stacked.simplex_columns, stacked.simplices.items
    real = columns >= 0
    assert torch.equal(real, verts.abs().sum(-1) > 0)
    torch.testing.assert_close(stacked.vertices.items[columns[real]], verts[real], rtol=0, atol=0)
    owners = stacked.simplices.owners()
    assert torch.equal(stacked.vertices.owners()[columns[real]], owners[:, None].expand_as(columns)[real])


@pytest.mark.parametrize("max_dimension", [0, 1, 3])
def test_point_to_simplex_solvers_agree_on_classes_with_several_simplices(max_dimension):
    """The kernel scores a class from its kept set's cone when a simplex holds that optimum, and
    prunes faces by a bound otherwise; the batched solver scores every simplex."""
    from s3.analysis.geometry import WorldConfig, make_world

    synonyms, images, _ = make_world(WorldConfig(num_classes=40, dim=32, synonyms=8, images_per_class=3,
                                                 sigma_lex=0.6, outlier_rate=0.2), seed=4)
    spaces = build_spaces(synonyms, SpaceConfig(radius_rule="global", epsilon=0.6, max_dimension=max_dimension))
    assert max(len(s.simplices) for s in spaces) > 1
    stacked, x = StackedSpaces.from_spaces(spaces), torch.as_tensor(images)
    kernel = point_to_simplex(x, stacked, solver="kernel")
    torch.testing.assert_close(kernel, point_to_simplex(x, stacked, solver="batched"), atol=1e-6, rtol=0)
    assert torch.all(kernel >= point_to_point(x, stacked, "max") - 1e-6), "never below the best vertex"


def test_point_to_simplex_with_all_negative_cosines_is_the_best_vertex():
    space = build_space(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), SpaceConfig(radius_rule="global", epsilon=2.0))
    v = torch.tensor([[-0.6, -0.8, 0.0]])
    got = point_to_simplex(v, StackedSpaces.from_spaces([space]))
    assert got.item() == pytest.approx(-0.6, abs=1e-6)


def test_softmax_local_center_tends_to_max():
    spaces = random_spaces(0)
    stacked = StackedSpaces.from_spaces(spaces)
    x = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    hard = score(x, stacked, "point_to_local_center")
    soft = score(x, stacked, "point_to_local_center", temperature=1e-4)
    torch.testing.assert_close(soft, hard, atol=1e-3, rtol=0)
    # log-mean-exp lies between max - t log(m) and max.
    smooth = score(x, stacked, "point_to_local_center", temperature=0.1)
    most = max(len(s.simplices) for s in spaces)
    assert torch.all(smooth <= hard + 1e-6) and torch.all(smooth >= hard - 0.1 * np.log(most) - 1e-6)


def test_metrics_have_shape_n_by_c():
    stacked = StackedSpaces.from_spaces(random_spaces(1, num_classes=4))
    x = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    for metric in METRICS:
        assert score(x, stacked, metric).shape == (3, 4)
    with pytest.raises(ValueError, match="unknown metric"):
        score(x, stacked, "point_to_nowhere")


def test_softmax_does_not_favour_classes_with_more_local_centers():
    one = np.array([[1.0, 0.0]], dtype=np.float32)
    many = np.tile(np.array([[0.99, np.sqrt(1 - 0.99**2)]], dtype=np.float32), (20, 1))
    grouped = GroupedItems.from_lists([one, many])
    x = torch.tensor([[1.0, 0.0]])
    soft = grouped.reduce(x @ grouped.items.T, "softmax", temperature=0.01)
    assert soft.argmax().item() == 0
    torch.testing.assert_close(soft, torch.tensor([[1.0, 0.99]]), atol=1e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_every_method_scores_on_the_gpu():
    from s3.core.methods import METHODS, score_method
    from s3.core.text_side import TextSide

    spaces = random_spaces(0, num_classes=4)
    classifiers = {m: torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
                   for m in ("clip_single", "clip_coop", "clip_ensemble80")}
    text = TextSide("toy", list("abcd"), classifiers, [["x"]] * 4, spaces, {})
    x = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    for method in METHODS:
        cpu = score_method(method, x, text)
        gpu = score_method(method, x.cuda(), text)
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
