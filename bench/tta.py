"""TS^3 adaptation cost per image against plain S^3 scoring, at ImageNet size, on cached views.

    python bench/tta.py [--classes 1000] [--views 64] [--dim 512] [--images 64] [--batch 32]
                        [--centers 4] [--device cpu|cuda|all] [--out bench-tta.json]

Synthetic unit vectors: C classes with 1..2*centers-1 local centers each (mean ``--centers``), sharing
one direction as CLIP embeddings do; V views per image. Measured (best of ``--repeats`` after a warm-up):

* ``s3``: point-to-local-center scores of the original views (what the evaluate stage does per image);
* each test-time method (``TTA_METHODS``): selection on all V views + adaptation + final scoring.

The view encoding (V forward passes of the image tower per image) is NOT measured here; the
projection over the 15 benchmarks covers adaptation only and says so. This is a benchmark: it
measures and reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from s3.core.scoring import GroupedItems, StackedSpaces, point_to_local_center
from s3.data.benchmarks import BENCHMARKS
from s3.tta.adapt import TTA_METHODS, Prototypes, TTAConfig, _single, run_tta


def synthetic(classes: int, dim: int, centers: int, images: int, views: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    common = rng.normal(size=dim)
    common *= 3 / np.linalg.norm(common)
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    means = common + rng.normal(size=(classes, dim))
    per_class = [unit(means[c] + 0.5 * rng.normal(size=(int(rng.integers(1, 2 * centers)), dim)))
                 for c in range(classes)]
    local = GroupedItems.from_lists(per_class)
    labels = rng.integers(0, classes, size=images)
    originals = means[labels] + rng.normal(size=(images, dim))
    v = unit(originals[:, None] + 0.5 * rng.normal(size=(images, views, dim)))
    v[:, 0] = unit(originals)
    return local, unit(means), torch.from_numpy(v)


def best_time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def run(device: torch.device, args) -> dict:
    local, means, views = synthetic(args.classes, args.dim, args.centers, args.images, args.views)
    config = TTAConfig(steps=args.steps, selection=args.selection)
    protos = {"local": Prototypes(local), "single": Prototypes(_single(torch.from_numpy(means)))}
    views = views.to(device)
    stacked = StackedSpaces(local, torch.from_numpy(means), local, local).to(device)  # only local centers are used
    originals = views[:, 0].contiguous()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows = {"s3": best_time(lambda: point_to_local_center(originals, stacked), args.repeats, device) / args.images}
    peaks = {}
    for method, (base, mode) in TTA_METHODS.items():
        p = protos["local" if base.startswith("s3_") else "single"]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        rows[method] = best_time(lambda: run_tta(views, p, config, mode, args.batch, device), args.repeats,
                                 device) / args.images
        if device.type == "cuda":
            peaks[method] = torch.cuda.max_memory_allocated(device) / 2**20
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or 'x86'}, {torch.get_num_threads()} threads)"
    return {"device": name, "items": int(local.items.shape[0]), "seconds_per_image": rows, "peak_mib": peaks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--views", type=int, default=64)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--centers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--selection", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="all")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    total_images = sum(b.num_test for b in BENCHMARKS.values())
    report = {"setting": vars(args), "results": []}
    for d in devices:
        result = run(torch.device(d), args)
        report["results"].append(result)
        print(f"\n{result['device']}: C={args.classes}, V={args.views}, D={args.dim}, "
              f"{result['items']} local centers, {args.images} images, batch {args.batch}")
        s3 = result["seconds_per_image"]["s3"]
        for method, seconds in result["seconds_per_image"].items():
            peak = result["peak_mib"].get(method)
            print(f"  {method:22s} {1000 * seconds:9.3f} ms/image  x{seconds / s3:8.1f} vs s3"
                  + (f"  peak {peak:8.1f} MiB" if peak is not None else ""))
        ts3 = result["seconds_per_image"]["ts3"]
        print(f"  projection, adaptation only (view encoding not measured): TS^3 on all 15 benchmarks "
              f"({total_images} test images, the protocol's counts) = {total_images * ts3 / 3600:.2f} h on this device "
              f"(C = {args.classes} for every set: an upper bound for the sets with fewer classes)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
