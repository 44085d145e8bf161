"""Parse an LLM reply into a clean synonym list.

Replies come as JSON arrays, numbered or bulleted lists, comma-separated lines, often wrapped in
prose or code fences. Normalisation keeps real alternative names and drops everything else:
empties, case-insensitive duplicates, entries of more than five words, markup, and names that
would point at the wrong class: a generic word of the dataset's domain ("dog" for a pet breed),
another class's name, or a head noun shared by several classes ("terrier" when the dataset has
many terriers, "wolf" next to "grey wolf" and "red wolf").
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Sequence

__all__ = ["MalformedReply", "parse_reply", "normalise_synonyms", "GENERIC_HYPERNYMS"]

MAX_REPLY_CHARS = 4000
MAX_WORDS = 5

# Words that name a whole domain, never one class of it.
GENERIC_HYPERNYMS: dict[str, set[str]] = {
    "*": {"object", "thing", "item", "image", "photo", "picture", "class", "category", "type", "other"},
    "oxford_pets": {"dog", "cat", "pet", "animal", "breed", "puppy", "kitten", "canine", "feline"},
    "oxford_flowers": {"flower", "plant", "bloom", "blossom", "wildflower"},
    "fgvc_aircraft": {"aircraft", "airplane", "aeroplane", "plane", "jet", "airliner"},
    "stanford_cars": {"car", "automobile", "vehicle", "sedan", "coupe", "suv", "convertible", "hatchback"},
    "food101": {"food", "dish", "meal", "snack", "dessert"},
    "imagenet": {"animal", "dog", "bird", "fish", "snake", "insect", "tool", "vehicle", "device"},
}

_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|[a-z][.)])\s+", re.IGNORECASE)
_MARKUP = re.compile(r"[<>{}\[\]|\\]|https?://|www\.|\n")
# Words of instructions, not of names: a reply that talks to us instead of naming the class.
_INSTRUCTION = re.compile(
    r"\b(ignore|instructions?|prompt|api[ _-]?key|password|secret|as an ai|disregard|system message)\b",
    re.IGNORECASE,
)


class MalformedReply(ValueError):
    """The reply holds no usable list (names the reason)."""


def parse_reply(reply: str) -> list[str]:
    """Candidate names from a reply, in order (not yet normalised)."""
    if not reply or not reply.strip():
        raise MalformedReply("empty reply")
    if len(reply) > MAX_REPLY_CHARS:
        raise MalformedReply(f"reply of {len(reply)} characters exceeds {MAX_REPLY_CHARS}; not a short list")
    text = re.sub(r"```(?:json)?", "", reply).strip()
    items = _json_array(text)
    if items is not None:
        return [str(x) for x in items if isinstance(x, (str, int, float))]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    listed = [_MARKER.sub("", ln) for ln in lines if _MARKER.match(ln)]
    if listed:
        return listed
    if len(lines) == 1 and "," in lines[0]:
        return lines[0].split(",")
    raise MalformedReply("no JSON array, numbered/bulleted list or comma-separated line found")


def _json_array(text: str) -> list | None:
    """The JSON array in ``text``: the widest ``[...]`` span, else the first array of strings that
    starts at some ``[`` (prose around the array may hold brackets of its own)."""
    start, end = text.find("["), text.rfind("]")
    if start == -1 or end < start:
        return None
    try:
        items = json.loads(text[start : end + 1])
        if isinstance(items, list):
            return items
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\[", text):
        try:
            items, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(items, list) and any(isinstance(x, str) for x in items):
            return items
    return None


def _clean(name: str) -> str:
    name = re.sub(r"\s+", " ", name.strip())
    previous = None
    while name != previous:  # until stable: '"Coon cat",' and '"Coon cat".' lose comma, stop and quotes
        previous = name
        name = name.rstrip(";:,").strip()
        while len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'`":
            name = name[1:-1].strip()  # only matching outer quotes: keep cultivars like 'Granny Smith'
        if name.endswith(".") and name.count(".") == 1:  # a sentence full stop, not "R.V."
            name = name[:-1].strip()
    return name


def normalise_synonyms(
    label: str, candidates: list[str], dataset: str = "*", classnames: Sequence[str] = ()
) -> list[str]:
    """The label first, then the valid candidates in order.

    Args:
        label: the class name in prompt form (always kept, always first).
        candidates: names parsed from a reply.
        dataset: selects the domain's generic hypernyms (``GENERIC_HYPERNYMS``).
        classnames: every class name of the dataset (prompt form), to reject names of other
            classes and head nouns shared by several classes.
    """
    blocked = GENERIC_HYPERNYMS["*"] | GENERIC_HYPERNYMS.get(dataset, set())
    names = [n.lower() for n in classnames]
    heads = Counter(n.split()[-1] for n in names if len(n.split()) > 1)
    blocked |= {head for head, count in heads.items() if count >= 2}
    blocked |= set(names) - {label.lower()}
    kept, seen = [label], {label.lower()}
    for raw in candidates:
        name = _clean(raw)
        key = name.lower()
        if not name or key in seen or key in blocked or _MARKUP.search(name) or _INSTRUCTION.search(name):
            continue
        if len(name.split()) > MAX_WORDS:
            continue
        kept.append(name)
        seen.add(key)
    return kept
