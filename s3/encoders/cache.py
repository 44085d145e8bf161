"""An on-disk cache of embeddings (image features, text embeddings) that detects corrupt files.

Each entry is ``<name>-<key>.pt``: tensors, a checksum of them and a JSON description. Files are
written atomically (temporary file + rename), so a crash never leaves a half-written entry, and a
truncated or corrupt file is detected and rebuilt instead of silently used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from s3.atomic import atomic_write

__all__ = ["EmbeddingCache", "Features", "digest"]


def digest(obj: Any) -> str:
    """Stable sha256 of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _tensor_checksum(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().cpu().numpy().tobytes()).hexdigest()


@dataclass
class Features:
    """Cached features of one image list.

    Attributes:
        features: ``(N, D)`` float32 unit rows.
        labels: ``(N,)`` int64.
        meta: what produced them (model identity, benchmark, split, number of files, key).
    """

    features: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any]


class EmbeddingCache:
    """A folder of ``<name>-<key>.pt`` files (image features, text embeddings), each with a checksum
    of its tensors."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key[:16]}.pt"

    def load(self, name: str, key: str) -> Features | None:
        """The cached entry, or ``None`` when absent, unreadable, or failing its checksum."""
        path = self.path(name, key)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            ok = (
                payload["key"] == key
                and payload["checksum"] == _tensor_checksum(payload["features"]) + _tensor_checksum(payload["labels"])
            )
        except Exception:  # noqa: BLE001 - any unreadable file is a cache miss
            ok = False
        if not ok:
            print(f"feature cache: {path.name} is corrupt or stale; rebuilding it")
            return None
        return Features(payload["features"], payload["labels"], json.loads(payload["meta"]))

    def save(self, name: str, key: str, features: Features) -> Path:
        path = self.path(name, key)
        payload = {
            "key": key,
            "features": features.features.contiguous(),
            "labels": features.labels.contiguous(),
            "checksum": _tensor_checksum(features.features) + _tensor_checksum(features.labels),
            "meta": json.dumps(features.meta, sort_keys=True),
        }
        return atomic_write(path, lambda tmp: torch.save(payload, tmp))
