"""Projected wall time of a cold ``dvc repro`` of the paper configuration, from measured rates.

A projection is a list of ``StageEstimate``s, one per DVC stage (expanded from ``dvc.yaml`` and
``params.yaml`` as DVC expands ``foreach``) plus the test-time entries: each stage's work (images,
texts, windows) divided by the rate measured for that kind of work, plus the fixed cost every
stage pays (a fresh Python process, imports, the model on the device, papermill's kernel). Stages
run one after another, as ``dvc repro`` runs them. Nothing here measures; ``bench/paper_gpu.py``
measures and passes the rates in (``measured``, keys below). A rate that was not measured makes
its stage "not measured" and the total a lower bound, never a guess.

``measured`` keys:
    ``stage_start_s``: process start to model on the device; ``kernel_start_s``: papermill's
    kernel (None: not measured); ``features``: benchmark -> ``{images_per_s, fixed_s}``;
    ``text_per_s``; ``spaces_build_s``: benchmark or segmentation dataset -> seconds;
    ``scoring_s``: benchmark -> method -> seconds at the benchmark's N and C; ``segmentation``:
    dataset -> ``{images_per_s}``; ``geometry_s``; ``views_per_s`` (test-time views, a proxy).

To add a test-time entry (e.g. the adaptation once ``s3/tta`` exists), append a
``StageEstimate(group="test-time", ...)`` in ``test_time_stages``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from s3.data.benchmarks import BENCHMARKS
from s3.encoders.templates import ENSEMBLE_80, templates_for
from s3.segmentation.datasets import SEG_BENCHMARKS

__all__ = ["StageEstimate", "TEST_TIME_VIEWS", "GOALS_S", "SHARES_TEXT_WITH", "dvc_stage_names", "synonym_counts",
           "text_count", "paper_stages", "test_time_stages", "totals", "unmeasured_start", "format_table", "as_records"]

TEST_TIME_VIEWS = 64
GOALS_S = {"paper": 600.0, "paper + test-time": 2700.0}  # issue 13: 10 and 45 minutes on one H100/H200
# The text cache is keyed by the exact texts: these benchmarks have ImageNet's 1000 class names and
# templates, so their text side is a cache hit once ImageNet's is built.
SHARES_TEXT_WITH = {"imagenet_v2": "imagenet", "imagenet_sketch": "imagenet"}
_SUBSETS = Path(__file__).parents[1] / "data" / "imagenet_subsets.json"  # ImageNet-A/-R's 200 classes


@dataclass(frozen=True)
class StageEstimate:
    """One stage of the projection.

    Attributes:
        stage: the DVC stage (``features@imagenet``) or a test-time entry.
        group: ``paper`` or ``test-time``.
        work: what the stage processes, in words (``50,000 images``).
        work_s: seconds of that work from the measured rates; None when a rate was not measured.
        fixed_s: the stage's fixed cost (process and kernel start, per-call set-up), measured.
        rate: the measured rate behind ``work_s``, in words (``5,210 images/s``).
        source: which measurement the rate comes from.
        proxy: the rate was measured on a stand-in for the real work (labelled as such).
    """

    stage: str
    group: str
    work: str
    work_s: float | None
    fixed_s: float
    rate: str
    source: str
    proxy: bool = False

    @property
    def seconds(self) -> float | None:
        return None if self.work_s is None else self.work_s + self.fixed_s


def _per(count: float, rate: float | None) -> float | None:
    return None if rate is None else (count / rate if count else 0.0)


def _rate(rate: float | None, unit: str) -> str:
    if rate is None:
        return "not measured"
    return f"{rate:,.0f} {unit}/s" if rate >= 100 else f"{rate:.3g} {unit}/s"


def dvc_stage_names(dvc: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """Stage names as DVC expands them (``foreach: ${benchmarks}`` -> ``features@imagenet``, ...)."""
    names = []
    for name, stage in dvc["stages"].items():
        if "foreach" not in stage:
            names.append(name)
            continue
        items = stage["foreach"]
        if isinstance(items, str):
            items = params
            for key in stage["foreach"].strip("${}").split("."):
                items = items[key]
        names += [f"{name}@{item}" for item in items]
    return names


def synonym_counts(bank: str | Path, classes: int, benchmark: str | None = None) -> list[int]:
    """Synonyms per class (the label included) of a benchmark's records in a bank file: the first
    ``classes`` records, or for ImageNet-A/-R the protocol's 200 ImageNet classes."""
    records = sorted((json.loads(line) for line in Path(bank).read_text().splitlines() if line.strip()),
                     key=lambda r: r["index"])
    counts = [len(r["synonyms"]) for r in records]
    subsets = {k: v for k, v in json.loads(_SUBSETS.read_text()).items() if not k.startswith("_")}
    indices = subsets.get(benchmark or "", range(classes))
    if len(indices) != classes or max(indices) >= len(counts):
        raise ValueError(f"{bank} has {len(counts)} classes; {benchmark or 'the benchmark'} needs {classes}")
    return [counts[i] for i in indices]


