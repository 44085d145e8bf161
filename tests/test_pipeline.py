"""The demo through DVC, end to end, in a temporary workspace (about a minute and a half)."""

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


def test_second_run_does_no_work(workspace):
    result = repro(workspace)
    assert result.returncode == 0
    assert "Running stage" not in result.stdout
    assert "Data and pipelines are up to date" in result.stdout


def test_forced_rerun_is_byte_identical(workspace):
    paths = [workspace / "results/notebooks/05_geometry.ipynb", workspace / "results/geometry/accuracy.png",
             workspace / "results/geometry/accuracy.pdf"]
    before = [p.read_bytes() for p in paths]
    result = repro(workspace, "--force", "--single-item", "geometry")
    assert result.returncode == 0, result.stderr
    assert "Running stage 'geometry'" in result.stdout
    assert [p.read_bytes() for p in paths] == before


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
