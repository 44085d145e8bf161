"""Metrics against brute force, the summary table, the reference check, the synthetic world."""

import numpy as np
import pandas as pd
import pytest
import torch

from s3.analysis.geometry import WorldConfig, evaluate_world, make_world, sweep
from s3.core.methods import METHODS, score_method
from s3.core.metrics import classification_metrics
from s3.core.spaces import SpaceConfig, build_spaces
from s3.core.text_side import TextSide
from s3.report.tables import gain_figure, reference_check, summary_table


def test_classification_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.normal(size=(200, 7)))
    labels = torch.from_numpy(rng.integers(0, 6, size=200))  # class 6 has no images
    got = classification_metrics(scores, labels)
    s, y = scores.numpy(), labels.numpy()
    top1 = s.argmax(1)
    top5 = np.argsort(-s, axis=1)[:, :5]
    assert got["acc1"] == pytest.approx(100 * np.mean(top1 == y))
    assert got["acc5"] == pytest.approx(100 * np.mean([y[i] in top5[i] for i in range(200)]))
    recalls = [100 * np.mean(top1[y == c] == c) for c in range(6)]
    assert got["per_class_accuracy"][:6] == pytest.approx(recalls) and got["per_class_accuracy"][6] is None
    assert got["mean_per_class_recall"] == pytest.approx(np.mean(recalls))


def test_label_out_of_range_is_a_class_count_error():
    with pytest.raises(ValueError, match="class list and the dataset disagree"):
        classification_metrics(torch.zeros(2, 3), torch.tensor([0, 5]))


def test_every_method_scores_and_textside_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    emb = [rng.normal(size=(int(k), 16)) for k in (1, 3, 5)]
    spaces = build_spaces(emb, SpaceConfig())
    classifiers = {m: torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
                   for m in ("clip_single", "clip_coop", "clip_ensemble80")}
    side = TextSide("toy", ["a", "b", "c"], classifiers, [["a"], ["b"] * 3, ["c"] * 5], spaces, {"x": 1})
    side.save(tmp_path / "t.pt")
    loaded = TextSide.load(tmp_path / "t.pt")
    assert [s.simplices for s in loaded.spaces] == [s.simplices for s in spaces]
    x = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    for method in METHODS:
        assert score_method(method, x, loaded).shape == (4, 3), method
    # Synonyms-max is the max over every synonym, pruned or not.
    expected = torch.stack([(x @ torch.from_numpy(s.embeddings).T).max(1).values for s in spaces], 1)
    torch.testing.assert_close(score_method("synonyms_max", x, loaded), expected)


def results_frame(model):
    rows = []
    for b, base in (("imagenet", 66.0), ("eurosat", 50.0), ("imagenet_a", 47.87)):
        rows.append({"benchmark": b, "method": "clip_single", "acc1": base, "acc5": 0, "mean_per_class_recall": 0,
                     "demo": False, "model": model})
        rows.append({"benchmark": b, "method": "s3_point_to_local_center", "acc1": base + 1, "acc5": 0,
                     "mean_per_class_recall": 0, "demo": False, "model": model})
    return pd.DataFrame(rows)


def test_summary_table_has_the_paper_shape():
    table = summary_table(results_frame({"arch": "x"}), METHODS)
    assert list(table.index) == ["clip_single", "s3_point_to_local_center"]
    assert list(table.columns) == ["imagenet", "eurosat", "imagenet_a", "avg fine-grained", "avg shift"]
    assert table.loc["clip_single", "avg fine-grained"] == pytest.approx(58.0)


def test_gain_figure_names_methods_that_did_not_run():
    table = summary_table(results_frame({"arch": "x"}), METHODS)
    with pytest.raises(ValueError, match="evaluate.methods did not run"):
        gain_figure(table, "clip_single", "s3_point_to_simplex")


def test_reference_check_modes():
    local_file = results_frame({"arch": "ViT-B-16", "pretrained": "/ckpt/ViT-B-16.pt:1:2"})
    assert reference_check(local_file) is None
    assert reference_check(local_file, mode="always") is not None
    assert reference_check(results_frame({"arch": "ViT-B-16", "pretrained": "openai"}), mode="never") is None


def test_reference_check_flags_benchmarks_off_by_more_than_a_point():
    assert reference_check(results_frame({"arch": "ViT-B-16", "pretrained": "none"})) is None
    check = reference_check(results_frame({"arch": "ViT-B-16", "pretrained": "openai"})).set_index("benchmark")
    assert check.loc["imagenet", "flag"] == False  # 66.0 vs 66.73  # noqa: E712
    assert check.loc["eurosat", "flag"] == True  # 50.0 vs 42.01  # noqa: E712
    assert check.loc["imagenet_a", "difference"] == 0


def test_synthetic_world_shapes_and_difficulty():
    config = WorldConfig(num_classes=6, dim=16, synonyms=5, images_per_class=10)
    synonyms, images, labels = make_world(config, seed=0)
    assert len(synonyms) == 6 and synonyms[0].shape == (5, 16) and images.shape == (60, 16)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    easy = evaluate_world(*make_world(WorldConfig(image_noise=0.01, sigma_lex=0.01, outlier_rate=0.0), 0), SpaceConfig())
    assert easy["synonyms_mean"] > 90
    frame = sweep(config, SpaceConfig(), "outlier_rate", [0.0, 0.5], repeats=1)
    assert set(frame.value) == {0.0, 0.5} and frame.acc1.between(0, 100).all()
