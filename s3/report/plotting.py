"""One figure style for the artifact, and byte-stable saving (PNG for the web, PDF for the paper)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

__all__ = ["use_style", "save_figure", "DEMO_BANNER"]

DEMO_BANNER = "DEMO: a tiny CLIP trained for seconds on synthetic images; not a paper result"


def use_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "svg.hashsalt": "s3", "pdf.compression": 6})


def save_figure(fig: plt.Figure, path_stem: str | Path, demo: bool = False) -> list[Path]:
    """Save ``<stem>.png`` and ``<stem>.pdf`` without timestamps; stamp a demo banner when asked."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if demo:
        fig.text(0.5, 0.995, DEMO_BANNER, ha="center", va="top", fontsize=8, color="firebrick")
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None})
    return paths
