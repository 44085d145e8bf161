"""The WordNet source: lemmas read at the synset's byte offset, normalised like LLM replies."""

from pathlib import Path

import pytest

from s3.synonyms.bank import read_bank
from s3.synonyms.wordnet import read_classnames_txt, synset_lemmas, wordnet_records

REPO = Path(__file__).resolve().parents[1]


def fake_wordnet(folder: Path, synsets: dict[str, list[str]]) -> dict[str, str]:
    """A data.noun whose lines start at the byte offsets they name, as in WordNet 3.0."""
    text = "  1 This is a tiny stand-in for WordNet 3.0's data.noun\n"
    wnids = {}
    for key, lemmas in synsets.items():
        offset = len(text.encode())
        words = " ".join(f"{w.replace(' ', '_')} 0" for w in lemmas)
        text += f"{offset:08d} 05 n {len(lemmas):02x} {words} 000 | {key} gloss\n"
        wnids[key] = f"n{offset:08d}"
    (folder / "data.noun").write_text(text)
    return wnids


def test_synset_lemmas_at_byte_offsets(tmp_path):
    wnids = fake_wordnet(tmp_path, {"tench": ["tench", "Tinca tinca"], "crane": ["crane"]})
    assert synset_lemmas(tmp_path, wnids["tench"]) == ["tench", "Tinca tinca"]
    assert synset_lemmas(tmp_path, wnids["crane"]) == ["crane"]
    with pytest.raises(ValueError, match="is it WordNet 3.0"):
        synset_lemmas(tmp_path, "n00000003")
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        synset_lemmas(tmp_path / "missing", wnids["crane"])


def test_wordnet_records_are_normalised(tmp_path):
    wnids = fake_wordnet(tmp_path, {"a": ["tench", "Tinca tinca", "tench"], "b": ["crane", "tench"]})
    (tmp_path / "classnames.txt").write_text(f"{wnids['b']} crane\n{wnids['a']} tench\n")
    classes = read_classnames_txt(tmp_path / "classnames.txt")
    assert [name for _, name in classes] == ["tench", "crane"]  # sorted by wnid
    records = wordnet_records(classes, tmp_path)
    assert records[0].synonyms == ["tench", "Tinca tinca"]
    assert records[1].synonyms == ["crane"]  # "tench" names another class
    assert records[0].provenance["generator"] == "wordnet-3.0" and records[0].provenance["wnid"] == wnids["a"]


def test_shipped_wordnet_bank_matches_the_llm_banks_classes():
    wordnet = read_bank(REPO / "data/synonyms/imagenet_wordnet.jsonl")
    llm = read_bank(REPO / "data/synonyms/imagenet.jsonl")
    assert [r.classname for r in wordnet] == [r.classname for r in llm]
    assert all(r.provenance["generator"] == "wordnet-3.0" for r in wordnet)
