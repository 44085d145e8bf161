"""Which ``s3`` files each pipeline stage depends on, derived from its notebook's imports.

A stage must re-run when any module its notebook uses changes, directly or through other
modules, so its ``deps`` in ``dvc.yaml`` list exactly that closure (plus the data files some
modules read). Deriving it keeps ``dvc.yaml`` from drifting as the package grows:

    python -m s3.pipeline.deps          # check: exit 1 and name the stages whose deps differ
    python -m s3.pipeline.deps --write  # rewrite the s3 deps of every stage in dvc.yaml
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

__all__ = ["module_closure", "stage_s3_deps", "stale_stages", "write_deps"]

_IMPORT = re.compile(r"(?:from|import) (s3(?:\.\w+)+)")
# Files a module reads at run time (they change its results as much as its code does).
_DATA = {"s3/encoders/models.py": ["s3/encoders/model_configs"], "s3/synonyms/prompt.py": ["s3/synonyms/prompts"]}
_RUNNER = "s3/pipeline/stage.py"


def _imports(source: str) -> set[str]:
    return {m.replace(".", "/") for m in _IMPORT.findall(source)}


def module_closure(sources: list[str], root: Path) -> list[str]:
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
            if path.is_file() and candidate not in seen:
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
    sources = [c.source for c in cells if c.cell_type == "code"] + [(root / _RUNNER).read_text()]
    files = module_closure(sources, root)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml instead of checking it")
    args = parser.parse_args(argv)
    if args.write:
        write_deps()
        return 0
    stale = stale_stages()
    for name, (missing, extra) in stale.items():
        print(f"{name}: missing {missing}, not used {extra}")
    if stale:
        print("run `python -m s3.pipeline.deps --write` to fix dvc.yaml", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
