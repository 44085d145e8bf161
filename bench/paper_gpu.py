"""The whole paper on this machine, projected from measurements: a cold `dvc repro` of params.yaml.

    python bench/paper_gpu.py [--json results.json] [--images-per-benchmark 256] [--smoke]

Measures on this machine (GPU when present) each kind of work a cold `dvc repro` of the paper
configuration does, through the code the stages run (``s3.analysis.throughput``), and projects the
run stage by stage (``s3.analysis.paper_projection``): feature extraction per benchmark on
synthetic JPEGs of that benchmark's typical sizes (``s3.analysis.synthetic_images`` states the
size assumptions), the text side (texts per second; space building for each benchmark's class
count and the shipped bank's synonym counts), scoring of every evaluated method at each
benchmark's N and C, segmentation at params.yaml's settings on synthetic VOC-sized images, the
geometry study, the fixed start-up every stage pays, and the test-time views (64 per image; a
PROXY until the TS^3 views path exists: random resized crops + flips of the decoded image on the
device). ViT-B/16 with random weights costs exactly what the pretrained model costs.

Goals (issue 13, one H100/H200): the paper run under 10 minutes; with the test-time variant under
45 minutes. The script prints every measurement with its meaning, the projection table and the
verdicts, and writes all of it as JSON. ``--smoke`` runs the same code at toy sizes on the CPU
with the demo architecture (tests); its numbers mean nothing. A benchmark: it measures and
reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from s3.analysis import paper_projection as projection
from s3.analysis import throughput as measure
from s3.analysis.geometry import WorldConfig, sweep
from s3.analysis.synthetic_images import IMAGE_SIZES, sample_sizes, write_jpegs
from s3.core.spaces import SpaceConfig
from s3.data.benchmarks import BENCHMARKS
from s3.encoders.images import pixel_pipeline
from s3.encoders.models import ModelSpec, load_model
from s3.segmentation.datasets import SEG_BENCHMARKS
from s3.segmentation.slide import SlideConfig

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {"arch": "S3-Demo-Tiny", "device": "cpu", "images_per_benchmark": 3, "repeat": 2, "texts": 32,
         "scoring_images": 48, "simplex_images": 8, "seg_images": 1, "view_images": 2, "views": 4,
         "batch_size": 4, "workers": 0, "start_repeats": 0}
# The smoke run measures two benchmarks and two segmentation sets; the others show as not measured.
SMOKE_BENCHMARKS, SMOKE_SEGMENTATION = ["eurosat", "dtd"], ["voc21", "voc20"]


def _n(value: float) -> str:
    """A rate for people: thousands separated, three significant digits below 100."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _space_config(params: dict) -> SpaceConfig:
    return SpaceConfig(**{k: v for k, v in params["spaces"].items() if k != "templates"})


