"""Resumable encoding: a long encoding writes its rows shard by shard.

Each shard covers a fixed range of the input list and is keyed by exactly what determines its
rows (the model and preprocessing, and the stamps of its own inputs). So a stage that fails or
is killed resumes from its complete shards, and replacing one input re-encodes only its shard.
Shards are checked files (``s3.checked``): a torn or corrupt shard is encoded again.

    plan = plan_shards(directory, item_keys, shard_size=4096, salt=model_identity)
    encode_shards(plan, batches_over(plan.missing_items()))   # writes the missing shards
    rows = plan.assemble()                                     # dict of (N, ...) tensors
    plan.clear()                                               # once the result is stored

A row may also be ragged: a list of one tensor per input, of any shapes (the segmentation
windows: ``(n_i, gh, gw, D)`` with ``n_i`` windows of image i); it stays a list in input order.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

import torch

from s3.checked import CorruptFile, load_checked, save_checked
from s3.encoders.cache import digest
from s3.errors import S3Error
from s3.progress import progress

__all__ = ["Rows", "ShardBatch", "ShardPlan", "UnreadableInputs", "plan_shards", "encode_shards"]

Rows = Union[torch.Tensor, list]  # (B, ...) tensor, or a ragged list of B tensors


class UnreadableInputs(S3Error):
    """Some inputs could not be read; every other shard was kept."""

    def __init__(self, failed: Sequence[tuple[str, str]], hint: str) -> None:
        self.failed = list(failed)
        listed = "; ".join(f"{name} ({reason})" for name, reason in self.failed[:20])
        more = f"; ... and {len(self.failed) - 20} more" if len(self.failed) > 20 else ""
        super().__init__(f"{len(self.failed)} inputs could not be read: {listed}{more}. {hint}")


@dataclass
class ShardBatch:
    """One batch of encoded rows.

    Attributes:
        indices: ``(B,)`` int64 positions in the input list of the rows below.
        rows: name -> ``(B, ...)`` tensor (e.g. ``features``, ``labels``), or a list of B tensors
            of any shapes (a ragged row).
        failed: ``(position, reason)`` of inputs of this batch that could not be read (no rows).
    """

    indices: torch.Tensor
    rows: dict[str, Rows]
    failed: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ShardPlan:
    """Where the shards of one encoding live and what each one must hold.

    Attributes:
        directory: the shards' folder.
        keys: one key per shard (covers everything that determines its rows).
        shard_size: inputs per shard (the last shard may be shorter).
        num_items: N, the length of the input list.
    """

    directory: Path
    keys: tuple[str, ...]
    shard_size: int
    num_items: int

    def bounds(self, shard: int) -> tuple[int, int]:
        """``(start, stop)`` of the inputs of ``shard``."""
        return shard * self.shard_size, min((shard + 1) * self.shard_size, self.num_items)

    def path(self, shard: int) -> Path:
        return self.directory / f"{shard:05d}-{self.keys[shard][:16]}.pt"

    def load(self, shard: int) -> dict[str, Rows] | None:
        """The rows of ``shard`` in input order, or ``None`` when it is absent, torn or made from other inputs."""
        try:
            payload = load_checked(self.path(shard), "it will be encoded again")
        except CorruptFile:
            return None
        return payload["rows"] if payload.get("key") == self.keys[shard] else None

    def missing(self) -> list[int]:
        """Shards not yet complete (absent, torn, or made from other inputs)."""
        return [s for s in range(len(self.keys)) if not self.path(s).is_file() or self.load(s) is None]

    def missing_items(self) -> list[int]:
        """Positions of the inputs of the missing shards, ascending."""
        return [i for s in self.missing() for i in range(*self.bounds(s))]

    def assemble(self) -> dict[str, Rows]:
        """Every shard's rows concatenated in input order; each must be complete."""
        parts = [self.load(s) for s in range(len(self.keys))]
        if any(p is None for p in parts):
            raise CorruptFile(f"{self.directory}: shards {[s for s, p in enumerate(parts) if p is None]} are "
                              "missing or corrupt; run the stage again to encode them")
        return {name: _concatenate([p[name] for p in parts]) for name in parts[0]} if parts else {}

    def clear(self) -> None:
        """Delete the shards (after the assembled result is stored elsewhere)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def plan_shards(directory: str | Path, item_keys: Sequence[str], shard_size: int, salt: str) -> ShardPlan:
    """Shard keys from per-input keys (e.g. a file's path, size and modification time).

    Args:
        item_keys: N strings, one per input, that change whenever the input changes.
        shard_size: inputs per shard.
        salt: what determines every row besides its input (model identity, preprocessing, ...).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    n = len(item_keys)
    keys = tuple(digest([salt, list(item_keys[s : s + shard_size])]) for s in range(0, n, shard_size))
    return ShardPlan(Path(directory), keys, shard_size, n)


def encode_shards(plan: ShardPlan, batches: Iterable[ShardBatch], desc: str = "encode",
                  names: Sequence[str] = ()) -> list[tuple[int, str]]:
    """Write every missing shard of ``plan`` from ``batches``.

    ``batches`` must cover the inputs of ``plan.missing_items()`` (in any batch sizes, in
    ascending order). A shard is written as soon as all its inputs are accounted for, unless one of
    them failed: that shard is left missing, so a later run encodes it again.

    Args:
        names: labels of the inputs (e.g. file paths) for the returned failures.

    Returns:
        ``(name, reason)`` of every input that could not be read (empty when all were written).
    """
    plan.directory.mkdir(parents=True, exist_ok=True)
    for orphan in plan.directory.glob(".*.tmp"):  # left by a killed run's atomic write
        orphan.unlink(missing_ok=True)
    todo = set(plan.missing())
    pending: dict[int, list[ShardBatch]] = {}
    seen = {s: 0 for s in todo}
    failed: list[tuple[int, str]] = []
    bar = progress(total=sum(plan.bounds(s)[1] - plan.bounds(s)[0] for s in todo), desc=desc, unit="input")
    for batch in batches:
        positions = batch.indices.tolist() + [i for i, _ in batch.failed]
        failed += batch.failed
        for shard in sorted({i // plan.shard_size for i in positions}):
            if shard not in todo:
                raise ValueError(f"batch holds inputs of shard {shard}, which is not missing")
            pending.setdefault(shard, []).append(batch)
            start, stop = plan.bounds(shard)
            seen[shard] += sum(start <= i < stop for i in positions)
            if seen[shard] == stop - start:
                _write(plan, shard, pending.pop(shard), failed)
        bar.update(len(positions))
    bar.close()
    unfinished = [s for s in todo if seen[s] < plan.bounds(s)[1] - plan.bounds(s)[0]]
    if unfinished:
        raise ValueError(f"the batches did not cover shards {unfinished[:10]}")
    return [(str(names[i]) if names else str(i), reason) for i, reason in failed]


def _write(plan: ShardPlan, shard: int, batches: list[ShardBatch], failed: list[tuple[int, str]]) -> None:
    start, stop = plan.bounds(shard)
    if any(start <= i < stop for i, _ in failed):
        return  # incomplete: encoded again once the input is fixed
    rows: dict[str, list[Rows]] = {}
    order: list[torch.Tensor] = []
    for batch in batches:
        inside = (batch.indices >= start) & (batch.indices < stop)
        order.append(batch.indices[inside])
        for name, values in batch.rows.items():
            if isinstance(values, list):
                values = [v for v, keep in zip(values, inside.tolist()) if keep]
            else:
                values = values[inside]
            rows.setdefault(name, []).append(values)
    perm = torch.argsort(torch.cat(order))
    ordered = {name: _reorder(_concatenate(parts), perm) for name, parts in rows.items()}
    save_checked(plan.path(shard), {"key": plan.keys[shard], "rows": ordered})


def _concatenate(parts: list[Rows]) -> Rows:
    return [row for part in parts for row in part] if isinstance(parts[0], list) else torch.cat(parts)


def _reorder(rows: Rows, perm: torch.Tensor) -> Rows:
    if isinstance(rows, list):
        return [rows[i].contiguous() for i in perm.tolist()]
    return rows[perm].contiguous()
