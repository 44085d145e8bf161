"""Sliding-window segmentation throughput at the training-free baselines' settings.

    python bench/segmentation.py [--arch ViT-B-16] [--images 24] [--variant naclip] [--classes 21]
                                 [--json out.json] [--smoke]

Random weights (same cost as pretrained), synthetic JPEGs of PASCAL VOC's sizes with random masks,
params.yaml's window settings (short side 336, 224 windows, stride 112), C classes with synthetic
synonym spaces of the shipped bank's sizes. Reports images per second of the dense features alone
(resize, windows, ViT with the last-block variant) and of the whole inference as the segment stage
runs it (``evaluate_segmentation``: decode, dense features, every listed method, window averaging,
upsampling, confusion matrices), and of re-scoring from a filled window cache (what a ``spaces``
change costs: no forward pass). ``--smoke``: toy sizes on the CPU (tests). A benchmark: it
measures and reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from PIL import Image

from s3.analysis.paper_projection import synonym_counts
from s3.analysis.synthetic_images import IMAGE_SIZES, sample_sizes
from s3.analysis.throughput import (
    add_output_options,
    run_benchmark,
    segmentation_rate,
    synchronize,
    synthetic_text_side,
    write_seg_images,
)
from s3.core.spaces import SpaceConfig
from s3.encoders.cache import EmbeddingCache
from s3.encoders.models import ModelSpec, load_model
from s3.segmentation.slide import SlideConfig, normalization, prepare_image, window_features

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {"arch": "S3-Demo-Tiny", "device": "cpu", "images": 2, "short_side": 64, "window": 32, "stride": 16}


def main(argv: list[str] | None = None) -> int:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    seg = params["segmentation"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--variant", default=seg["variant"])
    parser.add_argument("--classes", type=int, default=21, help="21 (VOC21) or 60 (Context60)")
    parser.add_argument("--methods", default=",".join(seg["methods"]))
    parser.add_argument("--short-side", type=int, default=seg["short_side"])
    parser.add_argument("--window", type=int, default=seg["window"])
    parser.add_argument("--stride", type=int, default=seg["stride"])
    add_output_options(parser)
    return run_benchmark(parser.parse_args(argv), SMOKE, _measure)


def _measure(args: argparse.Namespace) -> int:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    seg = params["segmentation"]

    loaded = load_model(ModelSpec(arch=args.arch, pretrained="none", device=args.device, precision="amp"))
    config = SlideConfig(variant=args.variant, naclip_sigma=seg["naclip_sigma"], short_side=args.short_side,
                         window=args.window, stride=args.stride, batch_size=seg["batch_size"])
    bank = "pascal_voc" if args.classes <= 21 else "pascal_context"
    counts = synonym_counts(ROOT / params["synonyms"]["bank_dir"] / f"{bank}.jsonl", args.classes)
    dim = int(loaded.model.text_projection.shape[1])
    space_config = SpaceConfig(**{k: v for k, v in params["spaces"].items() if k != "templates"})
    text, _ = synthetic_text_side(counts, dim, space_config, background=True)
    methods = args.methods.split(",")
    with tempfile.TemporaryDirectory() as folder:
        images, masks = write_seg_images(Path(folder), sample_sizes(IMAGE_SIZES["voc"], args.images), args.classes)
        normalize = normalization(loaded.preprocess)
        pixels = [prepare_image(Image.open(p), config.short_side, normalize) for p in images]
        window_features(loaded, pixels[0], config)  # warm-up
        synchronize(loaded.device)
        start, windows = time.perf_counter(), 0
        for image in pixels:
            windows += len(window_features(loaded, image, config)[0])
        synchronize(loaded.device)
        dense = len(pixels) / (time.perf_counter() - start)
        whole = segmentation_rate(loaded, images, masks, text, methods, config)
        rescore = segmentation_rate(loaded, images, masks, text, methods, config,
                                    cache=EmbeddingCache(Path(folder) / "cache", "window cache"))

    device = torch.cuda.get_device_name(0) if loaded.device.type == "cuda" else "CPU"
    header = (f"# Segmentation: {args.arch} ({args.variant}), {device}, {args.images} VOC-sized images, short side "
              f"{config.short_side}, window {config.window}, stride {config.stride}, {windows / len(pixels):.1f} windows "
              f"per image, {args.classes} classes, methods {methods}" + ("  [SMOKE]" if args.smoke else ""))
    print(f"{header}\n")
    print("| measurement | images/s | windows/s |\n|---|---|---|")
    print(f"| dense features (windows + ViT, image already resized) | {dense:.2f} | {dense * windows / len(pixels):.1f} |")
    print(f"| whole inference (evaluate_segmentation: decode, features, {len(methods)} methods, averaging) | "
          f"{whole['images_per_s']:.2f} | {whole['images_per_s'] * windows / len(pixels):.1f} |")
    print(f"| re-scoring from the window cache (a spaces change: read shards, {len(methods)} methods, averaging) | "
          f"{rescore['images_per_s']:.2f} | {rescore['images_per_s'] * windows / len(pixels):.1f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header, "smoke": args.smoke, "dense_images_per_s": dense,
                                         "whole_images_per_s": whole["images_per_s"],
                                         "rescore_images_per_s": rescore["images_per_s"],
                                         "windows_per_image": windows / len(pixels)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
