"""Synonym embeddings through every template set, written by the ``spaces`` stage (through the text
cache) so the ablation stage compares template sets without a text encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from s3.checked import load_checked, save_checked
from s3.encoders.cache import EmbeddingCache
from s3.encoders.models import LoadedModel
from s3.encoders.templates import templates_for
from s3.encoders.text import embed_names

__all__ = ["TEMPLATE_SETS", "embed_template_sets", "save_template_sets", "load_template_sets"]

TEMPLATE_SETS = ("single", "coop", "ensemble80")


def embed_template_sets(loaded: LoadedModel, synonyms: Sequence[Sequence[str]], benchmark: str,
                        batch_size: int = 256, cache: EmbeddingCache | None = None) -> dict[str, list[np.ndarray]]:
    """Template set -> C arrays ``(K_c, D)``: every synonym through each set (cached like the text side)."""
    return {kind: embed_names(loaded, synonyms, templates_for(kind, benchmark), batch_size, cache) for kind in TEMPLATE_SETS}


def save_template_sets(path: str | Path, sets: dict[str, list[np.ndarray]]) -> None:
    save_checked(path, {kind: [torch.from_numpy(e) for e in per_class] for kind, per_class in sets.items()})


def load_template_sets(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Read the file; a truncated or corrupted one is refused with what to run."""
    raw = load_checked(path, f"run `dvc repro --force spaces@{Path(path).name.split('.')[0]}` to rebuild it")
    return {kind: [e.numpy() for e in per_class] for kind, per_class in raw.items()}
