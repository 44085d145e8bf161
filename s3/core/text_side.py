"""The text side of one benchmark: baseline classifiers, synonym embeddings and class spaces.

Built once per benchmark by ``s3.encoders.text.build_text_side`` (classification: the ``spaces`` stage;
segmentation: the ``segment`` stage) and saved, so every method is scored from the same embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s3.checked import load_checked, save_checked
from s3.core.scoring import GroupedItems, StackedSpaces
from s3.core.spaces import SynonymSpace

__all__ = ["TextSide", "BASELINE_TEMPLATES"]

# Baseline method -> template set.
BASELINE_TEMPLATES = {"clip_single": "single", "clip_coop": "coop", "clip_ensemble80": "ensemble80"}


@dataclass
class TextSide:
    """Everything the text encoder contributes for one benchmark.

    Attributes:
        benchmark: benchmark id.
        classnames: C class names (prompt form).
        classifiers: baseline name -> ``(C, D)`` unit rows.
        synonyms: C lists of names (the label first).
        spaces: C class spaces built from the synonym embeddings.
        info: provenance (model identity, bank hash, space parameters).
    """

    benchmark: str
    classnames: list[str]
    classifiers: dict[str, torch.Tensor]
    synonyms: list[list[str]]
    spaces: list[SynonymSpace]
    info: dict[str, Any]

    # Stacked forms for scoring, built once (an image loop scores many batches against them).
    @cached_property
    def stacked(self) -> StackedSpaces:
        """The class spaces stacked for the point-to-space metrics."""
        return StackedSpaces.from_spaces(self.spaces)

    @cached_property
    def synonym_centers(self) -> torch.Tensor:
        """``(C, D)`` normalised mean of every synonym of each class (no pruning)."""
        means = torch.stack([torch.from_numpy(s.embeddings).mean(0) for s in self.spaces])
        return torch.nn.functional.normalize(means, dim=-1)

    @cached_property
    def synonym_items(self) -> GroupedItems:
        """Every synonym embedding (no pruning), grouped by class."""
        return GroupedItems.from_lists([s.embeddings for s in self.spaces])

    def save(self, path: str | Path) -> None:
        """Write the spaces stage's output (a checked file)."""
        save_checked(
            path,
            {
                "benchmark": self.benchmark,
                "classnames": self.classnames,
                "classifiers": self.classifiers,
                "synonyms": self.synonyms,
                "embeddings": [torch.from_numpy(s.embeddings) for s in self.spaces],
                "kept": [s.kept.tolist() for s in self.spaces],
                "simplices": [[list(x) for x in s.simplices] for s in self.spaces],
                "epsilon": [s.epsilon for s in self.spaces],
                "death_times": [s.death_times.tolist() for s in self.spaces],
                "info": self.info,
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> "TextSide":
        """Read a saved text side; a truncated or corrupted file is refused with what to run."""
        raw = load_checked(path, f"run `dvc repro --force spaces@{Path(path).stem}` to rebuild it")
        spaces = [
            SynonymSpace(
                embeddings=emb.numpy(),
                kept=np.asarray(kept, dtype=np.int64),
                simplices=tuple(tuple(s) for s in simplices),
                epsilon=float(eps),
                death_times=np.asarray(deaths),
            )
            for emb, kept, simplices, eps, deaths in zip(
                raw["embeddings"], raw["kept"], raw["simplices"], raw["epsilon"], raw["death_times"]
            )
        ]
        return cls(raw["benchmark"], raw["classnames"], raw["classifiers"], raw["synonyms"], spaces, raw["info"])
