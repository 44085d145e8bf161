"""s3.analysis.costs: time and peak memory of a block."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from s3.analysis.costs import measure, read_costs, write_costs
from s3.core.methods import METHODS


def test_measure_times_the_block_and_sees_a_large_allocation(tmp_path):
    with measure("cpu", what="sleep", items=4) as cost:
        time.sleep(0.05)
        big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        big += 1
        time.sleep(0.02)
    del big
    assert cost.seconds >= 0.05
    assert cost.peak_bytes >= 32 * 2**20, cost.peak_bytes
    assert abs(cost.per_item_ms - 1000 * cost.seconds / 4) < 1e-9
    write_costs(tmp_path / "a.json", [cost], stage="evaluate", benchmark="eurosat")
    (row,) = read_costs(tmp_path)
    assert row["what"] == "sleep" and row["stage"] == "evaluate" and row["items"] == 4


def test_a_small_block_has_a_small_peak():
    with measure("cpu") as cost:
        sum(range(1000))
    assert cost.peak_bytes < 16 * 2**20


def test_stage_costs_are_written_only_inside_a_pipeline_stage(tmp_path, monkeypatch):
    from s3.analysis.costs import Cost, write_stage_costs

    monkeypatch.delenv("S3_STAGE", raising=False)
    assert write_stage_costs(tmp_path / "a.json", [Cost("x", 1.0)]) is None  # a hand run leaves DVC's outputs alone
    assert not (tmp_path / "a.json").exists()
    monkeypatch.setenv("S3_STAGE", "evaluate@eurosat")
    write_stage_costs(tmp_path / "a.json", [Cost("x", 1.0, items=3)], benchmark="eurosat")
    (row,) = read_costs(tmp_path)
    assert row["benchmark"] == "eurosat" and row["seconds"] == 1.0 and row["items"] == 3


def test_the_text_side_measures_encoding_and_building(tiny, tmp_path):
    import json

    from s3.encoders.cache import EmbeddingCache
    from s3.encoders.text import build_text_side

    bank = tmp_path / "bank.jsonl"
    names = [["forest", "woodland", "trees"], ["river", "stream"]]
    bank.write_text("".join(json.dumps({"index": i, "classname": n[0], "synonyms": n}) + "\n"
                            for i, n in enumerate(names)))
    spaces = {"templates": "coop", "distance": "cosine", "radius_rule": "largest_gap", "epsilon": 0.25,
              "mst_quantile": 0.9, "min_gap": 0.05, "max_dimension": None}
    for expect_cached in (False, True):
        costs = []
        side = build_text_side(tiny, "eurosat", ["forest", "river"], [0, 1], bank, spaces, 64,
                               EmbeddingCache(tmp_path / "cache"), costs)
        encode, build = costs
        assert (encode.what, build.what) == ("spaces/encode", "spaces/build")
        assert encode.seconds > 0 and build.seconds > 0 and encode.device == build.device == "cpu"
        assert encode.extra == {"names": sum(map(len, side.synonyms)), "cached": expect_cached}
        assert build.items == 2
    # coop is one template per synonym; the baselines: 1 + 1 + 80 templates per class.
    assert encode.items == sum(map(len, side.synonyms)) + 2 * 82


def _cost_file(root, stage, benchmark, rows):
    from s3.analysis.costs import Cost, write_costs

    write_costs(root / stage / f"{benchmark}.json", [Cost(**r) for r in rows], stage=stage, benchmark=benchmark)


def synthetic_costs(root):
    """eurosat and dtd measured; dtd's features a cache hit; no files at all for food101."""
    for b, (seconds, images) in {"eurosat": (0.5, 2000), "dtd": (1.5, 2000)}.items():
        _cost_file(root, "evaluate", b, [
            {"what": f"evaluate/{m}", "seconds": seconds * k, "peak_bytes": k * 2**20 * (1 + (b == "dtd")),
             "items": images, "device": "cpu"} for k, m in enumerate(METHODS, start=1)])
        _cost_file(root, "spaces", b, [
            {"what": "spaces/encode", "seconds": 2.0, "items": 500, "device": "cpu", "extra": {"cached": b == "dtd"}},
            {"what": "spaces/build", "seconds": 0.25, "items": 10, "device": "cpu"},
            {"what": "spaces/template_sets", "seconds": 3.0, "items": 40, "device": "cpu"}])
        _cost_file(root, "features", b, [{"what": "features/extract", "seconds": 4.0, "items": images,
                                          "device": "cuda: NVIDIA H200", "extra": {"cached": b == "dtd"}}])


