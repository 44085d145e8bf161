"""Synthetic JPEGs with each benchmark's image sizes, for throughput measurements without the datasets.

Decoding cost depends on pixel count and on the entropy of the compressed stream; the model's cost
does not depend on the image at all (every image becomes one 224x224 crop). So a benchmark's
feature-extraction rate is measured on JPEGs of its typical sizes with photo-like content: smooth
random structure at several scales plus sensor-like noise, baseline JPEG at quality 90 with 4:2:0
chroma (PIL's defaults), about 3-6 bits per pixel, in the range of ImageNet's validation JPEGs
(about 110 KB for a 500x375 image).

The size mixes below are ASSUMPTIONS from the datasets' published descriptions and common
knowledge of them, not measurements of the files (no dataset was reachable here); each entry
says what it assumes. ``s3 data verify`` on a machine with the data could replace them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

__all__ = ["SizeMix", "IMAGE_SIZES", "sample_sizes", "photo_like", "write_jpegs"]


@dataclass(frozen=True)
class SizeMix:
    """Typical image sizes of one dataset.

    Attributes:
        sizes: ``(width, height, weight)`` of typical sizes; weights are relative frequencies.
        jitter: each side is scaled by a uniform factor in ``[1 - jitter, 1 + jitter]``.
        note: what the mix assumes.
    """

    sizes: tuple[tuple[int, int, float], ...]
    jitter: float
    note: str

    @property
    def mean_pixels(self) -> float:
        weights = np.array([w for *_, w in self.sizes])
        return float(np.dot(weights / weights.sum(), [a * b for a, b, _ in self.sizes]))


_IMAGENET = SizeMix(((500, 375, 0.55), (375, 500, 0.15), (500, 333, 0.10), (333, 500, 0.05), (800, 600, 0.10),
                     (1024, 768, 0.05)), 0.05,
                    "ILSVRC2012 val: most images 500 px on the long side (500x375 / 375x500), a tail of larger ones")
IMAGE_SIZES: dict[str, SizeMix] = {
    "imagenet": _IMAGENET,
    "imagenet_v2": SizeMix(_IMAGENET.sizes, 0.05, "collected from Flickr to match ImageNet's distribution: as ImageNet"),
    "imagenet_sketch": SizeMix(((800, 600, 0.4), (600, 600, 0.2), (1024, 768, 0.2), (400, 300, 0.2)), 0.1,
                               "web search results, widely varying; assumed larger than ImageNet on average"),
    "imagenet_a": SizeMix(((1024, 768, 0.3), (800, 600, 0.3), (640, 480, 0.2), (1600, 1200, 0.2)), 0.1,
                          "natural photos from iNaturalist, Flickr and web search; often large"),
    "imagenet_r": SizeMix(((800, 600, 0.3), (600, 600, 0.2), (1024, 768, 0.2), (500, 375, 0.3)), 0.1,
                          "renditions (art, cartoons, toys) from the web; varied, assumed ~0.4 Mpixel"),
    "caltech101": SizeMix(((300, 200, 0.6), (300, 250, 0.2), (250, 300, 0.2)), 0.05,
                          "about 300x200 pixels (the dataset's description)"),
    "oxford_pets": SizeMix(((500, 375, 0.5), (375, 500, 0.3), (500, 333, 0.2)), 0.1,
                           "Flickr photos, mostly about 500 px on the long side"),
    "stanford_cars": SizeMix(((640, 480, 0.4), (800, 533, 0.3), (1024, 683, 0.2), (320, 240, 0.1)), 0.1,
                             "web images of very varied size, assumed ~0.4 Mpixel on average"),
    "oxford_flowers": SizeMix(((667, 500, 0.6), (500, 667, 0.2), (750, 500, 0.2)), 0.05,
                              "scaled so the shortest side is 500 px (the dataset's description)"),
    "food101": SizeMix(((512, 384, 0.5), (512, 512, 0.3), (384, 512, 0.2)), 0.05,
                       "rescaled to at most 512 px on the long side (the dataset's description)"),
    "fgvc_aircraft": SizeMix(((1024, 680, 0.5), (1200, 800, 0.3), (800, 533, 0.2)), 0.05,
                             "airliner photos of about 1 Mpixel (with a 20 px copyright banner)"),
    "sun397": SizeMix(((800, 600, 0.4), (1024, 768, 0.3), (640, 480, 0.2), (1500, 1125, 0.1)), 0.1,
                      "scene photos, at least 200x200 and often large; assumed ~0.7 Mpixel on average"),
    "dtd": SizeMix(((640, 480, 0.4), (500, 500, 0.3), (300, 300, 0.3)), 0.05,
                   "between 300x300 and 640x640 pixels (the dataset's description)"),
    "eurosat": SizeMix(((64, 64, 1.0),), 0.0, "Sentinel-2 RGB tiles of 64x64 pixels (the dataset's description)"),
    "ucf101": SizeMix(((320, 240, 1.0),), 0.0, "middle frames of 320x240 videos"),
    "voc": SizeMix(((500, 375, 0.7), (375, 500, 0.3)), 0.1, "PASCAL VOC 2012: about 500 px on the long side"),
    "context": SizeMix(((500, 375, 0.7), (375, 500, 0.3)), 0.1, "PASCAL VOC 2010 images: as VOC 2012"),
}


def sample_sizes(mix: SizeMix, count: int, seed: int = 0) -> list[tuple[int, int]]:
    """``count`` ``(width, height)`` drawn from a mix (seeded)."""
    rng = np.random.default_rng(seed)
    weights = np.array([w for *_, w in mix.sizes])
    picks = rng.choice(len(mix.sizes), size=count, p=weights / weights.sum())
    scales = rng.uniform(1 - mix.jitter, 1 + mix.jitter, size=(count, 2))
    return [(max(8, round(mix.sizes[k][0] * sx)), max(8, round(mix.sizes[k][1] * sy)))
            for k, (sx, sy) in zip(picks, scales)]


def photo_like(width: int, height: int, seed: int) -> np.ndarray:
    """``(height, width, 3)`` uint8: random structure at three scales plus noise (compresses like a photo).

    The scales are summed at a quarter of the resolution and upsampled once (bicubic); the noise is
    a random 64x64 tile, so writing thousands of images takes seconds on a few cores.
    """
    rng = np.random.default_rng(seed)
    h4, w4 = max(2, -(-height // 4)), max(2, -(-width // 4))
    low = np.full((h4, w4, 3), 128.0, dtype=np.float32)
    for cell, amplitude in ((16, 80.0), (4, 40.0), (1, 25.0)):
        coarse = rng.normal(0, amplitude, size=(-(-h4 // cell), -(-w4 // cell), 3))
        low += np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:h4, :w4]
    coarse_image = Image.fromarray(np.clip(low, 0, 255).astype(np.uint8))
    image = np.asarray(coarse_image.resize((width, height), Image.BICUBIC), dtype=np.int16)
    tile = rng.integers(-8, 9, size=(64, 64, 3), dtype=np.int16)
    reps = (-(-height // 64), -(-width // 64), 1)
    image = image + np.tile(tile, reps)[:height, :width]
    return np.clip(image, 0, 255).astype(np.uint8)


def _write_one(job: tuple[str, int, int, int, int]) -> None:
    path, width, height, seed, quality = job
    Image.fromarray(photo_like(width, height, seed)).save(path, format="JPEG", quality=quality)


def write_jpegs(folder: str | Path, sizes: Sequence[tuple[int, int]], seed: int = 0, quality: int = 90,
                prefix: str = "img", processes: int | None = None) -> list[Path]:
    """Write one photo-like JPEG per ``(width, height)``, in parallel processes; returns the paths in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder / f"{prefix}-{i:06d}.jpg"), w, h, seed * 1_000_003 + i, quality) for i, (w, h) in enumerate(sizes)]
    processes = min(processes or os.cpu_count() or 1, max(1, len(jobs) // 8))
    if processes <= 1:
        for job in jobs:
            _write_one(job)
    else:
        with get_context("fork").Pool(processes) as pool:
            pool.map(_write_one, jobs, chunksize=8)
    return [Path(job[0]) for job in jobs]
