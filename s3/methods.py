"""Every compared method, scored from the same cached image features and text embeddings.

Baselines (class name only):
    clip_single      ``a photo of a {}.``
    clip_coop        CoOp's per-dataset template
    clip_ensemble80  the 80 OpenAI templates, embeddings averaged
Synonyms without a space:
    synonyms_mean    normalised mean of all synonym embeddings (prompt ensemble over the bank)
    synonyms_max     max cosine over all synonyms
S^3 (the kept component and its complex), one per point-to-space metric:
    s3_point_to_point_max, s3_point_to_point_mean, s3_point_to_center, s3_point_to_simplex,
    s3_point_to_local_center (the proposed metric)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s3.scoring import METRICS, GroupedItems, StackedSpaces, score
from s3.spaces import SynonymSpace

__all__ = ["BASELINES", "METHODS", "TextSide", "score_method"]

BASELINES = ("clip_single", "clip_coop", "clip_ensemble80")
METHODS = (*BASELINES, "synonyms_mean", "synonyms_max", *(f"s3_{m}" for m in METRICS))


@dataclass
class TextSide:
    """Everything the text encoder contributes for one benchmark (the spaces stage's output).

    Attributes:
        benchmark: benchmark id.
        classnames: C class names (prompt form).
        classifiers: baseline name -> ``(C, D)`` unit rows.
        synonyms: C lists of names (the label first).
        spaces: C class spaces built from the synonym embeddings.
        info: provenance (model identity, bank hash, space config, templates).
    """

    benchmark: str
    classnames: list[str]
    classifiers: dict[str, torch.Tensor]
    synonyms: list[list[str]]
    spaces: list[SynonymSpace]
    info: dict[str, Any]

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(
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
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> "TextSide":
        raw = torch.load(path, map_location="cpu", weights_only=True)
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


def score_method(
    method: str,
    images: torch.Tensor,
    text: TextSide,
    stacked: StackedSpaces | None = None,
    temperature: float | None = None,
    simplex_sweeps: int = 50,
) -> torch.Tensor:
    """``(N, C)`` scores of one method.

    Args:
        images: ``(N, D)`` unit image features.
        stacked: ``StackedSpaces.from_spaces(text.spaces)``, passed in to build it once.
    """
    if method in BASELINES:
        return images @ text.classifiers[method].T
    if method == "synonyms_mean":
        centers = torch.nn.functional.normalize(
            torch.stack([torch.from_numpy(s.embeddings).mean(0) for s in text.spaces]), dim=-1
        )
        return images @ centers.T
    if method == "synonyms_max":
        grouped = GroupedItems.from_lists([s.embeddings for s in text.spaces])
        return grouped.reduce(images @ grouped.items.T, "max")
    if method.startswith("s3_") and method[3:] in METRICS:
        stacked = stacked if stacked is not None else StackedSpaces.from_spaces(text.spaces)
        return score(images, stacked, method[3:], temperature=temperature, simplex_sweeps=simplex_sweeps)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
