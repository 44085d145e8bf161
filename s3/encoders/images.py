"""Image features: batched extraction, cached under a key that covers everything that determines them.

The key covers model identity, preprocessing, benchmark, split and the exact list of files (path,
size, modification time) and labels; the cache itself is ``s3.encoders.cache``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from s3.data.benchmarks import DatasetError, ImageList
from s3.encoders.cache import EmbeddingCache, Features, digest
from s3.encoders.models import LoadedModel
from s3.progress import progress

__all__ = [
    "extract_image_features",
    "cache_key",
    "cached_image_features",
    "save_benchmark_features",
    "load_benchmark_features",
]


class _ImageFiles(Dataset):
    def __init__(self, images: ImageList, transform: Callable) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        path = self.images.paths[i]
        try:
            with Image.open(path) as image:
                pixels = self.transform(image.convert("RGB"))
        except (OSError, ValueError) as error:
            raise DatasetError(
                f"cannot read image {path} ({error}); run `s3 data verify` to list every bad file"
            ) from error
        return pixels, self.images.labels[i]


@torch.no_grad()
def extract_image_features(
    loaded: LoadedModel, images: ImageList, batch_size: int = 256, num_workers: int = 4
) -> Features:
    """Encode every image: DataLoader workers decode and preprocess, the model runs batched
    (mixed precision on CUDA)."""
    if len(images) == 0:
        raise DatasetError(f"{images.benchmark}: no images to encode; run `s3 data verify` to see what is missing")
    loader = DataLoader(
        _ImageFiles(images, loaded.preprocess),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=loaded.device.type == "cuda",
        persistent_workers=False,
    )
    chunks, labels = [], []
    for pixels, target in progress(loader, desc=f"images {images.benchmark}", unit="batch"):
        pixels = pixels.to(loaded.device, non_blocking=True)
        with loaded.autocast():
            chunks.append(F.normalize(loaded.model.encode_image(pixels).float(), dim=-1).cpu())
        labels.append(target)
    return Features(torch.cat(chunks), torch.cat(labels).long(), meta={})


def _file_stamp(path: Path) -> str:
    try:
        stat = path.stat()
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        return f"{path}:missing"


def cache_key(loaded: LoadedModel, images: ImageList, split: str) -> str:
    """Covers model, preprocessing, benchmark, split, and every file (path, size, modification time)."""
    return digest(
        {
            "model": loaded.spec.identity,
            "preprocess": repr(loaded.preprocess),
            "benchmark": images.benchmark,
            "split": split,
            "files": [_file_stamp(p) for p in images.paths],
            "labels": images.labels,
        }
    )


def cached_image_features(
    loaded: LoadedModel,
    images: ImageList,
    cache: EmbeddingCache,
    split: str = "test",
    batch_size: int = 256,
    num_workers: int = 4,
) -> tuple[Features, bool]:
    """Features from the cache, or extracted and cached. Returns ``(features, was_cached)``."""
    key = cache_key(loaded, images, split)
    name = f"{images.benchmark}-{split}"
    hit = cache.load(name, key)
    if hit is not None:
        return hit, True
    features = extract_image_features(loaded, images, batch_size, num_workers)
    features.meta = {
        "key": key,
        "model": loaded.spec.identity,
        "benchmark": images.benchmark,
        "split": split,
        "num_images": len(images),
        "dim": int(features.features.shape[1]),
    }
    cache.save(name, key, features)
    return features, False


def save_benchmark_features(path: str | Path, features: Features, images: ImageList) -> None:
    """The features stage's output: features, labels, and the class list they are labelled by."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "benchmark": images.benchmark,
            "classnames": images.classnames,
            "bank_indices": images.bank_indices,
            "features": features.features,
            "labels": features.labels,
            "meta": json.dumps(features.meta, sort_keys=True),
        },
        path,
    )


def load_benchmark_features(path: str | Path) -> tuple[Features, ImageList]:
    """``(features, images)``; ``images`` carries the class list (paths are not stored)."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    images = ImageList(raw["benchmark"], raw["classnames"], [], raw["labels"].tolist(), raw["bank_indices"])
    return Features(raw["features"], raw["labels"], json.loads(raw["meta"])), images

