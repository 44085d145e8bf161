"""Image features: batched extraction and an on-disk cache that detects corrupt files.

The cache key covers everything that determines the features: model identity, preprocessing,
benchmark, split and the exact list of files (and labels). Files are written atomically
(temporary file + rename) and carry a checksum, so a truncated or corrupt file is detected and
rebuilt instead of silently used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from s3.atomic import atomic_write
from s3.datasets import DatasetError, ImageList
from s3.models import LoadedModel
from s3.progress import progress

__all__ = [
    "EmbeddingCache",
    "Features",
    "extract_image_features",
    "cached_image_features",
    "save_benchmark_features",
    "load_benchmark_features",
    "digest",
]


def digest(obj: Any) -> str:
    """Stable sha256 of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _tensor_checksum(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().cpu().numpy().tobytes()).hexdigest()


@dataclass
class Features:
    """Cached features of one image list.

    Attributes:
        features: ``(N, D)`` float32 unit rows.
        labels: ``(N,)`` int64.
        meta: what produced them (model identity, benchmark, split, number of files, key).
    """

    features: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any]


class EmbeddingCache:
    """A folder of ``<name>-<key>.pt`` files (image features, text embeddings), each with a checksum
    of its tensors."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key[:16]}.pt"

    def load(self, name: str, key: str) -> Features | None:
        """The cached entry, or ``None`` when absent, unreadable, or failing its checksum."""
        path = self.path(name, key)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            ok = (
                payload["key"] == key
                and payload["checksum"] == _tensor_checksum(payload["features"]) + _tensor_checksum(payload["labels"])
            )
        except Exception:  # noqa: BLE001 - any unreadable file is a cache miss
            ok = False
        if not ok:
            print(f"feature cache: {path.name} is corrupt or stale; rebuilding it")
            return None
        return Features(payload["features"], payload["labels"], json.loads(payload["meta"]))

    def save(self, name: str, key: str, features: Features) -> Path:
        path = self.path(name, key)
        payload = {
            "key": key,
            "features": features.features.contiguous(),
            "labels": features.labels.contiguous(),
            "checksum": _tensor_checksum(features.features) + _tensor_checksum(features.labels),
            "meta": json.dumps(features.meta, sort_keys=True),
        }
        return atomic_write(path, lambda tmp: torch.save(payload, tmp))


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

