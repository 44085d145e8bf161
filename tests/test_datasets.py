"""The 15 benchmark loaders and `s3.data.verify`, on tiny datasets built in the CoOp/Dassl layout.

Class lists have the protocol's sizes (the wnid loaders check them); wnid folders hold one tiny image
each (a few hold two), JSON-split sets only a few test images, so every set builds in a second.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from s3.data.benchmarks import _SUBSETS, BENCHMARKS, DatasetError, load_benchmark
from s3.data.verify import VerifyReport, format_reports, verify_all, verify_benchmark


def _image_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 90)).save(buffer, format=fmt)
    return buffer.getvalue()


JPEG, PNG = _image_bytes("JPEG"), _image_bytes("PNG")


def write_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG if path.suffix == ".png" else JPEG)
    return path


# ---------------------------------------------------------------- fake ImageNet class list

WNIDS = [f"n{i:08d}" for i in range(1000)]


def imagenet_name(i: int) -> str:
    return f"thing_{i}"


def write_classnames(folder: Path, name=imagenet_name) -> None:
    """CoOp's classnames.txt, written in reverse so that label order must come from sorting wnids."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{WNIDS[i]} {name(i)}" for i in reversed(range(1000))]
    (folder / "classnames.txt").write_text("\n".join(lines) + "\n")


def build_wnid_set(base: Path, indices: list[int], with_images: int = 3) -> None:
    """One folder per ImageNet index in ``indices``, each with a .jpg; the first ``with_images`` also get a .png."""
    for k, i in enumerate(indices):
        write_image(base / WNIDS[i] / "a.jpg")
        if k < with_images:
            write_image(base / WNIDS[i] / "b.png")


# The protocol's 200 classes of ImageNet-A and -R, as the package ships them (checked against the
# protocol's first entries in test_imagenet_a_r_class_sets_are_the_protocols).
A_INDICES = _SUBSETS["imagenet_a"]
R_INDICES = _SUBSETS["imagenet_r"]


def build_imagenet(root: Path) -> None:
    write_classnames(root / "imagenet")
    build_wnid_set(root / "imagenet" / "images" / "val", list(range(1000)))


def build_sketch(root: Path) -> None:  # no classnames.txt of its own: falls back to imagenet/
    write_classnames(root / "imagenet")
    build_wnid_set(root / "imagenet-sketch" / "images", list(range(1000)), with_images=2)


def build_imagenet_a(root: Path) -> None:
    write_classnames(root / "imagenet")
    base = root / "imagenet-adversarial" / "imagenet-a"
    build_wnid_set(base, A_INDICES)
    (base / "README.txt").write_text("ImageNet-A\n")


def build_imagenet_r(root: Path) -> None:
    write_classnames(root / "imagenet")
    base = root / "imagenet-rendition" / "imagenet-r"
    build_wnid_set(base, R_INDICES)
    (base / "README.txt").write_text("ImageNet-R\n")


V2_IMAGES = [9, 10, 2, 100]


def build_imagenet_v2(root: Path) -> None:
    folder = root / "imagenetv2"
    write_classnames(folder, name=lambda i: f"v2_thing_{i}")  # its own list wins over imagenet/'s
    base = folder / "imagenetv2-matched-frequency-format-val"
    for i in range(1000):
        write_image(base / str(i) / "a.jpeg")
    for i in V2_IMAGES:
        write_image(base / str(i) / f"img{i}.jpeg")


# ---------------------------------------------------------------- JSON-split sets

# benchmark -> class-name fillers: list of (raw name as in the split file, its folder under the image root)
def _fill(named: list[tuple[str, str]], total: int, make) -> list[tuple[str, str]]:
    return named + [make(i) for i in range(len(named), total)]


