"""Export executed notebooks to standalone HTML for readers: ``python -m s3.pipeline.html_export SRC DST``."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

__all__ = ["export_html"]


def export_html(source: str | Path, destination: str | Path) -> list[Path]:
    """Write ``<destination>/<name>.html`` for every ``<source>/*.ipynb``; returns the files."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    written = []
    for notebook in sorted(Path(source).glob("*.ipynb")):
        body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
        target = destination / f"{notebook.stem}.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m s3.pipeline.html_export NOTEBOOK_DIR HTML_DIR")
    for path in export_html(sys.argv[1], sys.argv[2]):
        print(path)
