"""A controlled-geometry world on the unit sphere, to see when each point-to-space metric wins.

Each class is a concept with a few *modes* (visual sub-types, e.g. a breed photographed as a
puppy or as an adult). Synonyms are noisy views of the modes (lexical variation ``sigma_lex``);
with probability ``outlier_rate`` a synonym is replaced by a view of another class's mode (a
misleading or polysemous synonym). Images are noisy views of a random mode of their class.
Everything here is synthetic: the accuracies measure this world, not CLIP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from s3.core.methods import score_method
from s3.core.spaces import SpaceConfig, build_spaces
from s3.core.text_side import TextSide

__all__ = ["WorldConfig", "make_world", "evaluate_world", "sweep"]


@dataclass(frozen=True)
class WorldConfig:
    num_classes: int = 20
    dim: int = 64
    modes: int = 3
    mode_spread: float = 0.9
    synonyms: int = 8
    images_per_class: int = 40
    image_noise: float = 0.9
    sigma_lex: float = 0.5
    outlier_rate: float = 0.1


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], dim: int) -> np.ndarray:
    return rng.normal(size=(*shape, dim)) / np.sqrt(dim)  # norm about 1


def make_world(config: WorldConfig, seed: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """``(synonyms, images, labels)``: C arrays ``(K, D)`` (row 0 = the label), ``(N, D)``, ``(N,)``."""
    rng = np.random.default_rng(seed)
    c, d = config.num_classes, config.dim
    concepts = _unit(rng.normal(size=(c, d)))
    modes = _unit(concepts[:, None, :] + config.mode_spread * _noise(rng, (c, config.modes), d))  # (C, M, D)
    synonyms = []
    for k in range(c):
        which = rng.integers(0, config.modes, size=config.synonyms)
        views = modes[k, which]
        outlier = rng.random(config.synonyms) < config.outlier_rate
        outlier[0] = False  # the label itself is never an outlier
        others = rng.integers(0, c - 1, size=config.synonyms)
        others = others + (others >= k)  # another class
        views[outlier] = modes[others[outlier], rng.integers(0, config.modes, size=outlier.sum())]
        # The label embedding sits at the class concept; the other synonyms at its modes.
        views[0] = concepts[k]
        synonyms.append(_unit(views + config.sigma_lex * _noise(rng, (config.synonyms,), d)).astype(np.float32))
    labels = np.repeat(np.arange(c), config.images_per_class)
    image_modes = modes[labels, rng.integers(0, config.modes, size=labels.size)]
    images = _unit(image_modes + config.image_noise * _noise(rng, (labels.size,), d)).astype(np.float32)
    return synonyms, images, labels


def evaluate_world(synonyms: list[np.ndarray], images: np.ndarray, labels: np.ndarray,
                   space_config: SpaceConfig) -> dict[str, float]:
    """Top-1 accuracy (%) of the label-only baseline, the synonym baselines and every S^3 metric,
    scored by the harness's own ``score_method`` (the label embedding stands in for CLIP's prompt)."""
    label_only = torch.from_numpy(np.stack([s[0] for s in synonyms]))
    text = TextSide("synthetic", [f"class {c}" for c in range(len(synonyms))], {"clip_single": label_only},
                    [[f"synonym {k}" for k in range(len(s))] for s in synonyms],
                    build_spaces(synonyms, space_config), info={})
    methods = {"label_only": "clip_single", "synonyms_mean": "synonyms_mean", "synonyms_max": "synonyms_max"}
    methods |= {f"s3_{m}": f"s3_{m}" for m in ("point_to_point_max", "point_to_center", "point_to_simplex",
                                                "point_to_local_center")}
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    return {name: (score_method(method, x, text).argmax(1) == y).float().mean().item() * 100
            for name, method in methods.items()}


def sweep(base: WorldConfig, space_config: SpaceConfig, parameter: str, values: list[float],
          repeats: int, seed: int = 0) -> pd.DataFrame:
    """Accuracy of every method as one world parameter varies; one row per (value, repeat, method)."""
    rows = []
    for value in values:
        config = WorldConfig(**{**base.__dict__, parameter: value})
        for r in range(repeats):
            world = make_world(config, seed=seed + 1000 * r)
            for method, acc in evaluate_world(*world, space_config).items():
                rows.append({"parameter": parameter, "value": value, "repeat": r, "method": method, "acc1": acc})
    return pd.DataFrame(rows)