JSON_CLASSES: dict[str, list[tuple[str, str]]] = {
    "caltech101": _fill([("airplanes", "airplanes"), ("Faces", "Faces"), ("Leopards", "Leopards"),
                         ("Motorbikes", "Motorbikes"), ("yin_yang", "yin_yang")], 100,
                        lambda i: (f"object{i}", f"object{i}")),
    "oxford_pets": _fill([("abyssinian", ""), ("american_pit_bull_terrier", "")], 37,
                         lambda i: (f"breed{i}", "")),
    "stanford_cars": _fill([("Tesla Model S Sedan 2012", "cars_test"), ("2000 AM General Hummer SUV", "cars_test"),
                            ("Ford F-150 Regular Cab 2007", "cars_test")], 196,
                           lambda i: (f"Make{i} Model Coupe 2010", "cars_test")),
    "oxford_flowers": _fill([("pink primrose", ""), ("globe_thistle", "")], 102, lambda i: (f"flower{i}", "")),
    "food101": _fill([("apple_pie", "apple_pie"), ("baby_back_ribs", "baby_back_ribs")], 101,
                     lambda i: (f"dish{i}", f"dish{i}")),
    "sun397": _fill([("/a/abbey", "a/abbey"), ("/a/apartment_building/outdoor", "a/apartment_building/outdoor"),
                     ("indoor church", "c/church/indoor")], 397,
                    lambda i: (f"/b/place_{i}", f"b/place_{i}")),
    "dtd": _fill([("banded", "banded"), ("bubbly", "bubbly")], 47, lambda i: (f"texture{i}", f"texture{i}")),
    "eurosat": [(n, n) for n in ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
                                 "Pasture", "PermanentCrop", "Residential", "River", "SeaLake"]],
    "ucf101": _fill([("ApplyEyeMakeup", "ApplyEyeMakeup"), ("YoYo", "YoYo"), ("Apply_Lipstick", "ApplyLipstick")],
                    101, lambda i: (f"Action{i}", f"Action{i}")),
}

