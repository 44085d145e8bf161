"""TS^3 adaptation cost per image against plain S^3 scoring, at ImageNet size, on cached views.

    python bench/tta.py [--classes 1000] [--views 64] [--dim 512] [--images 64] [--batch 32]
                        [--centers 4] [--device cpu|cuda|all] [--view-images 32] [--view-workers 8]
                        [--json bench-tta.json] [--no-adaptation] [--smoke]

Synthetic unit vectors: C classes with 1..2*centers-1 local centers each (mean ``--centers``), sharing
one direction as CLIP embeddings do; V views per image. Measured (best of ``--repeats`` after a warm-up):

* ``s3``: point-to-local-center scores of the original views (what the evaluate stage does per image);
* each test-time method (``TTA_METHODS``): selection on all V views + adaptation + final scoring.

View generation (``views``, measured first): the V views per image of ``s3/tta/views.py`` from
synthetic JPEGs of ImageNet's typical sizes, without the model, as views/s, for each augmenter
(``tta.augment_on``): ``cpu`` (PIL in ``--view-workers`` DataLoader workers) and ``device``
(decode + ``TensorViews`` on each device: nvJPEG and the GPU on CUDA; on the CPU device the tensor
ops run in the main process), with and without AugMix (the fine-grained sets / the ImageNet
family). The forward passes of the image tower on the views are NOT measured here (the extraction
bench measures the tower's images/s); the projection over the 15 benchmarks covers adaptation only
and says so. ``--smoke``: toy sizes on the CPU (what the tests run). This is a benchmark: it
measures and reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from functools import partial

import numpy as np
import torch

from s3.analysis.synthetic_images import IMAGE_SIZES, sample_sizes, write_jpegs
from s3.core.scoring import GroupedItems, StackedSpaces, point_to_local_center
from s3.data.benchmarks import BENCHMARKS, ImageList
from s3.encoders.gpu_decode import gpu_pixel_batches
from s3.encoders.images import pixel_batches
from s3.tta.adapt import TTA_METHODS, Prototypes, TTAConfig, _single, run_tta
from s3.tta.gpu_views import TensorViews
from s3.tta.views import ViewRecipe, make_views


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


def _drain(batches, device: torch.device) -> int:
    count = sum(int(b.pixels.shape[0] * b.pixels.shape[1]) for b in batches)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return count


def view_rates(args, devices: list[str]) -> dict:
    """Views/s of each augmenter on synthetic JPEGs (ViT-B/16's preprocessing, 224 px), model excluded."""
    import open_clip

    preprocess = open_clip.image_transform(224, is_train=False)  # ViT-B/16's eval preprocessing
    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(folder, sample_sizes(IMAGE_SIZES["imagenet"], args.view_images, seed=0))
        images = ImageList("bench", ["x"], paths, [0] * len(paths))
        positions = list(range(len(paths)))
        rows = []
        for augmix in (False, True):
            recipe = ViewRecipe(n_views=args.views, seed=0, augmix=augmix)
            runs = [("cpu", torch.device("cpu"), lambda: pixel_batches(
                images, positions, partial(make_views, preprocess=preprocess, recipe=recipe), args.view_batch,
                args.view_workers, with_position=True))]
            for d in devices:
                device = torch.device(d)
                augment = TensorViews(preprocess, args.views, 0, augmix)
                runs.append(("device", device, lambda device=device, augment=augment: gpu_pixel_batches(
                    images, positions, preprocess, args.view_batch, args.view_workers, device, channels_last=False,
                    transform=augment)))
            for augment_on, device, batches in runs:
                _drain(gpu_pixel_batches(images, positions[:args.view_batch], preprocess, args.view_batch, 0, device)
                       if augment_on == "device" else iter(()), device)  # warm-up: CUDA context, nvJPEG
                start = time.perf_counter()
                count = _drain(batches(), device)
                seconds = time.perf_counter() - start
                rows.append({"augment_on": augment_on, "device": str(device), "augmix": augmix, "views": count,
                             "seconds": seconds, "views_per_s": count / seconds,
                             "workers": args.view_workers})
                where = (f"PIL in {args.view_workers} CPU workers" if augment_on == "cpu"
                         else f"tensor ops on {device}")
                print(f"  views, augment_on={augment_on:6s} ({where}), AugMix {'on ' if augmix else 'off'}: "
                      f"{count / seconds:10,.0f} views/s ({count} views in {seconds:.2f} s)")
    return {"images": len(paths), "views_per_image": args.views, "batch_images": args.view_batch,
            "cpus": os.cpu_count(), "rates": rows}


def main(argv: list[str] | None = None) -> int:
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
    parser.add_argument("--view-images", type=int, default=32, help="JPEGs whose views are generated (0: skip)")
    parser.add_argument("--view-batch", type=int, default=4, help="images per view batch (tta.views_batch_size)")
    parser.add_argument("--view-workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--view-devices", default=None, help="devices of the tensor augmenter (default: --device)")
    parser.add_argument("--json", "--out", dest="out", default=None)
    parser.add_argument("--no-adaptation", action="store_true", help="time the view generation only")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    args = parser.parse_args(argv)
    if args.smoke:
        args.classes, args.views, args.dim, args.images, args.batch = 20, 4, 32, 4, 4
        args.view_images, args.view_workers, args.repeats, args.device = 4, 1, 1, "cpu"
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    view_devices = devices if args.view_devices is None else args.view_devices.split(",")
    view_devices = [d for d in view_devices if d != "cuda" or torch.cuda.is_available()]
    total_images = sum(b.num_test for b in BENCHMARKS.values())
    report = {"setting": vars(args), "smoke": args.smoke, "results": []}

    def write() -> None:  # after each part: a step cut by its time limit keeps what it measured
        if args.out:
            with open(args.out, "w") as f:
                json.dump(report, f, indent=1)

    if args.view_images:
        print(f"view generation: {args.view_images} JPEGs x {args.views} views, ViT-B/16 preprocessing (224 px), "
              "model excluded" + ("  [SMOKE: toy sizes, meaningless]" if args.smoke else ""))
        report["views"] = view_rates(args, view_devices)
        write()
    for d in [] if args.no_adaptation else devices:
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
        write()
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
