"""An on-disk cache of embeddings (image features, text embeddings) that detects corrupt files.

Each entry is ``<name>-<key>.pt``, a checked file (``s3.checked``): tensors, a description and a
checksum, written atomically. A truncated or corrupt entry is announced and rebuilt instead of
silently used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from s3.checked import CorruptFile, load_checked, save_checked
from s3.notices import notice

__all__ = ["EmbeddingCache", "Features", "digest"]


def digest(obj: Any) -> str:
    """Stable sha256 of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Features:
    """Cached embeddings of one list of inputs.

    Attributes:
        features: ``(N, D)`` float32 unit rows.
        labels: ``(N,)`` int64 (empty for texts).
        meta: what produced them (model identity, benchmark, split, number of inputs, key).
    """

    features: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any]


class EmbeddingCache:
    """A folder of ``<name>-<key>.pt`` checked files.

    Args:
        root: the folder.
        kind: what it holds, for messages (``feature cache``, ``text cache``).

    ``hits`` and ``misses`` count this object's ``load`` calls that found, or did not find, a valid entry.
    """

    def __init__(self, root: str | Path, kind: str = "embedding cache") -> None:
        self.root = Path(root)
        self.kind = kind
        self.hits = self.misses = 0

    def path(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key[:16]}.pt"

    def load(self, name: str, key: str) -> Features | None:
        """The cached entry, or ``None`` when absent, unreadable, failing its checksum, or stale."""
        path = self.path(name, key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            payload = load_checked(path, "it will be rebuilt")
            if payload["key"] != key:
                raise CorruptFile(f"{path} holds another key")
        except (CorruptFile, KeyError):
            notice(f"{self.kind}: {path} is corrupt or stale; rebuilding it")
            self.misses += 1
            return None
        self.hits += 1
        return Features(payload["features"], payload["labels"], json.loads(payload["meta"]))

    def save(self, name: str, key: str, features: Features) -> Path:
        payload = {
            "key": key,
            "features": features.features.contiguous(),
            "labels": features.labels.contiguous(),
            "meta": json.dumps(features.meta, sort_keys=True),
        }
        return save_checked(self.path(name, key), payload)