SPLIT_FILES = {
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

TEST_LABELS = [0, 1, 2, 1, 0]  # labels of the tiny test split (classes 0..2)


def _item(class_dir: str, stem: str) -> str:
    return f"{class_dir}/{stem}.jpg" if class_dir else f"{stem}.jpg"


def build_json_set(root: Path, benchmark: str, classes: list[tuple[str, str]] | None = None) -> Path:
    """A split file naming every class (train: one unbuilt image each) and a test split of real images."""
    classes = JSON_CLASSES[benchmark] if classes is None else classes
    split_name, image_root = SPLIT_FILES[benchmark]
    folder = root / BENCHMARKS[benchmark].folder
    base = folder / image_root
    train_dir = {"stanford_cars": "cars_train"}
    train = [[_item(train_dir.get(benchmark, d), f"train_{y}"), y, n] for y, (n, d) in enumerate(classes)]
    test = [[_item(classes[y][1], f"test_{k}"), y, classes[y][0]] for k, y in enumerate(TEST_LABELS)]
    for path, _, _ in test:
        write_image(base / path)
    (folder / split_name).write_text(json.dumps({"train": train, "val": [], "test": test}))
    return folder


def build_caltech(root: Path) -> None:
    folder = build_json_set(root, "caltech101")
    for excluded in ("BACKGROUND_Google", "Faces_easy"):  # in the download, but not classes
        write_image(folder / "101_ObjectCategories" / excluded / "image_0001.jpg")


def build_cars(root: Path) -> None:
    folder = build_json_set(root, "stanford_cars")
    (folder / "devkit").mkdir()
    (folder / "devkit" / "cars_meta.mat").write_bytes(b"meta")


VARIANTS = ["707-320", "A300B4", "F/A-18", "Cessna 172"] + [f"Variant-{i}" for i in range(4, 100)]
AIRCRAFT_TEST = [("1514522", "707-320"), ("0056978", "F/A-18"), ("2228163", "Cessna 172"), ("0000001", "707-320")]


def build_aircraft(root: Path) -> None:
    folder = root / "fgvc_aircraft"
    folder.mkdir(parents=True)
    (folder / "variants.txt").write_text("\n".join(VARIANTS) + "\n")
    (folder / "images_variant_test.txt").write_text("".join(f"{i} {v}\n" for i, v in AIRCRAFT_TEST))
    for image_id, _ in AIRCRAFT_TEST:
        write_image(folder / "images" / f"{image_id}.jpg")


BUILDERS = {
    "imagenet": build_imagenet,
    "imagenet_v2": build_imagenet_v2,
    "imagenet_sketch": build_sketch,
    "imagenet_a": build_imagenet_a,
    "imagenet_r": build_imagenet_r,
    "fgvc_aircraft": build_aircraft,
    "caltech101": build_caltech,
    "stanford_cars": build_cars,
    **{b: (lambda root, b=b: build_json_set(root, b)) for b in JSON_CLASSES if b not in {"caltech101", "stanford_cars"}},
}
assert set(BUILDERS) == set(BENCHMARKS)

# Test-image counts of the tiny sets.
TINY_TEST = {b: len(TEST_LABELS) for b in JSON_CLASSES} | {
    "imagenet": 1003, "imagenet_sketch": 1002, "imagenet_a": 203, "imagenet_r": 203, "imagenet_v2": 1004,
    "fgvc_aircraft": 4,
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """All 15 tiny benchmarks under one data root."""
    root = tmp_path_factory.mktemp("data")
    for build in BUILDERS.values():
        build(root)
    return root


def built(tmp_path: Path, benchmark: str) -> Path:
    BUILDERS[benchmark](tmp_path)
    return tmp_path


# ================================================================= loaders


@pytest.mark.parametrize("benchmark", list(BENCHMARKS))
def test_every_benchmark_loads_with_the_protocol_class_count(data_root, benchmark):
    images = load_benchmark(benchmark, data_root)
    assert len(images.classnames) == BENCHMARKS[benchmark].num_classes
    assert len(images) == len(images.labels) == TINY_TEST[benchmark]
    assert len(images.bank_indices) == len(images.classnames)
    assert all(0 <= y < len(images.classnames) for y in images.labels)
    assert all(p.is_file() for p in images.paths)
    assert all("_" not in name for name in images.classnames)  # prompt form


@pytest.mark.parametrize("benchmark", list(JSON_CLASSES))
def test_json_split_labels_and_paths_follow_the_split_file(data_root, benchmark):
    images = load_benchmark(benchmark, data_root)
    assert images.labels == TEST_LABELS
    _, image_root = SPLIT_FILES[benchmark]
    base = data_root / BENCHMARKS[benchmark].folder / image_root
    assert images.paths[0] == base / _item(JSON_CLASSES[benchmark][0][1], "test_0")
    assert images.bank_indices == list(range(len(images.classnames)))


def test_json_split_train_split_is_loadable(data_root):
    train = load_benchmark("eurosat", data_root, split="train")
    assert train.labels == list(range(10))


def test_caltech_renames_and_excluded_folders(data_root, tmp_path):
    names = load_benchmark("caltech101", data_root).classnames
    assert names[:5] == ["airplane", "face", "leopard", "motorbike", "yin yang"]
    assert not {"BACKGROUND Google", "Faces easy", "BACKGROUND_Google", "Faces_easy"} & set(names)
    # A split that lists the excluded categories still yields only the 100 real classes.
    folder = build_json_set(tmp_path, "caltech101")
    split_path = folder / "split_zhou_Caltech101.json"
    split = json.loads(split_path.read_text())
    split["train"] += [["BACKGROUND_Google/image_0001.jpg", 100, "BACKGROUND_Google"],
                       ["Faces_easy/image_0001.jpg", 101, "Faces_easy"]]
    split_path.write_text(json.dumps(split))
    assert load_benchmark("caltech101", tmp_path).classnames == names


def test_sun397_path_names_are_reversed(data_root):
    names = load_benchmark("sun397", data_root).classnames
    assert names[:3] == ["abbey", "outdoor apartment building", "indoor church"]
    assert names[3] == "place 3"


def test_eurosat_renames(data_root):
    assert load_benchmark("eurosat", data_root).classnames == [
        "Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Industrial Buildings",
        "Pasture Land", "Permanent Crop Land", "Residential Buildings", "River", "Sea or Lake",
    ]


def test_ucf101_camel_case_is_split(data_root):
    names = load_benchmark("ucf101", data_root).classnames
    assert names[:4] == ["Apply Eye Makeup", "Yo Yo", "Apply Lipstick", "Action3"]


def test_stanford_cars_year_moves_to_the_front(data_root):
    names = load_benchmark("stanford_cars", data_root).classnames
    assert names[:4] == ["2012 Tesla Model S Sedan", "2000 AM General Hummer SUV",
                         "2007 Ford F-150 Regular Cab", "2010 Make3 Model Coupe"]


def test_pets_flowers_food_dtd_names_in_prompt_form(data_root):
    assert load_benchmark("oxford_pets", data_root).classnames[:2] == ["abyssinian", "american pit bull terrier"]
    assert load_benchmark("oxford_flowers", data_root).classnames[:2] == ["pink primrose", "globe thistle"]
    assert load_benchmark("food101", data_root).classnames[:2] == ["apple pie", "baby back ribs"]
    assert load_benchmark("dtd", data_root).classnames[:2] == ["banded", "bubbly"]


def test_aircraft_variants_give_names_and_labels(data_root):
    images = load_benchmark("fgvc_aircraft", data_root)
    assert images.classnames[:4] == ["707-320", "A300B4", "F/A-18", "Cessna 172"]
    assert images.labels == [0, 2, 3, 0]
    assert images.paths[1] == data_root / "fgvc_aircraft" / "images" / "0056978.jpg"


@pytest.mark.parametrize("line", ["1514522 Boeing 999", "1514522"])
def test_aircraft_unknown_variant_is_a_dataset_error(tmp_path, line):
    built(tmp_path, "fgvc_aircraft")
    (tmp_path / "fgvc_aircraft" / "images_variant_test.txt").write_text(f"0056978 F/A-18\n{line}\n")
    with pytest.raises(DatasetError, match="not in variants.txt"):
        load_benchmark("fgvc_aircraft", tmp_path)


def test_imagenet_labels_follow_sorted_wnids(data_root):
    images = load_benchmark("imagenet", data_root)
    # classnames.txt is written in reverse order: labels must still follow sorted wnid order.
    assert images.classnames[:3] == ["thing 0", "thing 1", "thing 2"]
    assert images.classnames[-1] == "thing 999"
    assert images.bank_indices == list(range(1000))
    assert images.labels[:7] == [0, 0, 1, 1, 2, 2, 3]
    assert [p.parent.name for p in images.paths[:6]] == [WNIDS[0]] * 2 + [WNIDS[1]] * 2 + [WNIDS[2]] * 2


def test_sketch_falls_back_to_imagenet_classnames(data_root):
    images = load_benchmark("imagenet_sketch", data_root)
    assert images.classnames[7] == "thing 7"
    assert images.labels[:5] == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("benchmark, indices", [("imagenet_a", A_INDICES), ("imagenet_r", R_INDICES)])
def test_imagenet_a_r_subsets_map_to_imagenet_labels(data_root, benchmark, indices):
    images = load_benchmark(benchmark, data_root)  # README.txt beside the folders is not a class
    assert len(images.classnames) == 200
    assert images.bank_indices == indices
    assert images.classnames[:2] == [f"thing {indices[0]}", f"thing {indices[1]}"]
    assert images.labels[:7] == [0, 0, 1, 1, 2, 2, 3]


def test_imagenet_a_r_class_sets_are_the_protocols():
    # First entries as the TPT protocol lists them (ImageNet label indices).
    assert A_INDICES[:5] == [6, 11, 13, 15, 17] and R_INDICES[:5] == [1, 2, 4, 6, 8]
    for indices in (A_INDICES, R_INDICES):
        assert len(indices) == 200 and indices == sorted(set(indices)) and 0 <= indices[0] and indices[-1] < 1000


def test_imagenet_v2_folders_sort_numerically_and_prefer_own_classnames(data_root):
    images = load_benchmark("imagenet_v2", data_root)
    assert images.labels[:6] == [0, 1, 2, 2, 3, 4]
    doubled = [(y, p.name) for y, p in zip(images.labels, images.paths) if p.name != "a.jpeg"]
    assert doubled == [(2, "img2.jpeg"), (9, "img9.jpeg"), (10, "img10.jpeg"), (100, "img100.jpeg")]  # numeric order
    assert images.classnames[10] == "v2 thing 10"
    assert images.bank_indices == list(range(1000))


def test_wnid_set_with_a_non_wnid_folder_is_a_dataset_error(tmp_path):
    built(tmp_path, "imagenet_a")
    (tmp_path / "imagenet-adversarial" / "imagenet-a" / "extra").mkdir()
    with pytest.raises(DatasetError, match=r"1 folders that are not ImageNet-A classes \(extra\): remove them"):
        load_benchmark("imagenet_a", tmp_path)


def test_a_201st_class_folder_is_named(tmp_path):
    built(tmp_path, "imagenet_r")
    outside = next(i for i in range(1000) if i not in R_INDICES)
    write_image(tmp_path / "imagenet-rendition" / "imagenet-r" / WNIDS[outside] / "x.jpg")
    with pytest.raises(DatasetError, match=f"not ImageNet-R classes \\({WNIDS[outside]}\\)"):
        load_benchmark("imagenet_r", tmp_path)


@pytest.mark.parametrize("benchmark, base", [("imagenet", "imagenet/images/val"), ("imagenet_a", "imagenet-adversarial/imagenet-a")])
def test_an_empty_class_folder_is_named(tmp_path, benchmark, base):
    built(tmp_path, benchmark)
    folder = tmp_path / base / WNIDS[A_INDICES[7] if benchmark == "imagenet_a" else 7]
    for image in folder.iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match=f"1 class folders hold no images \\({folder.name}\\)"):
        load_benchmark(benchmark, tmp_path)
    report = verify_benchmark(tmp_path, benchmark, check_images=False)
    assert any(folder.name in p and "hold no images" in p for p in report.problems), report.problems


def test_unknown_benchmark_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="unknown benchmark"):
        load_benchmark("mnist", tmp_path)


