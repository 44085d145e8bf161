"""Feature-extraction throughput: the whole features pipeline against the model alone.

    python bench/extraction.py [--arch ViT-B-16] [--images 2048] [--repeat 4] [--batch-size 256]
                               [--workers 8] [--decodes cpu,gpu] [--compile yes|no|only] [--json out.json] [--smoke]

The pipeline is measured through the features stage's own call (``cached_image_features`` with an
empty cache: read, decode, preprocess, forward, normalise, shards, cache file) on synthetic JPEGs
of ImageNet's typical sizes (``s3.analysis.synthetic_images``). Its per-image rate comes from two
list lengths, so DataLoader start-up is reported apart (``fixed``). The model alone is the image
tower on random pixels at the same batch size, precision (bfloat16 autocast on CUDA), memory
layout and compilation. Measured for each decode path (``features.decode``: ``cpu`` = PIL in
DataLoader workers, ``gpu`` = nvJPEG + tensor preprocessing on the GPU) and with ``torch.compile``
(``--compile yes``: eager and compiled; ``no``; ``only``: compiled alone), the compile time being
reported as the first call. Compiled runs use the GPU path's layout (channels-last) and decode.

Goal (issue 13): pipeline >= 0.9 x model only for ViT-B/16 at batch 256 in bfloat16 on a GPU.
Random weights (``pretrained: none``) cost exactly what pretrained ones do. ``--smoke`` runs the
same code at toy sizes on the CPU with the demo architecture (tests). A benchmark: it measures
and reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

from s3.analysis.synthetic_images import IMAGE_SIZES, sample_sizes, write_jpegs
from s3.analysis.throughput import add_output_options, model_only_rate, pipeline_rate, run_benchmark
from s3.encoders.gpu_decode import nvjpeg_problem
from s3.encoders.images import pixel_pipeline, resolve_decode
from s3.encoders.models import ModelSpec, load_model

GOAL = 0.9
SMOKE = {"arch": "S3-Demo-Tiny", "device": "cpu", "images": 6, "repeat": 2, "batch_size": 4, "workers": 0,
         "compile": "no", "model_batches": 2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="amp")
    parser.add_argument("--images", type=int, default=2048, help="distinct JPEGs (ImageNet's size mix)")
    parser.add_argument("--repeat", type=int, default=4, help="the long run lists the JPEGs this many times")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--decodes", default="cpu,gpu", help="features.decode values to measure")
    parser.add_argument("--compile", choices=("yes", "no", "only"), default="yes",
                        help="torch.compile runs (CUDA only): both eager and compiled, none, or compiled alone")
    parser.add_argument("--model-batches", type=int, default=16)
    add_output_options(parser)
    return run_benchmark(parser.parse_args(argv), SMOKE, _measure)


def _measure(args: argparse.Namespace) -> int:
    loaded = load_model(ModelSpec(arch=args.arch, pretrained="none", device=args.device, precision=args.precision))
    cuda = loaded.device.type == "cuda"
    device = torch.cuda.get_device_name(loaded.device) if cuda else "CPU"
    header = (f"# Extraction: {args.arch}, {device}, torch {torch.__version__}, precision {args.precision}, batch "
              f"{args.batch_size}, {args.workers} workers, {args.images} JPEGs x {args.repeat} (ImageNet size mix)"
              + ("  [SMOKE: toy sizes, meaningless]" if args.smoke else ""))
    print(header, flush=True)
    rows, results = [], {"header": header, "smoke": args.smoke, "goal": GOAL, "model_only": {}, "pipeline": {}}
    with tempfile.TemporaryDirectory() as folder:
        sizes = sample_sizes(IMAGE_SIZES["imagenet"], args.images, seed=0)
        start = time.perf_counter()
        paths = write_jpegs(folder, sizes)
        kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        print(f"  wrote {len(paths)} JPEGs (mean {kb:.0f} KB) in {time.perf_counter() - start:.1f} s", flush=True)
        compiles = {"yes": [False, True], "no": [False], "only": [True]}[args.compile] if cuda else [False]
        for compile in compiles:
            for channels_last in ([False, True] if cuda else [False]):
                if compile and not channels_last:
                    continue  # one compiled layout: the GPU path's (each layout would compile again)
                key = f"compile={compile},channels_last={channels_last}"
                results["model_only"][key] = model_only_rate(loaded, args.batch_size, args.model_batches, compile,
                                                             channels_last)
                print(f"  model only {key}: {results['model_only'][key]['images_per_s']:,.0f} images/s", flush=True)
            for decode in args.decodes.split(","):
                problem = nvjpeg_problem(loaded.device) if decode == "gpu" and cuda else None
                if problem:
                    print(f"  pipeline decode=gpu: skipped, nvJPEG unusable here ({problem})", flush=True)
                    results["pipeline"][f"decode=gpu,compile={compile}"] = {"skipped": problem}
                    continue
                if compile and resolve_decode(decode, loaded.device) != "gpu":
                    continue
                key = f"decode={decode},compile={compile}"
                rate = pipeline_rate(loaded, paths, args.batch_size, args.workers, decode, compile, args.repeat)
                rate["pixel_pipeline"] = pixel_pipeline(loaded, decode, compile)
                layout = rate["pixel_pipeline"]["channels_last"]
                model = results["model_only"][f"compile={compile},channels_last={layout}"]["images_per_s"]
                rate["vs_model_only"] = rate["images_per_s"] / model
                results["pipeline"][key] = rate
                print(f"  pipeline {key}: {rate['images_per_s']:,.0f} images/s ({rate['vs_model_only']:.2f} of "
                      "model only)", flush=True)
                rows.append((decode, rate["pixel_pipeline"]["decoder"], compile, rate, model))

    print(f"\n{header}\n")
    print("| measurement | images/s | / model only | note |\n|---|---|---|---|")
    for key, rate in results["model_only"].items():
        note = f"first call {rate['first_call_s']:.1f} s" + (" (compilation)" if "compile=True" in key else "")
        print(f"| model only, {key} | {rate['images_per_s']:,.0f} | 1.00 | {note} |")
    for decode, decoder, compile, rate, model in rows:
        verdict = "meets" if rate["vs_model_only"] >= GOAL else "BELOW"
        print(f"| pipeline, decode={decode} ({decoder}), compile={compile} | {rate['images_per_s']:,.0f} | "
              f"{rate['vs_model_only']:.2f} ({verdict} the {GOAL} goal) | whole run {rate['whole_run_images_per_s']:,.0f}"
              f"/s incl. {rate['fixed_s']:.2f} s fixed start-up per call |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
