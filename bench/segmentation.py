"""Sliding-window segmentation throughput at the training-free baselines' settings.

    python bench/segmentation.py [--arch ViT-B-16] [--images 50] [--variant naclip]

Random weights (same cost as pretrained), random 500x375 images, short side 336, 224 windows with
stride 112, 21 classes scored with every listed method per patch. Reports images per second of
dense features alone and of the whole per-image inference. A benchmark: it measures and reports.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from s3.core.methods import score_method
from s3.core.spaces import SpaceConfig, build_spaces
from s3.core.text_side import TextSide
from s3.encoders.models import ModelSpec, load_model
from s3.segmentation.slide import SlideConfig, normalization, predict, prepare_image, slide_scores, window_features


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--variant", default="naclip")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--methods", default="clip_single,s3_point_to_local_center")
    args = parser.parse_args()

    loaded = load_model(ModelSpec(arch=args.arch, pretrained="none", device=args.device, precision="amp"))
    config = SlideConfig(variant=args.variant)
    dim = loaded.model.text_projection.shape[1] if hasattr(loaded.model, "text_projection") else 512
    rng = np.random.default_rng(0)
    synonyms = [rng.normal(size=(6, dim)).astype(np.float32) for _ in range(21)]
    classifier = torch.nn.functional.normalize(torch.from_numpy(np.stack([s[0] for s in synonyms])), dim=-1)
    text = TextSide("bench", [f"c{i}" for i in range(21)], {"clip_single": classifier}, [["x"] * 6] * 21,
                    build_spaces(synonyms, SpaceConfig()), {})
    normalize = normalization(loaded.preprocess)
    images = [Image.fromarray(rng.integers(0, 256, size=(375, 500, 3), dtype=np.uint8)) for _ in range(args.images)]
    methods = args.methods.split(",")

    window_features(loaded, prepare_image(images[0], config.short_side, normalize), config)  # warm-up
    synchronize(loaded.device)
    features_s = total_s = 0.0
    windows = 0
    for image in images:
        start = time.perf_counter()
        pixels = prepare_image(image, config.short_side, normalize)
        boxes, features, padded = window_features(loaded, pixels, config)
        synchronize(loaded.device)
        features_s += time.perf_counter() - start
        windows += len(boxes)
        flat = features.reshape(-1, features.shape[-1])
        for method in methods:
            scores = score_method(method, flat, text).reshape(*features.shape[:3], -1)
            predict(slide_scores(boxes, scores, padded, tuple(pixels.shape[1:]), config.window), (375, 500),
                    "names", 0.5)
        total_s += time.perf_counter() - start

    device = torch.cuda.get_device_name(0) if loaded.device.type == "cuda" else "CPU"
    print(f"# {args.arch} ({args.variant}), {device}, {args.images} images 500x375, short side {config.short_side}, "
          f"window {config.window}, stride {config.stride}, {windows / len(images):.1f} windows per image, "
          f"21 classes, methods {methods}")
    print("| measurement | images/s |\n|---|---|")
    print(f"| dense features (resize + windows + ViT) | {len(images) / features_s:.2f} |")
    print(f"| whole inference (+ scoring, averaging, upsampling) | {len(images) / total_s:.2f} |")


if __name__ == "__main__":
    main()
