"""Atomic file writes: a temporary file in the same folder, then a rename, so a crash never leaves
a half-written result where a finished one is expected."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "atomic_torch_save"]


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)``, then move the file to ``path`` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_torch_save(path: str | Path, obj: object) -> Path:
    """``torch.save(obj)`` to ``path`` atomically and byte-stably.

    torch.save names the zip archive's top folder after the file it is given; the temporary file's
    random name would make every save of the same object differ (and DVC rerun everything after it).
    Through a file object the folder is always ``archive``.
    """
    import torch

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)

    return atomic_write(path, write)
