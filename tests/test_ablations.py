"""Ablation grid: the image-adaptive local center against brute force, the grid from saved
embeddings only (encoders patched to raise), the params schema, and dvc.yaml's wiring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from s3.ablations.adaptive import point_to_adaptive_center
from s3.ablations.grid import run_grid
from s3.ablations.tables import axis_table, claims, metrics_record
from s3.core.scoring import GroupedItems, StackedSpaces, point_to_point
from s3.core.spaces import SpaceConfig, build_spaces
from s3.core.text_side import TextSide
from s3.pipeline.params import section_problems

ROOT = Path(__file__).resolve().parents[1]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _world(seed: int = 0, classes: int = 6, dim: int = 16, n: int = 60):
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(classes, dim))
    per_class = [_unit(protos[c] + 0.5 * rng.normal(size=(int(rng.integers(1, 7)), dim))) for c in range(classes)]
    labels = rng.integers(0, classes, size=n)
    images = _unit(protos[labels] + 0.8 * rng.normal(size=(n, dim)))
    return per_class, torch.from_numpy(images), torch.from_numpy(labels)


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_adaptive_center_matches_brute_force(k):
    per_class, images, _ = _world()
    got = point_to_adaptive_center(images, GroupedItems.from_lists(per_class), k, chunk_size=7)
    x = images.numpy().astype(np.float64)
    want = np.zeros((len(x), len(per_class)))
    for i in range(len(x)):
        for c, v in enumerate(per_class):
            v = v.astype(np.float64)
            nearest = np.argsort(-(v @ x[i]), kind="stable")[: min(k, len(v))]
            center = v[nearest].mean(0)
            want[i, c] = x[i] @ center / np.linalg.norm(center)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_adaptive_k1_is_point_to_point_max():
    per_class, images, _ = _world(1)
    spaces = StackedSpaces.from_spaces(build_spaces(per_class, SpaceConfig()))
    torch.testing.assert_close(point_to_adaptive_center(images, spaces.vertices, 1),
                               point_to_point(images, spaces, "max"), atol=1e-5, rtol=0)


GRID = {
    "methods": ["synonyms_mean", "synonyms_max", "s3_point_to_center", "s3_point_to_local_center"],
    "num_synonyms": [1, 3, None], "epsilon": [0.2, 0.5], "mst_quantile": [0.5, 1.0], "min_gap": [0.0, 0.1],
    "max_dimension": [0, None], "templates": ["single", "ensemble80"], "adaptive_k": [1, 2],
    "temperature": [None, 0.01],
}
SPACES = {"templates": "coop", "distance": "cosine", "radius_rule": "largest_gap", "epsilon": 0.25,
          "mst_quantile": 0.9, "min_gap": 0.05, "max_dimension": None}


def test_grid_encodes_nothing(monkeypatch):
    import s3.encoders.images as images_mod
    import s3.encoders.text as text_mod

    def boom(*args, **kwargs):
        raise AssertionError("the ablation grid encoded something")

    for name in ("encode_texts", "embed_names", "embed_classnames", "build_text_side"):
        monkeypatch.setattr(text_mod, name, boom)
    for name in ("encode_images", "cached_image_features"):
        monkeypatch.setattr(images_mod, name, boom)
    per_class, images, labels = _world(2)
    config = SpaceConfig(**{k: v for k, v in SPACES.items() if k != "templates"})
    names = [f"c{c}" for c in range(len(per_class))]
    classifiers = {m: torch.from_numpy(np.stack([e[0] for e in per_class])) for m in ("clip_single", "clip_coop", "clip_ensemble80")}
    text = TextSide("eurosat", names, classifiers, [[n] * len(e) for n, e in zip(names, per_class)],
                    build_spaces(per_class, config, names), {"spaces": SPACES})
    sets = {kind: [_unit(e + 0.05 * i) for e in per_class] for i, kind in enumerate(("single", "coop", "ensemble80"))}
    grid = run_grid(images, labels, text, sets, SPACES, GRID)
    assert set(grid["axis"]) == {"num_synonyms", "epsilon", "mst_quantile", "min_gap", "max_dimension",
                                 "templates", "local_center", "temperature"}
    assert grid["acc1"].between(0, 100).all()
    # K = 1: every method reduces to the label's embedding alone, so they all agree.
    k1 = grid[(grid["axis"] == "num_synonyms") & (grid["value"] == "1")]["acc1"]
    assert k1.nunique() == 1
    # the hard-max temperature row equals the method as built ("simplex" local center).
    lc = grid[grid["method"] == "s3_point_to_local_center"].set_index(["axis", "value"])["acc1"]
    assert lc[("temperature", "hard")] == lc[("local_center", "simplex")]
    grids = grid.assign(benchmark="eurosat", demo=False)
    table = axis_table(grids, "num_synonyms")
    assert "avg fine-grained" in table.columns and "avg shift" not in table.columns
    assert metrics_record(grids)["epsilon"]["s3_point_to_center"].keys() == {"0.2", "0.5"}
    assert "num_synonyms:" in claims(grids, demo=True) and claims(grids, demo=True).startswith("DEMO")


def test_schema():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert section_problems("ablations", params["ablations"]) == []
    assert section_problems("ablations", {**params["ablations"], "methods": ["clip_single"]})
    assert section_problems("ablations", {**params["ablations"], "extra": 1})
    assert section_problems("ablations", {**params["ablations"], "mst_quantile": [1.5]})


def test_dvc_wiring_ablations_touch_only_ablation_stages():
    """Only the ablate@ stages read the ``ablations`` params; they read no images or texts (no
    synonym bank, no datasets, no text cache) and the summary depends only on their grids."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    readers = {name for name, st in stages.items() if "ablations" in (st.get("do", st).get("params") or [])}
    assert readers == {"ablate"}
    ablate = stages["ablate"]["do"]
    data_deps = [d for d in ablate["deps"] if not d.startswith(("s3/", "notebooks/"))]
    assert data_deps == ["results/features/${item}.pt", "results/spaces/${item}.pt", "results/spaces/${item}.templates.pt"]
    assert "--sections spaces,ablations " in ablate["cmd"]
    summary = stages["ablations"]
    assert [d for d in summary["deps"] if d.startswith("results/")] == ["results/ablations/grid"]
    # nothing else consumes the ablation outputs, so a change re-runs only ablate@* and ablations.
    others = [d for name, st in stages.items() if name not in ("ablate", "ablations", "html")
              for d in st.get("do", st).get("deps", [])]
    assert not [d for d in others if d.startswith("results/ablations")]


