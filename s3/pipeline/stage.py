"""Run one pipeline stage: a parameterised notebook executed by papermill.

    python -m s3.pipeline.stage notebooks/02_features.ipynb --name features@eurosat \
        --sections data,model,features --set benchmark=eurosat \
        --output results/notebooks/02_features-eurosat.ipynb

What this adds to papermill:

* the notebook's ``parameters`` cell and the stage's parameters must agree, down to the keys of
  each section: an unknown or missing name fails the stage with a message naming it (papermill
  alone only warns);
* the executed notebook is written without papermill's timestamps, so an unchanged rerun is
  byte-identical, and it ends with a provenance cell (git commit, package versions, device,
  seed, parameters), also stored in its metadata;
* when a cell fails, the partial notebook is kept under ``logs/`` and the error names the stage,
  the cell and that file.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
import yaml
from traitlets.config import Config

from s3.atomic import atomic_write
from s3.errors import S3Error
from s3.notices import NOTICES_ENV
from s3.pipeline.params import SECTIONS, ParamsError, params_problems
from s3.pipeline.provenance import provenance

__all__ = ["StageError", "parameters_cell_defaults", "check_parameters", "run_stage", "main"]
LOG_DIR = Path("logs")


class StageError(S3Error):
    """A stage could not run or failed; the message says where to look."""


def parameters_cell_defaults(notebook: nbformat.NotebookNode, path: str = "notebook") -> dict[str, Any]:
    """Names and literal defaults of the cell tagged ``parameters``."""
    cells = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise StageError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    defaults: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise StageError(f"{path}: the parameters cell may only hold 'name = literal' lines")
        try:
            defaults[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError as error:
            raise StageError(f"{path}: parameter {node.targets[0].id} is not a literal") from error
    return defaults


def _key_problems(expected: Any, given: Any, prefix: str) -> list[str]:
    if not (isinstance(expected, dict) and isinstance(given, dict)):
        return []
    problems = [f"unknown parameter '{prefix}{k}'" for k in given if k not in expected]
    problems += [f"missing parameter '{prefix}{k}'" for k in expected if k not in given]
    for key in expected.keys() & given.keys():
        problems += _key_problems(expected[key], given[key], f"{prefix}{key}.")
    return problems


def check_parameters(defaults: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Every disagreement between a notebook's parameters and the stage's, as messages."""
    return _key_problems(defaults, given, "")


def _provenance_cell(record: dict[str, Any]) -> nbformat.NotebookNode:
    rows = [
        ("git commit", record["git_commit"]),
        ("device", record["device"]),
        ("seed", record["seed"]),
        ("python", record["python"]),
        *((name, version) for name, version in record["packages"].items()),
    ]
    table = "\n".join(f"| {k} | `{v}` |" for k, v in rows)
    params = yaml.safe_dump(record["parameters"], sort_keys=True, default_flow_style=False)
    text = (
        "## Provenance\n\nWritten by `s3.pipeline.stage` after the run.\n\n| what | value |\n|---|---|\n"
        f"{table}\n\nParameters:\n\n```yaml\n{params}```\n"
    )
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": ["provenance"]})


def _strip_volatile(notebook: nbformat.NotebookNode) -> None:
    """Remove timestamps and paths that change between identical runs."""
    pm = notebook.metadata.get("papermill", {})
    notebook.metadata["papermill"] = {k: pm[k] for k in ("parameters", "version") if k in pm}
    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        cell.pop("id", None)
    notebook.nbformat_minor = 4  # cell ids are optional before 4.5; they are random, so drop them


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _failing_line(cell: nbformat.NotebookNode, traceback: list[str]) -> str:
    """The line of ``cell`` the traceback points at ("line 7: load_model(...)"), or its first line."""
    text = _ANSI.sub("", "\n".join(traceback))
    # IPython frames of a cell read "Cell In[3], line 7"; the last one is the deepest in the cell.
    numbers = re.findall(r"Cell In\[\d+\], line (\d+)", text)
    lines = cell.source.splitlines()
    if numbers and 0 < int(numbers[-1]) <= len(lines):
        return f"line {numbers[-1]}: {lines[int(numbers[-1]) - 1].strip()[:80]}"
    return (lines[0].strip()[:80] if lines else "")