# ================================================================= verify


@pytest.mark.parametrize("benchmark", list(BENCHMARKS))
def test_verify_tiny_set_only_reports_the_test_image_count(data_root, benchmark):
    report = verify_benchmark(data_root, benchmark)
    info = BENCHMARKS[benchmark]
    assert report.found
    assert (report.classes, report.expected_classes) == (info.num_classes, info.num_classes)
    assert (report.test_images, report.expected_test_images) == (TINY_TEST[benchmark], info.num_test)
    assert len(report.problems) == 1, report.problems  # no unknown folder, missing or unreadable image
    assert f"{TINY_TEST[benchmark]} test images, expected {info.num_test}" in report.problems[0]
    assert "re-extract" in report.problems[0]
    assert not report.ok


def test_verify_missing_dataset(tmp_path):
    report = verify_benchmark(tmp_path, "eurosat")
    assert not report.found and not report.ok
    assert report.classes is None and report.test_images is None
    [problem] = report.problems
    assert str(tmp_path / "eurosat") in problem
    assert "Download" in problem and "EuroSAT.zip" in problem


def test_verify_missing_split_file(tmp_path):
    built(tmp_path, "dtd")
    (tmp_path / "dtd" / "split_zhou_DescribableTextures.json").unlink()
    report = verify_benchmark(tmp_path, "dtd")
    assert report.found and not report.ok
    [problem] = report.problems
    assert "split file" in problem and "split_zhou_DescribableTextures.json" in problem and "not found" in problem
    assert "dtd-r1.0.1.tar.gz" in problem


