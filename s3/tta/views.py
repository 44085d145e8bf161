"""TPT views of each test image, seeded, and their features encoded once into the feature cache.

View 0 is the image under the model's own preprocessing (what the ``features`` stage encodes);
views 1..V-1 are ``RandomResizedCrop(size)`` + horizontal flip, with ``AugMix(severity=1)`` on top
for the fine-grained sets (TPT's ``AugMixAugmenter``; the ImageNet family gets no AugMix), then the
model's normalisation. Each image draws its augmentations from its own seed
``(seed, position in the list)``, so a rerun, a resumed run or another worker count gives the same
views.

Two augmenters (``tta.augment_on``, ``resolve_augmenter``): ``cpu`` decodes and augments with PIL
and torchvision's PIL transforms in DataLoader workers (``make_views``); ``device`` reads the bytes
in the workers, decodes on the model's device (nvJPEG on CUDA) and augments there with batched
tensor ops (``s3.tta.gpu_views.TensorViews``), so augmentation does not starve the model on a GPU.
``auto`` takes ``device`` when the model is on CUDA and nvJPEG works there, else ``cpu``. The two
give different pixels (decoder and resampling, see ``s3.tta.gpu_views``); the augmenter is part of
the cache key, so their views never mix.

Cache: ``(N, V, D)`` float16 (64 KB per image at V = 64, D = 512), written in resumable shards
under a key that covers the model, its preprocessing and pixel pipeline, the view recipe and every
file (as the image features are keyed).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from s3.data.benchmarks import BENCHMARKS, DatasetError, ImageList
from s3.encoders.cache import EmbeddingCache, Features, digest
from s3.encoders.gpu_decode import gpu_pixel_batches
from s3.encoders.images import _model_salt, encode_in_shards, file_stamp, image_tower, pixel_batches, resolve_decode
from s3.encoders.models import LoadedModel
from s3.encoders.shards import ShardBatch
from s3.notices import notice
from s3.tta.gpu_views import TensorViews, image_seed

__all__ = ["ViewRecipe", "uses_augmix", "make_views", "encode_views", "view_cache_key", "cached_view_features",
           "BYTES_PER_VALUE", "evenly_spaced", "recipe_for", "save_view_manifest", "load_view_features",
           "AUGMENT_ON", "resolve_augmenter", "augmenter_kind"]

BYTES_PER_VALUE = 2  # float16
AUGMENT_ON = ("auto", "cpu", "device")


def resolve_augmenter(augment_on: str, device: torch.device) -> str:
    """``cpu`` (PIL in DataLoader workers) or ``device`` (tensor ops on ``device``) for ``tta.augment_on``.

    ``auto`` is ``device`` on CUDA when nvJPEG decodes there, else ``cpu``; ``device`` on a CPU model
    runs the tensor augmenter on the CPU (tests, smoke runs); on CUDA without nvJPEG it is an error.
    """
    if augment_on not in AUGMENT_ON:
        from s3.tta.adapt import TTAError
        raise TTAError(f"tta.augment_on must be one of {AUGMENT_ON}, got {augment_on!r}")
    if augment_on == "cpu":
        return "cpu"
    if augment_on == "device":
        resolve_decode("gpu", device)  # raises, with what to set, when nvJPEG is unusable on CUDA
        return "device"
    return "device" if device.type == "cuda" and resolve_decode("auto", device) == "gpu" else "cpu"


def uses_augmix(benchmark: str) -> bool:
    """TPT: AugMix for the fine-grained sets, none for ImageNet and its variants."""
    known = BENCHMARKS.get(benchmark)
    return not (known is not None and known.bank == "imagenet")


@dataclass(frozen=True)
class ViewRecipe:
    """How the views of an image are drawn.

    Attributes:
        n_views: views per image, the original included (TPT: 64).
        seed: base seed; image i draws from ``(seed, i)``.
        augmix: AugMix (severity 1) on top of crop + flip.
    """

    n_views: int = 64
    seed: int = 0
    augmix: bool = True

    def __post_init__(self) -> None:
        if self.n_views < 2:
            from s3.tta.adapt import TTAError
            raise TTAError(f"tta.n_views must be at least 2 (the original and one augmented view), got {self.n_views}")


def _parts(preprocess: Callable) -> tuple[int, Callable]:
    """(crop size, the to-tensor + normalise tail) of a torchvision Compose preprocessing."""
    steps = list(getattr(preprocess, "transforms", []))
    size = next((s.size for s in steps if isinstance(s, T.CenterCrop)), (224, 224))
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    normalize = next((s for s in steps if isinstance(s, T.Normalize)), None)
    if normalize is None:
        raise ValueError(f"the preprocessing {preprocess!r} has no Normalize step to reuse for the views")
    return size, T.Compose([T.ToTensor(), normalize])


def make_views(image: Image.Image, position: int, preprocess: Callable, recipe: ViewRecipe) -> torch.Tensor:
    """``(V, 3, S, S)`` pixels: the preprocessed original, then ``V - 1`` seeded augmentations."""
    size, tail = _parts(preprocess)
    augment = [T.RandomResizedCrop(size, interpolation=T.InterpolationMode.BICUBIC), T.RandomHorizontalFlip()]
    if recipe.augmix:
        augment.append(T.AugMix(severity=1))
    augment = T.Compose(augment)
    views = [preprocess(image)]
    # torchvision's random transforms draw from torch's global generator: seed it for this image only.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(image_seed(recipe.seed, position))
        views += [tail(augment(image)) for _ in range(recipe.n_views - 1)]
    return torch.stack(views)


@torch.no_grad()
def encode_views(loaded: LoadedModel, images: ImageList, positions: Sequence[int], recipe: ViewRecipe,
                 batch_size: int = 4, num_workers: int = 4, augment_on: str = "cpu") -> Iterator[ShardBatch]:
    """Unit view features of the images at ``positions``, ``batch_size`` images (x V views) at a time.

    ``augment_on``: ``tta.augment_on`` (``resolve_augmenter``).

    Yields:
        ``ShardBatch`` rows ``views`` ``(B, V, D)`` float16 and ``labels`` ``(B,)`` int64.
    """
    labels = torch.tensor(images.labels, dtype=torch.long)
    if resolve_augmenter(augment_on, loaded.device) == "device":
        augment = TensorViews(loaded.preprocess, recipe.n_views, recipe.seed, recipe.augmix)
        loader = gpu_pixel_batches(images, positions, loaded.preprocess, batch_size, num_workers, loaded.device,
                                   channels_last=False, transform=augment)
    else:
        views_of = partial(make_views, preprocess=loaded.preprocess, recipe=recipe)
        loader = pixel_batches(images, positions, views_of, batch_size, num_workers, with_position=True)
    tower = image_tower(loaded, False, batch_size * recipe.n_views)
    for indices, pixels, failed in loader:
        views = torch.zeros(0, recipe.n_views, 0, dtype=torch.float16)
        if len(indices):
            flat = pixels.reshape(-1, *pixels.shape[2:]).to(loaded.device)
            features = F.normalize(tower(flat).float(), dim=-1)
            views = features.reshape(len(indices), recipe.n_views, -1).half().cpu()
        yield ShardBatch(indices, {"views": views, "labels": labels[indices]}, failed)


def augmenter_kind(loaded: LoadedModel, augment_on: str = "cpu") -> str:
    """What made the views' pixels: ``pil`` (CPU workers) or ``tensor-<device type>`` (``TensorViews``)."""
    return "pil" if resolve_augmenter(augment_on, loaded.device) == "cpu" else f"tensor-{loaded.device.type}"


