"""Read, write and check the synonym bank: one JSONL file per dataset under ``data/synonyms/``.

Each line is one class, keyed by class index and class name (names alone collide: ImageNet has
two "missile" and two "sunglasses" classes)::

    {"index": 0, "classname": "tench", "synonyms": ["tench", "Tinca tinca", ...],
     "provenance": {"generator": ..., "prompt_version": ..., "prompt_sha256": ..., "model": ...,
                    "temperature": ..., "seed": ..., "date": ..., "raw_reply": ...}}

``synonyms[0]`` is always the class name itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any, Sequence

from s3.atomic import atomic_write
from s3.errors import S3Error

__all__ = [
    "SynonymRecord",
    "BankError",
    "BANK_SIZES",
    "bank_file",
    "read_bank",
    "write_bank",
    "repair_bank",
    "bank_digest",
    "synonyms_for",
    "CheckReport",
    "check_bank",
]

# Every dataset of the shipped bank and its class count.
BANK_SIZES: dict[str, int] = {
    "imagenet": 1000,
    "caltech101": 100,
    "oxford_pets": 37,
    "stanford_cars": 196,
    "oxford_flowers": 102,
    "food101": 101,
    "fgvc_aircraft": 100,
    "sun397": 397,
    "dtd": 47,
    "eurosat": 10,
    "ucf101": 101,
    "pascal_voc": 21,
    "pascal_context": 60,
}


class BankError(S3Error, ValueError):
    """The bank is missing, malformed or does not cover a class list."""


@dataclass
class SynonymRecord:
    index: int
    classname: str
    synonyms: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def bank_file(bank_dir: str | Path, dataset: str) -> Path:
    return Path(bank_dir) / f"{dataset}.jsonl"


def read_bank(path: str | Path) -> list[SynonymRecord]:
    """Records sorted by index; a malformed line is an error naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise BankError(
            f"synonym bank {path} not found; the shipped bank lives in data/synonyms/, or generate one "
            "with synonyms.mode: generate"
        )
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            record = SynonymRecord(int(raw["index"]), str(raw["classname"]), list(raw["synonyms"]), raw.get("provenance", {}))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise BankError(f"{path}:{number}: not a synonym record ({error})") from error
        if not record.synonyms or record.synonyms[0] != record.classname:
            raise BankError(f"{path}:{number}: synonyms must start with the class name {record.classname!r}")
        records.append(record)
    indices = [r.index for r in records]
    if len(set(indices)) != len(indices):
        dup = sorted({i for i in indices if indices.count(i) > 1})
        raise BankError(f"{path}: class indices {dup[:10]} appear more than once (two generation runs wrote it at "
                        f"once?); run `s3 synonyms repair {path}` to keep one record per class")
    return sorted(records, key=lambda r: r.index)


def repair_bank(path: str | Path) -> tuple[int, int]:
    """Keep the first valid record of each class index (what a resumed run would have kept).

    Returns:
        ``(kept, dropped)``. Lines that are not records stop the repair (nothing is written).
    """
    path = Path(path)
    if not path.is_file():
        raise BankError(f"{path} not found")
    kept: dict[int, str] = {}
    dropped = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            index = int(json.loads(line)["index"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise BankError(f"{path}:{number}: not a synonym record ({error}); fix or delete that line first") from error
        if index in kept:
            dropped += 1
        else:
            kept[index] = line
    text = "".join(kept[i] + "\n" for i in sorted(kept))
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    read_bank(path)  # the repaired file must read cleanly
    return len(kept), dropped


def write_bank(path: str | Path, records: Sequence[SynonymRecord]) -> None:
    """Atomic write, sorted by index, one record per line."""
    text = "".join(r.to_json() + "\n" for r in sorted(records, key=lambda r: r.index))
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def bank_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _same_name(a: str, b: str) -> bool:
    return a.replace("_", " ").strip().lower() == b.replace("_", " ").strip().lower()


def synonyms_for(records: Sequence[SynonymRecord], indices: Sequence[int], classnames: Sequence[str]) -> list[list[str]]:
    """The synonym list of each class of a dataset.

    Args:
        records: the bank the dataset draws from.
        indices: C bank indices, one per dataset class (identity except for ImageNet variants).
        classnames: C dataset class names; each must match the bank's name at its index.
    """
    by_index = {r.index: r for r in records}
    missing = [c for c, i in enumerate(indices) if i not in by_index]
    if missing:
        raise BankError(
            f"the synonym bank has no record for {len(missing)} classes (dataset labels {missing[:10]}); "
            "run `s3 synonyms check` and complete the bank"
        )
    mismatched = [
        f"{c}: dataset {name!r} vs bank {by_index[i].classname!r}"
        for c, (i, name) in enumerate(zip(indices, classnames))
        if not _same_name(by_index[i].classname, name)
    ]
    if mismatched:
        raise BankError(
            "class names of the dataset and the synonym bank disagree (wrong class list or label order?): "
            + "; ".join(mismatched[:10])
        )
    return [list(by_index[i].synonyms) for i in indices]


@dataclass
class CheckReport:
    dataset: str
    num_classes: int
    covered: int
    missing: list[str]
    synonyms_mean: float
    synonyms_min: int
    synonyms_max: int

    @property
    def ok(self) -> bool:
        return not self.missing

    def line(self) -> str:
        status = "ok" if self.ok else f"MISSING {len(self.missing)}"
        return (
            f"{self.dataset:<15} classes {self.num_classes:>5}  covered {self.covered:>5}  "
            f"synonyms/class mean {self.synonyms_mean:5.2f} min {self.synonyms_min:>2} "
            f"max {self.synonyms_max:>2}  {status}"
        )


def check_bank(dataset: str, records: Sequence[SynonymRecord], classnames: Sequence[str] | None = None,
               min_synonyms: int = 2) -> CheckReport:
    """Coverage of a bank against a class list (by index).

    Args:
        classnames: the dataset's class list in label order; default: ``BANK_SIZES`` classes with
            the bank's own names (an index-coverage check).
        min_synonyms: a class with fewer names (label included) counts as missing.
    """
    by_index = {r.index: r for r in records}
    expected = classnames if classnames is not None else [
        by_index[i].classname if i in by_index else f"<class {i}>" for i in range(BANK_SIZES.get(dataset, len(records)))
    ]
    missing = []
    for i, name in enumerate(expected):
        record = by_index.get(i)
        if record is None:
            missing.append(f"{i} {name} (no record)")
        elif not _same_name(record.classname, name):
            missing.append(f"{i} {name} (bank has {record.classname!r})")
        elif len(record.synonyms) < min_synonyms:
            missing.append(f"{i} {name} (only {len(record.synonyms)} name)")
    counts = [len(by_index[i].synonyms) for i in range(len(expected)) if i in by_index] or [0]
    return CheckReport(dataset, len(expected), len(expected) - len(missing), missing,
                       float(mean(counts)), min(counts), max(counts))
