"""The window cache: dense features of every sliding window of every image, kept on disk so that a
change of the class side (``spaces``, ``text``, the methods, the temperature, the background
settings) re-scores the segmentation without running the image tower again.

Stored per image: the unit patch features of each window, ``(n, gh, gw, D)``, and the size ``(h, w)``
of the resized image (the windows' corners follow from it: ``window_boxes``). Their dtype
(``window_dtype``) is float16 when the model runs under bfloat16 autocast (the paper run on a GPU:
bfloat16's 8-bit mantissa already bounds their precision, float16 keeps 11 bits) and float32
otherwise (fp32 runs, the CPU demo: nothing is rounded, the scores are those of the uncached code).
At the paper settings (ViT-B/16, short side 336, window 224, stride 112: ``gh = gw = 14``,
``D = 512``, float16) a 500x375 VOC image has 6 windows, 6 x 14 x 14 x 512 x 2 bytes = 1.2 MB; a
500x333 one 8 windows, 1.6 MB (VOC val, 1,449 images: about 2 GB; Context val, 5,105 images: about
7 GB); twice that in float32. VOC20 and VOC21 (Context59 and Context60) read the same images and
share one cache.

Scoring always reads these stored features (cast to float32), whether they come from the cache or
were just computed, so a run from the cache gives exactly the scores of a fresh run.

The key covers what determines the features and nothing else: the model identity (architecture,
weights, activation, precision, open_clip version), its preprocessing, the pixel pipeline (PIL
decode and bicubic resize of the short side, autocast), the dense variant (and ``naclip_sigma`` for
``naclip``), short side, window and stride; each shard adds the path, size and modification time of
its images. The cache is the resumable shards themselves (``s3.encoders.shards`` under
``<cache_dir>/shards/<image set>-<salt>/``): a killed run resumes from its complete shards, a torn
or corrupt shard is encoded again, and shards are read one at a time while scoring (never
assembled: Context's would not fit in memory comfortably).
"""

from __future__ import annotations

from functools import partial
from typing import Iterator, Sequence

import torch

from s3.checked import CorruptFile
from s3.data.benchmarks import ImageList
from s3.encoders.cache import EmbeddingCache, digest
from s3.encoders.images import _model_salt, check_image_files, fill_shards, image_shard_plan, pixel_batches
from s3.encoders.models import LoadedModel
from s3.encoders.shards import ShardBatch, ShardPlan, UnreadableInputs
from s3.notices import notice
from s3.segmentation.datasets import SEG_BENCHMARKS, SegImageList
from s3.segmentation.slide import SlideConfig, normalization, prepare_image, window_features

__all__ = ["ImageWindows", "window_images", "window_dtype", "window_salt", "window_plan", "encode_windows",
           "image_windows"]

ImageWindows = tuple[int, torch.Tensor, tuple[int, int]]  # (position, (n, gh, gw, D) window_dtype, resized (h, w))


def window_dtype(loaded: LoadedModel) -> torch.dtype:
    """float16 under bfloat16 autocast (its 11 mantissa bits round less than the tower's bfloat16, 8, already
    did), float32 otherwise (nothing rounded)."""
    return torch.float16 if loaded.amp else torch.float32


def window_images(dataset: SegImageList, count: int) -> ImageList:
    """The first ``count`` images of ``dataset`` as an image list named by its image set
    (``VOC2012``, ``VOC2010``: the 20- and 21-class protocols share their windows)."""
    info = SEG_BENCHMARKS.get(dataset.benchmark)
    name = info.folder.rsplit("/", 1)[-1] if info is not None else dataset.benchmark
    return ImageList(name, dataset.classnames, list(dataset.images[:count]), [0] * count,  # no image labels
                     dataset.bank_indices)