def text_count(benchmark: str, counts: Sequence[int], templates: str) -> int:
    """Texts the spaces stage encodes: every synonym through the space templates, plus the three
    baselines' prompts of each class (single, CoOp's, the 80 ensemble templates)."""
    classes = len(counts)
    baselines = classes * (1 + len(templates_for("coop", benchmark)) + len(ENSEMBLE_80))
    return sum(counts) * len(templates_for(templates, benchmark)) + baselines


def _fixed(measured: dict[str, Any]) -> float:
    """Every stage's start-up; a part that was not measured counts as 0 (``totals`` says so)."""
    return (measured.get("stage_start_s") or 0.0) + (measured.get("kernel_start_s") or 0.0)


def paper_stages(params: dict[str, Any], dvc: dict[str, Any], bank_dir: str | Path,
                 measured: dict[str, Any]) -> list[StageEstimate]:
    """One estimate per stage of a cold ``dvc repro`` of ``params`` (the paper configuration)."""
    fixed = _fixed(measured)
    templates = params["spaces"]["templates"]
    methods = params["evaluate"]["methods"]
    text_per_s = measured.get("text_per_s")
    builds = measured.get("spaces_build_s", {})
    out = []
    for name in dvc_stage_names(dvc, params):
        kind, _, item = name.partition("@")
        if kind == "features":
            info, rate = BENCHMARKS[item], measured["features"].get(item)
            per_s = rate["images_per_s"] if rate else None
            out.append(StageEstimate(name, "paper", f"{info.num_test:,} images", _per(info.num_test, per_s),
                                     fixed + (rate["fixed_s"] if rate else 0.0), _rate(per_s, "images"),
                                     "features pipeline on synthetic JPEGs of this benchmark's sizes"))
        elif kind == "spaces":
            info = BENCHMARKS[item]
            counts = synonym_counts(Path(bank_dir) / f"{info.bank}.jsonl", info.num_classes, item)
            texts = 0 if item in SHARES_TEXT_WITH else text_count(item, counts, templates)
            text_s, build = _per(texts, text_per_s), builds.get(item)
            work = None if text_s is None or build is None else text_s + build
            out.append(StageEstimate(name, "paper", f"{texts:,} texts" + (" (cache hit)" if not texts else "") +
                                     f", {info.num_classes} spaces", work, fixed, _rate(text_per_s, "texts"),
                                     "encode_texts + build_spaces (synthetic embeddings, the bank's synonym counts)"))
        elif kind == "evaluate":
            info, scoring = BENCHMARKS[item], measured["scoring_s"].get(item)
            seconds = sum(scoring[m]["seconds"] for m in methods) if scoring else None
            out.append(StageEstimate(name, "paper", f"{len(methods)} methods, N={info.num_test:,}, C={info.num_classes}",
                                     seconds, fixed, "-", "score_method at this N and C (synthetic spaces)"))
        elif kind == "segment":
            info, rate = SEG_BENCHMARKS[item], measured["segmentation"].get(item)
            counts = synonym_counts(Path(bank_dir) / f"{info.bank}.jsonl", len(info.all_classes))
            counts = counts if info.with_background else counts[1:]
            texts = text_count(item, counts, templates)
            per_s = rate["images_per_s"] if rate else None
            parts = [_per(info.num_val, per_s), _per(texts, text_per_s), builds.get(item)]
            out.append(StageEstimate(name, "paper", f"{info.num_val:,} images, {texts:,} texts",
                                     None if None in parts else sum(parts), fixed, _rate(per_s, "images"),
                                     f"evaluate_segmentation ({len(params['segmentation']['methods'])} methods, "
                                     f"C={len(counts)}) on synthetic images + text side"))
        elif kind == "geometry":
            seconds = measured.get("geometry_s")
            out.append(StageEstimate(name, "paper", "synthetic study (CPU)", seconds, fixed, "-",
                                     "sweep() with params.yaml's geometry section"))
        else:  # synonyms (replay: reads the bank), report, html: reading and rendering, seconds of CPU
            work = "replays the synonym bank" if kind == "synonyms" else "reads results, writes tables/figures"
            out.append(StageEstimate(name, "paper", work, 0.0, fixed, "-",
                                     "stage start only; its own CPU work (seconds) NOT measured"))
    return out


