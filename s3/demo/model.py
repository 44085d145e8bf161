"""A tiny CLIP that learned the demo world, trained contrastively on the CPU in seconds.

The demo's numbers mean nothing if its model is random (every method sits at chance). So before
the pipeline runs, the demo trains ``S3-Demo-Tiny`` with open_clip's own CLIP loss on the demo
world's *training* images (the test split is never used): EuroSAT-like textures, and windows of the
VOC-like images centred on a shape (captioned with its class) or of almost pure background. Each image is paired with a caption made from one of its
class's bank synonyms put through one of a few templates. Only the label and the first
``seen_fraction`` of each class's other synonyms appear in captions; the rest are never seen in
training, so the text encoder places them only by the words they share with seen ones. They play
the part of the loosely grounded synonyms an LLM proposes, which is what S^3's pruning is for.
This is a property of the demo world by design, not evidence about CLIP.

The weights are saved as a plain open_clip state dict and loaded by the pipeline through the real
``model.pretrained: <file>`` route. Training is seeded, single-process and single-threaded, so it is
deterministic on a given machine; the file is cached under a key covering the
recipe, the world and the synonyms, so a second ``make demo`` does not retrain.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import open_clip
import torch
from open_clip.loss import ClipLoss
from PIL import Image

from s3.atomic import atomic_torch_save
from s3.data.benchmarks import load_benchmark
from s3.demo.world import WORLD_VERSION
from s3.encoders.cache import digest
from s3.encoders.models import quiet_random_init
from s3.segmentation.datasets import load_seg_benchmark, read_mask
from s3.synonyms.bank import bank_file, read_bank

__all__ = ["DemoTraining", "TrainingSet", "training_set", "train_demo_model", "demo_model_path"]


@dataclass(frozen=True)
class DemoTraining:
    """The demo model's training recipe.

    Attributes:
        arch: the open_clip architecture (``S3-Demo-Tiny``).
        seed: seeds initial weights, batches and captions.
        steps: optimisation steps; each step holds ``groups`` sub-batches of one image per class.
        lr, weight_decay: AdamW.
        seen_fraction: share of each class's synonyms after the label that captions may use.
        templates: caption templates (the baselines' ``a photo of a {}.`` and CoOp's EuroSAT
            template among them).
        crop: side of the VOC crops, in pixels (the segmentation window).
        threads: torch threads during training: fixed, so results do not depend on the machine's core
            count; one, because a tiny model gains nothing from more and suffers badly when cores are shared.
    """

    arch: str = "S3-Demo-Tiny"
    seed: int = 0
    steps: int = 300
    groups: int = 2
    lr: float = 2e-3
    weight_decay: float = 0.1
    seen_fraction: float = 0.5
    templates: tuple[str, ...] = ("a photo of a {}.", "a centered satellite photo of {}.", "a satellite photo of {}.",
                                  "a photo of the {}.", "{}.")
    crop: int = 32
    threads: int = 1


@dataclass
class TrainingSet:
    """Preprocessed training images grouped by class, and the captions each class may use.

    Attributes:
        names: one name per training class (``eurosat/Forest``, ``voc/cat``, ...).
        images: per class, ``(n_c, 3, S, S)`` preprocessed pixels.
        captions: per class, the caption texts.
        seen: per class, the synonyms used in captions (the label first).
    """

    names: list[str]
    images: list[torch.Tensor]
    captions: list[list[str]]
    seen: list[list[str]] = field(default_factory=list)


def _seen(synonyms: Sequence[str], fraction: float) -> list[str]:
    others = list(synonyms[1:])
    return [synonyms[0], *others[: round(len(others) * fraction)]]


def _voc_crops(root: Path, crop: int, rng: np.random.Generator, jitter: int = 4,
               background_purity: float = 0.8) -> dict[int, list[Image.Image]]:
    """VOC label -> crops of the training images: windows centred (with jitter) on each shape, labelled
    by its class, and windows of almost pure background, labelled background."""
    data = load_seg_benchmark("voc21", root, split="train")
    crops: dict[int, list[Image.Image]] = {}

    def cut(label: int, top: int, left: int) -> None:
        top, left = int(np.clip(top, 0, height - crop)), int(np.clip(left, 0, width - crop))
        crops.setdefault(label, []).append(image.crop((left, top, left + crop, top + crop)))

    for image_path, mask_path in zip(data.images, data.masks):
        with Image.open(image_path) as raw:
            image = raw.convert("RGB")
        mask = read_mask(mask_path, reduce_zero_label=False)
        height, width = mask.shape
        for label in sorted(set(np.unique(mask).tolist()) - {0, 255}):
            ys, xs = np.nonzero(mask == label)
            for _ in range(2):
                dy, dx = rng.integers(-jitter, jitter + 1, size=2)
                cut(label, int(ys.mean()) + dy - crop // 2, int(xs.mean()) + dx - crop // 2)
        for top in range(0, height - crop + 1, 8):
            for left in range(0, width - crop + 1, 8):
                if (mask[top : top + crop, left : left + crop] == 0).mean() >= background_purity:
                    cut(0, top, left)
    return crops


def training_set(data_root: str | Path, bank_dir: str | Path, preprocess: Callable, config: DemoTraining) -> TrainingSet:
    """The demo world's training split (EuroSAT ``train``, VOC ``train.txt``), preprocessed."""
    root = Path(data_root)
    rng = np.random.default_rng(config.seed)
    out = TrainingSet([], [], [], [])

    def add(name: str, pictures: list[Image.Image], synonyms: Sequence[str]) -> None:
        seen = _seen(synonyms, config.seen_fraction)
        out.names.append(name)
        out.images.append(torch.stack([preprocess(p) for p in pictures]))
        out.captions.append([t.format(s) for s in seen for t in config.templates])
        out.seen.append(seen)

    eurosat = load_benchmark("eurosat", root, "train")
    bank = {r.index: r.synonyms for r in read_bank(bank_file(bank_dir, "eurosat"))}
    for label, classname in enumerate(eurosat.classnames):
        pictures = []
        for path, y in zip(eurosat.paths, eurosat.labels):
            if y == label:
                with Image.open(path) as raw:
                    pictures.append(raw.convert("RGB"))
        add(f"eurosat/{classname}", pictures, bank[eurosat.bank_indices[label]])
    voc_bank = {r.index: r.synonyms for r in read_bank(bank_file(bank_dir, "pascal_voc"))}
    for label, pictures in sorted(_voc_crops(root, config.crop, rng).items()):
        add(f"voc/{voc_bank[label][0]}", pictures, voc_bank[label])
    return out


