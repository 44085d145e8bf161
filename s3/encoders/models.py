"""Load an open_clip model: a pretrained tag, a local checkpoint, or seeded random weights.

Real runs name an open_clip architecture and either a pretrained tag (downloaded on a machine
with internet) or a local checkpoint file: an open_clip state dict (``.bin``, ``.pt``, ``.pth``,
``.safetensors``) or OpenAI's original TorchScript archive. The offline demo uses
``S3-Demo-Tiny`` (``s3/encoders/model_configs``) with weights trained locally or created from a
seed. A tag that cannot be fetched fails in seconds with instructions instead of retrying.

The activation always matches the weights. OpenAI's CLIP weights were trained with QuickGELU,
while open_clip's ``ViT-B-16`` config builds ``nn.GELU`` (open_clip only warns about the
mismatch, and accuracy drops). ``activation: auto`` takes a tag's own activation from open_clip's
pretrained config, QuickGELU for a local file (what OpenAI's weights need; set ``gelu`` for a
checkpoint trained with GELU, e.g. LAION or DataComp) and the architecture's own for random
weights. An explicit choice that contradicts the tag, the architecture or an OpenAI archive is
an error.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import open_clip
import torch

from s3.errors import S3Error

__all__ = ["AUTOCAST_DTYPE", "ModelSpec", "LoadedModel", "load_model", "resolve_device", "WeightsUnavailable", "ModelError",
           "is_torchscript_archive", "quiet_random_init", "is_demo_model", "ACTIVATIONS"]

_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(_CONFIG_DIR)

# Values of `pretrained` that mean "random weights from the seed".
_RANDOM = {None, "", "none", "random"}


ACTIVATIONS = ("auto", "quick_gelu", "gelu")
# Mixed precision uses bfloat16: as fast as float16 on Ampere and later GPUs, and it cannot overflow.
AUTOCAST_DTYPE = torch.bfloat16


def is_demo_model(identity: dict[str, Any]) -> bool:
    """Whether a model identity (``ModelSpec.identity``) is the offline demo's tiny architecture, whose
    numbers are demo numbers however it was trained."""
    return str(identity.get("arch", "")).startswith("S3-Demo")


class ModelError(S3Error):
    """The ``model`` section names an architecture, weights or activation that cannot work together."""


class WeightsUnavailable(ModelError):
    """Raised when pretrained weights are neither cached nor downloadable."""


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (OpenAI's original CLIP downloads are)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


@dataclass(frozen=True)
class ModelSpec:
    """The ``model`` section of ``params.yaml``.

    Attributes:
        arch: an open_clip architecture name (``ViT-B-16``, ``S3-Demo-Tiny``, ...).
        pretrained: an open_clip pretrained tag (``openai``), a path to a checkpoint file, or
            ``none`` for random weights created from ``seed``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``.
        precision: ``amp`` (bfloat16 autocast on CUDA, float32 on CPU) or ``fp32``.
        seed: seeds random weights.
        activation: ``auto``, ``quick_gelu`` or ``gelu`` (module docstring).
    """

    arch: str = "ViT-B-16"
    pretrained: str | None = "openai"
    device: str = "auto"
    precision: str = "amp"
    seed: int = 0
    activation: str = "auto"

    @property
    def random_weights(self) -> bool:
        return self.pretrained in _RANDOM

    @property
    def weights_file(self) -> Path | None:
        """The local checkpoint, when ``pretrained`` names an existing file."""
        if self.random_weights:
            return None
        path = Path(str(self.pretrained)).expanduser()
        return path if path.is_file() else None

    def resolved_activation(self) -> Literal["quick_gelu", "gelu"]:
        """The activation the model is built with (module docstring); cheap, loads nothing."""
        if self.activation not in ACTIVATIONS:
            raise ModelError(f"model.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        config = open_clip.get_model_config(self.arch)
        if config is None:
            raise ModelError(f"model.arch {self.arch!r} is not an open_clip architecture; see open_clip.list_models()")
        arch_quick = bool(config.get("quick_gelu", False))
        if self.random_weights:
            wanted = ("quick_gelu" if arch_quick else "gelu") if self.activation == "auto" else self.activation
        elif self.weights_file is not None:
            archive = is_torchscript_archive(self.weights_file)
            if archive and self.activation == "gelu":
                raise ModelError(f"model.pretrained {self.pretrained} is an OpenAI TorchScript archive, whose weights "
                                 "were trained with QuickGELU; set model.activation to auto or quick_gelu")
            wanted = "quick_gelu" if self.activation == "auto" else self.activation
        else:
            tag = open_clip.get_pretrained_cfg(self.arch, str(self.pretrained))
            tag_activation = "quick_gelu" if tag.get("quick_gelu", False) else "gelu"
            if self.activation not in ("auto", tag_activation):
                raise ModelError(f"model.activation is {self.activation!r} but the weights {self.pretrained!r} of "
                                 f"{self.arch} were trained with {tag_activation}; set model.activation to auto")
            wanted = tag_activation
        if arch_quick and wanted == "gelu":
            raise ModelError(f"model.arch {self.arch} always builds QuickGELU; use the architecture without "
                             "'-quickgelu' for GELU weights")
        return wanted

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
            "activation": self.resolved_activation(),
            # Mixed precision changes the embeddings' last bits, so it is part of their identity.
            "precision": ("amp-bfloat16" if self.precision == "amp" else self.precision)
            if resolve_device(self.device).type == "cuda" else "fp32",
            "open_clip": open_clip.__version__,
        }


@dataclass
class LoadedModel:
    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    device: torch.device
    spec: ModelSpec

    @property
    def amp(self) -> bool:
        """Whether encoders run under mixed precision (``precision: amp`` on CUDA)."""
        return self.device.type == "cuda" and self.spec.precision == "amp"

    def autocast(self):
        """bfloat16 autocast on CUDA when ``precision: amp`` (images and texts alike); a no-op otherwise."""
        return torch.autocast(device_type=self.device.type, dtype=AUTOCAST_DTYPE, enabled=self.amp)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"model.device is {device!r} but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return torch.device(device)


def hub_reachable(timeout: float = 3.0) -> bool:
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
    model, _, preprocess = open_clip.create_model_and_transforms(
        spec.arch, pretrained=pretrained, force_quick_gelu=spec.resolved_activation() == "quick_gelu")
    return model, preprocess


def quiet_random_init(create: Callable):
    """Call ``create``, silencing open_clip's "no pretrained weights loaded" log line (weights come later,
    or random weights were asked for)."""
    previous = logging.root.level
    logging.root.setLevel(logging.ERROR)
    try:
        return create()
    finally:
        logging.root.setLevel(previous)


def _load_file(spec: ModelSpec, path: Path):
    """Build the architecture with the resolved activation, then load a local checkpoint into it."""
    model, preprocess = quiet_random_init(lambda: _create(spec, None))
    try:
        if is_torchscript_archive(path):
            # open_clip reads state dicts with weights_only=True, which refuses TorchScript: take the
            # archive's state dict out (the key names are the ones open_clip's CLIP uses).
            with warnings.catch_warnings():
                # torch deprecates TorchScript, but it is the only reader of OpenAI's archives; only
                # their tensors are used, never their code.
                warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=FutureWarning)
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
            for key in ("input_resolution", "context_length", "vocab_size"):
                state.pop(key, None)
            with tempfile.TemporaryDirectory() as folder:
                torch.save(state, Path(folder) / "state_dict.pt")
                open_clip.load_checkpoint(model, str(Path(folder) / "state_dict.pt"))
        else:
            open_clip.load_checkpoint(model, str(path))
    except (RuntimeError, KeyError, ValueError, OSError) as error:
        raise ModelError(f"model.pretrained {path} does not hold {spec.arch} weights ({str(error).splitlines()[0]}); "
                         "check model.arch, or the file (open_clip state dict .bin/.pt/.safetensors, or an "
                         "OpenAI TorchScript .pt)") from None
    return model, preprocess


def load_model(spec: ModelSpec) -> LoadedModel:
    """Create the model in eval mode on its device, with its preprocessing and tokenizer."""
    if spec.arch not in open_clip.list_models():
        raise ModelError(
            f"model.arch {spec.arch!r} is not an open_clip architecture; see open_clip.list_models()"
        )
    device = resolve_device(spec.device)
    if spec.random_weights:
        torch.manual_seed(spec.seed)
        model, preprocess = quiet_random_init(lambda: _create(spec, None))
    elif spec.weights_file is not None:
        model, preprocess = _load_file(spec, spec.weights_file)
    else:
        tags = open_clip.list_pretrained_tags_by_model(spec.arch)
        if spec.pretrained not in tags:
            raise WeightsUnavailable(_missing_weights_message(
                spec, f"it is neither an existing file nor one of the tags {tags}"))
        model, preprocess = _load_tag(spec)
    model = model.to(device).eval()
    return LoadedModel(model, preprocess, open_clip.get_tokenizer(spec.arch), device, spec)


def cached_hub_file(spec: ModelSpec) -> str | None:
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
    if hub_reachable():
        return _create(spec, spec.pretrained)
    if cached_hub_file(spec) is None:
        raise WeightsUnavailable(_missing_weights_message(
            spec, "they are not in the local cache and the download host cannot be reached"))
    # Cached but offline: tell huggingface_hub not to try the network (it reads this at call time).
    from huggingface_hub import constants

    previous, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        return _create(spec, spec.pretrained)
    finally:
        constants.HF_HUB_OFFLINE = previous