def test_time_stages(params: dict[str, Any], measured: dict[str, Any]) -> list[StageEstimate]:
    """The test-time variant's extra work on every classification test image (assumed: all benchmarks)."""
    images = sum(BENCHMARKS[b].num_test for b in params["benchmarks"])
    views, per_s = images * TEST_TIME_VIEWS, measured.get("views_per_s")
    return [
        StageEstimate("test-time views", "test-time", f"{images:,} images x {TEST_TIME_VIEWS} views", _per(views, per_s),
                      0.0, _rate(per_s, "views"),
                      "PROXY: random resized crops + flips on the device, encoded at batch 256 (not the TS^3 views)",
                      proxy=True),
        StageEstimate("test-time adaptation", "test-time", f"{images:,} images", None, 0.0, "not measured",
                      "NOT measured: the TS^3 adaptation (s3/tta) is not on this branch"),
    ]


def totals(stages: Sequence[StageEstimate], also_unmeasured: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Projected seconds of the paper run and of the paper run with the test-time variant.

    ``also_unmeasured`` names work missing from every stage (``unmeasured_start``).

    Returns:
        name -> ``seconds`` (sum of the measured stages), ``unmeasured`` (stages left out: the
        total is then a lower bound), ``goal_s``, ``meets_goal`` (None when anything is unmeasured
        and the measured part alone is within the goal).
    """
    out = {}
    for name, groups in (("paper", {"paper"}), ("paper + test-time", {"paper", "test-time"})):
        chosen = [s for s in stages if s.group in groups]
        seconds = sum(s.seconds for s in chosen if s.seconds is not None)
        unmeasured = [s.stage for s in chosen if s.seconds is None] + [f"{u} (every stage)" for u in also_unmeasured]
        goal = GOALS_S[name]
        meets = (seconds <= goal) if not unmeasured else (False if seconds > goal else None)
        out[name] = {"seconds": seconds, "unmeasured": unmeasured, "goal_s": goal, "meets_goal": meets,
                     "proxies": [s.stage for s in chosen if s.proxy]}
    return out


def unmeasured_start(measured: dict[str, Any]) -> list[str]:
    """Parts of the per-stage start-up that were not measured (counted as 0 in every stage)."""
    return [name for key, name in (("stage_start_s", "process start"), ("kernel_start_s", "papermill kernel"))
            if measured.get(key) is None]


def format_table(stages: Sequence[StageEstimate], also_unmeasured: Sequence[str] = ()) -> str:
    """Markdown table of the stages and the totals."""
    lines = ["| stage | work | rate | fixed (s) | projected (s) | rate measured as |", "|---|---|---|---|---|---|"]
    for s in stages:
        seconds = "not measured" if s.seconds is None else f"{s.seconds:,.1f}"
        lines.append(f"| {s.stage} | {s.work} | {s.rate} | {s.fixed_s:.1f} | {seconds} | {s.source} |")
    for name, total in totals(stages, also_unmeasured).items():
        verdict = {True: "within", False: "OVER", None: "measured part within"}[total["meets_goal"]]
        names = total["unmeasured"]
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        missing = f"; not measured: {shown}" if names else ""
        proxies = f"; proxies: {', '.join(total['proxies'])}" if total["proxies"] else ""
        lines.append(f"| **{name}** | | | | **{total['seconds']:,.0f}** ({total['seconds'] / 60:.1f} min) | "
                     f"{verdict} the goal of {total['goal_s'] / 60:.0f} min{missing}{proxies} |")
    return "\n".join(lines)


def as_records(stages: Sequence[StageEstimate]) -> list[dict[str, Any]]:
    return [{**asdict(s), "seconds": s.seconds} for s in stages]
