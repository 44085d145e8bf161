"""The schema of ``params.yaml``: every section's keys, types, ranges and allowed values.

Each section is a pydantic model (unknown keys are refused, every key is required, types are
strict). A stage validates its own sections before any work; ``s3 check`` validates the whole
file plus what crosses sections (report methods among the evaluated ones, ...). Errors name the
key and what it accepts, e.g. ``spaces.radius_rule: must be one of 'global', 'mst_quantile',
'largest_gap' (got 'bogus')``.

To add a section: add a model below and an entry in ``SECTIONS``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from s3.core.methods import METHODS
from s3.core.spaces import Distance, RadiusRule
from s3.data.benchmarks import BENCHMARKS
from s3.errors import S3Error
from s3.segmentation.datasets import SEG_BENCHMARKS
from s3.segmentation.dense import VARIANTS
from s3.tta.adapt import TTA_METHODS

__all__ = ["ParamsError", "SECTIONS", "section_problems", "params_problems", "validate_sections"]

Method = Literal[METHODS]
Benchmark = Literal[tuple(BENCHMARKS)]
SegDataset = Literal[tuple(SEG_BENCHMARKS)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class ParamsError(S3Error):
    """``params.yaml`` holds a bad key or value; the message lists every problem."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _unique(values: list) -> list:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"lists {repeated} more than once")
    return values


class Data(Section):
    root: str
    split: Literal["test", "train", "val"]


class Model(Section):
    arch: Annotated[str, Field(min_length=1)]
    pretrained: Optional[str]
    activation: Literal["auto", "quick_gelu", "gelu"]
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]
    precision: Literal["amp", "fp32"]
    seed: NonNegativeInt


class Features(Section):
    batch_size: PositiveInt
    num_workers: NonNegativeInt
    shard_size: PositiveInt
    cache_dir: Annotated[str, Field(min_length=1)]
    decode: Literal["auto", "cpu", "gpu"]
    compile: bool


class Generator(Section):
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    model: Annotated[str, Field(min_length=1)]
    api_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    temperature: Annotated[float, Field(ge=0, le=2)]
    seed: int
    max_tokens: PositiveInt
    num_synonyms: PositiveInt
    min_synonyms: PositiveInt
    prompt_version: str
    max_attempts: PositiveInt
    backoff_s: NonNegativeFloat
    timeout_s: PositiveFloat

    @field_validator("prompt_version")
    @classmethod
    def _prompt_exists(cls, version: str) -> str:
        from s3.synonyms.prompt import available_prompts

        if version not in available_prompts():
            raise ValueError(f"must be one of {available_prompts()} (files in s3/synonyms/prompts/)")
        return version


class Synonyms(Section):
    mode: Literal["replay", "generate"]
    bank_dir: str
    imagenet_source: Literal["llm", "wordnet"]
    generator: Generator


class Text(Section):
    batch_size: PositiveInt
    cache_dir: Annotated[str, Field(min_length=1)]


class Spaces(Section):
    templates: Literal["single", "coop", "ensemble80"]
    distance: Distance
    radius_rule: RadiusRule
    epsilon: NonNegativeFloat
    mst_quantile: Fraction
    min_gap: NonNegativeFloat
    max_dimension: Optional[NonNegativeInt]


class Evaluate(Section):
    methods: Annotated[list[Method], Field(min_length=1)]
    temperature: Optional[PositiveFloat]

    _unique_methods = field_validator("methods")(classmethod(lambda cls, v: _unique(v)))


class TTA(Section):
    n_views: Annotated[int, Field(ge=2)]
    seed: NonNegativeInt
    augmix: Union[Literal["auto"], bool]
    max_images: Optional[PositiveInt]
    views_batch_size: PositiveInt
    augment_on: Literal["auto", "cpu", "device"]
    shard_size: PositiveInt
    methods: Annotated[list[Literal[tuple(TTA_METHODS)]], Field(min_length=1)]
    selection: Annotated[float, Field(gt=0, le=1)]
    include_original: bool
    steps: NonNegativeInt
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    free_alpha: Annotated[float, Field(ge=0, le=1)]
    batch_size: PositiveInt
    sweep_views: Annotated[list[Annotated[int, Field(ge=2)]], Field(min_length=1)]
    sweep_selection: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=1)]

    _unique_methods = field_validator("methods")(classmethod(lambda cls, v: _unique(v)))


class Ablations(Section):
    methods: Annotated[list[Method], Field(min_length=1)]
    num_synonyms: Annotated[list[Optional[PositiveInt]], Field(min_length=1)]
    epsilon: list[NonNegativeFloat]
    mst_quantile: list[Fraction]
    min_gap: list[NonNegativeFloat]
    max_dimension: list[Optional[NonNegativeInt]]
    templates: list[Literal["single", "coop", "ensemble80"]]
    adaptive_k: list[PositiveInt]
    temperature: list[Optional[PositiveFloat]]

    _unique_methods = field_validator("methods")(classmethod(lambda cls, v: _unique(v)))

    @field_validator("methods")
    @classmethod
    def _no_baselines(cls, v: list) -> list:
        if any(m.startswith("clip_") for m in v):
            raise ValueError("ablates only synonym and S^3 methods (clip_* do not depend on the varied choices)")
        return v


