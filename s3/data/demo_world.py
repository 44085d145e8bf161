"""Procedurally generated stand-ins for the offline demo: EuroSAT (CoOp layout) and PASCAL VOC
(mmsegmentation layout).

EuroSAT: ten land-cover classes drawn as simple seeded textures (stripes for crops, a grey band
for a highway, a blue curve for a river, ...), 64x64 JPEGs in ``eurosat/2750/<Class>/`` with
CoOp's ``split_zhou_EuroSAT.json``. VOC: filled shapes of a few VOC classes on a textured
background, with masks. Both exercise the real loaders and the real synonym bank; their
accuracies are demo numbers, meaningless for the paper.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["EUROSAT_FOLDERS", "write_demo_eurosat", "write_demo_voc"]

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
    return np.clip(np.asarray(base) + spread * rng.normal(size=(SIZE, SIZE, 3)), 0, 255)


def _draw(folder: str, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    angle = rng.uniform(0, np.pi)
    along = np.cos(angle) * xx + np.sin(angle) * yy
    across = -np.sin(angle) * xx + np.cos(angle) * yy
    if folder == "AnnualCrop":
        stripes = (np.sin(along / rng.uniform(2, 4)) > 0)[..., None]
        return np.where(stripes, _noise(rng, (150, 120, 70), 15), _noise(rng, (110, 150, 60), 15))
    if folder == "Forest":
        return _noise(rng, (30, 80, 35), 25)
    if folder == "HerbaceousVegetation":
        return _noise(rng, (140, 160, 80), 30)
    if folder == "Highway":
        img = _noise(rng, (120, 140, 100), 20)
        road = (np.abs(across - rng.uniform(20, 44)) < 3)[..., None]
        return np.where(road, _noise(rng, (90, 90, 95), 8), img)
    if folder == "Industrial":
        img = _noise(rng, (150, 150, 150), 15)
        for _ in range(6):
            x, y, w, h = rng.integers(0, 48, size=2).tolist() + rng.integers(8, 20, size=2).tolist()
            img[y : y + h, x : x + w] = rng.uniform(180, 230)
        return img
    if folder == "Pasture":
        return _noise(rng, (120, 170, 90), 8)
    if folder == "PermanentCrop":
        dots = ((np.sin(xx / 2.5) > 0.6) & (np.sin(yy / 2.5) > 0.6))[..., None]
        return np.where(dots, _noise(rng, (50, 110, 40), 10), _noise(rng, (160, 130, 90), 12))
    if folder == "Residential":
        blocks = ((xx % 10 < 6) & (yy % 10 < 6))[..., None]
        return np.where(blocks, _noise(rng, (190, 90, 80), 25), _noise(rng, (170, 170, 160), 15))
    if folder == "River":
        img = _noise(rng, (90, 130, 70), 20)
        curve = 32 + 10 * np.sin(along / rng.uniform(6, 12))
        water = (np.abs(across - curve) < 4)[..., None]
        return np.where(water, _noise(rng, (40, 70, 140), 10), img)
    return _noise(rng, (30, 60, 130), 12)  # SeaLake


def write_demo_eurosat(root: str | Path, images_per_class: int = 20, seed: int = 0) -> Path:
    """Write the demo dataset under ``root/eurosat`` (skipped when already complete).

    Returns:
        The dataset folder.
    """
    folder = Path(root) / "eurosat"
    split_path = folder / "split_zhou_EuroSAT.json"
    expected = len(EUROSAT_FOLDERS) * images_per_class
    if split_path.is_file() and len(json.loads(split_path.read_text())["test"]) == expected:
        return folder
    rng = np.random.default_rng(seed)
    test = []
    for label, (name, classname) in enumerate(EUROSAT_FOLDERS):
        (folder / "2750" / name).mkdir(parents=True, exist_ok=True)
        for i in range(images_per_class):
            relative = f"{name}/{name}_{i + 1}.jpg"
            pixels = _draw(name, rng).astype(np.uint8)
            Image.fromarray(pixels).save(folder / "2750" / relative, quality=90)
            test.append([relative, label, classname])
    split_path.write_text(json.dumps({"train": [], "val": [], "test": test}, indent=1))
    return folder


# VOC class index -> colour of its demo shapes (cat, car, person, aeroplane, boat, dog).
_VOC_DEMO_COLOURS = {8: (200, 140, 60), 7: (180, 30, 40), 15: (230, 190, 160), 1: (200, 200, 210), 4: (240, 240, 240),
                     12: (90, 60, 40)}


def write_demo_voc(root: str | Path, num_images: int = 6, size: int = 64, seed: int = 0) -> Path:
    """A procedurally generated PASCAL VOC 2012 stand-in (mmsegmentation layout): each image has a
    textured background and a few filled shapes of VOC classes, its mask has their labels and
    a 255 border band, as VOC's masks do. Skipped when already complete."""
    folder = Path(root) / "VOCdevkit" / "VOC2012"
    split = folder / "ImageSets" / "Segmentation" / "val.txt"
    if split.is_file() and len(split.read_text().split()) == num_images:
        return folder
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    ids = []
    for n in range(num_images):
        pixels = np.clip((90, 120, 80) + 20 * rng.normal(size=(size, size, 3)), 0, 255)
        mask = np.zeros((size, size), dtype=np.uint8)
        for label in rng.choice(list(_VOC_DEMO_COLOURS), size=2, replace=False):
            cy, cx = rng.integers(12, size - 12, size=2)
            ry, rx = rng.integers(6, 14, size=2)
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            edge = (((yy - cy) / (ry + 1.5)) ** 2 + ((xx - cx) / (rx + 1.5)) ** 2 <= 1) & ~inside
            pixels[inside] = np.clip(np.asarray(_VOC_DEMO_COLOURS[label]) + 15 * rng.normal(size=(inside.sum(), 3)), 0, 255)
            mask[edge & (mask == 0)] = 255
            mask[inside] = label
        image_id = f"demo_{n:04d}"
        Image.fromarray(pixels.astype(np.uint8)).save(folder / "JPEGImages" / f"{image_id}.jpg", quality=90)
        Image.fromarray(mask).save(folder / "SegmentationClass" / f"{image_id}.png")
        ids.append(image_id)
    split.write_text("\n".join(ids) + "\n")
    return folder