def test_verify_wrong_class_count_in_a_split_file(tmp_path):
    build_json_set(tmp_path, "eurosat", JSON_CLASSES["eurosat"][:9])
    report = verify_benchmark(tmp_path, "eurosat")
    assert report.classes == 9
    assert any("9 classes, expected 10" in p and "replace it" in p for p in report.problems), report.problems


def test_verify_wrong_class_count_in_wnid_folders(tmp_path):
    built(tmp_path, "imagenet_r")
    shutil.rmtree(tmp_path / "imagenet-rendition" / "imagenet-r" / WNIDS[R_INDICES[-1]])
    report = verify_benchmark(tmp_path, "imagenet_r")
    assert report.found and report.classes is None
    [problem] = report.problems
    assert f"1 class folders are missing ({WNIDS[R_INDICES[-1]]})" in problem and "imagenet-r.tar" in problem


def test_verify_imagenet_v2_missing_and_stray_folders(tmp_path):
    built(tmp_path, "imagenet_v2")
    base = tmp_path / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    shutil.rmtree(base / "999")
    [problem] = verify_benchmark(tmp_path, "imagenet_v2").problems
    assert "1 class folders are missing (999)" in problem
    (base / "extra").mkdir()
    [problem] = verify_benchmark(tmp_path, "imagenet_v2").problems
    assert "not ImageNet-V2 classes (extra): remove them" in problem


def test_verify_unreadable_image(tmp_path):
    built(tmp_path, "eurosat")
    bad = tmp_path / "eurosat" / "2750" / "Forest" / "test_1.jpg"
    bad.write_bytes(b"this is not a JPEG at all")
    report = verify_benchmark(tmp_path, "eurosat")
    [problem] = [p for p in report.problems if "cannot be read" in p]
    assert problem.startswith("1 test images cannot be read") and str(bad) in problem and "re-download" in problem
    assert not any("cannot be read" in p for p in verify_benchmark(tmp_path, "eurosat", check_images=False).problems)


