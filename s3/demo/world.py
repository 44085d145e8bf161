"""The demo world: procedurally generated stand-ins for EuroSAT (CoOp layout) and PASCAL VOC
(mmsegmentation layout), each with a training split for the demo model and a test split for the
pipeline.

EuroSAT: ten land-cover classes drawn as seeded textures (stripes for crops, a grey band for a
highway, a blue curve for a river, ...) under random lighting, colour casts and sensor noise, so
neighbouring classes (forest, herbaceous vegetation, pasture) overlap and a small model does not
reach 100 %. 64x64 JPEGs in ``eurosat/2750/<Class>/`` with CoOp's ``split_zhou_EuroSAT.json``
(``train`` and ``test`` lists, disjoint images). VOC: filled shapes of six VOC classes on a
grey backdrop (every VOC class has its own colour), with masks; ``train.txt`` and ``val.txt``. Both go through the real loaders
and the real synonym bank. Everything measured on them is a demo number, meaningless for the paper.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["EUROSAT_FOLDERS", "VOC_DEMO_CLASSES", "WORLD_VERSION", "write_demo_eurosat", "write_demo_voc"]

# Bump when the generators change: the demo model's cache key includes it.
WORLD_VERSION = 3

# CoOp's EuroSAT folder names, in label order, with their renamed class names.
EUROSAT_FOLDERS = [
    ("AnnualCrop", "Annual Crop Land"),
    ("Forest", "Forest"),
    ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
    ("Highway", "Highway or Road"),
    ("Industrial", "Industrial Buildings"),
    ("Pasture", "Pasture Land"),
    ("PermanentCrop", "Permanent Crop Land"),
    ("Residential", "Residential Buildings"),
    ("River", "River"),
    ("SeaLake", "Sea or Lake"),
]

SIZE = 64


def _noise(rng: np.random.Generator, base, spread: float) -> np.ndarray:
    return np.asarray(base, dtype=float) + spread * rng.normal(size=(SIZE, SIZE, 3))


def _texture(folder: str, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    angle = rng.uniform(0, np.pi)
    along = np.cos(angle) * xx + np.sin(angle) * yy
    across = -np.sin(angle) * xx + np.cos(angle) * yy
    if folder == "AnnualCrop":
        stripes = (np.sin(along / rng.uniform(2, 4)) > 0)[..., None]
        return np.where(stripes, _noise(rng, (150, 120, 70), 15), _noise(rng, (110, 150, 60), 15))
    if folder == "Forest":
        return _noise(rng, (40, 85, 40), 25)
    if folder == "HerbaceousVegetation":
        return _noise(rng, (110, 140, 70), 30)
    if folder == "Highway":
        img = _noise(rng, (120, 140, 100), 20)
        road = (np.abs(across - rng.uniform(20, 44)) < rng.uniform(2, 4))[..., None]
        return np.where(road, _noise(rng, (95, 95, 100), 8), img)
    if folder == "Industrial":
        img = _noise(rng, (150, 150, 150), 15)
        for _ in range(rng.integers(3, 7)):
            x, y, w, h = rng.integers(0, 48, size=2).tolist() + rng.integers(8, 20, size=2).tolist()
            img[y : y + h, x : x + w] = rng.uniform(170, 230)
        return img
    if folder == "Pasture":
        return _noise(rng, (115, 155, 85), 14)
    if folder == "PermanentCrop":
        period = rng.uniform(2.0, 3.2)
        dots = ((np.sin(along / period) > 0.5) & (np.sin(across / period) > 0.5))[..., None]
        return np.where(dots, _noise(rng, (60, 110, 45), 10), _noise(rng, (150, 130, 90), 12))
    if folder == "Residential":
        period = rng.integers(8, 12)
        blocks = ((xx % period < period * 0.6) & (yy % period < period * 0.6))[..., None]
        return np.where(blocks, _noise(rng, (185, 100, 85), 25), _noise(rng, (165, 165, 155), 15))
    if folder == "River":
        img = _noise(rng, (95, 130, 75), 20)
        curve = 32 + 10 * np.sin(along / rng.uniform(6, 12))
        water = (np.abs(across - curve) < rng.uniform(3, 5))[..., None]
        return np.where(water, _noise(rng, (45, 75, 135), 10), img)
    return _noise(rng, (40, 70, 125), 14)  # SeaLake


def _draw(folder: str, rng: np.random.Generator) -> np.ndarray:
    """One 64x64 RGB uint8 image of a class: its texture under a random exposure, colour cast and noise."""
    img = _texture(folder, rng)
    img = img * rng.uniform(0.8, 1.2) + rng.normal(0, 12, size=3)  # exposure, colour cast
    img = img + rng.normal(0, 10, size=img.shape)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def write_demo_eurosat(root: str | Path, images_per_class: int = 30, train_per_class: int = 60,
                       seed: int = 0) -> Path:
    """Write the demo EuroSAT under ``root/eurosat`` (skipped when already complete).

    Args:
        images_per_class: test images per class; ``train_per_class``: training images per class
            (the demo model trains on these only).

    Returns:
        The dataset folder.
    """
    folder = Path(root) / "eurosat"
    stamp = folder / "demo-world.json"
    expected = {"train": train_per_class, "test": images_per_class, "version": WORLD_VERSION, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text()) == expected:
        return folder
    rng = np.random.default_rng(seed)
    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    for label, (name, classname) in enumerate(EUROSAT_FOLDERS):
        (folder / "2750" / name).mkdir(parents=True, exist_ok=True)
        for i in range(train_per_class + images_per_class):
            relative = f"{name}/{name}_{i + 1}.jpg"
            Image.fromarray(_draw(name, rng)).save(folder / "2750" / relative, quality=90)
            splits["train" if i < train_per_class else "test"].append([relative, label, classname])
    (folder / "split_zhou_EuroSAT.json").write_text(json.dumps(splits, indent=1))
    stamp.write_text(json.dumps(expected))  # what was written, so a rerun with the same settings is skipped
    return folder


def _voc_colours() -> dict[int, tuple[int, int, int]]:
    """A saturated colour for each of VOC's 20 object classes: 10 hues at two lightness levels."""
    import colorsys

    colours = {}
    for label in range(1, 21):
        hue, light = ((label - 1) % 10) / 10, (0.35 if label <= 10 else 0.65)
        colours[label] = tuple(int(255 * c) for c in colorsys.hls_to_rgb(hue, light, 0.9))
    return colours


