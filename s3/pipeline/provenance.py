"""What produced a result: git commit, package versions, device, seed and parameters."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "git_commit", "device_name", "provenance"]

PACKAGES = ("torch", "open_clip_torch", "gudhi", "numpy", "scipy", "pandas", "papermill", "dvc")


def git_commit(root: str | Path) -> str:
    """HEAD of the checkout at ``root``, marked when tracked files have uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return head.stdout.strip() + ("+uncommitted-changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}"


def provenance(parameters: dict[str, Any], root: str | Path) -> dict[str, Any]:
    """The record every executed notebook carries. ``S3_GIT_COMMIT`` overrides the commit (the demo
    workspace is a copy, so the demo passes the repository's commit down)."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "git_commit": os.environ.get("S3_GIT_COMMIT") or git_commit(root),
        "python": platform.python_version(),
        "packages": versions,
        "device": device_name(),
        "seed": parameters.get("seed", (parameters.get("model") or {}).get("seed")),
        "parameters": parameters,
    }
