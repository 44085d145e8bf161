"""Generate synonyms with any OpenAI-compatible chat endpoint, resumably, with provenance.

Each class gets one request with the versioned prompt (``prompts/<version>.txt``). The reply is
parsed and normalised (``normalize.py``); a reply that is malformed or leaves fewer than
``min_synonyms`` names is retried, then recorded as a failure naming the class. Timeouts, 429s,
5xx and connection errors are retried with exponential backoff. Records are appended to the
output file one class at a time, so an interrupted run resumes where it stopped.

The API key is read from the environment variable named by ``api_key_env`` and is never written
anywhere: not to records, reports, logs or notebooks.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import openai

from s3.synonyms.bank import SynonymRecord, read_bank, write_bank
from s3.synonyms.normalize import MalformedReply, normalise_synonyms, parse_reply
from s3.synonyms.prompt import CONTEXTS, prompt_sha256, render_prompt

__all__ = ["GeneratorConfig", "GenerationReport", "generate_bank", "make_client"]

_RETRYABLE = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)


@dataclass(frozen=True)
class GeneratorConfig:
    """The ``synonyms.generator`` section of ``params.yaml``."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    seed: int = 0
    max_tokens: int = 300
    num_synonyms: int = 9
    min_synonyms: int = 3
    prompt_version: str = "synonyms_v1"
    max_attempts: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 60.0


@dataclass
class GenerationReport:
    dataset: str
    generated: int
    resumed: int
    failures: list[dict[str, str]]

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, sort_keys=True)


def make_client(config: GeneratorConfig) -> openai.OpenAI:
    key = os.environ.get(config.api_key_env)
    if not key:
        raise RuntimeError(
            f"environment variable {config.api_key_env} is not set: export your API key there "
            "(keys are read from the environment only, never from params.yaml)"
        )
    # Retries are ours (with validation retries in the same loop), so the client does none.
    return openai.OpenAI(base_url=config.base_url, api_key=key, timeout=config.timeout_s, max_retries=0)


def _read_done(path: Path) -> dict[int, SynonymRecord]:
    """Completed records of an interrupted run; a torn last line is dropped and rewritten.

    Only the last line can be torn (records are appended one at a time); any other bad line is a
    ``BankError`` raised before a single request is paid for, and the file is left as it is.
    """
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    torn = False
    if lines:
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            torn = True  # an interrupted write: drop it
            lines = lines[:-1]
    if torn or (text and not text.endswith("\n")):  # appending must start on a fresh line
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return {r.index: r for r in read_bank(path)}


def _same_run(provenance: dict, config: GeneratorConfig, sha: str) -> bool:
    """Whether a stored record came from this generator configuration (so it may be resumed)."""
    expected = {"generator": "openai-compatible-chat", "base_url": config.base_url, "model": config.model,
                "temperature": config.temperature, "seed": config.seed, "prompt_sha256": sha,
                "num_synonyms": config.num_synonyms}
    return all(provenance.get(key) == value for key, value in expected.items())


def _ask(client: openai.OpenAI, config: GeneratorConfig, prompt: str) -> str:
    try:
        response = client.chat.completions.create(
            model=config.model,
            messages=[{"role": "user", "content": prompt}],
            temperature=config.temperature,
            seed=config.seed,
            max_tokens=config.max_tokens,
        )
    except (json.JSONDecodeError, openai.APIResponseValidationError) as error:
        raise MalformedReply(f"response body is not valid JSON ({type(error).__name__})") from None
    try:  # a body that is not a chat completion (HTML error page, no choices) is a malformed reply
        content = response.choices[0].message.content
    except (AttributeError, IndexError, KeyError, TypeError) as error:
        raise MalformedReply(f"response is not a chat completion ({type(error).__name__})") from None
    if content is not None and not isinstance(content, str):
        raise MalformedReply(f"message content is {type(content).__name__}, not text")
    return content or ""


def generate_bank(
    dataset: str,
    classes: Sequence[tuple[int, str]],
    output: str | Path,
    config: GeneratorConfig,
    client: openai.OpenAI | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> GenerationReport:
    """Generate (or resume) the bank of one dataset.

    Args:
        dataset: bank id (selects the context phrase).
        classes: ``(index, classname)`` pairs in prompt form.
        output: the JSONL file; existing records of the same configuration are kept and skipped,
            records of another source or configuration stop the run (delete the file to regenerate).
        client: an ``openai.OpenAI``; default: built from ``config`` and the environment.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = _read_done(output)
    sha = prompt_sha256(config.prompt_version)
    foreign = [r.index for r in done.values() if not _same_run(r.provenance, config, sha)]
    if foreign:
        raise RuntimeError(
            f"{output} already holds {len(foreign)} records made another way (replayed bank, other model, "
            f"prompt or settings; e.g. class {foreign[0]}). Only records of this exact configuration are "
            f"resumed: delete {output} to generate afresh."
        )
    client = client or make_client(config)
    names = [name for _, name in classes]
    failures, generated = [], 0
    with output.open("a", encoding="utf-8") as handle:
        for index, classname in classes:
            if index in done:
                continue
            prompt = render_prompt(dataset, classname, config.num_synonyms, config.prompt_version)
            record, problem = None, "no attempt"
            for attempt in range(config.max_attempts):
                try:
                    reply = _ask(client, config, prompt)
                    synonyms = normalise_synonyms(classname, parse_reply(reply), dataset, names)
                    if len(synonyms) < config.min_synonyms:
                        raise MalformedReply(f"only {len(synonyms) - 1} usable synonyms after normalisation")
                    record = SynonymRecord(index, classname, synonyms, {
                        "generator": "openai-compatible-chat",
                        "base_url": config.base_url,
                        "model": config.model,
                        "temperature": config.temperature,
                        "seed": config.seed,
                        "max_tokens": config.max_tokens,
                        "num_synonyms": config.num_synonyms,
                        "prompt_version": config.prompt_version,
                        "prompt_sha256": sha,
                        "context": CONTEXTS.get(dataset, "objects"),
                        "date": dt.date.today().isoformat(),
                        "raw_reply": reply,
                    })
                    break
                except MalformedReply as error:
                    problem = f"invalid reply: {error}"
                except _RETRYABLE as error:
                    problem = f"{type(error).__name__}"
                    if attempt + 1 < config.max_attempts:  # no pointless wait after the last attempt
                        sleep(config.backoff_s * 2**attempt)
                except openai.APIStatusError as error:  # other 4xx: retrying will not help
                    problem = f"HTTP {error.status_code}"
                    break
            if record is None:
                failures.append({"index": str(index), "classname": classname, "problem": problem})
                continue
            handle.write(record.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            generated += 1
    write_bank(output, read_bank(output))  # classes retried on a later run land in index order
    return GenerationReport(dataset, generated, len(done), failures)
