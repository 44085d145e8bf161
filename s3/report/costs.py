"""The report's cost tables: each method's scoring, and per benchmark the text side and the features.

Read from the stages' cost files (``s3.analysis.costs.write_stage_costs``) under ``results/costs/``:
``evaluate/<b>.json`` (``evaluate/<method>``, items = images), ``spaces/<b>.json`` (``spaces/encode``,
``spaces/build``, ``spaces/template_sets``) and ``features/<b>.json`` (``features/extract``). A
benchmark whose file is missing is listed as not measured; nothing is estimated in its place.
Timings vary between runs and machines, so the tables are written to files, never shown in the
executed report notebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from s3.analysis.costs import read_cost_file
from s3.data.benchmarks import BENCHMARKS

__all__ = ["TIMING_NOTE", "cache_note", "cost_rows", "missing_cost_files", "method_cost_table",
           "benchmark_cost_table", "cost_markdown"]

TIMING_NOTE = ("> Timings vary between runs and machines (load, other jobs, caches, clocks): read them as the "
               "order of magnitude on the named device, not as a benchmark. Peak memory is above the level at "
               "the start of the measured step (CUDA: allocated by torch; CPU: resident, sampled).")
STAGES = ("features", "spaces", "evaluate")
_MIB = 2**20


def cache_note(row: dict[str, Any]) -> str:
    """``cache hit (not an encoding time)`` for a measurement whose inputs all came from a cache, else ``""``."""
    return "cache hit (not an encoding time)" if row.get("extra", {}).get("cached") else ""


def cost_rows(root: str | Path, stage: str, benchmarks: Sequence[str]) -> list[dict[str, Any]]:
    """Every measurement of ``stage`` for ``benchmarks`` (``<root>/<stage>/<b>.json`` that exist)."""
    paths = [Path(root) / stage / f"{b}.json" for b in benchmarks]
    return [row for path in paths if path.is_file() for row in read_cost_file(path)]


def missing_cost_files(root: str | Path, benchmarks: Sequence[str]) -> list[str]:
    """The cost files of ``STAGES`` x ``benchmarks`` that do not exist (paths under ``root``)."""
    return [str(Path(root) / stage / f"{b}.json") for stage in STAGES for b in benchmarks
            if not (Path(root) / stage / f"{b}.json").is_file()]


def _devices(rows: list[dict[str, Any]]) -> str:
    return "; ".join(sorted({r["device"] for r in rows}))


def method_cost_table(root: str | Path, benchmarks: Sequence[str], methods: Sequence[str]) -> pd.DataFrame:
    """Per method (rows in ``methods`` order, those measured): scoring cost pooled over the benchmarks.

    Columns: ``ms_per_1000_images`` (1e6 x total seconds / total images), ``peak_mib`` (the largest
    peak of any benchmark), ``images`` (total), ``benchmarks`` (how many were measured), ``device``.
    """
    rows = [r for r in cost_rows(root, "evaluate", benchmarks) if r["what"].startswith("evaluate/")]
    by_method: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_method.setdefault(row["what"].removeprefix("evaluate/"), []).append(row)
    order = [m for m in methods if m in by_method] + sorted(set(by_method) - set(methods))
    columns = ["ms_per_1000_images", "peak_mib", "images", "benchmarks", "device"]
    table = pd.DataFrame([{
        "ms_per_1000_images": 1e6 * sum(r["seconds"] for r in group) / max(1, sum(r["items"] for r in group)),
        "peak_mib": max(r["peak_bytes"] for r in group) / _MIB, "images": sum(r["items"] for r in group),
        "benchmarks": len({r["benchmark"] for r in group}), "device": _devices(group),
    } for group in (by_method[m] for m in order)], index=pd.Index(order, name="method"), columns=columns)
    return table


def benchmark_cost_table(root: str | Path, benchmarks: Sequence[str]) -> pd.DataFrame:
    """Per benchmark: the text side's build time and the features' extraction rate.

    Columns: ``text_encode_s`` (every prompt of the synonyms and the baselines through the model),
    ``spaces_build_s`` (the class spaces from the embeddings), ``template_sets_s`` (the ablations'
    template sets), ``text_note``; ``images``, ``images_per_s`` (NaN on a cache hit: a load is no
    extraction rate), ``features_note``; ``device``. NaN and a ``not measured`` note where a file is missing.
    """
    records = []
    for b in benchmarks:
        spaces = {r["what"]: r for r in cost_rows(root, "spaces", [b])}
        extract = next((r for r in cost_rows(root, "features", [b]) if r["what"] == "features/extract"), None)
        seconds = {k: spaces[f"spaces/{k}"]["seconds"] if f"spaces/{k}" in spaces else float("nan")
                   for k in ("encode", "build", "template_sets")}
        text_note = (cache_note(spaces["spaces/encode"]) if "spaces/encode" in spaces
                     else f"not measured (no {Path(root) / 'spaces' / f'{b}.json'})")
        if extract is None:
            images, rate, features_note = 0, float("nan"), f"not measured (no {Path(root) / 'features' / f'{b}.json'})"
        elif cache_note(extract):
            images, rate = extract["items"], float("nan")
            features_note = f"cache hit (loaded in {extract['seconds']:.2f} s; not an extraction rate)"
        else:
            seconds_taken = extract["seconds"]
            images, features_note = extract["items"], ""
            rate = images / seconds_taken if seconds_taken > 0 else float("nan")
        records.append({"benchmark": b, "text_encode_s": seconds["encode"], "spaces_build_s": seconds["build"],
                        "template_sets_s": seconds["template_sets"], "text_note": text_note, "images": images,
                        "images_per_s": rate, "features_note": features_note,
                        "device": _devices([r for r in (*spaces.values(), extract) if r is not None])})
    return pd.DataFrame(records).set_index("benchmark") if records else pd.DataFrame()


def _number(value: float, digits: int) -> str:
    return "-" if pd.isna(value) else f"{value:,.{digits}f}"


def cost_markdown(methods: pd.DataFrame, benchmarks: pd.DataFrame, missing: Sequence[str], demo: bool) -> str:
    """The two tables (``method_cost_table``, ``benchmark_cost_table``) as markdown, with the timing note,
    the demo label and the cost files that were missing."""
    lines = ["### Costs on the run's device", "", TIMING_NOTE, ""]
    if demo:
        lines += ["> DEMO RUN: a tiny model at demo sizes on whatever machine ran it; says nothing about CLIP's costs.", ""]
    lines += ["Scoring from cached features (`evaluate` stages), pooled over the benchmarks:", ""]
    if methods.empty:
        lines += ["(no scoring measured: no `results/costs/evaluate/<benchmark>.json`; run the evaluate stages)", ""]
    else:
        lines += ["| method | ms per 1,000 images | peak MiB | images | benchmarks | device |", "|---|---|---|---|---|---|"]
        lines += [f"| {m} | {_number(r.ms_per_1000_images, 2)} | {_number(r.peak_mib, 1)} | {r.images:,} | "
                  f"{r.benchmarks} | {r.device} |" for m, r in methods.iterrows()]
        lines.append("")
    lines += ["Per benchmark: the text side (`spaces` stage) and the image features (`features` stage):", "",
              "| benchmark | text encode s | spaces build s | template sets s | text | images | images/s | features "
              "| device |", "|---|---|---|---|---|---|---|---|---|"]
    for b, r in benchmarks.iterrows():
        title = BENCHMARKS[b].title if b in BENCHMARKS else b
        lines.append(f"| {title} | {_number(r.text_encode_s, 2)} | {_number(r.spaces_build_s, 3)} | "
                     f"{_number(r.template_sets_s, 2)} | {r.text_note} | {r.images:,} | {_number(r.images_per_s, 1)} | "
                     f"{r.features_note} | {r.device} |")
    if missing:
        lines += ["", "Not measured (cost file missing; a stage writes it only when run by the pipeline): "
                  + ", ".join(f"`{m}`" for m in missing)]
    return "\n".join(lines) + "\n"