def _salt(loaded: LoadedModel, recipe: ViewRecipe, augment_on: str = "cpu") -> str:
    kind = augmenter_kind(loaded, augment_on)
    return digest({"model": _model_salt(loaded, "cpu" if kind == "pil" else "gpu"), "views": asdict(recipe),
                   "augmenter": kind, "dtype": "float16"})


def view_cache_key(loaded: LoadedModel, images: ImageList, recipe: ViewRecipe, split: str = "test",
                   augment_on: str = "cpu") -> str:
    """Covers model, preprocessing, pixel pipeline and augmenter, view recipe, benchmark, split and every
    file (path, size, mtime)."""
    return digest({"model": _salt(loaded, recipe, augment_on), "benchmark": images.benchmark, "split": split,
                   "files": [file_stamp(p) for p in images.paths], "labels": images.labels})


def cached_view_features(loaded: LoadedModel, images: ImageList, cache: EmbeddingCache, recipe: ViewRecipe,
                         split: str = "test", batch_size: int = 4, num_workers: int = 4,
                         shard_size: int = 256, augment_on: str = "cpu") -> tuple[Features, bool]:
    """``(N, V, D)`` float16 view features from the cache, or encoded in resumable shards and cached.

    ``augment_on``: ``tta.augment_on`` (``resolve_augmenter``); resolved before any work.

    Returns:
        ``(features, was_cached)``; ``features.features`` is ``(N, V, D)`` float16.
    """
    if len(images) == 0:
        raise DatasetError(f"{images.benchmark}: no images to encode; run `s3 data verify` to see what is missing")
    kind = augmenter_kind(loaded, augment_on)
    key = view_cache_key(loaded, images, recipe, split, augment_on)
    name = view_cache_name(images, recipe, split)
    hit = cache.load(name, key)
    if hit is not None:
        return hit, True
    rows, plan = encode_in_shards(
        cache, name, _salt(loaded, recipe, augment_on), images, shard_size, f"views {images.benchmark}",
        lambda positions: encode_views(loaded, images, positions, recipe, batch_size, num_workers, augment_on))
    meta = {"key": key, "model": loaded.spec.identity, "benchmark": images.benchmark, "split": split, "augmenter": kind,
            "num_images": len(images), "views": asdict(recipe), "dim": int(rows["views"].shape[-1])}
    features = Features(rows["views"], rows["labels"], meta=json.loads(json.dumps(meta, sort_keys=True)))
    cache.save(name, key, features)
    plan.clear()
    notice(f"{cache.kind}: {name}: encoded {len(images) * recipe.n_views} views of {len(images)} images")
    return features, False


