"""The 15 classification benchmarks in the CoOp/Dassl folder layout, test split only.

Class names are derived from the dataset's own files by CoOp's rules (README, step 3 of
"Reproducing the paper configuration"), in prompt form (``_`` replaced by a space). The five
ImageNet sets also carry, for each class, its ImageNet label index, which is how they share
ImageNet's synonym bank.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from s3.errors import S3Error

__all__ = [
    "Benchmark",
    "BENCHMARKS",
    "ImageList",
    "DatasetError",
    "load_benchmark",
    "prompt_form",
    "save_class_list",
    "load_class_list",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DatasetError(S3Error):
    """A dataset is missing or malformed; the message says what to download and where to put it."""


@dataclass(frozen=True)
class Benchmark:
    """Static facts about one benchmark.

    Attributes:
        id: the benchmark id used in params.yaml.
        folder: folder under the data root.
        num_classes, num_test: the protocol's figures.
        group: ``fine_grained`` (with ImageNet) or ``shift`` (ImageNet variants).
        bank: the synonym bank it draws from (``imagenet`` for the variants).
        source: where users get it (shown when it is missing).
    """

    id: str
    title: str
    folder: str
    num_classes: int
    num_test: int
    group: str
    bank: str
    source: str


BENCHMARKS: dict[str, Benchmark] = {
    b.id: b
    for b in [
        Benchmark("imagenet", "ImageNet", "imagenet", 1000, 50000, "fine_grained", "imagenet",
                  "ILSVRC2012 val images sorted into images/val/<wnid>/ plus CoOp's classnames.txt"),
        Benchmark("caltech101", "Caltech101", "caltech-101", 100, 2465, "fine_grained", "caltech101",
                  "101_ObjectCategories.tar.gz (Caltech) and CoOp's split_zhou_Caltech101.json"),
        Benchmark("oxford_pets", "OxfordPets", "oxford_pets", 37, 3669, "fine_grained", "oxford_pets",
                  "images.tar.gz + annotations.tar.gz (Oxford VGG) and CoOp's split_zhou_OxfordPets.json"),
        Benchmark("stanford_cars", "StanfordCars", "stanford_cars", 196, 8041, "fine_grained", "stanford_cars",
                  "cars_train/, cars_test/, devkit/ and CoOp's split_zhou_StanfordCars.json"),
        Benchmark("oxford_flowers", "Flowers102", "oxford_flowers", 102, 2463, "fine_grained", "oxford_flowers",
                  "102flowers.tgz (jpg/), imagelabels.mat, cat_to_name.json and CoOp's split_zhou_OxfordFlowers.json"),
        Benchmark("food101", "Food101", "food-101", 101, 30300, "fine_grained", "food101",
                  "food-101.tar.gz (images/<class>/) and CoOp's split_zhou_Food101.json"),
        Benchmark("fgvc_aircraft", "FGVCAircraft", "fgvc_aircraft", 100, 3333, "fine_grained", "fgvc_aircraft",
                  "fgvc-aircraft-2013b.tar.gz: copy data/ to fgvc_aircraft/ (images/, variants.txt, "
                  "images_variant_test.txt)"),
        Benchmark("sun397", "SUN397", "sun397", 397, 19850, "fine_grained", "sun397",
                  "SUN397.tar.gz (SUN397/) and CoOp's split_zhou_SUN397.json"),
        Benchmark("dtd", "DTD", "dtd", 47, 1692, "fine_grained", "dtd",
                  "dtd-r1.0.1.tar.gz (images/) and CoOp's split_zhou_DescribableTextures.json"),
        Benchmark("eurosat", "EuroSAT", "eurosat", 10, 8100, "fine_grained", "eurosat",
                  "EuroSAT.zip (2750/<Class>/) and CoOp's split_zhou_EuroSAT.json"),
        Benchmark("ucf101", "UCF101", "ucf101", 101, 3783, "fine_grained", "ucf101",
                  "CoOp's UCF-101-midframes.zip and split_zhou_UCF101.json"),
        Benchmark("imagenet_v2", "ImageNet-V2", "imagenetv2", 1000, 10000, "shift", "imagenet",
                  "imagenetv2-matched-frequency.tar.gz (folders 0..999) and CoOp's classnames.txt"),
        Benchmark("imagenet_sketch", "ImageNet-Sketch", "imagenet-sketch", 1000, 50889, "shift", "imagenet",
                  "ImageNet-Sketch.zip (images/<wnid>/) and CoOp's classnames.txt"),
        Benchmark("imagenet_a", "ImageNet-A", "imagenet-adversarial", 200, 7500, "shift", "imagenet",
                  "imagenet-a.tar (imagenet-a/<wnid>/) and CoOp's classnames.txt"),
        Benchmark("imagenet_r", "ImageNet-R", "imagenet-rendition", 200, 30000, "shift", "imagenet",
                  "imagenet-r.tar (imagenet-r/<wnid>/) and CoOp's classnames.txt"),
    ]
}

# Split files of the CoOp JSON-split benchmarks: (file name, image root relative to the folder).
_JSON_SPLITS: dict[str, tuple[str, str]] = {
    "caltech101": ("split_zhou_Caltech101.json", "101_ObjectCategories"),
    "oxford_pets": ("split_zhou_OxfordPets.json", "images"),
    "stanford_cars": ("split_zhou_StanfordCars.json", "."),
    "oxford_flowers": ("split_zhou_OxfordFlowers.json", "jpg"),
    "food101": ("split_zhou_Food101.json", "images"),
    "sun397": ("split_zhou_SUN397.json", "SUN397"),
    "dtd": ("split_zhou_DescribableTextures.json", "images"),
    "eurosat": ("split_zhou_EuroSAT.json", "2750"),
    "ucf101": ("split_zhou_UCF101.json", "UCF-101-midframes"),
}

_CALTECH_RENAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}
_CALTECH_EXCLUDED = {"BACKGROUND_Google", "Faces_easy"}
_EUROSAT_RENAMES = {
    "AnnualCrop": "Annual Crop Land",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "SeaLake": "Sea or Lake",
}


def _sun397_name(name: str) -> str:
    # "/a/apartment_building/outdoor" -> "outdoor apartment_building"
    if name.startswith("/"):
        parts = name.strip("/").split("/")[1:]
        return " ".join(reversed(parts))
    return name


def _ucf101_name(name: str) -> str:
    # "ApplyEyeMakeup" -> "Apply_Eye_Makeup" (names already split are kept)
    if "_" in name or " " in name:
        return name
    return "_".join(re.findall(r"[A-Z][^A-Z]*", name)) or name


def _cars_name(name: str) -> str:
    # "Tesla Model S Sedan 2012" -> "2012 Tesla Model S Sedan"
    words = name.split()
    if len(words) > 1 and re.fullmatch(r"(19|20)\d\d", words[-1]):
        return " ".join([words[-1], *words[:-1]])
    return name


_NAME_RULES: dict[str, Callable[[str], str]] = {
    "caltech101": lambda n: _CALTECH_RENAMES.get(n, n),
    "eurosat": lambda n: _EUROSAT_RENAMES.get(n, n),
    "sun397": _sun397_name,
    "ucf101": _ucf101_name,
    "stanford_cars": _cars_name,
}


def prompt_form(name: str) -> str:
    """The class name as it goes into a prompt: ``_`` replaced by a space."""
    return name.replace("_", " ").strip()


@dataclass
class ImageList:
    """A benchmark's test images.

    Attributes:
        benchmark: the benchmark id.
        classnames: C class names in prompt form, label order.
        paths: N image paths; ``labels``: N ints in ``0 .. C-1``.
        bank_indices: C indices into the synonym bank ``BENCHMARKS[benchmark].bank``.
    """

    benchmark: str
    classnames: list[str]
    paths: list[Path]
    labels: list[int]
    bank_indices: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.bank_indices:
            self.bank_indices = list(range(len(self.classnames)))

    def __len__(self) -> int:
        return len(self.paths)


def _folder(root: Path, benchmark: str) -> Path:
    info = BENCHMARKS[benchmark]
    folder = root / info.folder
    if not folder.is_dir():
        raise DatasetError(
            f"{info.title}: folder {folder} not found. Download {info.source} and place it at "
            f"{folder} (README, 'Reproducing the paper configuration'), or set data.root in params.yaml "
            "or S3_DATA_ROOT."
        )
    return folder


def _need(path: Path, benchmark: str, what: str) -> Path:
    if not path.exists():
        info = BENCHMARKS[benchmark]
        raise DatasetError(f"{info.title}: {what} {path} not found. Expected from {info.source}.")
    return path


def _load_json_split(root: Path, benchmark: str, split: str) -> ImageList:
    folder = _folder(root, benchmark)
    split_name, image_root = _JSON_SPLITS[benchmark]
    split_path = _need(folder / split_name, benchmark, "split file")
    try:
        splits = json.loads(split_path.read_text())
        items = splits[split]
    except (json.JSONDecodeError, KeyError) as error:
        raise DatasetError(f"{split_path}: not a CoOp split file with a {split!r} list ({error})") from error
    rule = _NAME_RULES.get(benchmark, lambda n: n)
    names: dict[int, str] = {}
    for part in ("train", "val", "test"):
        for _, label, name in splits.get(part, []):
            if name in _CALTECH_EXCLUDED and benchmark == "caltech101":
                continue
            names.setdefault(int(label), prompt_form(rule(name)))
    num = len(names)
    if sorted(names) != list(range(num)):
        raise DatasetError(f"{split_path}: labels are not 0..{num - 1}; the split file is corrupt")
    base = folder / image_root
    return ImageList(
        benchmark=benchmark,
        classnames=[names[i] for i in range(num)],
        paths=[base / path for path, _, _ in items],
        labels=[int(label) for _, label, _ in items],
    )


def _load_aircraft(root: Path, split: str) -> ImageList:
    folder = _folder(root, "fgvc_aircraft")
    variants = _need(folder / "variants.txt", "fgvc_aircraft", "class list").read_text().splitlines()
    classnames = [v.strip() for v in variants if v.strip()]
    index = {name: i for i, name in enumerate(classnames)}
    lines = _need(folder / f"images_variant_{split}.txt", "fgvc_aircraft", "split file").read_text().splitlines()
    paths, labels = [], []
    for line in filter(None, (ln.strip() for ln in lines)):
        image_id, _, variant = line.partition(" ")
        if variant not in index:
            raise DatasetError(f"FGVCAircraft: variant {variant!r} of image {image_id} is not in variants.txt")
        paths.append(folder / "images" / f"{image_id}.jpg")
        labels.append(index[variant])
    return ImageList("fgvc_aircraft", classnames, paths, labels)


def _imagenet_classnames(root: Path, folder: Path, benchmark: str) -> dict[str, tuple[int, str]]:
    """wnid -> (ImageNet label, name) from CoOp's classnames.txt (variant folder first, then imagenet/)."""
    for candidate in (folder / "classnames.txt", root / "imagenet" / "classnames.txt"):
        if candidate.is_file():
            rows = [ln.strip().split(" ", 1) for ln in candidate.read_text().splitlines() if ln.strip()]
            if len(rows) != 1000 or any(len(r) != 2 for r in rows):
                raise DatasetError(f"{candidate}: expected 1000 lines '<wnid> <class name>', got {len(rows)}")
            return {wnid: (i, name) for i, (wnid, name) in enumerate(sorted(rows))}
    raise DatasetError(
        f"{BENCHMARKS[benchmark].title}: classnames.txt not found in {folder} or {root / 'imagenet'}; "
        "copy CoOp's ImageNet classnames.txt (lines '<wnid> <class name>') there."
    )


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# ImageNet label indices of the 200 classes of ImageNet-A and -R (facts of the protocol).
_SUBSETS: dict[str, list[int]] = {k: v for k, v in json.loads(
    (Path(__file__).parent / "imagenet_subsets.json").read_text()).items() if not k.startswith("_")}


