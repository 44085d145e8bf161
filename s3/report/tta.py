"""The report's test-time block: TS^3 and its baselines next to the methods they adapt, and their cost."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from s3.analysis.costs import read_costs
from s3.report.costs import cache_note
from s3.report.reference import PUBLISHED_TTA_ACC1
from s3.report.tables import read_results, summary_table
from s3.tta.adapt import TTA_METHODS

__all__ = ["TTA_ROWS", "tta_table", "tta_cost_table", "published_tta_table"]

# Each test-time method right after the method it adapts (the unadapted row, scored on view 0).
TTA_ROWS = tuple(dict.fromkeys(m for method, (base, _) in TTA_METHODS.items() for m in (base, method)))


def tta_table(root: str | Path, benchmarks: list[str], metric: str = "acc1") -> tuple[pd.DataFrame, bool]:
    """``(table, demo)``: methods x benchmarks (with the group averages of ``summary_table``)."""
    results = read_results(root)
    results = results[results.benchmark.isin(benchmarks)]
    return summary_table(results, [m for m in TTA_ROWS if m in set(results.method)], metric), bool(results.demo.any())


def tta_cost_table(views_root: str | Path, tta_root: str | Path) -> pd.DataFrame:
    """Per benchmark and step (``views/encode``, ``tta/<method>``): ms per image, peak MiB, device."""
    rows = read_costs(views_root, "*.costs.json")
    rows += [r for folder in sorted(Path(tta_root).glob("*/costs")) for r in read_costs(folder)]
    if not rows:
        return pd.DataFrame(columns=["benchmark", "what", "ms_per_image", "peak_mib", "device", "note"])
    table = pd.DataFrame([{
        "benchmark": r["benchmark"], "what": r["what"],
        "ms_per_image": 1000 * r["seconds"] / r["items"] if r["items"] else float("nan"),
        "peak_mib": r["peak_bytes"] / 2**20, "device": r["device"],
        "note": cache_note(r)} for r in rows])
    return table.sort_values(["benchmark", "what"]).reset_index(drop=True)


def published_tta_table(benchmarks: list[str]) -> pd.DataFrame:
    """Published test-time methods (rows, ``"<name> (published)"``) x ``benchmarks``; NaN where a paper
    reports no number. Never measured here: shown beside a real run, never beside demo numbers."""
    rows = {f"{name} (published)": {b: numbers.get(b, float("nan")) for b in benchmarks}
            for name, numbers in PUBLISHED_TTA_ACC1.items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=benchmarks)
