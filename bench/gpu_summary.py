"""Merge a GPU session's step outputs into one JSON and print its figures with their meaning.

    python bench/gpu_summary.py PARTS_DIR OUT.json [--seconds N]

PARTS_DIR holds what ``bench/gpu_session.sh`` collected: ``steps.jsonl`` (exit status and duration
of each step), ``preflight.json``, ``extraction.json``, ``compile.json``, ``paper.json``,
``segmentation.json``, ``tta.json``, ``scoring.txt``, ``pytest.txt``. A missing part is reported as missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _load(parts: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {"steps": {}}
    steps = parts / "steps.jsonl"
    if steps.is_file():
        for line in steps.read_text().splitlines():
            record = json.loads(line)
            merged["steps"][record.pop("step")] = record
    for path in sorted(parts.glob("*.json")):
        merged[path.stem] = json.loads(path.read_text())
    for path in sorted(parts.glob("*.txt")):
        merged[path.stem] = path.read_text()
    return merged


def _pipeline_lines(result: dict[str, Any] | None, label: str) -> list[str]:
    if not result:
        return [f"{label}: NOT measured (step failed or timed out; see session.log)"]
    lines = [f"{label}: {result['header'].lstrip('# ')}"]
    for key, rate in result.get("model_only", {}).items():
        lines.append(f"  model only [{key}]: {rate['images_per_s']:,.0f} images/s (first call {rate['first_call_s']:.1f} s"
                     + (", i.e. compilation)" if "compile=True" in key else ")"))
    for key, rate in result.get("pipeline", {}).items():
        if "skipped" in rate:
            lines.append(f"  pipeline [{key}]: skipped ({rate['skipped']})")
            continue
        verdict = "meets" if rate["vs_model_only"] >= result["goal"] else "BELOW"
        lines.append(f"  pipeline [{key}, decoder {rate['pixel_pipeline']['decoder']}]: {rate['images_per_s']:,.0f} "
                     f"images/s = {rate['vs_model_only']:.2f} x model only ({verdict} the goal {result['goal']}); "
                     f"fixed start-up {rate['fixed_s']:.2f} s per call")
    return lines


def _tta_lines(tta: dict[str, Any] | None) -> list[str]:
    if not tta:
        return ["test-time views and adaptation (bench/tta.py): NOT measured"]
    lines = []
    views = tta.get("views")
    if views:
        lines.append(f"test-time views ({views['images']} JPEGs x {views['views_per_image']} views, model excluded):")
        for rate in views["rates"]:
            where = (f"PIL in {rate['workers']} CPU workers" if rate["augment_on"] == "cpu"
                     else f"tensor ops on {rate['device']}")
            lines.append(f"  augment_on={rate['augment_on']} ({where}), AugMix {'on' if rate['augmix'] else 'off'}: "
                         f"{rate['views_per_s']:,.0f} views/s")
    else:
        lines.append("test-time views: NOT measured")
    for result in tta.get("results", []):
        per_image = result["seconds_per_image"]
        lines.append(f"TS^3 adaptation on {result['device']}: " + "; ".join(
            f"{method} {1000 * seconds:.2f} ms/image" for method, seconds in per_image.items()))
    if not tta.get("results"):
        lines.append("TS^3 adaptation: NOT measured")
    return lines


def summary_lines(merged: dict[str, Any]) -> list[str]:
    lines = ["# GPU session figures" + ("  [SMOKE: toy sizes on the CPU, meaningless]"
                                         if merged.get("paper", {}).get("smoke") else "")]
    for name, step in merged["steps"].items():
        state = "TIMED OUT" if step["timed_out"] else ("ok" if step["rc"] == 0 else f"FAILED (exit {step['rc']})")
        lines.append(f"step {name}: {state}, {step['ms'] / 1000:.1f} s")
    pre = merged.get("preflight")
    if pre:
        lines.append(f"machine: {pre['gpu']}, {pre['cpus']} CPUs, Python {pre['python']}; torch "
                     f"{pre['versions'].get('torch')}, torchvision {pre['versions'].get('torchvision')}, open_clip "
                     f"{pre['versions'].get('open_clip')}")
        weights = pre.get("cached_clip_weights", []) + [{"path": p} for p in pre.get("clip_files_on_disk", [])]
        lines.append("cached CLIP weights: " + ("; ".join(w["path"] for w in weights) if weights else "none found"))
        missing = [k for k, v in pre["versions"].items() if v is None]
        if missing:
            lines.append(f"missing modules: {', '.join(missing)}")
    lines += _pipeline_lines(merged.get("extraction"), "feature extraction (eager)")
    if "compile" in merged["steps"] or "compile" in merged:
        lines += _pipeline_lines(merged.get("compile"), "feature extraction (torch.compile)")
    seg = merged.get("segmentation")
    lines.append("segmentation: " + (f"dense features {seg['dense_images_per_s']:.2f} images/s, whole inference "
                                     f"{seg['whole_images_per_s']:.2f} images/s ({seg['windows_per_image']:.1f} windows "
                                     "per image)" if seg else "NOT measured"))
    paper = merged.get("paper")
    if paper:
        measured = paper["measured"]
        lines.append(f"stage start-up: {measured.get('stage_start_s')} s process, {measured.get('kernel_start_s')} s "
                     "papermill kernel (None: not measured)")
        lines.append(f"text encoder {measured['text_per_s']:,.0f} texts/s; test-time views (PROXY) "
                     f"{measured['views_per_s']:,.0f} views/s")
        for name, total in paper["totals"].items():
            verdict = {True: "within", False: "OVER", None: "measured part within"}[total["meets_goal"]]
            lines.append(f"projection, {name}: {total['seconds']:,.0f} s = {total['seconds'] / 60:.1f} min, {verdict} "
                         f"the goal of {total['goal_s'] / 60:.0f} min" +
                         (f"; not measured: {len(total['unmeasured'])} ({', '.join(total['unmeasured'][:4])}...)"
                          if total["unmeasured"] else "") +
                         (f"; proxies: {', '.join(total['proxies'])}" if total["proxies"] else ""))
        slowest = sorted((s for s in paper["stages"] if s["seconds"] is not None), key=lambda s: -s["seconds"])[:6]
        lines.append("slowest stages: " + "; ".join(f"{s['stage']} {s['seconds']:,.0f} s" for s in slowest))
    else:
        lines.append("projection: NOT measured")
    lines += _tta_lines(merged.get("tta"))
    if merged.get("scoring"):
        lines.append("scoring (CPU of this machine, then CUDA):")
        lines += ["  " + line for line in merged["scoring"].strip().splitlines() if line.startswith(("|", "#"))]
    if merged.get("pytest"):
        tail = [line for line in merged["pytest"].strip().splitlines() if line.strip()]
        lines.append(f"pytest -m gpu: {tail[-1] if tail else 'no output'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, help="the whole session's duration")
    args = parser.parse_args(argv)
    merged = _load(args.parts)
    merged["session_seconds"] = args.seconds
    lines = summary_lines(merged)
    if args.seconds is not None:
        lines.append(f"whole session: {args.seconds:.0f} s")
    merged["summary"] = lines
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(merged, indent=1, sort_keys=True, default=str) + "\n")
    print("\n".join(lines))
    print(f"\nAll figures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
