"""Check that the benchmark datasets are in place and complete before any feature extraction.

For each benchmark, :func:`verify_benchmark` reports whether its folder is there, its class and
test-image counts against the protocol, missing and unreadable test images, and folders that no
split refers to. Nothing raises for a bad dataset: every fault becomes a problem line that says
what to do about it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from s3.data.benchmarks import _CALTECH_EXCLUDED, _JSON_SPLITS, BENCHMARKS, DatasetError, ImageList, load_benchmark
from s3.segmentation.datasets import IGNORE_INDEX, SEG_BENCHMARKS, load_seg_benchmark, read_mask

__all__ = ["VerifyReport", "verify_benchmark", "verify_all", "format_reports"]

# Folders beside the images that belong to the download but hold no split images.
_NOT_CLASS_FOLDERS: dict[str, set[str]] = {"caltech101": _CALTECH_EXCLUDED, "stanford_cars": {"devkit"}}


@dataclass
class VerifyReport:
    """What :func:`verify_benchmark` found for one benchmark.

    Attributes:
        benchmark, title: the benchmark id and its display name.
        found: whether the benchmark's folder exists under the data root.
        classes, test_images: what was loaded (``None`` when loading failed).
        expected_classes, expected_test_images: the protocol's figures.
        problems: one line per fault, each saying what to do.
    """

    benchmark: str
    title: str
    found: bool
    classes: int | None
    expected_classes: int
    test_images: int | None
    expected_test_images: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the dataset is there and nothing is wrong with it."""
        return self.found and not self.problems

    def to_dict(self) -> dict:
        """A JSON-ready dict of the fields plus ``ok``."""
        return {**asdict(self), "ok": self.ok}


def _listing(paths: Sequence[object], max_listed: int) -> str:
    shown = ", ".join(str(p) for p in paths[:max_listed])
    more = len(paths) - max_listed
    return shown + (f", ... and {more} more" if more > 0 else "")


def _unknown_folders(root: Path, benchmark: str) -> list[str]:
    """Sub-folders of a JSON-split set's image root that no split item lies in (relative paths)."""
    split_name, image_root = _JSON_SPLITS[benchmark]
    folder = root / BENCHMARKS[benchmark].folder
    splits = json.loads((folder / split_name).read_text())
    image_dirs: set[Path] = set()
    for part in ("train", "val", "test"):
        image_dirs.update(Path(item[0]).parent for item in splits.get(part, []))
    ancestors = {a for d in image_dirs for a in d.parents} | image_dirs
    skip = _NOT_CLASS_FOLDERS.get(benchmark, set())
    base = folder / image_root
    if not base.is_dir():  # every test image is then reported missing
        return []
    unknown: list[str] = []
    pending = [Path(".")]
    while pending:  # walk only down the referenced folders: cheap even for SUN397's nesting
        rel = pending.pop()
        for sub in sorted(p for p in (base / rel).iterdir() if p.is_dir()):
            name = rel / sub.name
            if name not in ancestors:
                if not (rel == Path(".") and sub.name in skip):
                    unknown.append(str(name))
            elif name not in image_dirs:
                pending.append(name)
    return sorted(unknown)


def _problem_of(path: Path, decode: bool) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            # load() decodes every pixel, so a truncated JPEG fails here; verify() reads headers only.
            image.load() if decode else image.verify()
    except Exception as error:  # noqa: BLE001 - any failure means the file is unusable
        return f"{path} ({type(error).__name__}: {str(error)[:60]})"
    return None