def measure_all(args: argparse.Namespace, params: dict, work: Path) -> tuple[dict, dict]:
    """Every rate the projection needs (``paper_projection``'s ``measured``) and the details behind them."""
    loaded = load_model(ModelSpec(arch=args.arch, pretrained="none", device=args.device, precision="amp"))
    device = loaded.device
    dim = int(loaded.model.text_projection.shape[1])
    features = params["features"]
    batch, workers = args.batch_size or features["batch_size"], args.workers
    details: dict = {"pixel_pipeline": pixel_pipeline(loaded, features["decode"], features["compile"]),
                     "batch_size": batch, "workers": workers}
    measured: dict = {}
    log = lambda message: print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)  # noqa: E731

    measured.update({"stage_start_s": None, "kernel_start_s": None})
    if args.start_repeats:
        log("stage start-up (fresh process: imports, CUDA, model on the device; papermill kernel)")
        measured.update({"stage_start_s": measure.stage_start_seconds(args.arch, str(device), args.start_repeats)
                         ["process_s"], "kernel_start_s": measure.kernel_start_seconds(args.start_repeats)})

    log(f"model only, batch {batch}")
    details["model_only"] = measure.model_only_rate(loaded, batch, batches=args.model_batches,
                                                    channels_last=details["pixel_pipeline"]["channels_last"])
    details["features"] = {}
    measured["features"] = {}
    paths_by_mix: dict[str, list[Path]] = {}
    for benchmark in args.benchmarks:
        mix_name = "imagenet" if benchmark == "imagenet_v2" else benchmark  # v2 follows ImageNet's sizes
        if mix_name not in paths_by_mix:
            sizes = sample_sizes(IMAGE_SIZES[mix_name], args.images_per_benchmark, seed=len(paths_by_mix))
            paths_by_mix[mix_name] = write_jpegs(work / mix_name, sizes, prefix=mix_name)
            rate = measure.pipeline_rate(loaded, paths_by_mix[mix_name], batch, workers, features["decode"],
                                         features["compile"], repeat=args.repeat, warmup=len(paths_by_mix) == 1)
            rate["mean_kb"] = sum(p.stat().st_size for p in paths_by_mix[mix_name]) / len(sizes) / 1024
            rate["mean_pixels"] = sum(w * h for w, h in sizes) / len(sizes)
            details["features"][mix_name] = {**rate, "sizes_assumed": IMAGE_SIZES[mix_name].note}
            log(f"features {mix_name}: {_n(rate['images_per_s'])} images/s (fixed {rate['fixed_s']:.2f} s)")
        measured["features"][benchmark] = details["features"][mix_name]

    log(f"text encoder, {args.texts} texts")
    measured["text_per_s"] = measure.text_rate(loaded, args.texts, params["text"]["batch_size"])

    config = _space_config(params)
    bank = ROOT / params["synonyms"]["bank_dir"]
    measured["spaces_build_s"], measured["scoring_s"] = {}, {}
    methods = params["evaluate"]["methods"]
    for benchmark in args.benchmarks:
        info = BENCHMARKS[benchmark]
        counts = projection.synonym_counts(bank / f"{info.bank}.jsonl", info.num_classes, benchmark)
        text, measured["spaces_build_s"][benchmark] = measure.synthetic_text_side(counts, dim, config)
        n = min(info.num_test, args.scoring_images or info.num_test)
        scored = measure.scoring_seconds(text, n, methods, device, dim, {"s3_point_to_simplex": args.simplex_images})
        scale = info.num_test / n  # linear in N (only when --scoring-images caps N)
        measured["scoring_s"][benchmark] = {m: {**v, "seconds": v["seconds"] * scale, "scaled": float(
            v["scaled"] or n < info.num_test)} for m, v in scored.items()}
        log(f"spaces + scoring {benchmark}: build {measured['spaces_build_s'][benchmark]:.2f} s, scoring "
            f"{sum(v['seconds'] for v in measured['scoring_s'][benchmark].values()):.2f} s")

    segmentation = params["segmentation"]
    slide_fields = {k: segmentation[k] for k in ("variant", "naclip_sigma", "short_side", "window", "stride",
                                                 "bg_threshold", "batch_size")}
    measured["segmentation"] = {}
    seg_files: dict[str, tuple] = {}
    for dataset in args.segmentation:
        info = SEG_BENCHMARKS[dataset]
        counts = projection.synonym_counts(bank / f"{info.bank}.jsonl", len(info.all_classes))
        counts = counts if info.with_background else counts[1:]
        text, measured["spaces_build_s"][dataset] = measure.synthetic_text_side(counts, dim, config,
                                                                                background=info.with_background)
        mix = "voc" if dataset.startswith("voc") else "context"
        if mix not in seg_files:
            sizes = sample_sizes(IMAGE_SIZES[mix], args.seg_images, seed=99 + len(seg_files))
            seg_files[mix] = measure.write_seg_images(work / f"seg-{mix}", sizes, len(info.all_classes))
        slide = SlideConfig(**slide_fields, background=segmentation["background"] if info.with_background else "none")
        measured["segmentation"][dataset] = measure.segmentation_rate(loaded, *seg_files[mix], text,
                                                                      segmentation["methods"], slide,
                                                                      with_background=info.with_background)
        log(f"segmentation {dataset}: {measured['segmentation'][dataset]['images_per_s']:.2f} images/s")

    geometry = params["geometry"]
    start = time.perf_counter()
    base = WorldConfig(**geometry["world"])
    for parameter in ("sigma_lex", "outlier_rate"):
        sweep(base, config, parameter, geometry[f"{parameter}_values"], geometry["repeats"], geometry["seed"])
    measured["geometry_s"] = time.perf_counter() - start
    log(f"geometry study: {measured['geometry_s']:.1f} s")

    view_paths = paths_by_mix.get("imagenet") or next(iter(paths_by_mix.values()))
    views = measure.views_rate(loaded, view_paths[: args.view_images], args.views, batch)
    measured["views_per_s"] = views["views_per_s"]
    details["views"] = views
    log(f"test-time views (PROXY): {_n(views['views_per_s'])} views/s")
    return measured, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images-per-benchmark", type=int, default=256, help="distinct JPEGs per size mix")
    parser.add_argument("--repeat", type=int, default=8, help="the long run lists the JPEGs this many times")
    parser.add_argument("--batch-size", type=int, default=0, help="default: features.batch_size")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--model-batches", type=int, default=8)
    parser.add_argument("--texts", type=int, default=8192)
    parser.add_argument("--scoring-images", type=int, default=0, help="cap N when scoring (scaled linearly); 0: full N")
    parser.add_argument("--simplex-images", type=int, default=1024, help="point-to-simplex is scored on this many")
    parser.add_argument("--seg-images", type=int, default=12)
    parser.add_argument("--view-images", type=int, default=16)
    parser.add_argument("--views", type=int, default=projection.TEST_TIME_VIEWS)
    parser.add_argument("--start-repeats", type=int, default=2, help="fresh processes timed (0: not measured)")
    measure.add_output_options(parser)
    return measure.run_benchmark(parser.parse_args(argv), SMOKE, _measure)


