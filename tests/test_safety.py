"""Real-run safety: nothing computed is lost, bad input is refused early with one line, outputs are checked."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import s3.encoders.images as images_module
from s3.checked import CorruptFile, load_checked, save_checked
from s3.core.spaces import SpaceConfig, build_spaces
from s3.core.text_side import TextSide
from s3.data.benchmarks import load_benchmark
from s3.data.verify import verify_benchmark
from s3.demo.world import write_demo_eurosat
from s3.encoders.cache import EmbeddingCache
from s3.encoders.images import cached_image_features, load_benchmark_features, save_benchmark_features
from s3.encoders.shards import ShardBatch, UnreadableInputs, encode_shards, plan_shards
from s3.pipeline.check import check_run
from s3.pipeline.params import params_problems

REPO = Path(__file__).resolve().parents[1]



@pytest.fixture()
def eurosat(tmp_path):
    write_demo_eurosat(tmp_path, images_per_class=3, train_per_class=0)
    return tmp_path, load_benchmark("eurosat", tmp_path)


# ------------------------------------------------------------------ parameters


def paper_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


BAD_VALUES = [
    ("evaluate", "methods", ["clip_single", "s3_point_to_local_center", "s3_point_to_nowhere"], "evaluate.methods.2"),
    ("spaces", "radius_rule", "bogus", "spaces.radius_rule: must be 'global', 'mst_quantile' or 'largest_gap'"),
    ("spaces", "epsilon", -0.1, "spaces.epsilon: must be greater than or equal to 0"),
    ("evaluate", "temperature", "abc", "evaluate.temperature"),
    ("segmentation", "examples", 0, "segmentation.examples: must be greater than or equal to 1"),
    ("features", "batch_size", "abc", "features.batch_size"),
    ("model", "precision", "fp8", "model.precision: must be 'amp' or 'fp32'"),
    ("model", "activation", "relu", "model.activation"),
    ("segmentation", "variant", "sclip", "segmentation.variant"),
    ("synonyms", "mode", "ask", "synonyms.mode"),
]


@pytest.mark.parametrize("section, key, value, message", BAD_VALUES, ids=[f"{s}.{k}" for s, k, *_ in BAD_VALUES])
def test_check_names_each_bad_value_with_what_it_accepts(tmp_path, section, key, value, message):
    params = paper_params()
    params[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    start = time.perf_counter()
    problems = check_run(path)
    assert time.perf_counter() - start < 10
    assert any(p.startswith(message) for p in problems), problems
    assert len(problems) == 1, problems


def test_unknown_benchmark_key_and_section_are_named():
    params = paper_params()
    params["benchmarks"].append("imagenet_c")
    params["spaces"]["radius"] = 0.3
    params["extras"] = {}
    problems = params_problems(params)
    assert any(p.startswith("benchmarks.15: must be 'imagenet'") and "'imagenet_c'" in p for p in problems)
    assert "spaces.radius: unknown key; remove it (or fix its spelling)" in problems
    assert any(p.startswith("extras: unknown section") for p in problems)


def test_report_methods_must_be_evaluated():
    params = paper_params()
    params["evaluate"]["methods"] = ["clip_single"]
    problems = params_problems(params)
    assert any(p.startswith("report.proposed: 's3_point_to_local_center' is not among evaluate.methods") for p in problems)


def test_the_paper_parameters_are_valid_and_offline_only_weights_and_data_are_reported():
    problems = check_run(REPO / "params.yaml")
    # On a machine without the weights and the datasets (CI), those two are all that is wrong.
    assert all(p.startswith(("model.pretrained:", "data.root:")) for p in problems), problems
    assert params_problems(paper_params()) == []


def test_a_stage_refuses_a_bad_value_before_running(tmp_path):
    from s3.pipeline.params import ParamsError
    from s3.pipeline.stage import run_stage

    params = paper_params()
    params["evaluate"]["temperature"] = -1.0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "04_evaluate.ipynb").write_bytes((REPO / "notebooks" / "04_evaluate.ipynb").read_bytes())
    start = time.perf_counter()
    with pytest.raises(ParamsError, match="evaluate.temperature: must be greater than 0"):
        run_stage("notebooks/04_evaluate.ipynb", "evaluate@eurosat", ["evaluate"], {"benchmark": "eurosat"},
                  "out.ipynb", root=tmp_path)
    assert time.perf_counter() - start < 5  # no kernel was started


# ------------------------------------------------------------------ command line


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s3", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_python_dash_m_s3_help_works():
    result = run_cli("--help")
    assert result.returncode == 0 and "{check,demo,synonyms,data}" in result.stdout


def test_user_errors_are_one_line_without_a_traceback(tmp_path):
    for args in (["data", "verify", "--root", str(tmp_path), "--dataset", "eurosatt"],
                 ["data", "verify", "--root", str(tmp_path / "nowhere")],
                 ["synonyms", "check", "--dataset", "imagenett"]):
        result = run_cli(*args)
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "does not exist" in run_cli("data", "verify", "--root", str(tmp_path / "nowhere")).stderr


# ------------------------------------------------------------------ images


def test_verify_lists_a_truncated_jpeg_which_the_quick_check_misses(eurosat):
    root, images = eurosat
    victim = images.paths[4]
    victim.write_bytes(victim.read_bytes()[:-200])  # cut the last scan lines off
    full = verify_benchmark(root, "eurosat")
    assert any("cannot be read" in p and str(victim) in p for p in full.problems), full.problems
    quick = verify_benchmark(root, "eurosat", decode=False)
    assert not any(str(victim) in p for p in quick.problems)


def test_missing_and_empty_files_fail_before_any_encoding(tiny, eurosat, monkeypatch, tmp_path):
    _, images = eurosat
    images.paths[1].unlink()
    images.paths[5].write_bytes(b"")
    monkeypatch.setattr(images_module, "encode_images", lambda *a, **k: pytest.fail("encoded before checking"))
    with pytest.raises(images_module.DatasetError) as error:
        cached_image_features(tiny, images, EmbeddingCache(tmp_path / "cache"), num_workers=0)
    message = str(error.value)
    assert "2 of 30 listed images are missing or empty" in message
    assert f"{images.paths[1]} (missing)" in message and f"{images.paths[5]} (empty)" in message


class CountingModel(torch.nn.Module):
    """Wraps a model's image encoder: counts the images it encodes and can fail after some batches."""

    def __init__(self, model, fail_after_batches: int | None = None):
        super().__init__()
        self.inner, self.fail_after, self.batches, self.images = model, fail_after_batches, 0, 0

    def encode_image(self, pixels):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.batches += 1
        self.images += len(pixels)
        return self.inner.encode_image(pixels)


