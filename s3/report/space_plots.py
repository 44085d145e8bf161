"""Pictures of class spaces: H0 barcodes with the chosen radius, and a 2-D view of one space."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from s3.core.spaces import SynonymSpace

__all__ = ["barcode_figure", "space_figure", "space_statistics"]


def barcode_figure(spaces: Sequence[SynonymSpace], titles: Sequence[str]) -> plt.Figure:
    """One panel per class: H0 bars (birth 0, death = MST edge) and the radius epsilon."""
    fig, axes = plt.subplots(1, len(spaces), figsize=(3.2 * len(spaces), 2.6), squeeze=False)
    for ax, space, title in zip(axes[0], spaces, titles):
        deaths = space.death_times
        ax.hlines(np.arange(len(deaths)), 0, deaths, color="tab:blue", linewidth=3)
        ax.axvline(space.epsilon, color="tab:red", linestyle="--", label=f"epsilon={space.epsilon:.3f}")
        ax.set_title(f"{title}\nkept {len(space.kept)}/{space.num_synonyms}", fontsize=9)
        ax.set_xlabel("H0 death (distance)")
        ax.set_yticks([])
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def space_figure(space: SynonymSpace, names: Sequence[str], title: str) -> plt.Figure:
    """PCA of the synonyms (2-D), simplices drawn as edges/filled triangles, dropped synonyms grey."""
    emb = space.embeddings.astype(np.float64)
    centered = emb - emb.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    xy = centered @ vt[:2].T if len(emb) > 1 else np.zeros((1, 2))
    fig, ax = plt.subplots(figsize=(5, 4))
    for simplex in space.simplices:
        pts = xy[list(simplex)]
        if len(simplex) >= 3:
            ax.fill(pts[:, 0], pts[:, 1], alpha=0.08, color="tab:blue")
        for i in range(len(simplex)):
            for j in range(i + 1, len(simplex)):
                ax.plot(*xy[[simplex[i], simplex[j]]].T, color="tab:blue", linewidth=0.6, alpha=0.6)
    kept = set(space.kept.tolist())
    for k, (x, y) in enumerate(xy):
        color = "tab:red" if k == 0 else ("tab:blue" if k in kept else "grey")
        ax.scatter(x, y, color=color, zorder=3, s=30)
        ax.annotate(names[k], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_title(f"{title}: {len(space.simplices)} maximal simplices (label in red, dropped in grey)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def space_statistics(spaces: Sequence[SynonymSpace]) -> dict[str, float]:
    """Means over classes: synonyms, kept synonyms, maximal simplices, radius; share of classes pruned."""
    frame = pd.DataFrame(
        {
            "synonyms": [s.num_synonyms for s in spaces],
            "kept": [len(s.kept) for s in spaces],
            "simplices": [len(s.simplices) for s in spaces],
            "epsilon": [s.epsilon for s in spaces],
        }
    )
    return {
        "classes": len(spaces),
        "synonyms_mean": float(frame.synonyms.mean()),
        "kept_mean": float(frame.kept.mean()),
        "kept_fraction": float(frame.kept.sum() / frame.synonyms.sum()),
        "classes_pruned_fraction": float((frame.kept < frame.synonyms).mean()),
        "simplices_mean": float(frame.simplices.mean()),
        "simplices_max": int(frame.simplices.max()),
        "epsilon_mean": float(frame.epsilon.mean()),
    }
