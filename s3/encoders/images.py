"""Image features: batched extraction, cached under a key that covers everything that determines them.

The key covers model identity, preprocessing, the pixel pipeline (decoder, autocast dtype,
compilation: ``pixel_pipeline``), benchmark, split and the exact list of files (path, size,
modification time) and labels; the cache itself is ``s3.encoders.cache``.

Two pixel sources with one contract (``PixelBatch``): ``pixel_batches`` decodes and preprocesses
with PIL in DataLoader workers (``features.decode: cpu``); ``s3.encoders.gpu_decode`` reads bytes in
the workers and decodes with nvJPEG and preprocesses on the GPU (``features.decode: gpu``).
``auto`` takes the GPU source when the model is on CUDA and nvJPEG works there.
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from s3.checked import load_checked, save_checked
from s3.data.benchmarks import DatasetError, ImageList
from s3.encoders.cache import EmbeddingCache, Features, digest
from s3.encoders.gpu_decode import DecodeError, gpu_pixel_batches, nvjpeg_problem
from s3.encoders.models import AUTOCAST_DTYPE, LoadedModel
from s3.encoders.shards import ShardBatch, ShardPlan, UnreadableInputs, encode_shards, plan_shards
from s3.notices import notice

__all__ = [
    "PixelBatch",
    "pixel_batches",
    "DECODES",
    "resolve_decode",
    "pixel_pipeline",
    "image_tower",
    "encode_images",
    "image_shard_plan",
    "fill_shards",
    "encode_in_shards",
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

    def __init__(self, images: ImageList, positions: Sequence[int], transform: Callable,
                 with_position: bool = False) -> None:
        self.images, self.positions, self.transform = images, list(positions), transform
        self.with_position = with_position

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        position = self.positions[i]
        try:
            with Image.open(self.images.paths[position]) as image:
                rgb = image.convert("RGB")
                return position, self.transform(rgb, position) if self.with_position else self.transform(rgb), ""
        except (OSError, ValueError, SyntaxError) as error:  # PIL raises all three for damaged files
            return position, None, f"{type(error).__name__}: {error}"


def _collate(items: list[tuple[int, torch.Tensor | None, str]]) -> PixelBatch:
    good = [(i, x) for i, x, _ in items if x is not None]
    pixels = torch.stack([x for _, x in good]) if good else torch.zeros(0)
    indices = torch.tensor([i for i, _ in good], dtype=torch.long)
    return PixelBatch(indices, pixels, [(i, reason) for i, x, reason in items if x is None])


def pixel_batches(images: ImageList, positions: Sequence[int], preprocess: Callable, batch_size: int,
                  num_workers: int, pin_memory: bool = False, with_position: bool = False) -> Iterator[PixelBatch]:
    """Decode and preprocess the images at ``positions`` in DataLoader workers, in order.

    ``preprocess(image)`` returns ``(3, H, W)``; with ``with_position`` it is ``preprocess(image, position)``
    and may return any fixed shape (the test-time views: ``(V, 3, H, W)``, seeded by position).
    """
    loader = DataLoader(_ImageFiles(images, positions, preprocess, with_position), batch_size=batch_size,
                        num_workers=num_workers,
                        pin_memory=pin_memory, collate_fn=_collate, persistent_workers=False)
    yield from loader


DECODES = ("auto", "cpu", "gpu")
_NVJPEG: dict[str, str | None] = {}  # device -> why nvJPEG is unusable there (None: usable)


def resolve_decode(decode: str, device: torch.device) -> str:
    """``cpu`` or ``gpu``: the pixel source ``features.decode`` selects for a model on ``device``.

    ``auto`` is ``gpu`` on CUDA when nvJPEG decodes there, else ``cpu``. ``gpu`` on a CPU device
    runs the tensor path with torchvision's CPU decoder (what the tests and smoke runs use); on a
    CUDA device where nvJPEG fails it is an error, raised before any work.
    """
    if decode not in DECODES:
        raise DecodeError(f"features.decode must be one of {DECODES}, got {decode!r}")
    if decode == "cpu" or device.type != "cuda":
        return "gpu" if decode == "gpu" else "cpu"
    first = str(device) not in _NVJPEG
    if first:
        _NVJPEG[str(device)] = nvjpeg_problem(device)
    problem = _NVJPEG[str(device)]
    if problem and decode == "gpu":
        raise DecodeError(f"features.decode is gpu but nvJPEG cannot decode on {device} ({problem}); set "
                          "features.decode to auto or cpu")
    if problem and first:
        notice(f"features: nvJPEG unusable on {device} ({problem}); decoding with PIL on the CPU")
    return "cpu" if problem else "gpu"


def pixel_pipeline(loaded: LoadedModel, decode: str = "cpu", compile: bool = False) -> dict[str, Any]:
    """What, besides the model and its preprocessing, determines the features' bits.

    The decoder (PIL, torchvision's CPU decoder, nvJPEG) and the resampling code differ in the last
    ``uint8`` levels; autocast dtype, compilation and memory layout change rounding.
    """
    source = resolve_decode(decode, loaded.device)
    decoder = "pil" if source == "cpu" else ("nvjpeg" if loaded.device.type == "cuda" else "torchvision-cpu")
    return {
        "decoder": decoder,
        "resample": "pil" if source == "cpu" else "torchvision-tensor",
        "autocast": str(AUTOCAST_DTYPE).removeprefix("torch.") if loaded.amp else "off",
        "compile": bool(compile),
        "channels_last": source == "gpu" and loaded.device.type == "cuda",
    }


_COMPILED: "weakref.WeakKeyDictionary[torch.nn.Module, Callable]" = weakref.WeakKeyDictionary()


def image_tower(loaded: LoadedModel, compile: bool, batch_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``(B, 3, h, w)`` pixels -> ``(B, D)`` unnormalised features (``model.encode_image``), under
    bfloat16 autocast with amp.

    With ``compile`` the encoder is compiled once per process and model for a fixed batch size
    (``dynamic=False``); shorter batches are zero-padded to it, so nothing recompiles.
    """
    model = loaded.model
    autocast = loaded.autocast
    if not compile:
        def forward(pixels: torch.Tensor) -> torch.Tensor:
            with autocast():
                return model.encode_image(pixels)
        return forward
    if model not in _COMPILED:
        _COMPILED[model] = torch.compile(model.encode_image, dynamic=False)
    compiled = _COMPILED[model]

    def forward_compiled(pixels: torch.Tensor) -> torch.Tensor:
        count = pixels.shape[0]
        if count < batch_size:  # keep the memory layout too: the compiled graph is specialised on strides
            layout = (torch.channels_last if pixels.is_contiguous(memory_format=torch.channels_last)
                      and not pixels.is_contiguous() else torch.contiguous_format)
            pixels = torch.cat([pixels, pixels.new_zeros(batch_size - count, *pixels.shape[1:])])
            pixels = pixels.contiguous(memory_format=layout)
        with autocast():
            return compiled(pixels)[:count]
    return forward_compiled


@torch.no_grad()
def encode_images(loaded: LoadedModel, images: ImageList, positions: Sequence[int], batch_size: int = 256,
                  num_workers: int = 4, decode: str = "cpu", compile: bool = False) -> Iterator[ShardBatch]:
    """Unit image features of the images at ``positions``, batch by batch.

    Args:
        decode: ``cpu`` (PIL in workers), ``gpu`` (``s3.encoders.gpu_decode``) or ``auto``.
        compile: ``torch.compile`` the visual tower (pays only over many batches: it compiles first).

    On CUDA each batch's features are copied to pinned memory without blocking and handed out
    once the next batch is queued, so the GPU never waits for the host.

    Yields:
        ``ShardBatch`` rows ``features`` ``(B, D)`` float32 and ``labels`` ``(B,)`` int64.
    """
    labels = torch.tensor(images.labels, dtype=torch.long)
    cuda = loaded.device.type == "cuda"
    if resolve_decode(decode, loaded.device) == "gpu":
        batches = gpu_pixel_batches(images, positions, loaded.preprocess, batch_size, num_workers, loaded.device)
    else:
        batches = pixel_batches(images, positions, loaded.preprocess, batch_size, num_workers, pin_memory=cuda)
    tower = image_tower(loaded, compile, batch_size)
    pending = None  # CUDA: the previous batch, handed out once this one is queued
    for batch in batches:
        features, done = torch.zeros(0, 0), None
        if len(batch.indices):
            try:
                embedded = F.normalize(tower(batch.pixels.to(loaded.device, non_blocking=True)).float(), dim=-1)
            except BaseException:
                if pending is not None:  # what was encoded still reaches its shard
                    yield _finished(*pending)
                raise
            if cuda:
                features = torch.empty(embedded.shape, dtype=embedded.dtype, pin_memory=True)
                features.copy_(embedded, non_blocking=True)
                done = torch.cuda.Event()
                done.record()
            else:
                features = embedded
        if not cuda:
            yield _finished(batch, features, None, labels)
            continue
        if pending is not None:
            yield _finished(*pending)
        pending = (batch, features, done, labels)
    if pending is not None:
        yield _finished(*pending)


def _finished(batch: PixelBatch, features: torch.Tensor, done, labels: torch.Tensor) -> ShardBatch:
    if done is not None:
        done.synchronize()
    return ShardBatch(batch.indices, {"features": features, "labels": labels[batch.indices]}, batch.failed)


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


def _model_salt(loaded: LoadedModel, decode: str = "cpu", compile: bool = False) -> str:
    return digest({"model": loaded.spec.identity, "preprocess": repr(loaded.preprocess),
                   "pixels": pixel_pipeline(loaded, decode, compile)})


def cache_key(loaded: LoadedModel, images: ImageList, split: str, decode: str = "cpu", compile: bool = False) -> str:
    """Covers model, preprocessing, pixel pipeline, benchmark, split, and every file (path, size, modification time)."""
    return digest({"model": _model_salt(loaded, decode, compile), "benchmark": images.benchmark, "split": split,
                   "files": [file_stamp(p) for p in images.paths], "labels": images.labels})


def image_shard_plan(cache: EmbeddingCache, name: str, salt: str, images: ImageList, shard_size: int) -> ShardPlan:
    """The resumable shards of ``images`` under the cache's ``shards/`` folder: ``salt`` covers what
    determines every row besides its file, each shard's key adds its files' stamps and labels."""
    return plan_shards(cache.root / "shards" / f"{name}-{salt[:16]}",
                       [f"{file_stamp(p)}:{y}" for p, y in zip(images.paths, images.labels)], shard_size, salt)


def fill_shards(plan: ShardPlan, cache: EmbeddingCache, name: str, images: ImageList, what: str,
                encode: Callable[[Sequence[int]], Iterator[ShardBatch]]) -> None:
    """Encode the missing shards of ``plan`` (``image_shard_plan``); afterwards every shard is complete.

    Checks every file first; ``encode(positions)`` yields the ``ShardBatch`` es of the positions still
    missing (a resumed run encodes only those). Images that cannot be decoded are reported together
    (``UnreadableInputs``), after every other shard was written.
    """
    check_image_files(images)
    missing = plan.missing()
    if len(missing) < len(plan.keys):
        notice(f"{cache.kind}: {name}: resuming, {len(plan.keys) - len(missing)} of {len(plan.keys)} shards "
               "were already encoded")
    failed = encode_shards(plan, encode(plan.missing_items()), what, names=images.paths)
    if failed:
        raise UnreadableInputs(failed, "Replace or remove these images (`s3 data verify` lists every bad file) and "
                                       "run again: only the shards holding them are encoded again.")


def encode_in_shards(
    cache: EmbeddingCache, name: str, salt: str, images: ImageList, shard_size: int, what: str,
    encode: Callable[[Sequence[int]], Iterator[ShardBatch]],
) -> tuple[dict[str, torch.Tensor], ShardPlan]:
    """Encode ``images`` in resumable shards of ``shard_size`` (``image_shard_plan``, ``fill_shards``).

    Returns:
        ``(rows, plan)``: every image's rows in order (``plan.assemble()``); call ``plan.clear()`` once
        the result is safely cached.
    """
    plan = image_shard_plan(cache, name, salt, images, shard_size)
    fill_shards(plan, cache, name, images, what, encode)
    return plan.assemble(), plan


def cached_image_features(
    loaded: LoadedModel,
    images: ImageList,
    cache: EmbeddingCache,
    split: str = "test",
    batch_size: int = 256,
    num_workers: int = 4,
    shard_size: int = 4096,
    decode: str = "cpu",
    compile: bool = False,
) -> tuple[Features, bool]:
    """Features from the cache, or extracted in resumable shards and cached.

    Before encoding, every listed file must exist and be non-empty. Encoded rows are written in
    shards of ``shard_size`` images, so a run that fails or is killed resumes from the last
    complete shard; images that cannot be decoded are reported all together at the end (their
    shards are encoded again once they are fixed, the others are kept). ``decode`` and ``compile``
    are ``features.decode`` and ``features.compile`` (``encode_images``).

    Returns:
        ``(features, was_cached)``.
    """
    if len(images) == 0:
        raise DatasetError(f"{images.benchmark}: no images to encode; run `s3 data verify` to see what is missing")
    key = cache_key(loaded, images, split, decode, compile)
    name = f"{images.benchmark}-{split}"
    hit = cache.load(name, key)
    if hit is not None:
        return hit, True
    rows, plan = encode_in_shards(
        cache, name, _model_salt(loaded, decode, compile), images, shard_size, f"images {images.benchmark}",
        lambda positions: encode_images(loaded, images, positions, batch_size, num_workers, decode, compile))
    meta = {"key": key, "model": loaded.spec.identity, "pixels": pixel_pipeline(loaded, decode, compile),
            "benchmark": images.benchmark, "split": split, "num_images": len(images),
            "dim": int(rows["features"].shape[1])}
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
