"""Image features: batched extraction, cached under a key that covers everything that determines them.

The key covers model identity, preprocessing, benchmark, split and the exact list of files (path,
size, modification time) and labels; the cache itself is ``s3.encoders.cache``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from s3.checked import load_checked, save_checked
from s3.data.benchmarks import DatasetError, ImageList
from s3.encoders.cache import EmbeddingCache, Features, digest
from s3.encoders.models import LoadedModel
from s3.encoders.shards import ShardBatch, UnreadableInputs, encode_shards, plan_shards
from s3.notices import notice

__all__ = [
    "PixelBatch",
    "pixel_batches",
    "encode_images",
    "file_stamp",
    "check_image_files",
    "cache_key",
    "cached_image_features",
    "save_benchmark_features",
    "load_benchmark_features",
]


class PixelBatch(NamedTuple):
    """Preprocessed pixels of one batch of images.

    Attributes:
        indices: ``(B,)`` int64 positions in the image list of the rows of ``pixels``.
        pixels: ``(B, 3, H, W)`` normalised pixels (on the CPU, or already on the model's device).
        failed: ``(position, reason)`` of the images of this batch that could not be decoded.
    """

    indices: torch.Tensor
    pixels: torch.Tensor
    failed: list[tuple[int, str]]


class _ImageFiles(Dataset):
    """Decodes and preprocesses one image; an unreadable one is reported, not raised, so a single bad
    file does not throw away the batches around it."""

    def __init__(self, images: ImageList, positions: Sequence[int], transform: Callable) -> None:
        self.images, self.positions, self.transform = images, list(positions), transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        position = self.positions[i]
        try:
            with Image.open(self.images.paths[position]) as image:
                return position, self.transform(image.convert("RGB")), ""
        except (OSError, ValueError, SyntaxError) as error:  # PIL raises all three for damaged files
            return position, None, f"{type(error).__name__}: {error}"


def _collate(items: list[tuple[int, torch.Tensor | None, str]]) -> PixelBatch:
    good = [(i, x) for i, x, _ in items if x is not None]
    pixels = torch.stack([x for _, x in good]) if good else torch.zeros(0)
    indices = torch.tensor([i for i, _ in good], dtype=torch.long)
    return PixelBatch(indices, pixels, [(i, reason) for i, x, reason in items if x is None])


def pixel_batches(images: ImageList, positions: Sequence[int], preprocess: Callable, batch_size: int,
                  num_workers: int, pin_memory: bool = False) -> Iterator[PixelBatch]:
    """Decode and preprocess the images at ``positions`` in DataLoader workers, in order."""
    loader = DataLoader(_ImageFiles(images, positions, preprocess), batch_size=batch_size, num_workers=num_workers,
                        pin_memory=pin_memory, collate_fn=_collate, persistent_workers=False)
    yield from loader


@torch.no_grad()
def encode_images(loaded: LoadedModel, images: ImageList, positions: Sequence[int], batch_size: int = 256,
                  num_workers: int = 4) -> Iterator[ShardBatch]:
    """Unit image features of the images at ``positions``, batch by batch (mixed precision on CUDA).

    Yields:
        ``ShardBatch`` rows ``features`` ``(B, D)`` float32 and ``labels`` ``(B,)`` int64.
    """
    labels = torch.tensor(images.labels, dtype=torch.long)
    for batch in pixel_batches(images, positions, loaded.preprocess, batch_size, num_workers,
                               pin_memory=loaded.device.type == "cuda"):
        rows = {"features": torch.zeros(0, 0), "labels": labels[batch.indices]}
        if len(batch.indices):
            with loaded.autocast():
                embedded = loaded.model.encode_image(batch.pixels.to(loaded.device, non_blocking=True))
            rows["features"] = F.normalize(embedded.float(), dim=-1).cpu()
        yield ShardBatch(batch.indices, rows, batch.failed)


def file_stamp(path: Path) -> str:
    """``path:size:mtime_ns``: changes whenever the file is replaced or edited."""
    try:
        stat = path.stat()
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        return f"{path}:missing"


def check_image_files(images: ImageList, max_listed: int = 20) -> None:
    """Fail before any encoding when listed files are missing or empty, naming all of them."""
    bad = []
    for path in images.paths:
        try:
            if path.stat().st_size == 0:
                bad.append(f"{path} (empty)")
        except OSError:
            bad.append(f"{path} (missing)")
    if bad:
        shown = "; ".join(bad[:max_listed]) + (f"; ... and {len(bad) - max_listed} more" if len(bad) > max_listed else "")
        raise DatasetError(f"{images.benchmark}: {len(bad)} of {len(images)} listed images are missing or empty: "
                           f"{shown}. Re-extract the dataset; `s3 data verify` checks every file.")


def _model_salt(loaded: LoadedModel) -> str:
    return digest({"model": loaded.spec.identity, "preprocess": repr(loaded.preprocess)})


def cache_key(loaded: LoadedModel, images: ImageList, split: str) -> str:
    """Covers model, preprocessing, benchmark, split, and every file (path, size, modification time)."""
    return digest(
        {
            "model": loaded.spec.identity,
            "preprocess": repr(loaded.preprocess),
            "benchmark": images.benchmark,
            "split": split,
            "files": [file_stamp(p) for p in images.paths],
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
    shard_size: int = 4096,
) -> tuple[Features, bool]:
    """Features from the cache, or extracted in resumable shards and cached.

    Before encoding, every listed file must exist and be non-empty. Encoded rows are written in
    shards of ``shard_size`` images, so a run that fails or is killed resumes from the last
    complete shard; images that cannot be decoded are reported all together at the end (their
    shards are encoded again once they are fixed, the others are kept).

    Returns:
        ``(features, was_cached)``.
    """
    if len(images) == 0:
        raise DatasetError(f"{images.benchmark}: no images to encode; run `s3 data verify` to see what is missing")
    key = cache_key(loaded, images, split)
    name = f"{images.benchmark}-{split}"
    hit = cache.load(name, key)
    if hit is not None:
        return hit, True
    check_image_files(images)
    salt = _model_salt(loaded)
    plan = plan_shards(cache.root / "shards" / f"{name}-{salt[:16]}",
                       [f"{file_stamp(p)}:{y}" for p, y in zip(images.paths, images.labels)], shard_size, salt)
    missing = plan.missing()
    if len(missing) < len(plan.keys):
        notice(f"{cache.kind}: {name}: resuming, {len(plan.keys) - len(missing)} of {len(plan.keys)} shards "
               "were already encoded")
    batches = encode_images(loaded, images, plan.missing_items(), batch_size, num_workers)
    failed = encode_shards(plan, batches, f"images {images.benchmark}", names=images.paths)
    if failed:
        raise UnreadableInputs(failed, "Replace or remove these images (`s3 data verify` lists every bad file) and "
                                       "run again: only the shards holding them are encoded again.")
    rows = plan.assemble()
    meta = {"key": key, "model": loaded.spec.identity, "benchmark": images.benchmark, "split": split,
            "num_images": len(images), "dim": int(rows["features"].shape[1])}
    # Exactly what a later cache hit returns (JSON, keys sorted at every level), so nothing downstream
    # (an executed notebook) can tell a fresh extraction from a cached one.
    features = Features(rows["features"], rows["labels"], meta=json.loads(json.dumps(meta, sort_keys=True)))
    cache.save(name, key, features)
    plan.clear()
    notice(f"{cache.kind}: {name}: encoded {len(images)} images")
    return features, False


def save_benchmark_features(path: str | Path, features: Features, images: ImageList) -> None:
    """The features stage's output (a checked file): features, labels, and the class list they are labelled by."""
    save_checked(path, {
        "benchmark": images.benchmark,
        "classnames": images.classnames,
        "bank_indices": images.bank_indices,
        "features": features.features,
        "labels": features.labels,
        "meta": json.dumps(features.meta, sort_keys=True),
    })


def load_benchmark_features(path: str | Path) -> tuple[Features, ImageList]:
    """``(features, images)``; ``images`` carries the class list (paths are not stored).

    Raises:
        CorruptFile: the file is missing, truncated or corrupted (the message says what to run).
    """
    benchmark = Path(path).stem
    raw = load_checked(path, f"run `dvc repro --force features@{benchmark}` to rebuild it (the feature cache "
                             "makes that cheap)")
    images = ImageList(raw["benchmark"], raw["classnames"], [], raw["labels"].tolist(), raw["bank_indices"])
    return Features(raw["features"], raw["labels"], json.loads(raw["meta"])), images
