"""Tensor files that carry a checksum of their contents, written atomically.

Stage outputs (``results/features/<b>.pt``, ``results/spaces/<b>.pt``) and cache entries are
saved with :func:`save_checked`; :func:`load_checked` refuses a truncated or corrupted file with
an error naming it and saying what to run, instead of handing damaged numbers to the next stage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from s3.atomic import atomic_torch_save
from s3.errors import S3Error

__all__ = ["CorruptFile", "checksum", "save_checked", "load_checked"]


class CorruptFile(S3Error):
    """A checked file is missing, unreadable or fails its checksum."""


def _feed(sha: "hashlib._Hash", obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().contiguous().cpu()
        sha.update(f"tensor:{t.dtype}:{tuple(t.shape)}:".encode())
        sha.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        sha.update(b"dict:")
        for key in sorted(obj, key=str):
            sha.update(json.dumps(str(key)).encode())
            _feed(sha, obj[key])
    elif isinstance(obj, (list, tuple)):
        sha.update(f"list:{len(obj)}:".encode())
        for item in obj:
            _feed(sha, item)
    else:  # str, int, float, bool, None
        sha.update(json.dumps(obj, sort_keys=True).encode())


def checksum(payload: Any) -> str:
    """sha256 of a payload made of dicts, lists, tensors and JSON scalars (order of dict keys ignored)."""
    sha = hashlib.sha256()
    _feed(sha, payload)
    return sha.hexdigest()


def save_checked(path: str | Path, payload: dict[str, Any]) -> Path:
    """Save ``payload`` with its checksum, atomically (a crash never leaves a half-written file)."""
    record = {"payload": payload, "sha256": checksum(payload)}
    return atomic_torch_save(path, record)


def load_checked(path: str | Path, remedy: str) -> dict[str, Any]:
    """The payload of a checked file.

    Args:
        remedy: what the user should run when the file is bad (``dvc repro --force features@x``).

    Raises:
        CorruptFile: the file is missing, unreadable, not a checked file, or fails its checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptFile(f"{path} does not exist; {remedy}")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
        payload, expected = record["payload"], record["sha256"]
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same answer
        raise CorruptFile(f"{path} is unreadable or truncated ({type(error).__name__}); {remedy}") from None
    if checksum(payload) != expected:
        raise CorruptFile(f"{path} fails its checksum (corrupted on disk?); {remedy}")
    return payload
