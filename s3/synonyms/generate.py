"""Generate synonyms with any OpenAI-compatible chat endpoint, resumably, with provenance.

Each class gets one request with the versioned prompt (``prompts/<version>.txt``). The reply is
parsed and normalised (``normalize.py``); a reply that is malformed or leaves fewer than
``min_synonyms`` names is recorded as a failure naming the class, after retries only where a
retry can change it (a garbled response body; a reply at a temperature above 0: at temperature 0
the same prompt gets the same reply). Timeouts, 429s, 5xx and connection errors are retried with
exponential backoff. A problem no other class can escape (the endpoint cannot be reached, the
key is refused, the URL or model does not exist: connection errors after all retries, HTTP 401,
403, 404) stops the whole run at once instead of costing every class its retries.

Records are appended to the output file one class at a time, so an interrupted or stopped run
resumes where it stopped. A lock on the output file keeps two runs from writing it at once.

The API key is read from the environment variable named by ``api_key_env`` and is never written
anywhere: not to records, reports, logs or notebooks.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import openai

from s3.errors import S3Error
from s3.synonyms.bank import BankError, SynonymRecord, read_bank, write_bank
from s3.synonyms.normalize import MalformedReply, normalise_synonyms, parse_reply
from s3.synonyms.prompt import CONTEXTS, prompt_sha256, render_prompt

__all__ = ["GeneratorConfig", "GenerationReport", "GenerationStopped", "generate_bank", "make_client", "bank_lock"]

_RETRYABLE = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
# HTTP statuses that say the request itself is wrong for every class (key, URL, model).
_FATAL_STATUS = {401: "the API key was refused (check the variable named by synonyms.generator.api_key_env)",
                 403: "the API key may not use this endpoint or model",
                 404: "the URL or the model does not exist (check synonyms.generator.base_url and .model)"}


class GenerationStopped(S3Error):
    """A problem every class would hit; the records written so far are kept for a resume."""


@contextmanager
def bank_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (released when the process ends, even if killed)."""
    lock_path = path.with_name(path.name + ".lock")
    handle = lock_path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BankError(f"{path} is being written by {holder}; wait for it to finish (or stop it) before "
                            "generating again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {dt.datetime.now().isoformat(timespec='seconds')}\n")
        handle.flush()
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)  # while still held: no run can be writing after us
    finally:
        handle.close()


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
        raise S3Error(
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
    with bank_lock(output):
        return _generate_locked(dataset, classes, output, config, client, sleep)


def _stop(done_now: int, output: Path, classname: str, why: str) -> GenerationStopped:
    return GenerationStopped(f"synonym generation stopped at class {classname!r}: {why}. The {done_now} classes "
                             f"generated so far are kept in {output}; the next run resumes from there.")


def _generate_locked(dataset: str, classes: Sequence[tuple[int, str]], output: Path, config: GeneratorConfig,
                     client: openai.OpenAI | None, sleep: Callable[[float], None]) -> GenerationReport:
    done = _read_done(output)
    sha = prompt_sha256(config.prompt_version)
    foreign = [r.index for r in done.values() if not _same_run(r.provenance, config, sha)]
    if foreign:
        raise BankError(
            f"{output} already holds {len(foreign)} records made another way (replayed bank, other model, "
            f"prompt or settings; e.g. class {foreign[0]}). Only records of this exact configuration are "
            f"resumed: delete {output} to generate afresh."
        )
    client = client or make_client(config)
    names = [name for _, name in classes]
    failures, generated = [], 0
    # At temperature 0 the same prompt gets the same reply: asking again cannot mend an invalid one.
    content_attempts = config.max_attempts if config.temperature > 0 else 1
    with output.open("a", encoding="utf-8") as handle:
        for index, classname in classes:
            if index in done:
                continue
            prompt = render_prompt(dataset, classname, config.num_synonyms, config.prompt_version)
            record, problem, content_failures = None, "no attempt", 0
            for attempt in range(config.max_attempts):
                try:
                    reply = _ask(client, config, prompt)
                except MalformedReply as error:  # a garbled body: the next one may be fine
                    problem = f"invalid reply: {error}"
                    continue
                except _RETRYABLE as error:
                    problem = f"{type(error).__name__}"
                    if attempt + 1 < config.max_attempts:  # no pointless wait after the last attempt
                        sleep(config.backoff_s * 2**attempt)
                    continue
                except openai.APIStatusError as error:  # other 4xx: retrying will not help
                    if error.status_code in _FATAL_STATUS:
                        raise _stop(generated + len(done), output, classname,
                                    f"HTTP {error.status_code}: {_FATAL_STATUS[error.status_code]}") from None
                    problem = f"HTTP {error.status_code}"
                    break
                try:
                    synonyms = normalise_synonyms(classname, parse_reply(reply), dataset, names)
                    if len(synonyms) < config.min_synonyms:
                        raise MalformedReply(f"only {len(synonyms) - 1} usable synonyms after normalisation")
                except MalformedReply as error:
                    problem = f"invalid reply: {error}"
                    content_failures += 1
                    if content_failures >= content_attempts:
                        break
                    continue
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
            if record is None:
                if problem in ("APIConnectionError",):  # the endpoint is unreachable for every class
                    raise _stop(generated + len(done), output, classname,
                                f"cannot connect to {config.base_url} after {config.max_attempts} attempts "
                                "(check synonyms.generator.base_url and the network)")
                failures.append({"index": str(index), "classname": classname, "problem": problem})
                continue
            handle.write(record.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            generated += 1
    write_bank(output, read_bank(output))  # classes retried on a later run land in index order
    return GenerationReport(dataset, generated, len(done), failures)