class World(Section):
    num_classes: Annotated[int, Field(ge=2)]
    dim: Annotated[int, Field(ge=2)]
    modes: PositiveInt
    mode_spread: NonNegativeFloat
    synonyms: PositiveInt
    images_per_class: PositiveInt
    image_noise: NonNegativeFloat
    sigma_lex: NonNegativeFloat
    outlier_rate: Fraction


class Geometry(Section):
    seed: NonNegativeInt
    repeats: PositiveInt
    world: World
    sigma_lex_values: Annotated[list[NonNegativeFloat], Field(min_length=1)]
    outlier_rate_values: Annotated[list[Fraction], Field(min_length=1)]


class Segmentation(Section):
    datasets: list[SegDataset]
    variant: Literal[VARIANTS]
    naclip_sigma: PositiveFloat
    short_side: PositiveInt
    window: PositiveInt
    stride: PositiveInt
    background: Literal["names", "threshold", "none"]
    bg_threshold: Fraction
    batch_size: PositiveInt
    cache_dir: Annotated[str, Field(min_length=1)]
    shard_size: PositiveInt
    max_images: Optional[PositiveInt]
    examples: PositiveInt
    temperature: Optional[PositiveFloat]
    methods: Annotated[list[Method], Field(min_length=1)]

    _unique_lists = field_validator("datasets", "methods")(classmethod(lambda cls, v: _unique(v)))

    @model_validator(mode="after")
    def _window_fits(self) -> "Segmentation":
        if self.stride > self.window:
            raise ValueError(f"stride ({self.stride}) larger than window ({self.window}) leaves pixels unscored")
        return self


class Report(Section):
    baseline: Method
    proposed: Method
    reference_check: Literal["auto", "always", "never"]


class _Benchmarks(BaseModel):
    """``benchmarks`` is a list, not a mapping; wrapped so it validates like the others."""

    model_config = ConfigDict(extra="forbid", strict=True)
    benchmarks: Annotated[list[Benchmark], Field(min_length=1)]

    _unique_benchmarks = field_validator("benchmarks")(classmethod(lambda cls, v: _unique(v)))


SECTIONS: dict[str, type[BaseModel]] = {
    "benchmarks": _Benchmarks,
    "data": Data,
    "model": Model,
    "features": Features,
    "synonyms": Synonyms,
    "text": Text,
    "spaces": Spaces,
    "evaluate": Evaluate,
    "tta": TTA,
    "ablations": Ablations,
    "geometry": Geometry,
    "segmentation": Segmentation,
    "report": Report,
}


def _describe(error: dict[str, Any], section: str) -> str:
    location = ".".join([section, *(str(part) for part in error["loc"] if part != "benchmarks" or section != "benchmarks")])
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return f"{location}: unknown key; remove it (or fix its spelling)"
    if kind == "missing":
        return f"{location}: missing; add it (params.yaml in the repository has every key with its default)"
    got = error.get("input")
    shown = "" if kind == "missing" or isinstance(got, dict) else f" (got {got!r})"
    message = message.removeprefix("Value error, ").replace("Input should be", "must be")
    return f"{location}: {message}{shown}"


def section_problems(section: str, value: Any) -> list[str]:
    """Every problem of one section's value, one message per bad key (empty when valid)."""
    if section not in SECTIONS:
        return [f"{section}: unknown section; params.yaml has {', '.join(SECTIONS)}"]
    model = SECTIONS[section]
    try:
        model.model_validate({"benchmarks": value} if section == "benchmarks" else value)
    except ValidationError as error:
        return [_describe(e, section) for e in error.errors()]
    return []


def params_problems(params: dict[str, Any], sections: list[str] | None = None) -> list[str]:
    """Problems of ``sections`` of ``params`` (default: every section, plus the checks across sections)."""
    chosen = list(SECTIONS) if sections is None else sections
    problems = [f"{s}: missing section" for s in chosen if s not in params]
    for section in chosen:
        if section in params:
            problems += section_problems(section, params[section])
    if sections is None:
        problems += [f"{s}: unknown section; params.yaml has {', '.join(SECTIONS)}" for s in params if s not in SECTIONS]
        problems += _across_sections(params)
    return problems


def _across_sections(params: dict[str, Any]) -> list[str]:
    problems = []
    evaluated = (params.get("evaluate") or {}).get("methods") or []
    for key in ("baseline", "proposed"):
        method = (params.get("report") or {}).get(key)
        if isinstance(evaluated, list) and method in METHODS and method not in evaluated:
            problems.append(f"report.{key}: {method!r} is not among evaluate.methods {evaluated}; add it there or "
                            "choose one of them")
    return problems


def validate_sections(params: dict[str, Any], sections: list[str], source: str = "params.yaml") -> None:
    """Raise ``ParamsError`` listing every problem of ``sections`` (a stage calls this before any work)."""
    problems = params_problems(params, sections)
    if problems:
        raise ParamsError(f"{source}: " + "; ".join(problems))
