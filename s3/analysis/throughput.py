"""Rates of the pipeline's stages, measured through the code the stages run.

Used by ``bench/extraction.py``, ``bench/segmentation.py`` and ``bench/paper_gpu.py``. Every
function here measures and returns what it measured; none asserts a goal. Timings synchronise the
device around the timed block; "best of" takes the fastest of a few repeats, which is the least
disturbed by other work on the machine.

* features: ``cached_image_features`` (the features stage's call, with a fresh cache) on a list of
  files; the per-image rate and the per-call fixed cost come from two lengths of the same list
  (``pipeline_rate``), so DataLoader start-up is not counted per image;
* model only: the image tower on random pixels, same batch, precision, layout, compilation;
* text: ``encode_texts`` without a cache; spaces: ``build_spaces``;
* scoring: ``score_method`` at a benchmark's N and C with a synthetic text side;
* segmentation: ``evaluate_segmentation`` on synthetic images and masks;
* test-time views (a PROXY until ``s3/tta`` is wired in): random resized crops and flips of each
  decoded image made on the device, encoded like the features;
* stage start: a fresh Python process that imports the stage's modules and loads the model.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from s3.core.methods import score_method
from s3.core.spaces import SpaceConfig, build_spaces
from s3.core.text_side import TextSide
from s3.data.benchmarks import ImageList
from s3.encoders.cache import EmbeddingCache
from s3.encoders.gpu_decode import TensorPreprocess
from s3.encoders.images import cached_image_features, image_tower
from s3.encoders.models import LoadedModel
from s3.encoders.text import encode_texts
from s3.notices import NOTICES_ENV
from s3.segmentation.datasets import SegImageList
from s3.segmentation.evaluate import evaluate_segmentation
from s3.segmentation.slide import SlideConfig

__all__ = ["quiet", "single_thread", "add_output_options", "run_benchmark", "synchronize", "best_seconds", "input_side", "model_only_rate", "pipeline_seconds",
           "pipeline_rate", "text_rate", "synthetic_synonyms", "synthetic_text_side",
           "scoring_seconds", "write_seg_images", "segmentation_rate", "proxy_views", "views_rate",
           "stage_start_seconds", "kernel_start_seconds"]


@contextmanager
def quiet() -> Iterator[None]:
    """No notices or progress bars (a benchmark's output is its table)."""
    saved = {k: os.environ.get(k) for k in (NOTICES_ENV, "TQDM_DISABLE")}
    os.environ[NOTICES_ENV], os.environ["TQDM_DISABLE"] = os.devnull, "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def single_thread(enabled: bool = True) -> Iterator[None]:
    """One intra-op CPU thread inside the block (smoke runs: on a loaded 2-core machine, tiny ops with
    several OpenMP threads wait for descheduled threads and take 100x longer)."""
    before = torch.get_num_threads()
    if enabled:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--json PATH`` and ``--smoke`` (toy sizes on the CPU with S3-Demo-Tiny), shared by the bench scripts."""
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU with S3-Demo-Tiny (tests)")


def run_benchmark(args: argparse.Namespace, smoke: dict[str, Any], run: Callable[[argparse.Namespace], int]) -> int:
    """``run(args)``; with ``--smoke`` the ``smoke`` settings replace the arguments and one CPU thread is used."""
    if args.smoke:
        for key, value in smoke.items():
            setattr(args, key, value)
    with single_thread(args.smoke):
        return run(args)


def synchronize(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], Any], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Fastest wall time of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def input_side(loaded: LoadedModel) -> int:
    side = loaded.model.visual.image_size
    return int(side[0] if isinstance(side, (tuple, list)) else side)


@torch.no_grad()
def model_only_rate(loaded: LoadedModel, batch_size: int, batches: int = 8, compile: bool = False,
                    channels_last: bool = False, repeats: int = 3) -> dict[str, float]:
    """Images per second of the image tower alone on random pixels (what the pipeline must keep fed).

    Returns:
        ``images_per_s`` and ``first_call_s`` (the first forward pass: compilation when ``compile``).
    """
    side = input_side(loaded)
    pixels = torch.randn(batch_size, 3, side, side, device=loaded.device)
    if channels_last:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    tower = image_tower(loaded, compile, batch_size)
    synchronize(loaded.device)
    start = time.perf_counter()
    tower(pixels)
    synchronize(loaded.device)
    first = time.perf_counter() - start
    seconds = best_seconds(lambda: [tower(pixels) for _ in range(batches)], loaded.device, repeats)
    return {"images_per_s": batches * batch_size / seconds, "first_call_s": first}


def pipeline_seconds(loaded: LoadedModel, paths: Sequence[Path], batch_size: int, num_workers: int,
                     decode: str, compile: bool = False, shard_size: int = 4096) -> float:
    """Wall time of the features stage's call on ``paths`` with an empty cache (decode, forward, shards, cache)."""
    images = ImageList("bench", ["x"], list(paths), [0] * len(paths))
    with tempfile.TemporaryDirectory() as folder, quiet():
        synchronize(loaded.device)
        start = time.perf_counter()
        cached_image_features(loaded, images, EmbeddingCache(folder), "test", batch_size, num_workers, shard_size,
                              decode=decode, compile=compile)
        synchronize(loaded.device)
        return time.perf_counter() - start


def pipeline_rate(loaded: LoadedModel, paths: Sequence[Path], batch_size: int, num_workers: int, decode: str,
                  compile: bool = False, repeat: int = 8, warmup: bool = True) -> dict[str, float]:
    """Per-image rate and per-call fixed cost of the features pipeline.

    The same files are encoded once and ``repeat`` times over (listed again; decoding costs the
    same, the page cache removes disk reads): ``rate = (n_long - n_short) / (t_long - t_short)``
    and ``fixed = t_short - n_short / rate`` (worker start-up, first batch latency, cache write).
    ``warmup`` first encodes one batch (kernels, nvJPEG, compilation are process-wide: once is enough).
    """
    paths = list(paths)
    if warmup:
        pipeline_seconds(loaded, paths[: max(batch_size, 1)], batch_size, num_workers, decode, compile)
    short = pipeline_seconds(loaded, paths, batch_size, num_workers, decode, compile)
    long = pipeline_seconds(loaded, paths * repeat, batch_size, num_workers, decode, compile)
    extra, whole = len(paths) * (repeat - 1), len(paths) * repeat / long
    # Too short a list (or too noisy a machine) to separate the two: fall back to the whole long run.
    separable = long > 1.2 * short
    rate = extra / (long - short) if separable else whole
    return {"images_per_s": rate, "fixed_s": max(0.0, short - len(paths) / rate) if separable else 0.0,
            "whole_run_images_per_s": whole, "images": len(paths) * repeat, "separable": separable}


@torch.no_grad()
def text_rate(loaded: LoadedModel, count: int, batch_size: int = 256, repeats: int = 2) -> float:
    """Texts per second of ``encode_texts`` (tokenise, encode, normalise) without a cache."""
    texts = [f"a photo of a thing number {i}, a kind of object." for i in range(count)]
    with quiet():
        seconds = best_seconds(lambda: encode_texts(loaded, texts, batch_size), loaded.device, repeats)
    return count / seconds


def synthetic_synonyms(synonym_counts: Sequence[int], dim: int, seed: int = 0,
                       spread: float = 0.35) -> list[np.ndarray]:
    """C arrays ``(K_c, dim)`` of unit vectors scattered around a random center per class.

    ``spread`` is the noise scale relative to the center (about 0.9 mean cosine between synonyms,
    the range CLIP's text embeddings of one class's synonyms fall in).
    """
    rng = np.random.default_rng(seed)
    out = []
    for k in synonym_counts:
        center = rng.normal(size=dim)
        center /= np.linalg.norm(center)
        points = center + spread * rng.normal(size=(k, dim)) / np.sqrt(dim)
        out.append((points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32))
    return out


def synthetic_text_side(synonym_counts: Sequence[int], dim: int, config: SpaceConfig, seed: int = 0,
                        background: bool = False) -> tuple[TextSide, float]:
    """A text side of C classes (baseline classifiers, synonyms, spaces) from synthetic embeddings,
    and the wall time of ``build_spaces`` for it (CPU: gudhi). With ``background`` class 0 is named
    ``background`` (segmentation's ``background: names``)."""
    synonyms = synthetic_synonyms(synonym_counts, dim, seed)
    start = time.perf_counter()
    spaces = build_spaces(synonyms, config)
    build_s = time.perf_counter() - start
    label = F.normalize(torch.from_numpy(np.stack([s[0] for s in synonyms])), dim=-1)
    classifiers = {m: label for m in ("clip_single", "clip_coop", "clip_ensemble80")}
    names = [[f"c{c}-{i}" for i in range(k)] for c, k in enumerate(synonym_counts)]
    classnames = [f"c{c}" for c in range(len(synonym_counts))]
    if background:
        classnames[0] = "background"
    return TextSide("bench", classnames, classifiers, names, spaces, {}), build_s


@torch.no_grad()
def scoring_seconds(text: TextSide, num_images: int, methods: Sequence[str], device: torch.device,
                    dim: int, subset: dict[str, int] | None = None, seed: int = 0) -> dict[str, dict[str, float]]:
    """Seconds of ``score_method`` for each method on ``num_images`` random unit features on ``device``.

    Args:
        subset: method -> images actually scored (then scaled linearly to ``num_images``; scoring is
            linear in N), for methods too slow to run at full N in a benchmark.

    Returns:
        method -> ``seconds`` (at ``num_images``), ``measured_images``, ``scaled`` (bool as float).
    """
    generator = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(num_images, dim, generator=generator), dim=-1).to(device)
    out = {}
    for method in methods:
        n = min(num_images, (subset or {}).get(method, num_images))
        x = features[:n]
        # A subset method is slow by nature: one untimed call at a few images, then one timed call.
        if n < num_images:
            score_method(method, x[:8], text, None)
        seconds = best_seconds(lambda: score_method(method, x, text, None), device,
                               repeats=1 if n < num_images else 2, warmup=0 if n < num_images else 1)
        out[method] = {"seconds": seconds * num_images / n, "measured_images": n, "scaled": float(n < num_images)}
    return out