def test_the_cost_tables_render_every_method_in_the_right_units(tmp_path):
    from s3.report.costs import benchmark_cost_table, cost_markdown, method_cost_table, missing_cost_files

    synthetic_costs(tmp_path)
    methods = method_cost_table(tmp_path, ["eurosat", "dtd"], METHODS)
    assert list(methods.index) == list(METHODS)
    # Method k: k x (0.5 + 1.5) s over 4,000 images = k x 500 ms per 1,000 images.
    for k, m in enumerate(METHODS, start=1):
        assert methods.loc[m, "ms_per_1000_images"] == pytest.approx(500.0 * k)
        assert methods.loc[m, "peak_mib"] == pytest.approx(2.0 * k)  # the larger benchmark peak
    assert (methods.images == 4000).all() and (methods.benchmarks == 2).all() and (methods.device == "cpu").all()
    per_benchmark = benchmark_cost_table(tmp_path, ["eurosat", "dtd"])
    assert per_benchmark.loc["eurosat", "images_per_s"] == pytest.approx(500.0)
    assert per_benchmark.loc["eurosat", "text_encode_s"] == 2.0 and per_benchmark.loc["eurosat", "spaces_build_s"] == 0.25
    assert np.isnan(per_benchmark.loc["dtd", "images_per_s"])  # a cache hit has no extraction rate
    assert "cache hit" in per_benchmark.loc["dtd", "features_note"] and "cache hit" in per_benchmark.loc["dtd", "text_note"]
    text = cost_markdown(methods, per_benchmark, missing_cost_files(tmp_path, ["eurosat", "dtd"]), demo=True)
    assert "Timings vary between runs and machines" in text and "DEMO" in text and "Not measured" not in text
    assert f"| {METHODS[1]} | 1,000.00 | 4.0 | 4,000 | 2 | cpu |" in text
    assert "| EuroSAT | 2.00 | 0.250 | 3.00 |  | 2,000 | 500.0 |  | cpu; cuda: NVIDIA H200 |" in text


def test_a_missing_cost_file_is_reported_as_not_measured(tmp_path):
    from s3.report.costs import benchmark_cost_table, cost_markdown, method_cost_table, missing_cost_files

    synthetic_costs(tmp_path)
    (tmp_path / "evaluate" / "dtd.json").unlink()
    benchmarks = ["eurosat", "dtd", "food101"]
    methods = method_cost_table(tmp_path, benchmarks, METHODS)
    assert (methods.benchmarks == 1).all() and (methods.images == 2000).all()  # eurosat alone, not averaged with a guess
    assert methods.loc[METHODS[0], "ms_per_1000_images"] == pytest.approx(250.0)
    per_benchmark = benchmark_cost_table(tmp_path, benchmarks)
    assert np.isnan(per_benchmark.loc["food101", "images_per_s"]) and np.isnan(per_benchmark.loc["food101", "text_encode_s"])
    assert per_benchmark.loc["food101", "features_note"].startswith("not measured")
    missing = missing_cost_files(tmp_path, benchmarks)
    assert sorted(Path(m).relative_to(tmp_path).as_posix() for m in missing) == [
        "evaluate/dtd.json", "evaluate/food101.json", "features/food101.json", "spaces/food101.json"]
    text = cost_markdown(methods, per_benchmark, missing, demo=False)
    assert "Not measured" in text and "evaluate/dtd.json" in text and "DEMO" not in text
    empty = method_cost_table(tmp_path / "nothing", benchmarks, METHODS)
    assert empty.empty and "no scoring measured" in cost_markdown(empty, per_benchmark, missing, demo=False)


def test_the_tta_cost_table_reads_the_views_and_the_adaptation_costs(tmp_path):
    from s3.analysis.costs import Cost
    from s3.report.tta import tta_cost_table

    write_costs(tmp_path / "views/eurosat.costs.json", [Cost("views/encode", 0.3, 2**20, items=300,
                                                              extra={"cached": True})], benchmark="eurosat")
    write_costs(tmp_path / "tta/eurosat/costs/adapt.json", [Cost("tta/ts3", 1.5, items=300)], benchmark="eurosat")
    table = tta_cost_table(tmp_path / "views", tmp_path / "tta")
    assert list(table.what) == ["tta/ts3", "views/encode"]
    assert list(table.ms_per_image) == pytest.approx([5.0, 1.0]) and list(table.peak_mib) == [0.0, 1.0]
    assert list(table.note) == ["", "cache hit (not an encoding time)"]
