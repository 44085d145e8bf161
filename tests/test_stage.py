"""s3.pipeline.stage: parameter checking, failure logs, byte-stable outputs (tiny notebooks, real kernels)."""

import json
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from s3.pipeline.stage import (
    StageError,
    check_parameters,
    parameters_cell_defaults,
    run_stage,
)
from s3.pipeline.sync import stale_stages

REPO = Path(__file__).resolve().parents[1]


def make_project(tmp_path: Path, body: str, params: dict) -> Path:
    nb = new_notebook(cells=[
        new_code_cell("alpha = {'x': 1, 'y': [1, 2]}\nname = 'a'", metadata={"tags": ["parameters"]}),
        new_code_cell(body),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "nb.ipynb")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_check_parameters_names_unknown_and_missing_keys():
    defaults = {"model": {"arch": "x", "inner": {"a": 1}}, "benchmark": "b"}
    given = {"model": {"arch": "y", "inner": {"b": 2}, "extra": 0}, "other": 1}
    problems = check_parameters(defaults, given)
    assert "unknown parameter 'model.extra'" in problems
    assert "unknown parameter 'model.inner.b'" in problems
    assert "missing parameter 'model.inner.a'" in problems
    assert "unknown parameter 'other'" in problems
    assert "missing parameter 'benchmark'" in problems


def test_parameters_cell_must_hold_literals(tmp_path):
    nb = new_notebook(cells=[new_code_cell("x = len([1])", metadata={"tags": ["parameters"]})])
    with pytest.raises(StageError, match="not a literal"):
        parameters_cell_defaults(nb)


def test_stage_runs_strips_timestamps_and_records_provenance(tmp_path):
    root = make_project(tmp_path, "print(alpha['x'] + 1, name)", {"alpha": {"x": 41, "y": [3]}})
    out = run_stage("nb.ipynb", "demo-stage", ["alpha"], {"name": "z"}, "out/nb.ipynb", root=root)
    first = out.read_bytes()
    executed = json.loads(first)
    assert "".join(executed["cells"][-2]["outputs"][0]["text"]) == "42 z\n"
    assert executed["metadata"]["s3_provenance"]["parameters"] == {"alpha": {"x": 41, "y": [3]}, "name": "z"}
    assert "start_time" not in first.decode() and '"id"' not in first.decode()
    run_stage("nb.ipynb", "demo-stage", ["alpha"], {"name": "z"}, "out/nb.ipynb", root=root)
    assert out.read_bytes() == first, "an unchanged rerun must be byte-identical"


def test_unknown_parameter_fails_before_running(tmp_path):
    root = make_project(tmp_path, "1", {"alpha": {"x": 1, "y": [], "z": 0}})
    with pytest.raises(StageError, match=r"unknown parameter 'alpha.z'"):
        run_stage("nb.ipynb", "s", ["alpha"], {"name": "a"}, "out.ipynb", root=root)
    with pytest.raises(StageError, match=r"no section\(s\) \['beta'\]"):
        run_stage("nb.ipynb", "s", ["beta"], {"name": "a"}, "out.ipynb", root=root)


def test_failing_cell_keeps_the_notebook_and_names_it(tmp_path):
    root = make_project(tmp_path, "raise ValueError('dataset folder missing')", {"alpha": {"x": 1, "y": []}})
    with pytest.raises(StageError) as error:
        run_stage("nb.ipynb", "features@demo", ["alpha"], {"name": "a"}, "out.ipynb", root=root)
    message = str(error.value)
    assert "stage features@demo failed" in message
    assert "cell 2 (line 1: raise ValueError('dataset folder missing'))" in message and "ValueError: dataset folder missing" in message
    assert "logs/features-demo.ipynb" in message
    kept = nbformat.read(root / "logs/features-demo.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in kept.cells for o in c.get("outputs", []))
    assert not (root / "out.ipynb").exists()


def test_dvc_stages_and_notebooks_agree():
    """Each stage's --sections equal its params, the notebook's parameters equal them (+ benchmark),
    and its s3 deps are exactly the modules its notebook uses, directly or through other modules."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        if "s3.pipeline.stage" not in stage["cmd"]:
            continue
        cmd = stage["cmd"].split()
        sections = cmd[cmd.index("--sections") + 1].split(",")
        assert sections == stage["params"], name
        notebook_path = REPO / cmd[cmd.index("s3.pipeline.stage") + 1]
        notebook = nbformat.read(notebook_path, as_version=4)
        expected = set(sections) | ({"benchmark"} if "--set" in cmd else set())
        assert set(parameters_cell_defaults(notebook)) == expected, name
    assert stale_stages(REPO) == {}, "dvc.yaml deps drifted: run `python -m s3.pipeline.sync --write`"


def test_notebook_defaults_are_the_paper_configuration():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        defaults = parameters_cell_defaults(nbformat.read(path, as_version=4))
        for section, value in defaults.items():
            if section != "benchmark":
                assert value == params[section], f"{path.name}: default of {section} differs from params.yaml"


def test_notebooks_are_committed_without_outputs():
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), path.name


def test_repository_is_a_dvc_project_with_the_paper_stages():
    from s3.demo.workspace import dvc

    listed = dvc(REPO, "stage", "list", "--name-only", capture=True).stdout.split()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    expected = {"synonyms", "geometry", "report", "html", "ablations"}
    expected |= {f"{stage}@{b}" for stage in ("features", "spaces", "evaluate", "views", "tta", "ablate")
                 for b in params["benchmarks"]}
    expected |= {f"segment@{d}" for d in params["segmentation"]["datasets"]}
    assert set(listed) == expected