def _measure(args: argparse.Namespace) -> int:
    params = yaml.safe_load(args.params.read_text())
    args.benchmarks = SMOKE_BENCHMARKS if args.smoke else params["benchmarks"]
    args.segmentation = SMOKE_SEGMENTATION if args.smoke else params["segmentation"]["datasets"]
    if args.smoke:  # the demo's segmentation windows and geometry world, so the smoke run takes seconds
        demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
        params["segmentation"].update({k: demo["segmentation"][k] for k in ("short_side", "window", "stride")})
        params["geometry"].update({**demo["geometry"], "world": {**params["geometry"]["world"], "num_classes": 4,
                                                                 "images_per_class": 4},
                                   "sigma_lex_values": [0.5], "outlier_rate_values": [0.1]})
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())

    device_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    header = (f"# Whole-paper projection: {args.arch} (random weights), {device_name}, torch {torch.__version__}, "
              f"{os.cpu_count()} CPU cores, {platform.python_version()}" + ("  [SMOKE: toy sizes, meaningless]"
                                                                           if args.smoke else ""))
    print(header, flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        measured, details = measure_all(args, params, Path(folder))
    stages = projection.paper_stages(params, dvc, ROOT / params["synonyms"]["bank_dir"], measured)
    stages += projection.test_time_stages(params, measured)
    missing_start = projection.unmeasured_start(measured)
    totals = projection.totals(stages, missing_start)

    model = details["model_only"]["images_per_s"]
    print(f"\n{header}\n")
    print(f"Pixel pipeline: {details['pixel_pipeline']}; batch {details['batch_size']}, {details['workers']} workers")
    print(f"Model only (image tower on random pixels): {_n(model)} images/s\n")
    print("| size mix | mean pixels | mean KB | pipeline images/s | / model only | fixed s | sizes assumed |")
    print("|---|---|---|---|---|---|---|")
    for name, rate in details["features"].items():
        print(f"| {name} | {rate['mean_pixels']:,.0f} | {rate['mean_kb']:.0f} | {_n(rate['images_per_s'])} | "
              f"{rate['images_per_s'] / model:.2f} | {rate['fixed_s']:.2f} | {rate['sizes_assumed']} |")
    start, kernel = measured["stage_start_s"], measured["kernel_start_s"]
    print(f"\nStage start-up: process + imports + model on the device "
          f"{'NOT measured' if start is None else f'{start:.1f} s'}; papermill kernel "
          f"{'NOT measured (papermill missing or --start-repeats 0)' if kernel is None else f'{kernel:.1f} s'}")
    print(f"Text encoder: {_n(measured['text_per_s'])} texts/s; geometry study {measured['geometry_s']:.1f} s")
    print(f"Test-time views (PROXY): {_n(measured['views_per_s'])} views/s ({details['views']['views']} views per "
          "image, random resized crop + flip on the device)\n")
    print(projection.format_table(stages, missing_start))
    print(f"\nMeasured in {time.perf_counter() - started:.0f} s.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header, "smoke": args.smoke, "measured": measured,
                                         "details": details, "stages": projection.as_records(stages),
                                         "totals": totals}, indent=1, sort_keys=True, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