def _listing(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


def _check_class_folders(base: Path, benchmark: str, found: list[str], expected: list[str],
                         images: dict[str, list[Path]]) -> None:
    """Name every unexpected, missing and empty class folder (one error for all of them)."""
    title = BENCHMARKS[benchmark].title
    problems = []
    extra = sorted(set(found) - set(expected))
    if extra:
        problems.append(f"{len(extra)} folders that are not {title} classes ({_listing(extra)}): remove them")
    missing = sorted(set(expected) - set(found))
    if missing:
        problems.append(f"{len(missing)} class folders are missing ({_listing(missing)}): re-extract the download")
    empty = sorted(w for w in found if w in images and not images[w])
    if empty:
        problems.append(f"{len(empty)} class folders hold no images ({_listing(empty)}): re-extract them")
    if problems:
        raise DatasetError(f"{title}: {base}: " + "; ".join(problems) + f" (expected from {BENCHMARKS[benchmark].source})")


def _load_wnid_folders(root: Path, benchmark: str, images_dir: str) -> ImageList:
    folder = _folder(root, benchmark)
    names = _imagenet_classnames(root, folder, benchmark)
    base = _need(folder / images_dir, benchmark, "image folder")
    found = sorted(p.name for p in base.iterdir() if p.is_dir())
    by_label = sorted(names, key=lambda w: names[w][0])  # wnids in ImageNet label order
    expected = sorted(by_label[i] for i in _SUBSETS[benchmark]) if benchmark in _SUBSETS else by_label
    images = {w: _images_in(base / w) for w in found if w in names}
    _check_class_folders(base, benchmark, found, expected, images)
    paths, labels = [], []
    for label, wnid in enumerate(expected):
        for image in images[wnid]:
            paths.append(image)
            labels.append(label)
    return ImageList(
        benchmark,
        classnames=[prompt_form(names[w][1]) for w in expected],
        paths=paths,
        labels=labels,
        bank_indices=[names[w][0] for w in expected],
    )


def _load_imagenet_v2(root: Path) -> ImageList:
    folder = _folder(root, "imagenet_v2")
    names = _imagenet_classnames(root, folder, "imagenet_v2")
    base = _need(folder / "imagenetv2-matched-frequency-format-val", "imagenet_v2", "image folder")
    by_index = {label: name for label, name in names.values()}
    found = [p.name for p in base.iterdir() if p.is_dir()]
    expected = [str(i) for i in range(1000)]
    images = {f: _images_in(base / f) for f in found if f in set(expected)}
    _check_class_folders(base, "imagenet_v2", found, expected, images)
    paths, labels = [], []
    # Folder i is ImageNet class i: numeric order, never string order ("10" < "2").
    for i in range(1000):
        for image in images[str(i)]:
            paths.append(image)
            labels.append(i)
    return ImageList("imagenet_v2", [prompt_form(by_index[i]) for i in range(1000)], paths, labels)


def load_benchmark(benchmark: str, root: str | Path, split: str = "test") -> ImageList:
    """Load a benchmark's image list.

    Args:
        benchmark: one of ``BENCHMARKS``.
        root: the data root holding the benchmark folders.
        split: ``test`` (the protocol) or, for JSON-split sets, ``train``/``val``.
    """
    if benchmark not in BENCHMARKS:
        raise DatasetError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    root = Path(root).expanduser()
    if benchmark in _JSON_SPLITS:
        return _load_json_split(root, benchmark, split)
    if benchmark == "fgvc_aircraft":
        return _load_aircraft(root, split)
    if benchmark == "imagenet":
        return _load_wnid_folders(root, "imagenet", "images/val")
    if benchmark == "imagenet_v2":
        return _load_imagenet_v2(root)
    if benchmark == "imagenet_sketch":
        return _load_wnid_folders(root, "imagenet_sketch", "images")
    if benchmark == "imagenet_a":
        return _load_wnid_folders(root, "imagenet_a", "imagenet-a")
    return _load_wnid_folders(root, "imagenet_r", "imagenet-r")


def save_class_list(path: str | Path, images: ImageList) -> None:
    """The class list alone, as JSON (small, so text-side stages need not depend on image features)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": images.benchmark, "classnames": images.classnames, "bank_indices": images.bank_indices}
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def load_class_list(path: str | Path) -> ImageList:
    """An ``ImageList`` holding only the class list (no images)."""
    record = json.loads(Path(path).read_text())
    return ImageList(record["benchmark"], record["classnames"], [], [], record["bank_indices"])
