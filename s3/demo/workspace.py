"""The embedded offline demo: the paper pipeline (same dvc.yaml, same notebooks) with demo parameters.

``prepare_workspace`` lays out a workspace (default ``runs/demo``) that is a git repository and a
DVC project of its own: it copies ``dvc.yaml``, ``notebooks/``, ``s3/`` and the synonym bank from
the repository, generates the demo world (``s3.demo.world``), trains the demo model on its
training split (``s3.demo.model``; cached, so only the first run trains), writes ``params.yaml`` =
the repository's ``params.yaml`` overridden by ``configs/demo.yaml`` with ``model.pretrained``
pointing at the trained checkpoint, and commits what changed. ``run_demo`` then runs ``dvc repro``
there and commits the lock file, so ``dvc exp run -S ...``, ``dvc exp show`` and ``dvc metrics
diff`` work on the demo as on the paper run. A second run re-copies only what changed, so DVC
re-executes only the stages whose inputs changed.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from s3.demo.model import train_demo_model
from s3.demo.world import write_demo_eurosat, write_demo_voc
from s3.pipeline.provenance import git_commit

__all__ = ["REPO_ROOT", "demo_params", "prepare_workspace", "run_demo", "dvc"]

REPO_ROOT = Path(__file__).resolve().parents[2]
COPIED = ("dvc.yaml", "notebooks", "s3", "data/synonyms")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
# Where trained demo models are kept, shared by every workspace (tests make many).
MODEL_CACHE_ENV = "S3_DEMO_MODEL_CACHE"
# configs/demo.yaml's model.pretrained value that stands for the trained demo model.
TRAINED = "trained-demo-model"
GITIGNORE = "/data/demo-datasets/\n/models/\n/cache/\n/logs/\n__pycache__/\n.ipynb_checkpoints/\n"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key not in base:
            raise KeyError(f"configs/demo.yaml sets {key!r}, which params.yaml does not have")
        merged[key] = deep_merge(base[key], value) if isinstance(value, dict) and isinstance(base[key], dict) else value
    return merged


def demo_params(repo_root: Path = REPO_ROOT) -> dict[str, Any]:
    if not (repo_root / "configs" / "demo.yaml").is_file():
        raise FileNotFoundError(
            f"{repo_root} is not the repository root (no configs/demo.yaml); run the demo from the "
            "repository, not from inside a demo workspace"
        )
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    return deep_merge(params, yaml.safe_load((repo_root / "configs" / "demo.yaml").read_text()))


def _sync(source: Path, target: Path) -> None:
    """Make ``target`` an exact copy of ``source``, touching only files whose content differs."""
    if source.is_file():
        if not target.is_file() or not filecmp.cmp(source, target, shallow=False):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return
    target.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in source.iterdir() if not IGNORED(str(source), [p.name])}
    for stale in target.iterdir():
        if stale.name not in wanted:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    for name in wanted:
        _sync(source / name, target / name)


def dvc(workspace: Path, *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    """Run DVC (from this interpreter's environment) in the workspace."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    # Stage commands call `python`: make it this interpreter, whatever the caller's PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("S3_GIT_COMMIT", git_commit(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=workspace, env=env, check=check,
                          text=True, capture_output=capture)


def git(workspace: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run git in the workspace, as the demo's own author (no user configuration needed)."""
    return subprocess.run(["git", "-c", "user.name=s3 demo", "-c", "user.email=demo@s3.invalid", *args],
                          cwd=workspace, check=check, text=True, capture_output=True)


def commit_changes(workspace: Path, message: str) -> bool:
    """Commit everything git does not ignore; returns whether there was anything to commit."""
    git(workspace, "add", "-A")
    if not git(workspace, "status", "--porcelain").stdout.strip():
        return False
    git(workspace, "commit", "-q", "-m", message)
    return True


def _demo_model(workspace: Path, data_root: Path, repo_root: Path) -> str:
    """Train (or reuse) the demo model and place it in the workspace; returns its workspace path."""
    cache = Path(os.environ.get(MODEL_CACHE_ENV, repo_root / "cache" / "demo-model"))
    trained = train_demo_model(data_root, workspace / "data" / "synonyms", cache)
    target = workspace / "models" / trained.name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob("*.pt"):
            stale.unlink()
        shutil.copy2(trained, target)
        shutil.copy2(trained.with_suffix(".json"), target.with_suffix(".json"))
    return str(target.relative_to(workspace))


def prepare_workspace(workspace: str | Path, repo_root: Path = REPO_ROOT) -> Path:
    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    for item in COPIED:
        _sync(repo_root / item, workspace / item)
    params = demo_params(repo_root)
    data_root = workspace / params["data"]["root"]
    write_demo_eurosat(data_root, seed=params["model"]["seed"])
    write_demo_voc(data_root, seed=params["model"]["seed"])
    if params["model"]["pretrained"] == TRAINED:
        params["model"]["pretrained"] = _demo_model(workspace, data_root, repo_root)
    text = "# Generated by s3.demo: params.yaml overridden by configs/demo.yaml. Do not edit.\n" + yaml.safe_dump(
        params, sort_keys=False)
    params_path = workspace / "params.yaml"
    if not params_path.is_file() or params_path.read_text() != text:
        params_path.write_text(text)
    if not (workspace / ".git").is_dir():
        git(workspace, "init", "-q")
    if not (workspace / ".gitignore").is_file() or GITIGNORE not in (workspace / ".gitignore").read_text():
        (workspace / ".gitignore").write_text(GITIGNORE + ((workspace / ".gitignore").read_text()
                                                           if (workspace / ".gitignore").is_file() else ""))
    if not (workspace / ".dvc").is_dir():
        dvc(workspace, "init", "--quiet")
    else:  # a workspace made before it was a git repository
        dvc(workspace, "config", "core.no_scm", "false")
    commit_changes(workspace, f"demo workspace from repository {git_commit(repo_root)}")
    return workspace


def run_demo(workspace: str | Path = REPO_ROOT / "runs" / "demo") -> Path:
    start = time.perf_counter()
    workspace = prepare_workspace(workspace)
    dvc(workspace, "repro")
    commit_changes(workspace, "dvc repro")
    print(f"\nDemo finished in {time.perf_counter() - start:.0f} s. Outputs (DEMO numbers, not paper results):")
    for relative in ("results/report/table.md", "results/report/segmentation.md", "results/report/tta.md",
                     "results/report/tta_costs.csv", "results/report/gain.png",
                     "results/segment/voc21-examples.png", "results/geometry/accuracy.png",
                     "results/metrics.json", "results/notebooks", "results/html"):
        print(f"  {workspace / relative}")
    print((workspace / "results/report/table.md").read_text())
    print((workspace / "results/report/segmentation.md").read_text())
    print((workspace / "results/report/tta.md").read_text())
    return workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the offline demo pipeline.")
    parser.add_argument("--workspace", default=str(REPO_ROOT / "runs" / "demo"))
    args = parser.parse_args(argv)
    try:
        run_demo(args.workspace)
    except subprocess.CalledProcessError as error:
        print(f"ERROR: the demo pipeline failed ({error}); the message above names the stage and its log.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
