"""The whole-paper projection and the GPU session: projection arithmetic against hand sums, the
synthetic JPEGs, and the benchmark scripts in their CPU smoke mode (toy sizes, S3-Demo-Tiny).
The full session script runs in the slow suite (it starts a Python process per step)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from s3.analysis import paper_projection as projection
from s3.analysis.synthetic_images import IMAGE_SIZES, sample_sizes, write_jpegs
from s3.data.benchmarks import BENCHMARKS

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning")


def bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_names_expand_like_dvc():
    names = projection.dvc_stage_names(DVC, PARAMS)
    benchmarks, segmentation = PARAMS["benchmarks"], PARAMS["segmentation"]["datasets"]
    sizes = {"${benchmarks}": len(benchmarks), "${segmentation.datasets}": len(segmentation)}
    expected = sum(sizes[stage["foreach"]] if "foreach" in stage else 1 for stage in DVC["stages"].values())
    assert len(names) == expected
    assert {f"features@{b}" for b in benchmarks} <= set(names)
    assert {f"segment@{d}" for d in segmentation} <= set(names) and "report" in names


def test_text_count_and_synonym_counts_from_the_bank():
    counts = projection.synonym_counts(ROOT / "data/synonyms/eurosat.jsonl", 10)
    assert sum(counts) / len(counts) == pytest.approx(7.8)  # `s3 synonyms check`: eurosat mean 7.80
    # every synonym through CoOp's one EuroSAT template, plus single + CoOp + 80 prompts per class
    assert projection.text_count("eurosat", counts, "coop") == sum(counts) + 10 * 82
    assert projection.text_count("eurosat", counts, "ensemble80") == 80 * sum(counts) + 10 * 82
    imagenet = projection.synonym_counts(ROOT / "data/synonyms/imagenet.jsonl", 1000)
    subset = json.loads((ROOT / "s3/data/imagenet_subsets.json").read_text())["imagenet_r"]
    assert projection.synonym_counts(ROOT / "data/synonyms/imagenet.jsonl", 200, "imagenet_r") == [imagenet[i]
                                                                                                   for i in subset]


def measured(**overrides):
    base = {"stage_start_s": 2.0, "kernel_start_s": 1.0, "text_per_s": 1000.0, "geometry_s": 5.0, "views_per_s": 640.0,
            "features": {b: {"images_per_s": 100.0, "fixed_s": 0.5} for b in PARAMS["benchmarks"]},
            "spaces_build_s": {b: 0.25 for b in PARAMS["benchmarks"] + PARAMS["segmentation"]["datasets"]},
            "scoring_s": {b: {m: {"seconds": 0.1} for m in PARAMS["evaluate"]["methods"]} for b in PARAMS["benchmarks"]},
            "segmentation": {d: {"images_per_s": 10.0} for d in PARAMS["segmentation"]["datasets"]}}
    return {**base, **overrides}


def test_projection_adds_up_stage_by_stage():
    stages = projection.paper_stages(PARAMS, DVC, ROOT / "data/synonyms", measured())
    by_name = {s.stage: s for s in stages}
    imagenet = by_name["features@imagenet"]
    assert imagenet.seconds == pytest.approx(50_000 / 100 + 0.5 + 3.0)
    assert by_name["evaluate@imagenet"].seconds == pytest.approx(0.1 * len(PARAMS["evaluate"]["methods"]) + 3.0)
    assert by_name["spaces@imagenet_v2"].seconds == pytest.approx(0.25 + 3.0)  # texts: ImageNet's cache entry
    voc = by_name["segment@voc21"]
    texts = projection.text_count("voc21", projection.synonym_counts(ROOT / "data/synonyms/pascal_voc.jsonl", 21), "coop")
    assert voc.seconds == pytest.approx(1449 / 10 + texts / 1000 + 0.25 + 3.0)
    assert by_name["report"].seconds == 3.0
    total = projection.totals(stages)["paper"]
    assert total["seconds"] == pytest.approx(sum(s.seconds for s in stages))
    assert total["unmeasured"] == [] and total["meets_goal"] is (total["seconds"] <= 600)

    tta = projection.test_time_stages(PARAMS, measured())
    images = sum(BENCHMARKS[b].num_test for b in PARAMS["benchmarks"])
    assert images == 232_085 and tta[0].seconds == pytest.approx(images * 64 / 640) and tta[0].proxy
    with_tta = projection.totals(stages + tta)["paper + test-time"]
    assert with_tta["unmeasured"] == ["test-time adaptation"] and with_tta["proxies"] == ["test-time views"]
    assert with_tta["seconds"] == pytest.approx(total["seconds"] + tta[0].seconds)


def test_an_unmeasured_rate_is_never_guessed():
    partial = measured(features={"eurosat": {"images_per_s": 100.0, "fixed_s": 0.0}}, kernel_start_s=None)
    stages = projection.paper_stages(PARAMS, DVC, ROOT / "data/synonyms", partial)
    by_name = {s.stage: s for s in stages}
    assert by_name["features@imagenet"].seconds is None and by_name["features@eurosat"].seconds is not None
    total = projection.totals(stages, projection.unmeasured_start(partial))["paper"]
    assert "features@imagenet" in total["unmeasured"] and "papermill kernel (every stage)" in total["unmeasured"]
    assert total["meets_goal"] in (None, False)
    assert "not measured" in projection.format_table(stages, ["papermill kernel"])


def test_synthetic_jpegs_have_the_requested_sizes(tmp_path):
    sizes = sample_sizes(IMAGE_SIZES["caltech101"], 5, seed=3)
    assert sizes == sample_sizes(IMAGE_SIZES["caltech101"], 5, seed=3)
    assert all(0.95 * 200 <= min(w, h) and max(w, h) <= 1.05 * 300 for w, h in sizes)  # jitter 5 %
    paths = write_jpegs(tmp_path, sizes + [(64, 64)], processes=1)
    for path, size in zip(paths, sizes + [(64, 64)]):
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == size
    assert sample_sizes(IMAGE_SIZES["eurosat"], 3) == [(64, 64)] * 3
    assert set(IMAGE_SIZES) >= set(BENCHMARKS)


def test_paper_projection_smoke_run(tmp_path, capsys):
    out = tmp_path / "paper.json"
    assert bench("paper_gpu").main(["--smoke", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["smoke"] and len(result["stages"]) == len(projection.dvc_stage_names(DVC, PARAMS)) + 2
    assert result["measured"]["features"]["eurosat"]["images_per_s"] > 0
    assert result["measured"]["segmentation"]["voc21"]["images_per_s"] > 0
    assert set(result["totals"]) == {"paper", "paper + test-time"}
    printed = capsys.readouterr().out
    assert "SMOKE" in printed and "**paper**" in printed and "PROXY" in printed


def test_extraction_and_segmentation_smoke_runs_and_the_summary(tmp_path, capsys):
    parts = tmp_path / "parts"
    assert bench("extraction").main(["--smoke", "--json", str(parts / "extraction.json")]) == 0
    assert bench("segmentation").main(["--smoke", "--json", str(parts / "segmentation.json")]) == 0
    extraction = json.loads((parts / "extraction.json").read_text())
    assert set(extraction["pipeline"]) == {"decode=cpu,compile=False", "decode=gpu,compile=False"}
    assert all(r["images_per_s"] > 0 and r["vs_model_only"] > 0 for r in extraction["pipeline"].values())
    (parts / "steps.jsonl").write_text('{"step": "extraction", "rc": 0, "ms": 1200, "timed_out": false}\n'
                                       '{"step": "paper", "rc": 124, "ms": 180000, "timed_out": true}\n')
    (parts / "pytest.txt").write_text("3 passed, 1 skipped in 2.00s\n")
    capsys.readouterr()
    assert bench("gpu_summary").main([str(parts), str(tmp_path / "results.json"), "--seconds", "12"]) == 0
    printed = capsys.readouterr().out
    assert "step paper: TIMED OUT" in printed and "projection: NOT measured" in printed
    assert "pipeline [decode=gpu,compile=False, decoder torchvision-cpu]" in printed
    assert "pytest -m gpu: 3 passed, 1 skipped" in printed
    merged = json.loads((tmp_path / "results.json").read_text())
    assert merged["steps"]["paper"]["timed_out"] and merged["segmentation"]["whole_images_per_s"] > 0


def test_tta_bench_smoke_run_times_both_augmenters_and_the_summary_shows_them(tmp_path, capsys):
    parts = tmp_path / "parts"
    parts.mkdir()
    assert bench("tta").main(["--smoke", "--json", str(parts / "tta.json")]) == 0
    result = json.loads((parts / "tta.json").read_text())
    rates = {(r["augment_on"], r["device"], r["augmix"]): r for r in result["views"]["rates"]}
    assert set(rates) == {(on, "cpu", augmix) for on in ("cpu", "device") for augmix in (False, True)}
    assert all(r["views"] == 4 * 4 and r["views_per_s"] > 0 for r in rates.values())  # 4 JPEGs x 4 views
    assert result["results"][0]["seconds_per_image"]["ts3"] > 0
    capsys.readouterr()
    assert bench("gpu_summary").main([str(parts), str(tmp_path / "results.json")]) == 0
    printed = capsys.readouterr().out
    assert "augment_on=device (tensor ops on cpu), AugMix on:" in printed
    assert "augment_on=cpu (PIL in 1 CPU workers), AugMix off:" in printed and "TS^3 adaptation on cpu" in printed


def test_preflight_reports_versions_and_weight_caches(tmp_path, monkeypatch):
    hub = tmp_path / "hub" / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K"
    hub.mkdir(parents=True)
    (hub / "open_clip_model.safetensors").write_bytes(b"x" * 10)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    preflight = bench("gpu_preflight")
    assert preflight.main(["--json", str(tmp_path / "pre.json")]) == 0
    report = json.loads((tmp_path / "pre.json").read_text())
    assert report["versions"]["torch"] and report["gpu"]["cuda"] in (True, False)
    assert any(w["path"] == str(hub) and w["bytes"] == 10 for w in report["cached_clip_weights"])


def test_the_session_script_is_valid_bash_and_fits_one_device_call():
    subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_session.sh")], check=True)
    limits = {}
    for name, seconds in re.findall(r"\bstep (\w+) (\d+) ", (ROOT / "bench" / "gpu_session.sh").read_text()):
        limits[name] = max(limits.get(name, 0), int(seconds))
    assert set(limits) == {"preflight", "extraction", "paper", "segmentation", "scoring", "tta", "pytest", "compile"}
    assert sum(limits.values()) <= 570  # a device call runs 600 s at most; the wheel install and summary fit in the rest


@pytest.mark.slow
def test_gpu_session_smoke_run(tmp_path):
    env = {**os.environ, "S3_SMOKE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu_session.sh"), str(tmp_path / "out")], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:]
    merged = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(merged["steps"]) == {"preflight", "extraction", "paper", "segmentation", "scoring", "tta", "pytest"}
    assert all(step["rc"] == 0 for step in merged["steps"].values()), merged["steps"]
    assert {(r["augment_on"], r["augmix"]) for r in merged["tta"]["views"]["rates"]} == {
        (on, augmix) for on in ("cpu", "device") for augmix in (False, True)}
    assert any(line.startswith("  augment_on=device (tensor ops on cpu)") for line in merged["summary"])
    assert (tmp_path / "out" / "session.log").read_text().count("== ") >= 14
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.json", "session.log"]


def test_ablation_bench_smoke_run(tmp_path):
    out = tmp_path / "ablations.json"
    assert bench("ablations").main(["--smoke", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["timings_s"]) == {"spaces", "scoring"} and result["total_s"] > 0
    assert 0 < result["simplex_acc1"] <= 100
