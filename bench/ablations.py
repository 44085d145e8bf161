"""Ablation-grid benchmark: the whole ``ablations`` grid of params.yaml at ImageNet size, on the CPU.

    python bench/ablations.py [--images 50000] [--classes 1000] [--synonyms 10] [--dim 512] [--threads 2]
                              [--image-noise 0.9] [--without-simplex] [--json out.json] [--smoke]

Synthetic unit vectors (s3.analysis.geometry's world); the three template sets are the world's
synonyms slightly perturbed (their accuracies mean nothing, their cost is the real one). Prints the
seconds of each axis (space builds included) and the total. Measures and reports; asserts nothing.

Point-to-simplex's cost depends on how hard the world is (its hits solve only the classes whose
bound reaches the image's own score, s3.ablations.items), so the script also prints the default
spaces' point-to-simplex accuracy; ``--image-noise`` makes the world harder (at 5, about 60% top-1 at N = 4096).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s3.ablations.grid import run_grid  # noqa: E402
from s3.analysis.geometry import WorldConfig, make_world  # noqa: E402
from s3.core.spaces import SpaceConfig, build_spaces  # noqa: E402
from s3.core.text_side import TextSide  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class _Printed(dict):
    """Timings printed as each axis finishes (a run cut short still reports the axes it did)."""

    def __setitem__(self, axis: str, seconds: float) -> None:
        super().__setitem__(axis, seconds)
        print(f"  {axis:14s} {seconds:8.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--synonyms", type=int, default=10)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-noise", type=float, default=WorldConfig.image_noise,
                        help="image spread around its class's modes (larger: lower accuracy, more classes to solve)")
    parser.add_argument("--without-simplex", action="store_true", help="leave s3_point_to_simplex out of the grid")
    parser.add_argument("--json", help="write the timings here")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds), to check the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.classes, args.dim = 500, 20, 32
    torch.set_num_threads(args.threads)

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    spaces, ablations = params["spaces"], dict(params["ablations"])
    if args.without_simplex:
        ablations["methods"] = [m for m in ablations["methods"] if m != "s3_point_to_simplex"]
    world = WorldConfig(num_classes=args.classes, dim=args.dim, synonyms=args.synonyms,
                        images_per_class=-(-args.images // args.classes), sigma_lex=0.5, outlier_rate=0.1,
                        image_noise=args.image_noise)
    synonyms, images, labels = make_world(world, seed=0)
    images, labels = torch.from_numpy(images[: args.images]), torch.from_numpy(np.asarray(labels)[: args.images])
    names = [f"class {c}" for c in range(args.classes)]
    config = SpaceConfig(**{k: v for k, v in spaces.items() if k != "templates"})
    classifiers = {m: torch.from_numpy(np.stack([s[0] for s in synonyms])) for m in ("clip_single", "clip_coop", "clip_ensemble80")}
    text = TextSide("imagenet", names, classifiers, [[n] * len(s) for n, s in zip(names, synonyms)],
                    build_spaces(synonyms, config, names), {"spaces": spaces})
    rng = np.random.default_rng(1)

    def perturbed(s: np.ndarray) -> np.ndarray:
        x = s + 0.02 * rng.normal(size=s.shape)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    sets = {kind: [perturbed(s) for s in synonyms] for kind in ("single", "coop", "ensemble80")}
    print(f"ablation grid: N={args.images} C={args.classes} K={args.synonyms} D={args.dim}, {args.threads} threads, "
          f"methods {ablations['methods']}", flush=True)
    timings: dict[str, float] = _Printed()
    start = time.perf_counter()
    grid = run_grid(images, labels, text, sets, spaces, ablations, timings)
    total = time.perf_counter() - start
    print(f"  {'total':14s} {total:8.1f} s  (goal: under 120 s), {len(grid)} accuracies")
    default = grid[(grid.axis == "num_synonyms") & (grid.value == "all") & (grid.method == "s3_point_to_simplex")].acc1
    if len(default):
        print(f"  world: point-to-simplex top-1 {float(default.iloc[0]):.1f}% (image noise {args.image_noise})")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "timings_s": timings, "total_s": total,
                                               "simplex_acc1": float(default.iloc[0]) if len(default) else None,
                                               "cpu": platform.processor() or platform.machine()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