def write_seg_images(folder: Path, sizes: Sequence[tuple[int, int]], num_classes: int, seed: int = 0
                     ) -> tuple[list[Path], list[Path]]:
    """Photo-like JPEGs and random-label PNG masks (blocks of classes) of the given sizes."""
    from s3.analysis.synthetic_images import write_jpegs

    images = write_jpegs(folder, sizes, seed, prefix="seg")
    rng = np.random.default_rng(seed)
    masks = []
    for i, (w, h) in enumerate(sizes):
        blocks = rng.integers(0, num_classes, size=(max(1, h // 32), max(1, w // 32)), dtype=np.uint8)
        mask = Image.fromarray(blocks).resize((w, h), Image.NEAREST)
        masks.append(folder / f"seg-{i:06d}.png")
        mask.save(masks[-1])
    return images, masks


@torch.no_grad()
def segmentation_rate(loaded: LoadedModel, images: Sequence[Path], masks: Sequence[Path], text: TextSide,
                      methods: Sequence[str], config: SlideConfig, with_background: bool = True,
                      cache: EmbeddingCache | None = None) -> dict[str, float]:
    """Images per second of ``evaluate_segmentation`` (decode, windows, dense features, every method).

    With ``cache`` (an empty window cache), the untimed first run fills it and the timed one re-scores
    from it, as a ``spaces`` change does (no forward pass)."""
    dataset = SegImageList("bench", text.classnames, list(range(len(text.classnames))), list(images), list(masks),
                           reduce_zero_label=not with_background)
    warm_up = dataset if cache is not None else SegImageList(**{**dataset.__dict__, "images": dataset.images[:1],
                                                                "masks": dataset.masks[:1]})
    with quiet():
        evaluate_segmentation(loaded, warm_up, text, methods, config, cache=cache)
        synchronize(loaded.device)
        start = time.perf_counter()
        evaluate_segmentation(loaded, dataset, text, methods, config, cache=cache)
        synchronize(loaded.device)
    seconds = time.perf_counter() - start
    return {"images_per_s": len(dataset) / seconds, "images": len(dataset)}


def proxy_views(image: torch.Tensor, views: int, transform: TensorPreprocess, generator: torch.Generator,
                scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """``(views, 3, h, w)`` normalised views of one ``uint8`` ``(3, H, W)`` image, made on its device.

    PROXY for the test-time views: view 0 is the model's own preprocessing; the others are random
    resized crops (torchvision's default scale and ratio ranges) resampled bilinearly in one
    ``roi_align`` call, half of them flipped. ``s3/tta`` replaces this with the real views.
    """
    from torchvision.ops import roi_align

    _, height, width = image.shape
    side = transform.resize_crop(image[None]).shape[-1]
    count = views - 1
    area = height * width * torch.empty(count).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(count).uniform_(np.log(ratio[0]), np.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(area * aspect).clamp(8, width)
    h = torch.sqrt(area / aspect).clamp(8, height)
    x0 = torch.rand(count, generator=generator) * (width - w)
    y0 = torch.rand(count, generator=generator) * (height - h)
    boxes = torch.stack([torch.zeros(count), x0, y0, x0 + w, y0 + h], dim=1).to(image.device)
    crops = roi_align(image[None].float(), boxes, output_size=side, aligned=True)
    flip = torch.arange(count, device=image.device) % 2 == 1
    crops = torch.where(flip[:, None, None, None], crops.flip(-1), crops)
    crops = transform.finish(crops.round().clamp(0, 255).to(torch.uint8))
    first = transform.finish(transform.resize_crop(image[None]))
    return torch.cat([first, crops])


@torch.no_grad()
def views_rate(loaded: LoadedModel, paths: Sequence[Path], views: int = 64, batch_size: int = 256,
               seed: int = 0) -> dict[str, float]:
    """Views per second of the PROXY test-time views: decode each JPEG on the device, make ``views``
    views (``proxy_views``), encode them in batches of ``batch_size`` (bfloat16 autocast on CUDA)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    transform = TensorPreprocess(loaded.preprocess)
    tower = image_tower(loaded, False, batch_size)
    generator = torch.Generator().manual_seed(seed)
    encoded = [torch.frombuffer(bytearray(Path(p).read_bytes()), dtype=torch.uint8) for p in paths]

    def run(streams: Sequence[torch.Tensor]) -> None:
        pending = []
        for stream in streams:
            image = decode_jpeg(stream, mode=ImageReadMode.RGB, device=loaded.device)
            pending.append(proxy_views(image, views, transform, generator))
            while sum(len(v) for v in pending) >= batch_size:
                batch = torch.cat(pending)
                F.normalize(tower(batch[:batch_size]).float(), dim=-1)
                pending = [batch[batch_size:]] if len(batch) > batch_size else []
        if pending:
            F.normalize(tower(torch.cat(pending)).float(), dim=-1)

    run(encoded[:2])  # warm-up
    synchronize(loaded.device)
    start = time.perf_counter()
    run(encoded)
    synchronize(loaded.device)
    seconds = time.perf_counter() - start
    return {"views_per_s": len(encoded) * views / seconds, "images": len(encoded), "views": views}


_STAGE_START = """
import time, sys
start = time.perf_counter()
import torch
from s3.encoders.models import ModelSpec, load_model
import s3.encoders.images, s3.encoders.text, s3.core.methods, s3.segmentation.evaluate
loaded = load_model(ModelSpec(arch=sys.argv[1], pretrained="none", device=sys.argv[2], precision="amp"))
if loaded.device.type == "cuda":
    torch.zeros(1, device=loaded.device); torch.cuda.synchronize()
print(time.perf_counter() - start)
"""


def stage_start_seconds(arch: str, device: str, repeats: int = 2) -> dict[str, float]:
    """Start-up of a stage's Python process: interpreter, imports, CUDA context, model built on the device.

    Returns:
        ``process_s`` (best wall time of the whole process) and ``in_process_s`` (from the first
        import to the model on the device).
    """
    best_wall, best_inner = float("inf"), float("inf")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", _STAGE_START, arch, device], capture_output=True, text=True,
                                env=env, check=True)
        best_wall = min(best_wall, time.perf_counter() - start)
        best_inner = min(best_inner, float(result.stdout.strip().splitlines()[-1]))
    return {"process_s": best_wall, "in_process_s": best_inner}


_KERNEL_START = """
import sys, tempfile, time
from pathlib import Path
import nbformat, papermill
from traitlets.config import Config
config = Config({"KernelManager": {"transport_encryption": "auto"}})  # as s3.pipeline.stage runs its kernels
notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
with tempfile.TemporaryDirectory() as folder:
    nbformat.write(notebook, Path(folder) / "in.ipynb")
    best = float("inf")
    for _ in range(int(sys.argv[1])):
        start = time.perf_counter()
        papermill.execute_notebook(f"{folder}/in.ipynb", f"{folder}/out.ipynb", kernel_name="python3",
                                   progress_bar=False, log_output=False, config=config)
        best = min(best, time.perf_counter() - start)
print(best)
"""


def kernel_start_seconds(repeats: int = 2) -> float | None:
    """Best wall time of papermill executing a one-cell notebook (kernel start, run, shutdown): the
    fixed cost every stage pays on top of ``stage_start_seconds``. None where papermill is missing.

    Runs in a child process, with the stage runner's kernel settings, whose output is kept out of
    the benchmark's (ipykernel logs the interrupt papermill sends at shutdown)."""
    try:
        import nbformat  # noqa: F401
        import papermill  # noqa: F401
    except ImportError:
        return None
    result = subprocess.run([sys.executable, "-c", _KERNEL_START, str(repeats)], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])
