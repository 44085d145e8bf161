"""Results records, the summary table in the paper's shape, the reference check, the gain figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import pandas as pd

from s3.data.benchmarks import BENCHMARKS
from s3.report.reference import CLIP_SINGLE_TEMPLATE_ACC1, REFERENCE_ARCH, REFERENCE_PRETRAINED, TOLERANCE
from s3.segmentation.datasets import SEG_BENCHMARKS

__all__ = ["write_result", "read_results", "summary_table", "reference_check", "gain_figure", "table_markdown",
           "read_segmentation_results", "segmentation_table"]


def write_json(path: str | Path, record: dict[str, Any]) -> Path:
    """``record`` as indented JSON with sorted keys (byte-stable across reruns), folders created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def write_result(directory: str | Path, record: dict[str, Any]) -> Path:
    """One JSON per (benchmark, method): ``<directory>/<method>.json``."""
    return write_json(Path(directory) / f"{record['method']}.json", record)


def read_results(root: str | Path) -> pd.DataFrame:
    """Every ``<root>/<benchmark>/<method>.json`` as one row (benchmark, method, metrics, demo)."""
    rows = []
    for path in sorted(Path(root).glob("*/*.json")):
        record = json.loads(path.read_text())
        rows.append({k: record[k] for k in ("benchmark", "method", "acc1", "acc5", "mean_per_class_recall")}
                    | {"demo": record["provenance"]["demo"], "model": record["provenance"]["model"]})
    if not rows:
        raise FileNotFoundError(f"no result records under {root}; run the evaluate stages first")
    return pd.DataFrame(rows)


def read_segmentation_results(root: str | Path) -> pd.DataFrame:
    """Every ``<root>/<dataset>/<method>.json`` of the segment stages as one row (empty if none)."""
    rows = []
    for path in sorted(Path(root).glob("*/*.json")):
        record = json.loads(path.read_text())
        rows.append({k: record[k] for k in ("benchmark", "method", "miou", "pixel_accuracy")}
                    | {"demo": record["provenance"]["demo"]})
    return pd.DataFrame(rows, columns=["benchmark", "method", "miou", "pixel_accuracy", "demo"])


def segmentation_table(results: pd.DataFrame, methods: Sequence[str], order: Sequence[str]) -> pd.DataFrame:
    """Methods x segmentation datasets (mIoU %), datasets in ``order``."""
    table = results.pivot(index="method", columns="benchmark", values="miou")
    table = table[[d for d in order if d in table.columns]]
    return table.reindex([m for m in methods if m in table.index]).round(2)


def summary_table(results: pd.DataFrame, methods: Sequence[str], metric: str = "acc1") -> pd.DataFrame:
    """Methods x benchmarks, in protocol order, with per-group averages (``fine_grained``, ``shift``)."""
    table = results.pivot(index="method", columns="benchmark", values=metric)
    order = [b for b in BENCHMARKS if b in table.columns] + [b for b in table.columns if b not in BENCHMARKS]
    table = table[order]
    for group, label in (("fine_grained", "avg fine-grained"), ("shift", "avg shift")):
        members = [b for b in order if b in BENCHMARKS and BENCHMARKS[b].group == group]
        if members:
            table[label] = table[members].mean(axis=1)
    return table.reindex([m for m in methods if m in table.index]).round(2)


def table_markdown(table: pd.DataFrame, title: str, demo: bool) -> str:
    header = [f"### {title}", ""]
    if demo:
        header += ["> DEMO NUMBERS: a tiny CLIP trained for seconds on the demo's synthetic images (s3/demo). They "
                   "show the pipeline and the method at work in that world, and nothing about CLIP or the paper.", ""]
    titles = {k: v.title for k, v in (BENCHMARKS | SEG_BENCHMARKS).items()}
    columns = ["method", *[titles.get(c, c) for c in table.columns]]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for method, row in table.iterrows():
        lines.append("| " + " | ".join([method, *(f"{v:.2f}" for v in row.values)]) + " |")
    return "\n".join(header + lines) + "\n"


def reference_check(results: pd.DataFrame, baseline: str = "clip_single", mode: str = "auto") -> pd.DataFrame | None:
    """Compare the single-template CLIP baseline with the published numbers.

    Args:
        mode: ``auto`` checks when the model is ViT-B-16 with the ``openai`` tag; ``always`` also
            when the weights are a local file you know holds OpenAI's ViT-B/16; ``never`` skips.

    Returns ``None`` when skipped; else one row per benchmark with the difference and a ``flag``
    when it exceeds ``TOLERANCE`` points (usually a harness bug).
    """
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"report.reference_check must be 'auto', 'always' or 'never', got {mode!r}")
    rows = results[results.method == baseline]
    if rows.empty or mode == "never":
        return None
    model = rows.iloc[0]["model"]
    openai_tag = model.get("arch") == REFERENCE_ARCH and model.get("pretrained") == REFERENCE_PRETRAINED
    if mode == "auto" and not openai_tag:
        return None
    check = pd.DataFrame(
        [
            {"benchmark": r.benchmark, "ours": r.acc1, "reference": CLIP_SINGLE_TEMPLATE_ACC1[r.benchmark]}
            for r in rows.itertuples()
            if r.benchmark in CLIP_SINGLE_TEMPLATE_ACC1
        ]
    )
    check["difference"] = (check["ours"] - check["reference"]).round(2)
    check["flag"] = check["difference"].abs() > TOLERANCE
    return check


def gain_figure(table: pd.DataFrame, baseline: str, proposed: str) -> plt.Figure:
    """Per-benchmark top-1 gain of ``proposed`` over ``baseline`` (points)."""
    absent = [m for m in (baseline, proposed) if m not in table.index]
    if absent:
        raise ValueError(f"report.baseline/report.proposed name {absent}, which evaluate.methods did not run; "
                         f"choose among {list(table.index)}")
    columns = [c for c in table.columns if c in BENCHMARKS]
    gain = (table.loc[proposed, columns] - table.loc[baseline, columns]).rename(lambda c: BENCHMARKS[c].title)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(gain) + 2), 3.2))
    colors = ["tab:green" if g >= 0 else "tab:red" for g in gain.values]
    ax.bar(gain.index, gain.values, color=colors)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel(f"top-1 gain over {baseline} (points)")
    ax.set_title(f"{proposed} vs {baseline}")
    ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    return fig
