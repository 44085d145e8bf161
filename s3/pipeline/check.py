"""Pre-flight check of a run, in seconds, before any GPU hour is spent: ``s3 check``.

1. every section of ``params.yaml`` (types, ranges, allowed values, method and benchmark names,
   and what crosses sections), each bad key named with what it accepts;
2. the weights resolve without loading a model: a known tag that is cached or downloadable, or a
   local file in a format open_clip can read, with an activation that matches them;
3. the datasets' files exist and are non-empty (the data root is reported once when it is missing);
   ``s3 data verify`` is the thorough check that decodes every image;
4. when point-to-simplex runs, no class of the synonym banks (or of the generator's setting) has
   more synonyms than its solver takes.

Relative paths in the params file are read relative to the file's folder (the workspace).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import yaml

from s3.errors import S3Error
from s3.pipeline.params import params_problems

__all__ = ["check_run", "weights_problems", "data_problems"]


@contextlib.contextmanager
def _in(folder: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def _checkpoint_format(path: Path) -> str | None:
    """``zip`` (torch.save or TorchScript), ``safetensors`` or ``pickle`` from the first bytes; None if none."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: 8-byte header length, then JSON
        return "safetensors"
    if head[:1] == b"\x80":  # a pickle protocol marker: legacy torch.save
        return "pickle"
    return None


def weights_problems(model: dict[str, Any]) -> list[str]:
    """Whether ``model``'s weights resolve (no model is built, nothing is downloaded)."""
    import open_clip

    from s3.encoders import models

    spec = models.ModelSpec(**model)
    if spec.arch not in open_clip.list_models():
        return [f"model.arch: {spec.arch!r} is not an open_clip architecture (see open_clip.list_models())"]
    problems = []
    try:
        spec.resolved_activation()
    except S3Error as error:
        problems.append(str(error))
    if spec.random_weights:
        return problems
    if spec.weights_file is not None:
        if _checkpoint_format(spec.weights_file) is None:
            problems.append(f"model.pretrained: {spec.weights_file} is not a checkpoint open_clip can read "
                            "(an open_clip state dict .bin/.pt/.safetensors or an OpenAI TorchScript archive)")
        return problems
    tags = open_clip.list_pretrained_tags_by_model(spec.arch)
    if spec.pretrained not in tags:
        looks_like_path = "/" in str(spec.pretrained) or Path(str(spec.pretrained)).suffix
        problems.append(f"model.pretrained: {spec.pretrained!r} is " + (
            "not an existing file" if looks_like_path else f"neither a file nor one of the tags {tags}"))
    elif models.cached_hub_file(spec) is None and not models.hub_reachable():
        problems.append(f"model.pretrained: the weights of tag {spec.pretrained!r} are not in the local cache and "
                        "the download host cannot be reached; download them once with internet, or set "
                        "model.pretrained to a local checkpoint file")
    return problems


def data_problems(params: dict[str, Any]) -> list[str]:
    """Every listed file of every benchmark and segmentation set exists and is non-empty."""
    from s3.data.benchmarks import load_benchmark
    from s3.encoders.images import check_image_files
    from s3.segmentation.datasets import load_seg_benchmark

    root = Path(os.environ.get("S3_DATA_ROOT") or params["data"]["root"]).expanduser()
    if not root.is_dir():
        return [f"data.root: {root.resolve()} does not exist; put the datasets there (README, 'Reproducing the paper "
                "configuration', step 3), or set data.root or S3_DATA_ROOT"]
    problems = []
    for benchmark in params["benchmarks"]:
        try:
            check_image_files(load_benchmark(benchmark, root, params["data"]["split"]), max_listed=5)
        except S3Error as error:
            problems.append(f"{benchmark}: {error}")
    for dataset in params["segmentation"]["datasets"]:
        try:
            data = load_seg_benchmark(dataset, root)
            missing = [str(p) for p in [*data.images, *data.masks] if not p.is_file() or p.stat().st_size == 0]
            if missing:
                problems.append(f"{dataset}: {len(missing)} images or masks are missing or empty, e.g. "
                                f"{', '.join(missing[:5])}; re-extract the dataset")
        except S3Error as error:
            problems.append(f"{dataset}: {error}")
    return problems


def simplex_problems(params: dict[str, Any]) -> list[str]:
    """Point-to-simplex takes at most ``MAX_VERTICES`` synonyms per class (its supports are bitmasks):
    refuse a bank or a generator setting with more before any encoding, when the method is run."""
    from s3.core.simplex_kernel import MAX_VERTICES
    from s3.synonyms.bank import read_bank

    method = "s3_point_to_simplex"
    if not any(method in ((params.get(s) or {}).get("methods") or []) for s in ("evaluate", "ablations")):
        return []
    fix = f"shorten the lists to at most {MAX_VERTICES} synonyms or drop {method} from evaluate.methods and ablations.methods"
    synonyms = params["synonyms"]
    if synonyms["mode"] == "generate":
        asked = synonyms["generator"]["num_synonyms"] + 1  # the label is synonym 0
        return [f"synonyms.generator.num_synonyms: {asked - 1} plus the label exceeds the {MAX_VERTICES} synonyms "
                f"per class that {method} takes; {fix}"] if asked > MAX_VERTICES else []
    problems = []
    for path in sorted(Path(synonyms["bank_dir"]).glob("*.jsonl")):
        try:
            longest = max(read_bank(path), key=lambda r: len(r.synonyms), default=None)
        except S3Error:
            continue  # a broken bank is the synonyms stage's error, with its repair command
        if longest is not None and len(longest.synonyms) > MAX_VERTICES:
            problems.append(f"{path}: class {longest.index} ({longest.classname!r}) has {len(longest.synonyms)} "
                            f"synonyms, more than the {MAX_VERTICES} that {method} takes; {fix}")
    return problems


def check_run(params_file: str | Path, data: bool = True) -> list[str]:
    """Every problem found by the three checks (module docstring); empty when the run can start."""
    path = Path(params_file)
    if not path.is_file():
        return [f"{path}: no such file"]
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        return [f"{path}: not valid YAML ({str(error).splitlines()[0]})"]
    if not isinstance(params, dict):
        return [f"{path}: expected a mapping of sections"]
    problems = params_problems(params)
    if problems:  # values first: the other checks need valid sections
        return problems
    with _in(path.resolve().parent):
        problems += simplex_problems(params)
        problems += weights_problems(params["model"])
        if data:
            problems += data_problems(params)
    return problems
