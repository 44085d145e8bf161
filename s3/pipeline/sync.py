"""Keep what is derived in sync with its source: stage deps and notebook parameter defaults.

* A stage must re-run when any module its notebook uses changes, directly or through other
  modules, so its ``deps`` in ``dvc.yaml`` list exactly that closure (plus the data files some
  modules read).
* A notebook's ``parameters`` cell holds the paper configuration, so it equals ``params.yaml``
  (a notebook opened from ``notebooks/`` then runs the paper configuration as it stands).

    python -m s3.pipeline.sync          # check: exit 1 and name what differs
    python -m s3.pipeline.sync --write  # rewrite dvc.yaml's s3 deps and the parameters cells
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

__all__ = ["module_closure", "stage_s3_deps", "stale_stages", "write_deps", "stale_parameter_cells",
           "write_parameter_cells"]

_IMPORT = re.compile(r"(?:from|import) (s3(?:\.\w+)+)")
# Files a module reads at run time (they change its results as much as its code does).
_DATA = {"s3/encoders/models.py": ["s3/encoders/model_configs"], "s3/synonyms/prompt.py": ["s3/synonyms/prompts"]}
_RUNNER = "s3/pipeline/stage.py"
# Modules that only accept or refuse a run and never change an output: a change to them (or to
# what they import to know the allowed values) re-runs nothing.
_PREFLIGHT = {"s3/pipeline/params.py"}


def _imports(source: str) -> set[str]:
    return {m.replace(".", "/") for m in _IMPORT.findall(source)}


def module_closure(sources: list[str], root: Path, skip: set[str] = frozenset()) -> list[str]:
    """Every ``s3`` module file reachable from the import lines of ``sources``.

    Returns:
        sorted paths like ``s3/core/spaces.py``; package ``__init__`` files that hold only a
        docstring are left out.
    """
    seen: set[str] = set()
    todo = sorted(set().union(*map(_imports, sources)))
    while todo:
        module = todo.pop()
        for candidate in (f"{module}.py", f"{module}/__init__.py"):
            path = root / candidate
            if path.is_file() and candidate not in seen and candidate not in skip:
                seen.add(candidate)
                todo.extend(_imports(path.read_text()))
        # `from s3.core import spaces` names a module through its package
        parent = module.rsplit("/", 1)[0]
        if parent != module and (root / f"{parent}/__init__.py").is_file():
            init = f"{parent}/__init__.py"
            if init not in seen:
                seen.add(init)
                todo.extend(_imports((root / init).read_text()))
    return sorted(p for p in seen if not (p.endswith("__init__.py") and not _has_code(root / p)))


def _has_code(path: Path) -> bool:
    import ast

    body = ast.parse(path.read_text()).body
    # a docstring and constants (``__version__``) are no code a result could depend on
    return any(not (isinstance(n, (ast.Expr, ast.Assign)) and isinstance(n.value, ast.Constant)) for n in body)


def stage_s3_deps(notebook: str | Path, root: str | Path = ".") -> list[str]:
    """The ``s3`` deps of a stage that runs ``notebook`` through the stage runner."""
    root = Path(root)
    cells = nbformat.read(root / notebook, as_version=4).cells
    notebook_files = module_closure([c.source for c in cells if c.cell_type == "code"], root)
    runner_files = module_closure([(root / _RUNNER).read_text()], root, skip=_PREFLIGHT)
    files = sorted(set(notebook_files) | set(runner_files))
    files = sorted(set(files) | {_RUNNER} | {d for f in files for d in _DATA.get(f, [])})
    return files


def _stages(dvc_yaml: Path):
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 250
    document = yaml.load(dvc_yaml.read_text())
    for name, stage in document["stages"].items():
        body = stage.get("do", stage)
        cmd = str(body["cmd"]).split()
        if "s3.pipeline.stage" in cmd:
            yield name, body, cmd[cmd.index("s3.pipeline.stage") + 1], document, yaml


def stale_stages(root: str | Path = ".") -> dict[str, tuple[list[str], list[str]]]:
    """Stage -> (missing, extra) s3 deps, for every stage whose deps differ from the derived ones."""
    root = Path(root)
    stale = {}
    for name, body, notebook, _, _ in _stages(root / "dvc.yaml"):
        listed = {str(d) for d in body["deps"] if str(d).startswith("s3/")}
        wanted = set(stage_s3_deps(notebook, root))
        if listed != wanted:
            stale[name] = (sorted(wanted - listed), sorted(listed - wanted))
    return stale


def write_deps(root: str | Path = ".") -> None:
    """Rewrite every stage's s3 deps in ``dvc.yaml`` (other deps and comments are kept)."""
    root = Path(root)
    document = yaml = None
    for _, body, notebook, document, yaml in _stages(root / "dvc.yaml"):
        others = [d for d in body["deps"] if not str(d).startswith("s3/")]
        notebooks = [d for d in others if str(d).startswith("notebooks/")]
        rest = [d for d in others if d not in notebooks]
        body["deps"][:] = notebooks + stage_s3_deps(notebook, root) + rest
    if document is not None:
        with (root / "dvc.yaml").open("w") as handle:
            yaml.dump(document, handle)


def _parameter_source(notebook: nbformat.NotebookNode, params: dict) -> tuple[nbformat.NotebookNode, str]:
    from s3.pipeline.stage import parameters_cell_defaults

    cell = next(c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    defaults = parameters_cell_defaults(notebook)
    lines = [f"{name} = {value!r}" if name not in params else f"{name} = {params[name]!r}" for name, value in defaults.items()]
    return cell, "\n".join(lines)


def stale_parameter_cells(root: str | Path = ".") -> list[str]:
    """Notebooks whose parameters cell differs from ``params.yaml`` (``benchmark`` and other names
    that are not sections keep their own default)."""
    import yaml

    root = Path(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    stale = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        cell, wanted = _parameter_source(nbformat.read(path, as_version=4), params)
        if cell.source != wanted:
            stale.append(path.name)
    return stale


def write_parameter_cells(root: str | Path = ".") -> None:
    """Rewrite every notebook's parameters cell from ``params.yaml``."""
    import yaml

    root = Path(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        cell, wanted = _parameter_source(notebook, params)
        if cell.source != wanted:
            cell.source = wanted
            nbformat.write(notebook, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml and the notebooks instead of checking")
    args = parser.parse_args(argv)
    if args.write:
        write_deps()
        write_parameter_cells()
        return 0
    stale = stale_stages()
    for name, (missing, extra) in stale.items():
        print(f"dvc.yaml {name}: missing {missing}, not used {extra}")
    cells = stale_parameter_cells()
    for name in cells:
        print(f"notebooks/{name}: parameters cell differs from params.yaml")
    if stale or cells:
        print("run `python -m s3.pipeline.sync --write` to fix them", file=sys.stderr)
    return 1 if stale or cells else 0


if __name__ == "__main__":
    sys.exit(main())
