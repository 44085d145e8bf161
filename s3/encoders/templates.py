"""Prompt templates: the single CLIP prompt, CoOp's per-dataset prompts and the 80-template set."""

from __future__ import annotations

from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

__all__ = ["SINGLE_TEMPLATE", "COOP_TEMPLATES", "ENSEMBLE_80", "templates_for"]

SINGLE_TEMPLATE = "a photo of a {}."

# CoOp's hand-written template per dataset; benchmarks not listed use the single template.
COOP_TEMPLATES: dict[str, str] = {
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "food101": "a photo of {}, a type of food.",
    "ucf101": "a photo of a person doing {}.",
}

# open_clip ships the 80 OpenAI templates as functions of the class name.
ENSEMBLE_80: tuple[str, ...] = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


def templates_for(kind: str, benchmark: str) -> tuple[str, ...]:
    """The templates of a prompt set for a benchmark.

    Args:
        kind: ``single`` (``a photo of a {}.``), ``coop`` (CoOp's per-dataset template) or
            ``ensemble80`` (the 80 OpenAI ImageNet templates).
        benchmark: a benchmark id (``eurosat``, ``imagenet_a``, ...).
    """
    if kind == "single":
        return (SINGLE_TEMPLATE,)
    if kind == "coop":
        return (COOP_TEMPLATES.get(benchmark, SINGLE_TEMPLATE),)
    if kind == "ensemble80":
        return ENSEMBLE_80
    raise ValueError(f"unknown template set {kind!r}: use 'single', 'coop' or 'ensemble80'")
