"""Ablation tables, figures, metrics.json and the README's claims, from the per-benchmark grids."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

from s3.data.benchmarks import BENCHMARKS

__all__ = ["read_grids", "axis_table", "with_group_averages", "metrics_record", "claims", "curve_figure"]


def read_grids(root: str | Path, benchmarks: Sequence[str]) -> pd.DataFrame:
    """Every benchmark's grid (``results/ablations/<b>.csv``) with a ``benchmark`` column."""
    frames = [pd.read_csv(Path(root) / f"{b}.csv", dtype={"value": str}).assign(benchmark=b) for b in benchmarks]
    return pd.concat(frames, ignore_index=True)


def with_group_averages(table: pd.DataFrame) -> pd.DataFrame:
    """Columns = benchmarks; adds ``avg fine-grained`` and ``avg shift`` where the run has any."""
    out = table.copy()
    for group, label in (("fine_grained", "avg fine-grained"), ("shift", "avg shift")):
        cols = [b for b in table.columns if BENCHMARKS[b].group == group]
        if cols:
            out[label] = table[cols].mean(axis=1)
    return out


def axis_table(grids: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Rows ``(method, value)`` in grid order, columns benchmarks + group averages."""
    sub = grids[grids["axis"] == axis]
    order = list(dict.fromkeys(sub["value"]))
    table = sub.pivot_table(index=["method", "value"], columns="benchmark", values="acc1", sort=False)
    table = table.reindex(pd.MultiIndex.from_tuples(
        [(m, v) for m in dict.fromkeys(sub["method"]) for v in order if (m, v) in table.index], names=["method", "value"]))
    return with_group_averages(table[list(dict.fromkeys(sub["benchmark"]))])


def _overall(table: pd.DataFrame) -> pd.Series:
    """One number per row: the mean over benchmarks (not over the group averages)."""
    return table[[c for c in table.columns if not c.startswith("avg ")]].mean(axis=1)


def metrics_record(grids: pd.DataFrame) -> dict:
    """``{axis: {method: {value: mean acc1 over benchmarks}}}`` for ``dvc metrics``."""
    record: dict = {}
    for (axis, method, value), acc in grids.groupby(["axis", "method", "value"], sort=False)["acc1"].mean().items():
        record.setdefault(axis, {}).setdefault(method, {})[value] = round(float(acc), 3)
    return record


def claims(grids: pd.DataFrame, demo: bool, method: str = "s3_point_to_local_center") -> str:
    """One line per axis: which value wins for ``method`` (mean top-1 over the run's benchmarks)."""
    lines = [("DEMO NUMBERS (tiny trained model, synthetic images). " if demo else "")
             + f"Best value of each choice for {method}, mean top-1 over {grids['benchmark'].nunique()} benchmark(s):"]
    for axis in dict.fromkeys(grids["axis"]):
        sub = grids[(grids["axis"] == axis) & (grids["method"] == method)]
        if sub.empty:
            continue
        means = sub.groupby("value", sort=False)["acc1"].mean()
        best, worst = means.idxmax(), means.idxmin()
        if means[best] - means[worst] < 1e-9:
            lines.append(f"- {axis}: every value ties ({means[best]:.2f}%) over {', '.join(means.index)}")
            continue
        tied = [v for v in means.index if means[best] - means[v] < 1e-9]
        lines.append(f"- {axis}: {' = '.join(tied)} {'wins' if len(tied) == 1 else 'tie for best'} ({means[best]:.2f}%); "
                     f"worst {worst} ({means[worst]:.2f}%, {means[best] - means[worst]:.2f} points lower)")
    return "\n".join(lines) + "\n"


def curve_figure(grids: pd.DataFrame, axis: str, xlabel: str) -> plt.Figure:
    """Mean top-1 over benchmarks against the axis's values, one line per method."""
    sub = grids[grids["axis"] == axis]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    order = list(dict.fromkeys(sub["value"]))
    for method, rows in sub.groupby("method", sort=False):
        means = rows.groupby("value")["acc1"].mean().reindex(order)
        ax.plot(range(len(order)), means.values, marker="o", label=method)
    ax.set_xticks(range(len(order)), order)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


