"""Text embeddings: names through templates, averaged per name (prompt ensembling), and the
whole text side of a benchmark (baseline classifiers, synonym embeddings, class spaces)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from s3.analysis.costs import Cost, measure
from s3.core.spaces import SpaceConfig, build_spaces
from s3.core.text_side import BASELINE_TEMPLATES, TextSide
from s3.encoders.cache import EmbeddingCache, Features, digest
from s3.encoders.models import LoadedModel
from s3.encoders.templates import templates_for
from s3.progress import progress
from s3.synonyms.bank import bank_digest, read_bank, synonyms_for

__all__ = ["encode_texts", "embed_names", "embed_classnames", "distinct_texts", "build_text_side"]


@torch.no_grad()
def encode_texts(loaded: LoadedModel, texts: Sequence[str], batch_size: int = 256,
                 cache: EmbeddingCache | None = None) -> torch.Tensor:
    """``(T, D)`` float32 unit rows, on the CPU.

    With a ``cache``, embeddings are stored under a key covering the model and the exact texts,
    and reused by every later call (other stages, ablations, reruns).
    """
    key = digest({"model": loaded.spec.identity, "texts": list(texts)}) if cache is not None else ""
    if cache is not None and (hit := cache.load("text", key)) is not None:
        return hit.features
    chunks = []
    batches = range(0, len(texts), batch_size)
    for start in progress(batches, desc="text", unit="batch"):
        tokens = loaded.tokenizer(list(texts[start : start + batch_size])).to(loaded.device)
        with loaded.autocast():
            chunks.append(F.normalize(loaded.model.encode_text(tokens).float(), dim=-1).cpu())
    embeddings = torch.cat(chunks) if chunks else torch.zeros(0, 0)
    if cache is not None:
        meta = {"key": key, "model": loaded.spec.identity, "num_texts": len(texts)}
        cache.save("text", key, Features(embeddings, torch.zeros(0, dtype=torch.long), meta))
    return embeddings


def embed_names(
    loaded: LoadedModel,
    names_per_class: Sequence[Sequence[str]],
    templates: Sequence[str],
    batch_size: int = 256,
    cache: EmbeddingCache | None = None,
) -> list[np.ndarray]:
    """Embed every name of every class through the templates.

    A name's embedding is the normalised mean of its unit template embeddings.

    Args:
        names_per_class: C lists of names (class c has K_c names).
        templates: format strings with one ``{}``.

    Returns:
        C arrays, class c of shape ``(K_c, D)`` float32 with unit rows.
    """
    texts = [t.format(name) for names in names_per_class for name in names for t in templates]
    emb = encode_texts(loaded, texts, batch_size, cache)
    per_name = F.normalize(emb.reshape(-1, len(templates), emb.shape[-1]).mean(dim=1), dim=-1).numpy()
    sizes = np.cumsum([len(names) for names in names_per_class])[:-1]
    return [block.astype(np.float32) for block in np.split(per_name, sizes)]


def embed_classnames(loaded: LoadedModel, classnames: Sequence[str], templates: Sequence[str],
                     batch_size: int = 256, cache: EmbeddingCache | None = None) -> torch.Tensor:
    """``(C, D)`` zero-shot classifier: each class name's normalised mean over the templates."""
    return torch.from_numpy(np.concatenate(embed_names(loaded, [[c] for c in classnames], templates, batch_size, cache)))


def distinct_texts(loaded: LoadedModel, names: Sequence[str]) -> list[str]:
    """``names`` without those the tokenizer cannot tell apart from an earlier one ("ATR 42" and
    "ATR42" are the same tokens): duplicates add no information and only zero-length H0 bars."""
    seen, kept = set(), []
    for name, tokens in zip(names, loaded.tokenizer(list(names))):
        key = tuple(tokens.tolist())
        if key not in seen:
            seen.add(key)
            kept.append(name)
    return kept


def build_text_side(
    loaded: LoadedModel,
    benchmark: str,
    classnames: Sequence[str],
    bank_indices: Sequence[int],
    bank_path: str | Path,
    spaces: dict[str, Any],
    batch_size: int = 256,
    cache: EmbeddingCache | None = None,
    costs: list[Cost] | None = None,
) -> TextSide:
    """Embed the baselines' prompts and every synonym, then build the class spaces.

    Args:
        classnames: C class names in label order; ``bank_indices``: their records in the bank.
        bank_path: the synonym bank file (JSONL).
        spaces: the ``spaces`` section of params.yaml (``templates`` + ``SpaceConfig`` fields).
        cache: reuse text embeddings across stages and runs (``encode_texts``).
        costs: if given, two measurements are appended: ``spaces/encode`` (every synonym and every
            baseline prompt through its templates, on the model's device; ``items`` = prompts,
            ``extra["cached"]`` when all came from ``cache``) and ``spaces/build`` (the C class spaces
            from the synonym embeddings, on the CPU; ``items`` = C).
    """
    def timed(device: torch.device | str, what: str, items: int):
        return measure(device, what, items) if costs is not None else nullcontext(Cost())

    synonyms = [distinct_texts(loaded, names) for names in synonyms_for(read_bank(bank_path), bank_indices, classnames)]
    synonym_templates = templates_for(spaces["templates"], benchmark)
    baseline_templates = {method: templates_for(kind, benchmark) for method, kind in BASELINE_TEMPLATES.items()}
    prompts = sum(map(len, synonyms)) * len(synonym_templates) + len(classnames) * sum(
        map(len, baseline_templates.values()))
    misses = cache.misses if cache is not None else 0
    with timed(loaded.device, "spaces/encode", prompts) as encoding:
        embeddings = embed_names(loaded, synonyms, synonym_templates, batch_size, cache)
        classifiers = {method: embed_classnames(loaded, classnames, templates, batch_size, cache)
                       for method, templates in baseline_templates.items()}
    encoding.extra = {"names": sum(map(len, synonyms)), "cached": cache is not None and cache.misses == misses}
    config = SpaceConfig(**{k: v for k, v in spaces.items() if k != "templates"})
    with timed("cpu", "spaces/build", len(classnames)) as building:
        class_spaces = build_spaces(embeddings, config, classnames)
    if costs is not None:
        costs += [encoding, building]
    return TextSide(
        benchmark,
        list(classnames),
        classifiers,
        synonyms,
        class_spaces,
        info={"model": loaded.spec.identity, "bank_sha256": bank_digest(bank_path), "spaces": dict(spaces)},
    )
