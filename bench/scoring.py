"""Scoring benchmark: the cost of every point-to-space metric at ImageNet scale, on the CPU.

    python bench/scoring.py [--images 50000] [--classes 1000] [--synonyms 10] [--dim 512] [--device cpu|cuda]

Synthetic unit vectors (s3.analysis.geometry's world: 3 visual modes per class, so spaces have several
local centers). Times are the best of ``--repeats`` runs after a warm-up. Ratios:

* ``vs floor``: against one matrix product of the images with all stacked local centers, the
  least work any point-to-local-center implementation must do;
* ``vs zero-shot``: against the plain zero-shot product images @ classifier (N x C).

Point-to-simplex is measured on ``--simplex-images`` images (default: all N) and scaled linearly
to N when fewer (it is linear in N, but its per-call setup, the per-support inverse tables, is
then scaled too); the table says so. Its exactness is reported as the largest deviation from a
float64 reference (scipy NNLS in the ambient space, per simplex, max over each class's simplices)
on ``--reference-images`` images. This is a benchmark: it measures and reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from s3.analysis.geometry import WorldConfig, make_world
from s3.core.scoring import StackedSpaces, score
from s3.core.spaces import SpaceConfig, build_spaces


def best_time(fn, repeats: int, device: torch.device = torch.device("cpu"), warmup: bool = True) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if warmup:
        fn()
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def reference_deviation(images: np.ndarray, spaces, got: np.ndarray) -> float:
    """Largest |got - float64 NNLS reference| over ``images`` x classes (point-to-simplex)."""
    from scipy.optimize import nnls

    worst = 0.0
    for c, space in enumerate(spaces):
        for i, x in enumerate(images.astype(np.float64)):
            best = -np.inf
            for simplex in space.simplices:
                verts = space.embeddings[list(simplex)].astype(np.float64)
                prod = verts @ x
                if prod.max() <= 0:
                    best = max(best, prod.max())
                    continue
                coef, _ = nnls(verts.T, x)
                point = verts.T @ coef
                best = max(best, float(x @ point / np.linalg.norm(point)))
            worst = max(worst, abs(best - float(got[i, c])))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--synonyms", type=int, default=10)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--simplex-images", type=int, default=None, help="default: all --images")
    parser.add_argument("--reference-images", type=int, default=20,
                        help="images checked against the float64 NNLS reference (0: skip)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the spaces are built on the CPU either way)")
    parser.add_argument("--radius-rule", default="largest_gap", help="spaces.radius_rule")
    parser.add_argument("--mst-quantile", type=float, default=0.9)
    parser.add_argument("--max-dimension", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    world = WorldConfig(num_classes=args.classes, dim=args.dim, synonyms=args.synonyms,
                        images_per_class=-(-args.images // args.classes), sigma_lex=0.5, outlier_rate=0.1)
    synonyms, images, _ = make_world(world, seed=0)
    device = torch.device(args.device)
    images = torch.from_numpy(images[: args.images]).to(device)
    config = SpaceConfig(radius_rule=args.radius_rule, mst_quantile=args.mst_quantile, max_dimension=args.max_dimension)

    start = time.perf_counter()
    spaces = build_spaces(synonyms, config)
    build_s = time.perf_counter() - start
    stacked = StackedSpaces.from_spaces(spaces).to(device)
    local = stacked.local_centers.items
    classifier = torch.nn.functional.normalize(torch.from_numpy(np.stack([s[0] for s in synonyms])), dim=-1).to(device)

    n = images.shape[0]
    zero_shot = best_time(lambda: images @ classifier.T, args.repeats, device)
    floor = best_time(lambda: images @ local.T, args.repeats, device)
    rows = [("zero-shot product (N x C)", zero_shot, "")]
    rows.append(("floor: product with all local centers", floor, ""))
    vertices = stacked.vertices.items
    rows.append(("product with all kept synonyms", best_time(lambda: images @ vertices.T, args.repeats, device),
                 "the floor of point-to-point"))
    for metric in ("point_to_center", "point_to_point_max", "point_to_point_mean", "point_to_local_center"):
        rows.append((metric, best_time(lambda: score(images, stacked, metric), args.repeats, device), ""))
    rows.append(("point_to_local_center, soft-max t=0.01",
                 best_time(lambda: score(images, stacked, "point_to_local_center", temperature=0.01), args.repeats, device), ""))
    subset = images[: args.simplex_images or n]
    simplex_scores = {}

    def run_simplex() -> None:
        simplex_scores["out"] = score(subset, stacked, "point_to_simplex")

    # Load (or compile) the CPU kernel on a few images first: a one-time cost per process, reported apart.
    start = time.perf_counter()
    score(subset[:8], stacked, "point_to_simplex")
    kernel_load_s = time.perf_counter() - start
    # One timed call, no warm-up at full N (it includes the per-call setup).
    simplex = best_time(run_simplex, 1, device, warmup=subset.shape[0] < n) * n / subset.shape[0]
    note = "exact NNLS per pair (compiled kernel on the CPU), measured on all images" if subset.shape[0] == n else \
        f"exact NNLS per pair, measured on {subset.shape[0]:,} images, x{n / subset.shape[0]:.0f}"
    rows.append(("point_to_simplex", simplex, note))
    deviation = None
    if args.reference_images:
        k = min(args.reference_images, subset.shape[0])
        deviation = reference_deviation(subset[:k].cpu().numpy(), spaces, simplex_scores["out"][:k].cpu().numpy())

    print(f"# Scoring benchmark: N={n:,} images, C={args.classes} classes, K={args.synonyms} synonyms, "
          f"D={args.dim}, float32, {device.type.upper()}")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"radius rule {config.radius_rule}, max dimension {config.max_dimension}")
    print(f"# spaces: {sum(len(s.kept) for s in spaces) / len(spaces):.2f} kept synonyms and "
          f"{local.shape[0] / len(spaces):.2f} local centers per class ({local.shape[0]:,} in all), "
          f"{stacked.simplices.items.shape[0]:,} simplices of up to {stacked.simplices.items.shape[1]} vertices")
    print(f"# building all {len(spaces)} spaces: {build_s:.2f} s")
    print(f"# point_to_simplex on 8 images first (loads or compiles the CPU kernel, once per process): {kernel_load_s:.2f} s")
    if deviation is not None:
        print(f"# point_to_simplex: largest deviation from the float64 NNLS reference on "
              f"{min(args.reference_images, subset.shape[0])} images x {args.classes} classes: {deviation:.2e}")
    print()
    print("| metric | time (s) | vs floor | vs zero-shot | note |\n|---|---|---|---|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / floor:.2f} | {seconds / zero_shot:.2f} | {note} |")


if __name__ == "__main__":
    main()
