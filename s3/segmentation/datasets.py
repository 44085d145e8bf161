"""PASCAL VOC 2012 and PASCAL Context validation sets in the mmsegmentation folder layouts.

    <root>/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    <root>/VOCdevkit/VOC2012/SegmentationClass/<id>.png          (0 background, 1..20, 255 ignore)
    <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt
    <root>/VOCdevkit/VOC2010/JPEGImages/<id>.jpg
    <root>/VOCdevkit/VOC2010/SegmentationClassContext/<id>.png   (0 background, 1..59; mmseg's converted masks)
    <root>/VOCdevkit/VOC2010/ImageSets/SegmentationContext/val.txt

``voc21``/``context60`` score the background as a class; ``voc20``/``context59`` ignore background
pixels (mmsegmentation's ``reduce_zero_label``: label 0 becomes 255, label k becomes k - 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from s3.data.benchmarks import DatasetError

__all__ = ["SegBenchmark", "SEG_BENCHMARKS", "SegImageList", "load_seg_benchmark", "read_mask", "IGNORE_INDEX",
           "VOC_CLASSES", "CONTEXT_CLASSES"]

IGNORE_INDEX = 255

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train",
               "tv monitor"]
CONTEXT_CLASSES = ["background", "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book",
                   "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow",
                   "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground", "horse",
                   "keyboard", "light", "motorbike", "mountain", "mouse", "person", "plate", "platform",
                   "potted plant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky", "snow", "sofa",
                   "table", "track", "train", "tree", "truck", "tv monitor", "wall", "water", "window", "wood"]


@dataclass(frozen=True)
class SegBenchmark:
    id: str
    title: str
    folder: str
    masks: str
    split_file: str
    bank: str
    all_classes: tuple[str, ...]
    with_background: bool
    num_val: int
    source: str

    @property
    def classnames(self) -> list[str]:
        return list(self.all_classes if self.with_background else self.all_classes[1:])

    @property
    def bank_indices(self) -> list[int]:
        start = 0 if self.with_background else 1
        return list(range(start, len(self.all_classes)))


_VOC_SOURCE = "VOCtrainval_11-May-2012.tar (PASCAL VOC 2012), unpacked under <root>/VOCdevkit/VOC2012"
_CONTEXT_SOURCE = ("VOCtrainval_03-May-2010.tar plus the PASCAL Context annotations converted with mmsegmentation's "
                   "tools/dataset_converters/pascal_context.py, under <root>/VOCdevkit/VOC2010")

SEG_BENCHMARKS: dict[str, SegBenchmark] = {
    b.id: b
    for b in [
        SegBenchmark("voc21", "VOC21", "VOCdevkit/VOC2012", "SegmentationClass", "ImageSets/Segmentation/val.txt",
                     "pascal_voc", tuple(VOC_CLASSES), True, 1449, _VOC_SOURCE),
        SegBenchmark("voc20", "VOC20", "VOCdevkit/VOC2012", "SegmentationClass", "ImageSets/Segmentation/val.txt",
                     "pascal_voc", tuple(VOC_CLASSES), False, 1449, _VOC_SOURCE),
        SegBenchmark("context60", "PC60", "VOCdevkit/VOC2010", "SegmentationClassContext",
                     "ImageSets/SegmentationContext/val.txt", "pascal_context", tuple(CONTEXT_CLASSES), True, 5105,
                     _CONTEXT_SOURCE),
        SegBenchmark("context59", "PC59", "VOCdevkit/VOC2010", "SegmentationClassContext",
                     "ImageSets/SegmentationContext/val.txt", "pascal_context", tuple(CONTEXT_CLASSES), False, 5105,
                     _CONTEXT_SOURCE),
    ]
}


@dataclass
class SegImageList:
    """Validation images and masks of one segmentation benchmark.

    Attributes:
        classnames: C class names (prompt form), label order; ``bank_indices``: their bank records.
        images, masks: parallel lists of paths.
    """

    benchmark: str
    classnames: list[str]
    bank_indices: list[int]
    images: list[Path]
    masks: list[Path]
    reduce_zero_label: bool

    def __len__(self) -> int:
        return len(self.images)


def read_mask(path: str | Path, reduce_zero_label: bool) -> np.ndarray:
    """``(H, W)`` int64 labels; with ``reduce_zero_label`` background becomes ignore and k becomes k - 1."""
    mask = np.array(Image.open(path), dtype=np.int64)
    if reduce_zero_label:
        mask = np.where(mask == 0, IGNORE_INDEX, np.where(mask == IGNORE_INDEX, IGNORE_INDEX, mask - 1))
    return mask


def load_seg_benchmark(benchmark: str, root: str | Path, split: str = "val") -> SegImageList:
    """Images and masks of one split (``val``: the protocol; ``train``: e.g. for the demo model)."""
    if benchmark not in SEG_BENCHMARKS:
        raise DatasetError(f"unknown segmentation benchmark {benchmark!r}; choose from {', '.join(SEG_BENCHMARKS)}")
    info = SEG_BENCHMARKS[benchmark]
    folder = Path(root).expanduser() / info.folder
    split_path = folder / Path(info.split_file).with_name(f"{split}.txt")
    if not split_path.is_file():
        raise DatasetError(f"{info.title}: split file {split_path} not found. Download {info.source}.")
    ids = [line.strip() for line in split_path.read_text().splitlines() if line.strip()]
    return SegImageList(
        benchmark,
        info.classnames,
        info.bank_indices,
        [folder / "JPEGImages" / f"{i}.jpg" for i in ids],
        [folder / info.masks / f"{i}.png" for i in ids],
        reduce_zero_label=not info.with_background,
    )