def _failed_cell(notebook: nbformat.NotebookNode) -> str:
    """'cell N, line L (...)' with N counted 1-based in the source notebook (papermill's own cells skipped)."""
    source_cells = [
        c for c in notebook.cells
        if not {"injected-parameters", "papermill-error-cell-tag"} & set(c.get("metadata", {}).get("tags", []))
    ]
    for number, cell in enumerate(source_cells, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return (f"cell {number} ({_failing_line(cell, output.get('traceback', []))}): "
                        f"{output.get('ename')}: {output.get('evalue')}")
    return "an unknown cell"


def run_stage(
    notebook_path: str | Path,
    name: str,
    sections: list[str],
    extra: dict[str, Any],
    output: str | Path,
    params_file: str | Path = "params.yaml",
    root: str | Path = ".",
) -> Path:
    """Validate parameters, execute the notebook, write it without volatile metadata."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    root = Path(root).resolve()
    notebook_path, output = Path(notebook_path), Path(output)
    params = yaml.safe_load(Path(root / params_file).read_text()) or {}
    missing_sections = [s for s in sections if s not in params]
    if missing_sections:
        raise StageError(f"stage {name}: {params_file} has no section(s) {missing_sections}")
    parameters = {s: params[s] for s in sections} | extra
    defaults = parameters_cell_defaults(nbformat.read(root / notebook_path, as_version=4), str(notebook_path))
    problems = check_parameters(defaults, parameters)
    if problems:
        raise StageError(
            f"stage {name}: {notebook_path} and the stage's parameters disagree: " + "; ".join(problems)
            + f". Fix {params_file} (or the notebook's parameters cell and dvc.yaml) so they match."
        )
    # Values next, before any expensive work (`s3 check` runs the same checks on the whole file).
    problems = params_problems(params, [s for s in sections if s in SECTIONS])
    if problems:
        raise ParamsError(f"stage {name}: bad values in {root / params_file}: " + "; ".join(problems))
    env_before = dict(os.environ)
    notices = Path(tempfile.mkstemp(prefix="s3-notices-", suffix=".txt")[1])
    os.environ.update({"TQDM_DISABLE": "1", "PYTHONHASHSEED": "0", "S3_STAGE": name, NOTICES_ENV: str(notices),
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))})
    log_path = root / LOG_DIR / f"{name.replace('@', '-')}.ipynb"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        executed = papermill.execute_notebook(
            str(root / notebook_path), str(log_path), parameters=parameters, cwd=str(root),
            kernel_name="python3", progress_bar=False, log_output=False,
            # CurveZMQ keys for the kernel's sockets (its kernelspec supports them); without them
            # ipykernel warns that code and outputs travel unencrypted over TCP.
            config=Config({"KernelManager": {"transport_encryption": "auto"}}),
        )
    except PapermillExecutionError as error:
        partial = nbformat.read(log_path, as_version=4)
        raise StageError(
            f"stage {name} failed in {notebook_path}, {_failed_cell(partial)}\n"
            f"The executed notebook, with the traceback, is kept at {log_path}."
        ) from error
    finally:
        os.environ.clear()
        os.environ.update(env_before)
        _echo_notices(name, notices)
    record = provenance(parameters, root)
    executed.metadata["s3_provenance"] = record
    executed.cells.append(_provenance_cell(record))
    _strip_volatile(executed)
    atomic_write(root / output, lambda tmp: nbformat.write(executed, tmp))
    log_path.unlink(missing_ok=True)
    return root / output


def _echo_notices(name: str, path: Path) -> None:
    """Print what the notebook announced (cache rebuilds, resumed work) on the stage's own output."""
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            print(f"{name}: {line}", file=sys.stderr)
    finally:
        path.unlink(missing_ok=True)


def _parse_extra(pairs: list[str]) -> dict[str, Any]:
    extra = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise StageError(f"--set expects key=value, got {pair!r}")
        extra[key] = yaml.safe_load(value)
    return extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("--name", required=True, help="stage name, for messages and logs")
    parser.add_argument("--sections", default="", help="comma-separated params.yaml sections")
    parser.add_argument("--set", action="append", default=[], help="extra parameter key=value")
    parser.add_argument("--output", required=True, help="where the executed notebook goes")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        run_stage(args.notebook, args.name, [s for s in args.sections.split(",") if s],
                  _parse_extra(args.set), args.output, args.params)
    except S3Error as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