def test_a_killed_extraction_resumes_from_its_complete_shards(tiny, eurosat, tmp_path):
    _, images = eurosat
    cache = EmbeddingCache(tmp_path / "cache")
    reference, _ = cached_image_features(tiny, images, EmbeddingCache(tmp_path / "reference"), num_workers=0)
    killed = copy.copy(tiny)
    killed.model = CountingModel(tiny.model, fail_after_batches=3)  # batches of 4, shards of 8: 1 shard complete
    with pytest.raises(KeyboardInterrupt):
        cached_image_features(killed, images, cache, batch_size=4, num_workers=0, shard_size=8)
    assert len(list((tmp_path / "cache" / "shards").rglob("*.pt"))) == 1
    resumed = copy.copy(tiny)
    resumed.model = CountingModel(tiny.model)
    features, cached = cached_image_features(resumed, images, cache, batch_size=4, num_workers=0, shard_size=8)
    assert not cached and resumed.model.images == 30 - 8  # the complete shard was not encoded again
    assert torch.allclose(features.features, reference.features, atol=1e-6)
    assert torch.equal(features.labels, reference.labels)
    assert not any((tmp_path / "cache" / "shards").rglob("*.pt"))  # shards go once the entry is stored


def test_unreadable_images_are_reported_together_and_only_their_shards_are_redone(tiny, eurosat, tmp_path):
    _, images = eurosat
    for i in (2, 20):
        images.paths[i].write_bytes(b"not an image at all")
    cache = EmbeddingCache(tmp_path / "cache")
    counting = copy.copy(tiny)
    counting.model = CountingModel(tiny.model)
    with pytest.raises(UnreadableInputs) as error:
        cached_image_features(counting, images, cache, batch_size=4, num_workers=0, shard_size=8)
    message = str(error.value)
    assert message.startswith("2 inputs could not be read") and str(images.paths[2]) in message
    assert str(images.paths[20]) in message and "s3 data verify" in message
    assert len(list((tmp_path / "cache" / "shards").rglob("*.pt"))) == 2  # shards 1 and 3 of 4 were kept
    for i in (2, 20):  # the user replaces the two files
        images.paths[i].write_bytes(images.paths[0].read_bytes())
    counting.model = CountingModel(tiny.model)
    features, _ = cached_image_features(counting, images, cache, batch_size=4, num_workers=0, shard_size=8)
    assert counting.model.images == 16 and features.features.shape[0] == 30


def test_shard_keys_cover_only_their_own_inputs():
    a = plan_shards("/tmp/x", [f"f{i}" for i in range(10)], 4, "model")
    b = plan_shards("/tmp/x", [f"f{i}" if i != 5 else "changed" for i in range(10)], 4, "model")
    assert [x == y for x, y in zip(a.keys, b.keys)] == [True, False, True]
    assert plan_shards("/tmp/x", ["f"] * 10, 4, "other model").keys[0] != plan_shards("/tmp/x", ["f"] * 10, 4, "model").keys[0]


# ------------------------------------------------------------------ stage outputs


