"""Find the workspace a notebook belongs to, wherever it is opened.

A workspace is a folder holding ``dvc.yaml`` and ``params.yaml``: the repository (paper run) or
the demo's ``runs/demo``. The pipeline runs every notebook from its workspace with the stage's
parameters injected. JupyterLab starts a kernel in the notebook's own folder (``notebooks/``, or
``results/notebooks/`` for an executed copy), so every notebook calls :func:`use_workspace` right
after its parameters cell: it moves to the workspace and, outside the pipeline, reads the
parameters from the workspace's ``params.yaml``, so "Run All" reproduces the stage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from s3.errors import S3Error

__all__ = ["WORKSPACE_ENV", "find_workspace", "use_workspace"]

WORKSPACE_ENV = "S3_WORKSPACE"


def find_workspace(start: str | Path | None = None) -> Path:
    """``$S3_WORKSPACE`` if set, else the nearest folder at or above ``start`` (default: the current
    folder) that holds both ``dvc.yaml`` and ``params.yaml``."""
    if os.environ.get(WORKSPACE_ENV):
        chosen = Path(os.environ[WORKSPACE_ENV]).expanduser().resolve()
        if not (chosen / "params.yaml").is_file():
            raise S3Error(f"{WORKSPACE_ENV}={chosen} holds no params.yaml; point it at the repository or runs/demo")
        return chosen
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / "params.yaml").is_file():
            return folder
    raise S3Error(f"no workspace (a folder with dvc.yaml and params.yaml) at or above {here}; open the notebook "
                  f"from the repository or from runs/demo, or set {WORKSPACE_ENV}")


def use_workspace(**parameters: Any) -> tuple[Any, ...]:
    """Move to the workspace and return the parameters to use, in the order given.

    Inside a pipeline stage (``S3_STAGE`` is set) the given values are the stage's and are returned
    unchanged. Outside it, each name that is a section of the workspace's ``params.yaml`` takes its
    value from there; other names (``benchmark``) keep the value given.
    """
    workspace = find_workspace()
    os.chdir(workspace)
    if os.environ.get("S3_STAGE"):
        return tuple(parameters.values())
    params = yaml.safe_load((workspace / "params.yaml").read_text()) or {}
    return tuple(params.get(name, value) for name, value in parameters.items())
