"""Feature-extraction throughput: the full pipeline (JPEG decode, preprocess, forward) against the
model alone on random tensors, same model, batch size and precision.

    python bench/extraction.py [--arch ViT-B-16] [--images 4096] [--batch-size 256] [--workers 8]

Random weights (``pretrained: none``) cost exactly what pretrained ones do. Images are random
JPEGs of ImageNet's typical size written to a temporary folder. The goal on a GPU is a pipeline
rate of at least 80 % of the model-only rate. This is a benchmark: it measures and reports.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from s3.data.benchmarks import ImageList
from s3.encoders.images import extract_image_features
from s3.encoders.models import ModelSpec, load_model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def write_jpegs(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    paths = []
    for i in range(count):
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(np.roll(base, i, axis=1)).save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="amp")
    parser.add_argument("--size", default="500x375", help="JPEG width x height")
    args = parser.parse_args()

    loaded = load_model(ModelSpec(arch=args.arch, pretrained="none", device=args.device, precision=args.precision))
    side = loaded.model.visual.image_size
    side = side[0] if isinstance(side, (tuple, list)) else side
    with tempfile.TemporaryDirectory() as tmp:
        width, height = (int(v) for v in args.size.split("x"))
        paths = write_jpegs(Path(tmp), args.images, (width, height))
        images = ImageList("bench", ["x"], paths, [0] * len(paths))
        extract_image_features(loaded, ImageList("bench", ["x"], paths[: args.batch_size], [0] * args.batch_size),
                               args.batch_size, args.workers)  # warm-up (workers, kernels)
        synchronize(loaded.device)
        start = time.perf_counter()
        extract_image_features(loaded, images, args.batch_size, args.workers)
        synchronize(loaded.device)
        pipeline = len(paths) / (time.perf_counter() - start)

    batch = torch.randn(args.batch_size, 3, side, side, device=loaded.device)
    with torch.no_grad(), loaded.autocast():
        loaded.model.encode_image(batch)
        synchronize(loaded.device)
        start = time.perf_counter()
        steps = max(1, args.images // args.batch_size)
        for _ in range(steps):
            loaded.model.encode_image(batch)
        synchronize(loaded.device)
        model_only = steps * args.batch_size / (time.perf_counter() - start)

    device = torch.cuda.get_device_name(0) if loaded.device.type == "cuda" else "CPU"
    print(f"# {args.arch}, {device}, precision {args.precision}, batch {args.batch_size}, "
          f"{args.workers} workers, {args.images} JPEGs of {args.size}")
    print("| measurement | images/s |\n|---|---|")
    print(f"| full pipeline (decode, preprocess, forward) | {pipeline:.1f} |")
    print(f"| model only (random tensors) | {model_only:.1f} |")
    print(f"| pipeline / model only | {pipeline / model_only:.0%} |")


if __name__ == "__main__":
    main()
