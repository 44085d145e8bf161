"""A second synonym source for the ImageNet family: the lemmas of each class's WordNet synset.

An ImageNet wnid such as ``n01440764`` names a WordNet 3.0 noun synset by its byte offset in
``data.noun``, so the lemmas are one seek away. (NLTK's WordNet reader would do the same, but it
needs a ``lexnames`` file that Debian's ``wordnet-base`` package does not ship and refuses paths
outside its data sandbox; a ten-line reader of the documented ``data.noun`` format is simpler.)

    apt-get install wordnet-base      # WordNet 3.0 under /usr/share/wordnet
    s3 synonyms wordnet --classnames data/datasets/imagenet/classnames.txt \
        --out data/synonyms/imagenet_wordnet.jsonl

Use it as an ablation with ``synonyms.imagenet_source: wordnet``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Sequence

from s3.synonyms.bank import SynonymRecord
from s3.synonyms.normalize import normalise_synonyms

__all__ = ["DEFAULT_WORDNET_DIR", "synset_lemmas", "wordnet_records", "read_classnames_txt"]

DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
_POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}


def synset_lemmas(wordnet_dir: str | Path, wnid: str) -> list[str]:
    """The lemmas of a synset, in WordNet's order, ``_`` replaced by spaces.

    Args:
        wnid: ``<pos letter><8-digit offset>``, e.g. ``n01440764``.
    """
    pos, offset = wnid[0], int(wnid[1:])
    path = Path(wordnet_dir) / f"data.{_POS_FILES[pos]}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: install WordNet 3.0 (apt-get install wordnet-base) "
                                "or pass --wordnet-dir")
    with path.open("rb") as handle:
        handle.seek(offset)
        fields = handle.readline().decode("utf-8").split()
    if not fields or not fields[0].isdigit() or int(fields[0]) != offset:
        raise ValueError(f"{wnid}: no synset at offset {offset} of {path}; is it WordNet 3.0?")
    count = int(fields[3], 16)
    words = fields[4 : 4 + 2 * count : 2]
    # Adjective lemmas may carry a syntactic marker such as "(a)"; nouns never do, but be safe.
    return [re.sub(r"\([a-z]+\)$", "", w).replace("_", " ") for w in words]


def read_classnames_txt(path: str | Path) -> list[tuple[str, str]]:
    """``(wnid, class name)`` pairs of CoOp's ImageNet ``classnames.txt``, in label (sorted wnid) order."""
    rows = [line.strip().split(" ", 1) for line in Path(path).read_text().splitlines() if line.strip()]
    return sorted((wnid, name) for wnid, name in rows)


def wordnet_records(classes: Sequence[tuple[str, str]], wordnet_dir: str | Path = DEFAULT_WORDNET_DIR,
                    dataset: str = "imagenet") -> list[SynonymRecord]:
    """One record per class: the class name, then its synset's lemmas (normalised like LLM replies)."""
    names = [name for _, name in classes]
    records = []
    for index, (wnid, name) in enumerate(classes):
        lemmas = synset_lemmas(wordnet_dir, wnid)
        records.append(SynonymRecord(index, name, normalise_synonyms(name, lemmas, dataset, names), {
            "generator": "wordnet-3.0",
            "wnid": wnid,
            "raw_reply": ", ".join(lemmas),
            "model": None,
            "date": dt.date.today().isoformat(),
        }))
    return records
