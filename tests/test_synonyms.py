"""Reply parsing, normalisation, the bank's format and the shipped bank's coverage."""

from pathlib import Path

import pytest

from s3.cli import main as cli
from s3.synonyms.bank import (
    BANK_SIZES,
    BankError,
    SynonymRecord,
    check_bank,
    read_bank,
    synonyms_for,
    write_bank,
)
from s3.synonyms.normalize import MalformedReply, normalise_synonyms, parse_reply
from s3.synonyms.prompt import CONTEXTS, render_prompt

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("reply", [
    '["Tinca tinca", "doctor fish"]',
    'Sure! Here they are:\n```json\n["Tinca tinca", "doctor fish"]\n```',
    "1. Tinca tinca\n2. doctor fish",
    "- Tinca tinca\n- doctor fish",
    "Tinca tinca, doctor fish",
])
def test_parse_reply_formats(reply):
    assert [n.strip() for n in parse_reply(reply)] == ["Tinca tinca", "doctor fish"]


@pytest.mark.parametrize("reply", ["", "   ", "I cannot help with that.", "x" * 5000])
def test_parse_reply_rejects_unusable_replies(reply):
    with pytest.raises(MalformedReply):
        parse_reply(reply)


def test_normalise_keeps_real_names_and_drops_the_rest():
    names = ["golden retriever", "Labrador retriever", "beagle"]
    got = normalise_synonyms(
        "golden retriever",
        ["  Golden Retriever ", "golden", "retriever", "dog", "beagle", "'Goldie'", "a very long description of a dog",
         "see https://example.com", "<b>x</b>", "", "golden", "Canis familiaris golden"],
        dataset="oxford_pets", classnames=names,
    )
    assert got == ["golden retriever", "golden", "Goldie", "Canis familiaris golden"]


def test_normalise_keeps_model_numbers_and_abbreviations_as_written():
    got = normalise_synonyms("737-300", ["Boeing 737-300", "B733", "R.V.", "B737-300."], dataset="fgvc_aircraft")
    assert got == ["737-300", "Boeing 737-300", "B733", "R.V.", "B737-300"]


def test_prompt_renders_context_and_class():
    prompt = render_prompt("oxford_flowers", "pink primrose", 9)
    assert "pink primrose" in prompt and CONTEXTS["oxford_flowers"] in prompt and "9" in prompt


def test_bank_round_trip_and_errors(tmp_path):
    records = [SynonymRecord(1, "b", ["b", "bee"]), SynonymRecord(0, "a", ["a", "ay"])]
    write_bank(tmp_path / "x.jsonl", records)
    assert [r.index for r in read_bank(tmp_path / "x.jsonl")] == [0, 1]
    (tmp_path / "bad.jsonl").write_text('{"index": 0, "classname": "a", "synonyms": ["z"]}\n')
    with pytest.raises(BankError, match="must start with the class name"):
        read_bank(tmp_path / "bad.jsonl")
    (tmp_path / "torn.jsonl").write_text('{"index": 0, "classname": "a", "syn')
    with pytest.raises(BankError, match="torn.jsonl:1"):
        read_bank(tmp_path / "torn.jsonl")
    with pytest.raises(BankError, match="not found"):
        read_bank(tmp_path / "missing.jsonl")


def test_synonyms_for_maps_by_index_and_checks_names():
    bank = [SynonymRecord(i, n, [n, n + "!"]) for i, n in enumerate(["missile", "sunglasses", "missile"])]
    assert synonyms_for(bank, [2, 0], ["missile", "missile"]) == [["missile", "missile!"]] * 2
    with pytest.raises(BankError, match="disagree"):
        synonyms_for(bank, [1], ["missile"])
    with pytest.raises(BankError, match="no record for 1 classes"):
        synonyms_for(bank, [7], ["x"])


def test_check_bank_names_every_class_without_synonyms():
    bank = [SynonymRecord(0, "a", ["a", "b", "c"]), SynonymRecord(2, "c", ["c"])]
    report = check_bank("toy", bank, ["a", "b", "c"])
    assert not report.ok and report.missing == ["1 b (no record)", "2 c (only 1 name)"]


@pytest.mark.parametrize("dataset", sorted(BANK_SIZES))
def test_shipped_bank_covers_every_class_with_3_to_10_synonyms(dataset):
    records = read_bank(REPO / "data/synonyms" / f"{dataset}.jsonl")
    assert [r.index for r in records] == list(range(BANK_SIZES[dataset]))
    for record in records:
        assert 3 <= len(record.synonyms) <= 10, record
        assert len({s.lower() for s in record.synonyms}) == len(record.synonyms), record
        assert record.provenance["generator"] == "offline-llm-authoring"
        assert record.provenance["model"] is None, "no record may name a model that was not used"
        assert record.synonyms == normalise_synonyms(record.classname, record.synonyms[1:], dataset,
                                                     [r.classname for r in records])


def test_cli_check_exits_non_zero_naming_missing_classes(tmp_path, capsys):
    write_bank(tmp_path / "eurosat.jsonl", [SynonymRecord(0, "Forest", ["Forest", "woodland", "woods"])])
    assert cli(["synonyms", "check", "--bank-dir", str(tmp_path), "--dataset", "eurosat"]) == 1
    out = capsys.readouterr().out
    assert "without synonyms: 1 <class 1> (no record)" in out
    assert cli(["synonyms", "check", "--bank-dir", str(REPO / "data/synonyms")]) == 0


def test_generation_refuses_to_resume_a_replayed_bank(tmp_path):
    from s3.synonyms.generate import GeneratorConfig, generate_bank

    write_bank(tmp_path / "eurosat.jsonl", read_bank(REPO / "data/synonyms/eurosat.jsonl"))
    with pytest.raises(BankError, match="made another way.*delete"):
        generate_bank("eurosat", [(0, "Annual Crop Land")], tmp_path / "eurosat.jsonl", GeneratorConfig(),
                      client=object())
