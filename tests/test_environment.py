"""environment.yml installs pyproject.toml's pins (conda users get the same packages), and the pins hold."""

from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_the_project_itself():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    # Nothing but the project: every package and version comes from pyproject.toml.
    assert pip == ["-e .[test]"]
    assert not [d for d in env["dependencies"] if isinstance(d, str) and d not in ("pip",) and not d.startswith("python=")]


def test_every_dependency_is_pinned_exactly():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    assert all("==" in requirement for requirement in wanted)


def test_pins_the_torch_pair_that_imports_here():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "torch==2.14.1" in project["dependencies"]
    assert "torchvision==0.29.1" in project["dependencies"]
