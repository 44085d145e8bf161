"""The demo through DVC, end to end, in a temporary workspace (a few minutes on 2 cores)."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from s3.demo.workspace import dvc, prepare_workspace

pytestmark = pytest.mark.slow


def repro(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    return dvc(workspace, "repro", *args, check=False, capture=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = prepare_workspace(tmp_path_factory.mktemp("demo") / "ws")
    result = repro(ws)
    assert result.returncode == 0, result.stdout + result.stderr
    return ws


def edit_params(workspace: Path, section: str, key: str, value):
    path = workspace / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return original


def test_every_declared_output_exists(workspace):
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]
    listed = dvc(workspace, "stage", "list", "--name-only", capture=True).stdout.split()
    assert sorted(lock) == sorted(listed)
    outs = [o["path"] for stage in lock.values() for o in stage.get("outs", [])]
    assert len(outs) >= 15
    for out in outs:
        assert (workspace / out).exists(), out
    metrics = json.loads((workspace / "results/metrics.json").read_text())
    assert metrics["demo"] is True
    assert 0 <= metrics["s3_point_to_local_center/eurosat"] <= 100
    table = (workspace / "results/report/table.md").read_text()
    assert "DEMO NUMBERS" in table
    assert (workspace / "results/html/06_report.html").stat().st_size > 10_000


def test_executed_notebooks_record_provenance(workspace):
    notebook = json.loads((workspace / "results/notebooks/02_features-eurosat.ipynb").read_text())
    record = notebook["metadata"]["s3_provenance"]
    assert record["device"].startswith(("cpu", "cuda"))
    assert record["seed"] == 0 and record["git_commit"]
    assert record["parameters"]["model"]["arch"] == "S3-Demo-Tiny"
    assert "torch" in record["packages"]
    text = json.dumps(notebook)
    assert "start_time" not in text and "end_time" not in text
    assert "".join(notebook["cells"][-1]["source"]).startswith("## Provenance")


def test_executed_notebooks_print_no_warning(workspace):
    # Every warning a library prints is a bug until explained (huggingface_hub's tqdm.auto once
    # warned in every notebook that imports open_clip, for want of ipywidgets).
    for path in sorted((workspace / "results/notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        printed = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                          for c in notebook["cells"] for o in c.get("outputs", []))
        assert "Warning" not in printed, (path.name, printed[printed.find("Warning") - 200:][:400])


def test_the_demo_model_learned_its_world_and_a_label_shift_drops_it_to_chance(workspace):

    from s3.core.methods import score_method
    from s3.core.text_side import TextSide
    from s3.encoders.images import load_benchmark_features

    features, _ = load_benchmark_features(workspace / "results/features/eurosat.pt")
    text = TextSide.load(workspace / "results/spaces/eurosat.pt")

    def accuracy(side: TextSide, method: str) -> float:
        scores = score_method(method, features.features, side)
        return (scores.argmax(1) == features.labels).float().mean().item() * 100

    assert accuracy(text, "clip_single") >= 60  # chance is 10 %
    assert accuracy(text, "s3_point_to_local_center") >= 60
    # Any misalignment between image labels and the text side's class order must show: shift the
    # class order on the text side by one and the same features fall to chance.
    for shift in (1, 3, 7):
        shifted = TextSide(text.benchmark, text.classnames, {m: c.roll(shift, 0) for m, c in text.classifiers.items()},
                           text.synonyms[-shift:] + text.synonyms[:-shift], text.spaces[-shift:] + text.spaces[:-shift],
                           text.info)
        assert accuracy(shifted, "clip_single") <= 25
        assert accuracy(shifted, "s3_point_to_local_center") <= 25
    assert json.loads((workspace / "results/metrics.json").read_text())["clip_single/eurosat"] >= 60


def test_the_demo_parameters_pass_the_preflight_check(workspace):
    from s3.pipeline.check import check_run

    assert check_run(workspace / "params.yaml") == []


def test_second_run_does_no_work(workspace):
    result = repro(workspace)
    assert result.returncode == 0
    assert "Running stage" not in result.stdout
    assert "Data and pipelines are up to date" in result.stdout


def test_a_second_demo_run_neither_retrains_nor_reruns(workspace):
    models = sorted((workspace / "models").glob("*.pt"))
    assert len(models) == 1
    stamp = models[0].stat().st_mtime_ns
    prepare_workspace(workspace)
    assert models[0].stat().st_mtime_ns == stamp
    result = repro(workspace)
    assert "Running stage" not in result.stdout and "Data and pipelines are up to date" in result.stdout


def test_a_notebook_runs_from_its_own_folder_as_jupyterlab_starts_it(workspace):
    import os

    import nbformat
    from nbclient import NotebookClient

    env_before = dict(os.environ)
    os.environ.pop("S3_STAGE", None)
    try:
        for path in (workspace / "notebooks/04_evaluate.ipynb", workspace / "results/notebooks/04_evaluate-eurosat.ipynb"):
            notebook = nbformat.read(path, as_version=4)
            # JupyterLab starts the kernel in the notebook's folder; "Run All" must work from there.
            NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                           timeout=300).execute()
            printed = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
            assert "DEMO RUN" in printed
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    # It read the workspace's parameters and wrote where the pipeline writes.
    record = json.loads((workspace / "results/evaluate/eurosat/clip_single.json").read_text())
    assert record["provenance"]["evaluate"] == yaml.safe_load((workspace / "params.yaml").read_text())["evaluate"]
    assert repro(workspace, "--dry").stdout.count("Running stage") == 0  # same bytes: DVC sees nothing to do


def test_forced_rerun_is_byte_identical(workspace):
    paths = [workspace / "results/notebooks/05_geometry.ipynb", workspace / "results/geometry/accuracy.png",
             workspace / "results/geometry/accuracy.pdf"]
    before = [p.read_bytes() for p in paths]
    result = repro(workspace, "--force", "--single-item", "geometry")
    assert result.returncode == 0, result.stderr
    assert "Running stage 'geometry'" in result.stdout
    assert [p.read_bytes() for p in paths] == before


def test_a_forced_rerun_of_every_stage_yields_byte_identical_notebooks(workspace):
    notebooks = sorted((workspace / "results/notebooks").glob("*.ipynb"))
    before = {p.name: p.read_bytes() for p in notebooks}
    result = repro(workspace, "--force")
    assert result.returncode == 0, result.stdout + result.stderr
    # The first run encoded the features, this one takes them from the cache: the notebook cannot tell.
    assert {p.name: p.read_bytes() for p in notebooks} == before


def test_downstream_parameter_does_not_recompute_features(workspace):
    features = workspace / "results/features/eurosat.pt"
    stamp = features.stat().st_mtime_ns
    original = edit_params(workspace, "evaluate", "temperature", 0.05)
    try:
        result = repro(workspace)
        assert result.returncode == 0, result.stdout + result.stderr
        ran = re.findall(r"Running stage '([^']+)'", result.stdout)
        assert "evaluate@eurosat" in ran and "report" in ran
        assert not any(s.startswith(("features", "spaces", "synonyms", "geometry")) for s in ran), ran
        assert features.stat().st_mtime_ns == stamp
    finally:
        (workspace / "params.yaml").write_text(original)


def test_wrong_parameter_name_fails_the_stage_naming_it(workspace):
    path = workspace / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    params["report"]["baseline_method"] = params["report"].pop("baseline")
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = repro(workspace, "--single-item", "report")
        assert result.returncode != 0
        assert "unknown parameter 'report.baseline_method'" in result.stderr
        assert "missing parameter 'report.baseline'" in result.stderr
        assert "stage report" in result.stderr
    finally:
        path.write_text(original)


def test_dvc_experiments_run_on_the_demo_workspace(workspace):
    assert repro(workspace).returncode == 0  # the tests above left the report stage failed
    from s3.demo.workspace import commit_changes

    commit_changes(workspace, "baseline")
    result = dvc(workspace, "exp", "run", "-S", "evaluate.temperature=0.02", "-n", "soft-max", check=False, capture=True)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = dvc(workspace, "exp", "show", "--no-pager", "--md", capture=True).stdout
    assert "soft-max" in shown and "evaluate.temperature" in shown
    assert dvc(workspace, "metrics", "diff", "--md", capture=True).returncode == 0


def test_the_test_time_stages_report_ts3_and_its_costs(workspace):
    records = {p.stem: json.loads(p.read_text()) for p in (workspace / "results/tta/eurosat").glob("*.json")}
    assert {"ts3", "ts3_free", "views_average", "s3_point_to_local_center"} <= set(records)
    assert all(r["provenance"]["demo"] for r in records.values())
    assert records["ts3"]["entropy_after"] <= records["ts3"]["entropy_before"]
    table = (workspace / "results/report/tta.md").read_text()
    assert "| ts3 |" in table and "DEMO" in table
    costs = (workspace / "results/report/tta_costs.csv").read_text()
    assert "tta/ts3" in costs and "views/encode" in costs


def test_the_stages_write_their_costs_and_the_report_tabulates_them(workspace):
    from s3.analysis.costs import read_cost_file

    methods = yaml.safe_load((workspace / "params.yaml").read_text())["evaluate"]["methods"]
    n = json.loads((workspace / "results/evaluate/eurosat/clip_single.json").read_text())["provenance"]["num_images"]
    expected = {"features": ["features/extract"], "spaces": ["spaces/encode", "spaces/build", "spaces/template_sets"],
                "evaluate": [f"evaluate/{m}" for m in methods]}
    for stage, whats in expected.items():
        rows = read_cost_file(workspace / f"results/costs/{stage}/eurosat.json")
        assert [r["what"] for r in rows] == whats
        assert all(r["seconds"] > 0 and r["peak_bytes"] >= 0 and r["device"].startswith(("cpu", "cuda: "))
                   and r["stage"] == stage and r["benchmark"] == "eurosat" for r in rows), rows
        if stage != "spaces":
            assert all(r["items"] == n for r in rows), (stage, n, rows)
    table = (workspace / "results/report/costs.md").read_text()
    assert "Timings vary between runs and machines" in table and "DEMO" in table and "Not measured" not in table
    assert all(f"| {m} | " in table for m in methods) and "| EuroSAT | " in table


def test_an_ablations_change_reruns_only_the_ablation_stages(workspace):
    grid = workspace / "results/ablations/grid/eurosat.csv"
    before = grid.read_text()
    original = edit_params(workspace, "ablations", "adaptive_k", [1, 4])
    try:
        result = repro(workspace)
        assert result.returncode == 0, result.stdout + result.stderr
        ran = set(re.findall(r"Running stage '([^']+)'", result.stdout))
        assert ran == {"ablate@eurosat", "ablations", "html"}, ran
        assert "adaptive-4" in grid.read_text() and grid.read_text() != before
    finally:
        (workspace / "params.yaml").write_text(original)
