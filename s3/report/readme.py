"""Fill the README's generated blocks from a run's outputs: ``python -m s3.report.readme runs/demo``.

A block is the text between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``; each
NAME maps to a file of the run (``BLOCKS``), pasted verbatim in a code fence. The README's demo
numbers are therefore copied from a ``make demo`` run by a command, never typed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["BLOCKS", "fill_blocks", "main"]

# Block name -> file of the run's workspace.
BLOCKS = {
    "demo-table": "results/report/table.md",
    "demo-segmentation": "results/report/segmentation.md",
    "demo-tta": "results/report/tta.md",
    "demo-costs": "results/report/costs.md",
    "demo-ablations": "results/ablations/report/claims.md",
}


def fill_blocks(readme: str, workspace: Path, blocks: dict[str, str] = BLOCKS) -> str:
    """``readme`` with every block it holds replaced by the named file of ``workspace``."""
    for name, relative in blocks.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)
        if pattern.search(readme) is None:
            continue
        body = (workspace / relative).read_text().strip()
        readme = pattern.sub(lambda m: f"{m.group(1)}```\n{body}\n```\n{m.group(2)}", readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m s3.report.readme WORKSPACE   (e.g. runs/demo after make demo)", file=sys.stderr)
        return 2
    readme = Path(__file__).resolve().parents[2] / "README.md"
    readme.write_text(fill_blocks(readme.read_text(), Path(args[0])))
    print(f"filled {readme} from {args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