def _text_side(per_class, spaces=SPACES):
    config = SpaceConfig(**{k: v for k, v in spaces.items() if k != "templates"})
    names = [f"c{c}" for c in range(len(per_class))]
    classifiers = {m: torch.from_numpy(np.stack([e[0] for e in per_class])) for m in ("clip_single", "clip_coop", "clip_ensemble80")}
    return TextSide("eurosat", names, classifiers, [[n] * len(e) for n, e in zip(names, per_class)],
                    build_spaces(per_class, config, names), {"spaces": spaces})


@pytest.mark.parametrize("seed", range(3))
def test_shared_item_scores_equal_score_method_on_every_variant(seed):
    """One SharedItems pass over several variants gives each method's own scores (s3.core.methods)."""
    from s3.ablations.grid import variant
    from s3.ablations.items import SPACE_METHODS, SharedItems, plan_method
    from s3.core.methods import score_method

    per_class, images, _ = _world(seed, classes=7, dim=12, n=50)
    text = _text_side(per_class)
    base = [s.embeddings for s in text.spaces]
    sides = [text, variant(text, [e[:2] for e in base], SPACES),
             variant(text, base, {**SPACES, "radius_rule": "global", "epsilon": 0.6}),
             variant(text, base, {**SPACES, "max_dimension": 1})]
    shared = SharedItems(base)
    plans = [(side, m, t, plan_method(m, side.spaces, shared, t)) for side in sides for m in SPACE_METHODS
             for t in ((None, 0.02) if m == "s3_point_to_local_center" else (None,))]
    items = shared.scores(images)
    for side, method, t, plan in plans:
        torch.testing.assert_close(plan.scores(items, shared).T, score_method(method, images, side, t), atol=2e-6, rtol=0,
                                   msg=f"{method} t={t}")


def test_grid_equals_scoring_each_variant_on_its_own():
    from s3.ablations.grid import accuracy, variant
    from s3.core.methods import score_method

    per_class, images, labels = _world(5, classes=8, dim=12, n=80)
    text = _text_side(per_class)
    sets = {kind: [_unit(e + 0.05 * i) for e in per_class] for i, kind in enumerate(("single", "coop", "ensemble80"))}
    grid = run_grid(images, labels, text, sets, SPACES, {**GRID, "methods": list(GRID["methods"]) + ["s3_point_to_simplex"]},
                    chunk_size=13).set_index(["axis", "value", "method"])["acc1"]
    base = [s.embeddings for s in text.spaces]
    expected = {
        ("num_synonyms", "3", "synonyms_max"): (variant(text, [e[:3] for e in base], SPACES), None),
        ("epsilon", "0.5", "s3_point_to_simplex"): (variant(text, base, {**SPACES, "radius_rule": "global", "epsilon": 0.5}), None),
        ("templates", "single", "s3_point_to_center"): (variant(text, sets["single"], {**SPACES, "templates": "single"}), None),
        ("temperature", "0.01", "s3_point_to_local_center"): (text, 0.01),
        ("max_dimension", "0", "s3_point_to_local_center"): (variant(text, base, {**SPACES, "max_dimension": 0}), None),
    }
    for key, (side, t) in expected.items():
        assert grid[key] == pytest.approx(accuracy(score_method(key[2], images, side, t), labels)), key
    adaptive = point_to_adaptive_center(images, text.stacked.vertices, 2)
    assert grid[("local_center", "adaptive-2", "s3_point_to_local_center")] == pytest.approx(accuracy(adaptive, labels))


