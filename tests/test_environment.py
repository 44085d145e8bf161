"""environment.yml's pip section mirrors pyproject.toml (conda users get the same pins)."""

from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert set(pip) - {"-e ."} == wanted
    assert "-e ." in pip
    assert all("==" in requirement for requirement in wanted), "every dependency is pinned exactly"


def test_pins_the_torch_pair_that_imports_here():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "torch==2.14.1" in project["dependencies"]
    assert "torchvision==0.29.1" in project["dependencies"]