def evenly_spaced(images: ImageList, max_images: int | None) -> ImageList:
    """At most ``max_images`` images spread evenly over the list (lists are ordered by class, so a
    prefix would hold only the first classes); the whole list when ``max_images`` is None."""
    if max_images is None or max_images >= len(images):
        return images
    keep = sorted({round(i * (len(images) - 1) / max(1, max_images - 1)) for i in range(max_images)})
    return ImageList(images.benchmark, images.classnames, [images.paths[i] for i in keep],
                     [images.labels[i] for i in keep], images.bank_indices)


def recipe_for(benchmark: str, tta: dict) -> ViewRecipe:
    """The view recipe of a ``tta`` params section (``augmix: auto`` = TPT's choice for the benchmark)."""
    augmix = uses_augmix(benchmark) if tta["augmix"] == "auto" else bool(tta["augmix"])
    return ViewRecipe(n_views=tta["n_views"], seed=tta["seed"], augmix=augmix)


def save_view_manifest(path: str | Path, features: Features, cache: EmbeddingCache, name: str) -> Path:
    """The views stage's output: where the cached views are and under which key (the views stay in the
    cache, ~64 KB per image at 64 views, instead of a second copy under results/)."""
    record = {"cache_root": str(cache.root), "name": name, "key": features.meta["key"],
              "meta": {k: v for k, v in features.meta.items() if k != "key"}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def load_view_features(path: str | Path) -> Features:
    """The cached views a manifest names; refused with what to run when the cache lost them."""
    record = json.loads(Path(path).read_text())
    hit = EmbeddingCache(record["cache_root"], "feature cache").load(record["name"], record["key"])
    if hit is None:
        from s3.tta.adapt import TTAError
        raise TTAError(f"{path}: the cached views it names are gone from {record['cache_root']}; run "
                       f"`dvc repro --force views@{record['meta']['benchmark']}` to encode them again")
    return hit


def view_cache_name(images: ImageList, recipe: ViewRecipe, split: str = "test") -> str:
    return f"{images.benchmark}-{split}-views{recipe.n_views}"