def test_argmax_hits_counts_like_argmax_with_ties_to_the_lowest_class():
    from s3.ablations.set_kernels import argmax_hits

    rng = np.random.default_rng(0)
    scores = torch.as_tensor(rng.integers(0, 4, size=(6, 200)).astype(np.float32))  # many ties
    labels = torch.as_tensor(rng.integers(0, 6, size=200))
    assert argmax_hits(scores, labels) == int((scores.argmax(0) == labels).sum())
    scores = torch.randn(50, 300)
    labels = scores.argmax(0)
    labels[:100] = (labels[:100] + 1) % 50
    assert argmax_hits(scores, labels) == 200


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_adaptive_from_products_equals_point_to_adaptive_center(k):
    from s3.ablations.adaptive import adaptive_from_products

    per_class, images, _ = _world(3)
    spaces = build_spaces(per_class, SpaceConfig())
    bank = torch.as_tensor(np.concatenate(per_class))
    offsets = np.concatenate([[0], np.cumsum([len(e) for e in per_class])[:-1]])
    kept = [(offsets[c] + s.kept).tolist() for c, s in enumerate(spaces)]
    got = adaptive_from_products(bank @ images.T, bank, kept, [k, 1, 3])[k].T
    want = point_to_adaptive_center(images, StackedSpaces.from_spaces(spaces).vertices, k)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_set_kernels_equal_brute_force_and_refuse_bad_sets():
    from s3.ablations.set_kernels import set_max, set_weighted_sum

    rng = np.random.default_rng(3)
    products = torch.as_tensor(rng.normal(size=(9, 37)).astype(np.float32))
    sets = [[4], [0, 8, 3], [2, 2, 5], list(range(9))]
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in sets])])
    indices = np.concatenate(sets)
    weights = rng.uniform(0.1, 2.0, size=len(sets))
    want_max = torch.stack([products[s].amax(0) for s in sets])
    want_sum = torch.stack([products[s].sum(0) * float(w) for s, w in zip(sets, weights)])
    torch.testing.assert_close(set_max(products, indptr, indices), want_max, atol=0, rtol=0)
    torch.testing.assert_close(set_weighted_sum(products, indptr, indices, weights), want_sum, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="at least one row"):
        set_max(products, np.array([0, 0, 2]), np.array([1, 2]))
    with pytest.raises(ValueError, match=r"lie in \[0, 9\)"):
        set_max(products, np.array([0, 1]), np.array([9]))
    with pytest.raises(ValueError, match="one weight per set"):
        set_weighted_sum(products, indptr, indices, weights[:2])


@pytest.mark.parametrize("seed", range(2))
def test_simplex_hits_with_bounds_equal_argmax_of_every_score(seed):
    """MethodPlan.top1_hits for point-to-simplex (only the classes whose bound reaches the image's
    own score are solved) counts what the argmax of the full (C, n) scores counts, ties included."""
    from s3.ablations.grid import variant
    from s3.ablations.items import SharedItems, plan_method
    from s3.ablations.set_kernels import argmax_hits

    per_class, images, labels = _world(seed, classes=12, dim=10, n=300)
    per_class[5] = per_class[4].copy()  # two classes that tie everywhere: argmax gives class 4
    labels[:60] = torch.tensor([4, 5]).repeat(30)
    text = _text_side(per_class)
    base = [s.embeddings for s in text.spaces]
    sides = [text, variant(text, base, {**SPACES, "max_dimension": 0}), variant(text, base, {**SPACES, "max_dimension": 1}),
             variant(text, base, {**SPACES, "radius_rule": "global", "epsilon": 0.6})]
    shared = SharedItems(base)
    plans = [plan_method("s3_point_to_simplex", side.spaces, shared) for side in sides]
    items = shared.scores(images)
    for plan in plans:
        scores = plan.scores(items, shared)
        assert torch.equal(scores[4], scores[5])
        want = argmax_hits(scores, labels)
        assert plan.top1_hits(shared.scores(images, cones=False), shared, labels) == want
        assert 0 < want < len(labels)  # neither trivial
