"""The versioned synonym prompt and the per-dataset context phrase that fills it."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["PROMPT_VERSION", "CONTEXTS", "available_prompts", "prompt_template", "prompt_sha256", "render_prompt"]

PROMPT_VERSION = "synonyms_v1"
_PROMPT_DIR = Path(__file__).parent / "prompts"

# What the classifier recognises, per dataset ({context} in the prompt).
CONTEXTS: dict[str, str] = {
    "imagenet": "everyday objects, animals, plants and scenes (the ImageNet categories)",
    "caltech101": "everyday objects and animals",
    "oxford_pets": "breeds of cats and dogs",
    "stanford_cars": "car models (make, model, body style and model year)",
    "oxford_flowers": "types of flowers",
    "food101": "types of food and dishes",
    "fgvc_aircraft": "aircraft models and variants",
    "sun397": "types of scenes and places",
    "dtd": "textures",
    "eurosat": "land-use and land-cover classes in satellite images",
    "ucf101": "human actions in videos",
    "pascal_voc": "objects in photographs (PASCAL VOC segmentation classes)",
    "pascal_context": "objects and materials in photographs (PASCAL Context segmentation classes)",
}


def available_prompts() -> list[str]:
    """The prompt versions shipped in ``s3/synonyms/prompts/``."""
    return sorted(p.stem for p in _PROMPT_DIR.glob("*.txt"))


def prompt_template(version: str = PROMPT_VERSION) -> str:
    path = _PROMPT_DIR / f"{version}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {path} not found; known versions: {available_prompts()}")
    return path.read_text(encoding="utf-8")


def prompt_sha256(version: str = PROMPT_VERSION) -> str:
    return hashlib.sha256(prompt_template(version).encode()).hexdigest()


def render_prompt(dataset: str, classname: str, num_synonyms: int, version: str = PROMPT_VERSION) -> str:
    context = CONTEXTS.get(dataset, "objects")
    return prompt_template(version).format(context=context, classname=classname, num_synonyms=num_synonyms)