# Every VOC object class has its own colour; the background is grey-ish texture.
VOC_DEMO_CLASSES = _voc_colours()


def _voc_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    base = rng.uniform(80, 140) + rng.normal(0, 6, size=3)  # a desaturated backdrop
    pixels = np.clip(base + 18 * rng.normal(size=(size, size, 3)), 0, 255)
    mask = np.zeros((size, size), dtype=np.uint8)
    for label in rng.choice(list(VOC_DEMO_CLASSES), size=2, replace=False):
        cy, cx = rng.integers(15, size - 15, size=2)
        ry, rx = rng.integers(10, 16, size=2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        edge = (((yy - cy) / (ry + 1.5)) ** 2 + ((xx - cx) / (rx + 1.5)) ** 2 <= 1) & ~inside
        colour = np.asarray(VOC_DEMO_CLASSES[label]) + rng.normal(0, 8, size=3)
        pixels[inside] = np.clip(colour + 12 * rng.normal(size=(inside.sum(), 3)), 0, 255)
        mask[edge & (mask == 0)] = 255
        mask[inside] = label
    return pixels.astype(np.uint8), mask


def write_demo_voc(root: str | Path, num_images: int = 8, num_train: int = 160, size: int = 64, seed: int = 0) -> Path:
    """A procedurally generated PASCAL VOC 2012 stand-in (mmsegmentation layout): each image has a
    textured grey backdrop and two filled ellipses of VOC object classes, each class with its own
    colour; its mask has their labels and a 255 border band, as VOC's masks do. ``val.txt`` lists ``num_images`` images, ``train.txt``
    ``num_train`` others (the demo model trains on these only). Skipped when already complete."""
    folder = Path(root) / "VOCdevkit" / "VOC2012"
    splits = folder / "ImageSets" / "Segmentation"
    stamp = folder / "demo-world.json"
    expected = {"val": num_images, "train": num_train, "size": size, "version": WORLD_VERSION, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text()) == expected:
        return folder
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids: dict[str, list[str]] = {"val": [], "train": []}
    for part, count in (("val", num_images), ("train", num_train)):
        for n in range(count):
            pixels, mask = _voc_image(rng, size)
            image_id = f"demo_{part}_{n:04d}"
            Image.fromarray(pixels).save(folder / "JPEGImages" / f"{image_id}.jpg", quality=90)
            Image.fromarray(mask).save(folder / "SegmentationClass" / f"{image_id}.png")
            ids[part].append(image_id)
    for part, names in ids.items():
        (splits / f"{part}.txt").write_text("\n".join(names) + "\n")
    stamp.write_text(json.dumps(expected))
    return folder