def _key(config: DemoTraining, data: TrainingSet) -> str:
    arch = open_clip.get_model_config(config.arch)
    return digest({"recipe": asdict(config), "arch": arch, "world": WORLD_VERSION, "classes": data.names,
                   "sizes": [len(x) for x in data.images], "captions": data.captions,
                   "torch": torch.__version__, "open_clip": open_clip.__version__})


def demo_model_path(out_dir: str | Path, key: str, arch: str = "S3-Demo-Tiny") -> Path:
    return Path(out_dir) / f"{arch}-{key[:16]}.pt"


def _train(model: torch.nn.Module, config: DemoTraining, data: TrainingSet,
           log: Callable[[str], None]) -> tuple[torch.nn.Module, dict]:
    tokenizer = open_clip.get_tokenizer(config.arch)
    tokens = [tokenizer(c) for c in data.captions]
    loss_fn = ClipLoss()
    # fused: one kernel for every parameter, 7x faster than the per-parameter loop on the CPU here
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=0.1)
    generator = torch.Generator().manual_seed(config.seed)
    classes = len(data.images)
    model.train()
    losses = []
    for step in range(config.steps):
        images, texts = [], []
        for _ in range(config.groups):  # one image per class: every off-diagonal pair is a true negative
            for c in range(classes):
                images.append(data.images[c][torch.randint(len(data.images[c]), (1,), generator=generator)][0])
                texts.append(tokens[c][torch.randint(len(tokens[c]), (1,), generator=generator)][0])
        image_features, text_features, logit_scale = model(torch.stack(images), torch.stack(texts))
        loss = sum(loss_fn(image_features[g * classes : (g + 1) * classes], text_features[g * classes : (g + 1) * classes],
                           logit_scale) for g in range(config.groups)) / config.groups
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == config.steps - 1:
            log(f"demo model: step {step + 1}/{config.steps}, loss {losses[-1]:.3f}")
    return model.eval(), {"loss_first": losses[0], "loss_last": losses[-1]}


def train_demo_model(data_root: str | Path, bank_dir: str | Path, out_dir: str | Path,
                     config: DemoTraining = DemoTraining(), log: Callable[[str], None] = print) -> Path:
    """The trained demo model's checkpoint: from ``out_dir`` when its key matches, else trained.

    Returns:
        The path of the state-dict file (``<arch>-<key>.pt``), with a ``.json`` beside it that
        records the recipe, the training time and the loss.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(config.seed)
        # The pipeline loads a local file with QuickGELU (model.activation: auto), so train with it.
        model, _, preprocess = quiet_random_init(
            lambda: open_clip.create_model_and_transforms(config.arch, force_quick_gelu=True))
        data = training_set(data_root, bank_dir, preprocess, config)
        key = _key(config, data)
        path = demo_model_path(out_dir, key, config.arch)
        if path.is_file() and path.with_suffix(".json").is_file():
            return path
        start = time.perf_counter()
        model, losses = _train(model, config, data, log)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    atomic_torch_save(path, model.state_dict())
    record = {"key": key, "recipe": asdict(config), "classes": data.names, "images_per_class": [len(x) for x in data.images],
              "seen_synonyms": data.seen, "train_seconds": round(seconds, 1), **losses}
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    log(f"demo model: trained in {seconds:.0f} s -> {path}")
    return path