def _unreadable(paths: Iterable[Path], decode: bool = True, workers: int = 8) -> list[str]:
    """``path (reason)`` for each existing image that PIL cannot decode (or, with ``decode=False``, whose
    header is broken). Threads overlap the reads; PIL releases the GIL while decoding."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [p for p in pool.map(lambda path: _problem_of(path, decode), paths) if p is not None]


def _check(report: VerifyReport, images: ImageList, root: Path, check_images: bool, max_listed: int,
           decode: bool = True) -> None:
    info = BENCHMARKS[report.benchmark]
    problems = report.problems
    if report.classes != info.num_classes:
        problems.append(
            f"{report.classes} classes, expected {info.num_classes}: the class list or split file is "
            f"not the protocol's; replace it with the one from {info.source}"
        )
    if report.test_images != info.num_test:
        problems.append(
            f"{report.test_images} test images, expected {info.num_test}: the download is incomplete "
            f"or not the protocol's version; re-extract {info.source}"
        )
    bad_labels = sorted({y for y in images.labels if not 0 <= y < len(images.classnames)})
    if bad_labels:
        problems.append(f"labels {bad_labels[:max_listed]} are outside 0..{len(images.classnames) - 1}; "
                        "the split file is corrupt, replace it")
    missing = [p for p in images.paths if not p.is_file()]
    if missing:
        problems.append(
            f"{len(missing)} of {len(images.paths)} test images are missing; re-extract the images "
            f"({info.source}): {_listing(missing, max_listed)}"
        )
    if report.benchmark in _JSON_SPLITS:
        unknown = _unknown_folders(root, report.benchmark)
        if unknown:
            base = root / info.folder / _JSON_SPLITS[report.benchmark][1]
            problems.append(
                f"{len(unknown)} folders in {base} are not used by any split (wrong dataset version or "
                f"stray files?); check them and remove them: {_listing(unknown, max_listed)}"
            )
    if check_images:
        bad = _unreadable((p for p in images.paths if p.is_file()), decode)
        if bad:
            problems.append(
                f"{len(bad)} test images cannot be read (corrupt or truncated download); re-download "
                f"them: {_listing(bad, max_listed)}"
            )


def _verify_segmentation(root: Path, benchmark: str, check_images: bool, max_listed: int,
                         decode: bool = True) -> VerifyReport:
    info = SEG_BENCHMARKS[benchmark]
    report = VerifyReport(benchmark, info.title, (root / info.folder).is_dir(), None, len(info.classnames),
                          None, info.num_val)
    try:
        data = load_seg_benchmark(benchmark, root)
    except DatasetError as error:
        report.problems.append(str(error))
        return report
    report.classes, report.test_images = len(data.classnames), len(data)
    if len(data) != info.num_val:
        report.problems.append(f"{len(data)} validation images, expected {info.num_val}: the split file is not "
                               f"the protocol's; get it from {info.source}")
    for kind, paths in (("images", data.images), ("masks", data.masks)):
        missing = [p for p in paths if not p.is_file()]
        if missing:
            report.problems.append(f"{len(missing)} of {len(paths)} validation {kind} are missing; re-extract "
                                   f"{info.source}: {_listing(missing, max_listed)}")
    if check_images:
        bad = _unreadable((p for p in [*data.images, *data.masks] if p.is_file()), decode)
        if bad:
            report.problems.append(f"{len(bad)} files cannot be read (corrupt download); re-download them: "
                                   f"{_listing(bad, max_listed)}")
        out_of_range = []
        for path in data.masks:
            try:
                labels = set(read_mask(path, data.reduce_zero_label).ravel().tolist()) - {IGNORE_INDEX}
            except Exception:  # noqa: BLE001 - already reported as unreadable
                continue
            if labels and max(labels) >= len(data.classnames):
                out_of_range.append(f"{path} (label {max(labels)})")
        if out_of_range:
            report.problems.append(
                f"{len(out_of_range)} masks hold labels beyond the {len(data.classnames)} classes (not the "
                f"converted masks of {info.source}?): {_listing(out_of_range, max_listed)}")
    return report


def verify_benchmark(root: str | Path, benchmark: str, check_images: bool = True, max_listed: int = 10,
                     decode: bool = True) -> VerifyReport:
    """Check one benchmark under the data root ``root``.

    Args:
        root: the data root holding the benchmark folders.
        benchmark: one of ``BENCHMARKS`` or ``SEG_BENCHMARKS`` (another id: ``DatasetError``).
        check_images: also open every test image with PIL (slow for the large sets).
        max_listed: at most this many paths are named per problem.
        decode: decode every pixel (finds truncated files); ``False`` reads headers only (fast).
    """
    if benchmark in SEG_BENCHMARKS:
        return _verify_segmentation(Path(root).expanduser(), benchmark, check_images, max_listed, decode)
    if benchmark not in BENCHMARKS:
        raise DatasetError(f"unknown benchmark {benchmark!r}; choose from {', '.join([*BENCHMARKS, *SEG_BENCHMARKS])}")
    info = BENCHMARKS[benchmark]
    root = Path(root).expanduser()
    report = VerifyReport(benchmark, info.title, (root / info.folder).is_dir(), None, info.num_classes,
                          None, info.num_test)
    try:
        images = load_benchmark(benchmark, root)
        report.classes, report.test_images = len(images.classnames), len(images.paths)
        _check(report, images, root, check_images, max_listed, decode)
    except DatasetError as error:  # its message names the file and, mostly, what to download
        message = str(error)
        report.problems.append(message if info.source in message else f"{message} (get it from {info.source})")
    except Exception as error:  # noqa: BLE001 - a malformed dataset must become a report line
        report.problems.append(
            f"cannot read the dataset ({type(error).__name__}: {error}); its files are malformed, "
            f"re-download {info.source}"
        )
    return report


def verify_all(root: str | Path, benchmarks: Iterable[str] | None = None,
               check_images: bool = True, decode: bool = True) -> list[VerifyReport]:
    """:func:`verify_benchmark` for each of ``benchmarks`` (default: the 15 classification and the 4
    segmentation benchmarks).

    Raises:
        DatasetError: the data root itself does not exist, or a benchmark id is unknown (before any check).
    """
    chosen = [*BENCHMARKS, *SEG_BENCHMARKS] if benchmarks is None else list(benchmarks)
    unknown = [b for b in chosen if b not in BENCHMARKS and b not in SEG_BENCHMARKS]
    if unknown:
        raise DatasetError(f"unknown benchmark(s) {unknown}; choose from {', '.join([*BENCHMARKS, *SEG_BENCHMARKS])}")
    if not Path(root).expanduser().is_dir():
        raise DatasetError(f"the data root {root} does not exist; put the datasets there (README, 'Reproducing the "
                           "paper configuration', step 3) or point data.root / --root / S3_DATA_ROOT at them")
    return [verify_benchmark(root, b, check_images, decode=decode) for b in chosen]


def format_reports(reports: Sequence[VerifyReport]) -> str:
    """A table of all reports, then one block of problem lines per benchmark that has any."""

    def count(found: int | None, expected: int) -> str:
        return f"{'-' if found is None else found}/{expected}"

    rows = [("benchmark", "status", "classes", "test images")]
    for r in reports:
        status = "ok" if r.ok else ("MISSING" if not r.found else "PROBLEMS")
        rows.append((r.benchmark, status, count(r.classes, r.expected_classes),
                     count(r.test_images, r.expected_test_images)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for r in reports:
        if r.problems:
            lines += ["", f"{r.title} ({r.benchmark}):"] + [f"  - {p}" for p in r.problems]
    ok = sum(r.ok for r in reports)
    lines += ["", f"{ok} of {len(reports)} benchmarks ok"]
    return "\n".join(lines)