def window_salt(loaded: LoadedModel, config: SlideConfig) -> str:
    """What determines every window's features besides its image (never the class side)."""
    dense = {"variant": config.variant, "short_side": config.short_side, "window": config.window,
             "stride": config.stride}
    if config.variant == "naclip":
        dense["naclip_sigma"] = config.naclip_sigma
    return digest({"model": _model_salt(loaded), "dense": dense, "resize": "pil-bicubic-short-side",
                   "dtype": str(window_dtype(loaded)).removeprefix("torch.")})


def window_plan(cache: EmbeddingCache, loaded: LoadedModel, images: ImageList, config: SlideConfig,
                shard_size: int) -> ShardPlan:
    """The shards of ``images`` (``window_images``) in ``cache``; each shard's key covers
    ``window_salt`` and its images' stamps."""
    return image_shard_plan(cache, images.benchmark, window_salt(loaded, config), images, shard_size)


@torch.no_grad()
def encode_windows(loaded: LoadedModel, images: ImageList, positions: Sequence[int], config: SlideConfig,
                   num_workers: int = 0) -> Iterator[ShardBatch]:
    """Window features of the images at ``positions``, one image per batch (images differ in size).

    Yields:
        ``ShardBatch`` rows ``windows``: a list of one ``(n, gh, gw, D)`` tensor of ``window_dtype``
        (unit rows in float32 before rounding) and ``size``: ``(1, 2)`` int64, the resized image's ``(h, w)``.
    """
    prepare = partial(prepare_image, short_side=config.short_side, normalize=normalization(loaded.preprocess))
    for batch in pixel_batches(images, positions, prepare, 1, num_workers):
        windows: list[torch.Tensor] = []
        size = torch.zeros(0, 2, dtype=torch.long)
        if len(batch.indices):
            pixels = batch.pixels[0]
            _, features, _ = window_features(loaded, pixels, config)
            windows = [features.to(window_dtype(loaded))]
            size = torch.tensor([list(pixels.shape[1:])], dtype=torch.long)
        yield ShardBatch(batch.indices, {"windows": windows, "size": size}, batch.failed)


def _rows(rows: dict, start: int) -> Iterator[ImageWindows]:
    for offset, (windows, size) in enumerate(zip(rows["windows"], rows["size"].tolist())):
        yield start + offset, windows, (size[0], size[1])


def image_windows(loaded: LoadedModel, dataset: SegImageList, config: SlideConfig, count: int,
                  cache: EmbeddingCache | None = None, shard_size: int = 64,
                  num_workers: int = 0) -> Iterator[ImageWindows]:
    """``(position, windows, size)`` of the first ``count`` images of ``dataset``, in order.

    With ``cache``, the windows come from its shards; missing, torn or stale shards are encoded
    first (all of them, when the first one is met), so a warm run does no forward pass. Without,
    each image is encoded and handed out (the same features, in the same dtype; nothing stored).
    """
    images = window_images(dataset, count)
    what = f"windows {dataset.benchmark}"
    if cache is None:
        check_image_files(images)
        for batch in encode_windows(loaded, images, range(count), config, num_workers):
            if batch.failed:
                raise UnreadableInputs([(str(images.paths[i]), reason) for i, reason in batch.failed],
                                       "Replace or remove these images (`s3 data verify` lists every bad file).")
            yield from _rows(batch.rows, int(batch.indices[0]))
        return
    plan = window_plan(cache, loaded, images, config, shard_size)
    encoded = False
    for shard in range(len(plan.keys)):
        rows = plan.load(shard)
        if rows is None and not encoded:
            missing = len(plan.missing_items())
            fill_shards(plan, cache, images.benchmark, images, what,
                        lambda positions: encode_windows(loaded, images, positions, config, num_workers))
            notice(f"{cache.kind}: {images.benchmark}: encoded the windows of {missing} of {count} images")
            encoded = True
            rows = plan.load(shard)
        if rows is None:
            raise CorruptFile(f"{plan.path(shard)} could not be read back after writing it; check the disk under "
                              "segmentation.cache_dir")
        yield from _rows(rows, plan.bounds(shard)[0])
    if not encoded:
        notice(f"{cache.kind}: {images.benchmark}: scored {count} images from cached windows (no forward pass)")