def test_ragged_rows_keep_one_tensor_per_input_in_order_across_batches_and_shards(tmp_path):
    """A row may be a list of per-input tensors of any shapes (the segmentation windows)."""
    plan = plan_shards(tmp_path / "shards", [f"f{i}" for i in range(5)], 2, "model")
    ragged = [torch.full((i + 1, 3), float(i)) for i in range(5)]

    def batch(positions):
        return ShardBatch(torch.tensor(positions), {"windows": [ragged[i] for i in positions],
                                                    "size": torch.tensor(positions)})

    assert encode_shards(plan, [batch([0, 1, 2]), batch([3, 4])]) == []
    rows = plan.assemble()
    assert rows["size"].tolist() == [0, 1, 2, 3, 4]
    assert len(rows["windows"]) == 5 and all(torch.equal(a, b) for a, b in zip(rows["windows"], ragged))
    assert [len(w) for w in plan.load(1)["windows"]] == [3, 4]


def test_a_corrupted_features_output_is_refused_with_its_path_and_the_fix(tiny, eurosat, tmp_path):
    _, images = eurosat
    features, _ = cached_image_features(tiny, images, EmbeddingCache(tmp_path / "cache"), num_workers=0)
    path = tmp_path / "results" / "features" / "eurosat.pt"
    save_benchmark_features(path, features, images)
    loaded, _ = load_benchmark_features(path)
    assert torch.equal(loaded.features, features.features)
    # Flip a byte inside the tensor data: the file still unpickles, the checksum catches it.
    raw = bytearray(path.read_bytes())
    payload = torch.load(path, weights_only=True)
    needle = payload["payload"]["features"][3].numpy().tobytes()[:16]
    at = bytes(raw).find(needle)
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFile, match=f"{path} fails its checksum.*dvc repro --force features@eurosat"):
        load_benchmark_features(path)
    path.write_bytes(bytes(raw[: len(raw) // 3]))  # truncated
    with pytest.raises(CorruptFile, match=f"{path} is unreadable or truncated"):
        load_benchmark_features(path)


def test_a_truncated_spaces_output_is_refused_with_its_path(tmp_path):
    embeddings = [torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).numpy() for _ in range(3)]
    side = TextSide("eurosat", ["a", "b", "c"], {"clip_single": torch.randn(3, 8)}, [["x"] * 4] * 3,
                    build_spaces(embeddings, SpaceConfig()), info={})
    path = tmp_path / "spaces" / "eurosat.pt"
    side.save(path)
    assert TextSide.load(path).classnames == ["a", "b", "c"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptFile, match=f"{path}.*dvc repro --force spaces@eurosat"):
        TextSide.load(path)


def test_checked_files_round_trip_nested_payloads(tmp_path):
    payload = {"a": torch.arange(5), "b": [torch.ones(2, 2, dtype=torch.bfloat16), {"c": "text", "d": None}], "e": 1.5}
    save_checked(tmp_path / "x.pt", payload)
    back = load_checked(tmp_path / "x.pt", "rerun")
    assert torch.equal(back["a"], payload["a"]) and back["b"][1] == {"c": "text", "d": None}


def test_saving_the_same_payload_twice_writes_the_same_bytes(tmp_path):
    # torch.save names its zip folder after the file; the atomic write's random temporary name once
    # made every rerun's outputs differ, so DVC reran every stage downstream of a forced one.
    payload = {"features": torch.randn(4, 3), "meta": '{"k": 1}'}
    first = save_checked(tmp_path / "x.pt", payload).read_bytes()
    assert save_checked(tmp_path / "x.pt", payload).read_bytes() == first


def test_check_refuses_banks_longer_than_point_to_simplex_takes(tmp_path):
    from s3.core.simplex_kernel import MAX_VERTICES
    from s3.synonyms.bank import SynonymRecord, write_bank

    params = paper_params()
    params["synonyms"]["bank_dir"] = str(tmp_path / "bank")
    (tmp_path / "bank").mkdir()
    long = ["name 1", *(f"other name {i}" for i in range(MAX_VERTICES))]
    write_bank(tmp_path / "bank" / "eurosat.jsonl", [SynonymRecord(0, "name 0", ["name 0", "a name"]),
                                                    SynonymRecord(1, "name 1", long)])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    problems = check_run(path, data=False)
    assert any("eurosat.jsonl: class 1 ('name 1') has 32 synonyms" in p for p in problems), problems
    params["evaluate"]["methods"].remove("s3_point_to_simplex")
    params["ablations"]["methods"].remove("s3_point_to_simplex")
    path.write_text(yaml.safe_dump(params))
    assert not any("synonyms" in p for p in check_run(path, data=False))  # without the method, a long bank is fine
    params = paper_params()
    params["synonyms"].update(mode="generate")
    params["synonyms"]["generator"]["num_synonyms"] = MAX_VERTICES
    path.write_text(yaml.safe_dump(params))
    assert any(p.startswith("synonyms.generator.num_synonyms: 31 plus the label") for p in check_run(path, data=False))