def test_verify_missing_image_file(tmp_path):
    built(tmp_path, "food101")
    gone = tmp_path / "food-101" / "images" / "baby_back_ribs" / "test_3.jpg"
    gone.unlink()
    report = verify_benchmark(tmp_path, "food101")
    [problem] = [p for p in report.problems if "missing" in p]
    assert problem.startswith("1 of 5 test images are missing") and str(gone) in problem
    assert "re-extract" in problem


def test_verify_missing_aircraft_images_are_listed_up_to_max_listed(tmp_path):
    built(tmp_path, "fgvc_aircraft")
    shutil.rmtree(tmp_path / "fgvc_aircraft" / "images")
    report = verify_benchmark(tmp_path, "fgvc_aircraft", max_listed=2)
    [problem] = [p for p in report.problems if "missing" in p]
    assert problem.startswith("4 of 4 test images are missing") and "... and 2 more" in problem


def test_verify_unknown_folder(tmp_path):
    built(tmp_path, "eurosat")
    write_image(tmp_path / "eurosat" / "2750" / "Glacier" / "x.jpg")
    report = verify_benchmark(tmp_path, "eurosat")
    [problem] = [p for p in report.problems if "not used by any split" in p]
    assert problem.startswith("1 folders") and "Glacier" in problem and "remove them" in problem


def test_verify_unknown_nested_sun397_folder(tmp_path):
    built(tmp_path, "sun397")
    (tmp_path / "sun397" / "SUN397" / "a" / "airfield").mkdir()
    (tmp_path / "sun397" / "SUN397" / "a" / "apartment_building" / "indoor").mkdir()
    report = verify_benchmark(tmp_path, "sun397")
    [problem] = [p for p in report.problems if "not used by any split" in p]
    assert "a/airfield" in problem and "a/apartment_building/indoor" in problem


def test_verify_corrupt_split_file_is_a_problem_not_an_exception(tmp_path):
    built(tmp_path, "ucf101")
    (tmp_path / "ucf101" / "split_zhou_UCF101.json").write_text("{not json")
    [problem] = verify_benchmark(tmp_path, "ucf101").problems
    assert "not a CoOp split file" in problem and "split_zhou_UCF101.json" in problem
    (tmp_path / "ucf101" / "split_zhou_UCF101.json").write_text(json.dumps({"test": [["a.jpg", 0]]}))
    [problem] = verify_benchmark(tmp_path, "ucf101").problems
    assert "cannot read the dataset" in problem and "re-download" in problem


def test_verify_ok_report_and_to_dict():
    report = VerifyReport("dtd", "DTD", True, 47, 47, 1692, 1692, [])
    assert report.ok
    assert report.to_dict() == {
        "benchmark": "dtd", "title": "DTD", "found": True, "classes": 47, "expected_classes": 47,
        "test_images": 1692, "expected_test_images": 1692, "problems": [], "ok": True,
    }


def test_verify_all_and_format_reports(tmp_path):
    built(tmp_path, "eurosat")
    reports = verify_all(tmp_path, check_images=False)
    assert [r.benchmark for r in reports] == [*BENCHMARKS, "voc21", "voc20", "context60", "context59"]
    assert [r.found for r in reports] == [b == "eurosat" for b in BENCHMARKS] + [False] * 4
    text = format_reports(reports + [VerifyReport("dtd", "DTD", True, 47, 47, 1692, 1692, [])])
    lines = text.splitlines()
    assert lines[0].split() == ["benchmark", "status", "classes", "test", "images"]
    assert any(line.split() == ["eurosat", "PROBLEMS", "10/10", "5/8100"] for line in lines)
    assert any(line.split() == ["imagenet", "MISSING", "-/1000", "-/50000"] for line in lines)
    assert any(line.split() == ["dtd", "ok", "47/47", "1692/1692"] for line in lines)
    assert "EuroSAT (eurosat):" in lines and "  - 5 test images, expected 8100" in text
    assert lines[-1] == "1 of 20 benchmarks ok"
    assert verify_all(tmp_path, ["eurosat"], check_images=False)[0].benchmark == "eurosat"
