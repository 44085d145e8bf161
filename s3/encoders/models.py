"""Load an open_clip model: a pretrained tag, a local checkpoint, or seeded random weights.

Real runs name an open_clip architecture and either a pretrained tag (downloaded on a machine
with internet) or a local checkpoint file. The offline demo uses ``S3-Demo-Tiny``, a small
architecture shipped in ``s3/model_configs`` whose weights are created from a seed, never
downloaded. A tag that cannot be fetched fails in seconds with instructions instead of retrying.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import open_clip
import torch

__all__ = ["ModelSpec", "LoadedModel", "load_model", "resolve_device", "WeightsUnavailable"]

_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(_CONFIG_DIR)

# Values of `pretrained` that mean "random weights from the seed".
_RANDOM = {None, "", "none", "random"}


class WeightsUnavailable(RuntimeError):
    """Raised when pretrained weights are neither cached nor downloadable."""


@dataclass(frozen=True)
class ModelSpec:
    """The ``model`` section of ``params.yaml``.

    Attributes:
        arch: an open_clip architecture name (``ViT-B-16``, ``S3-Demo-Tiny``, ...).
        pretrained: an open_clip pretrained tag (``openai``), a path to a checkpoint file, or
            ``none`` for random weights created from ``seed``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``.
        precision: ``amp`` (autocast to bfloat16/float16 on CUDA, float32 on CPU) or ``fp32``.
        seed: seeds random weights.
    """

    arch: str = "ViT-B-16"
    pretrained: str | None = "openai"
    device: str = "auto"
    precision: str = "amp"
    seed: int = 0

    @property
    def random_weights(self) -> bool:
        return self.pretrained in _RANDOM

    @property
    def identity(self) -> dict[str, Any]:
        """What determines the embeddings (for cache keys and provenance)."""
        weights = self.pretrained
        if weights and not self.random_weights and Path(weights).expanduser().is_file():
            path = Path(weights).expanduser()
            stat = path.stat()
            weights = f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
        return {
            "arch": self.arch,
            "pretrained": weights if not self.random_weights else f"random(seed={self.seed})",
            # Mixed precision changes the embeddings' last bits, so it is part of their identity.
            "precision": self.precision if resolve_device(self.device).type == "cuda" else "fp32",
            "open_clip": open_clip.__version__,
        }


@dataclass
class LoadedModel:
    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    device: torch.device
    spec: ModelSpec

    def autocast(self):
        """Mixed precision on CUDA when ``precision: amp``; a no-op context on CPU."""
        enabled = self.device.type == "cuda" and self.spec.precision == "amp"
        return torch.autocast(device_type=self.device.type, enabled=enabled)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"model.device is {device!r} but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return torch.device(device)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _missing_weights_message(spec: ModelSpec, reason: str) -> str:
    return (
        f"Cannot load pretrained weights {spec.pretrained!r} for {spec.arch}: {reason}.\n"
        "Provide the weights in one of these ways:\n"
        "  - run once on a machine with internet so open_clip caches them (Hugging Face cache), or\n"
        "  - download the checkpoint yourself and set in params.yaml\n"
        "      model:\n"
        f"        arch: {spec.arch}\n"
        "        pretrained: /path/to/checkpoint.bin   # a local open_clip/OpenAI checkpoint file\n"
        "  - or run the offline demo (make demo), which needs no weights."
    )


def _create(spec: ModelSpec, pretrained: str | None):
    model, _, preprocess = open_clip.create_model_and_transforms(spec.arch, pretrained=pretrained)
    return model, preprocess


def load_model(spec: ModelSpec) -> LoadedModel:
    """Create the model in eval mode on its device, with its preprocessing and tokenizer."""
    if spec.arch not in open_clip.list_models():
        raise ValueError(
            f"model.arch {spec.arch!r} is not an open_clip architecture; see open_clip.list_models()"
        )
    device = resolve_device(spec.device)
    if spec.random_weights:
        torch.manual_seed(spec.seed)
        # Random weights are what was asked for: silence open_clip's "no pretrained weights" warning.
        previous = logging.root.level
        logging.root.setLevel(logging.ERROR)
        try:
            model, preprocess = _create(spec, None)
        finally:
            logging.root.setLevel(previous)
    elif Path(str(spec.pretrained)).expanduser().exists():
        model, preprocess = _create(spec, str(Path(str(spec.pretrained)).expanduser()))
    else:
        tags = open_clip.list_pretrained_tags_by_model(spec.arch)
        if spec.pretrained not in tags:
            raise WeightsUnavailable(_missing_weights_message(
                spec, f"it is neither an existing file nor one of the tags {tags}"))
        model, preprocess = _load_tag(spec)
    model = model.to(device).eval()
    return LoadedModel(model, preprocess, open_clip.get_tokenizer(spec.arch), device, spec)


def _cached_hub_file(spec: ModelSpec) -> str | None:
    """Path of the tag's weights in the local Hugging Face cache, if they are there."""
    from huggingface_hub import try_to_load_from_cache

    hub = open_clip.get_pretrained_cfg(spec.arch, spec.pretrained).get("hf_hub", "")
    if not hub:
        return None
    repo_id = "/".join(hub.strip("/").split("/")[:2])
    for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        path = try_to_load_from_cache(repo_id, filename)
        if isinstance(path, str):
            return path
    return None


def _load_tag(spec: ModelSpec):
    if _hub_reachable():
        return _create(spec, spec.pretrained)
    if _cached_hub_file(spec) is None:
        raise WeightsUnavailable(_missing_weights_message(
            spec, "they are not in the local cache and the download host cannot be reached"))
    # Cached but offline: tell huggingface_hub not to try the network (it reads this at call time).
    from huggingface_hub import constants

    previous, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        return _create(spec, spec.pretrained)
    finally:
        constants.HF_HUB_OFFLINE = previous
