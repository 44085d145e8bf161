"""Every documented weight route builds the activation the weights were trained with.

OpenAI's CLIP weights were trained with QuickGELU, but open_clip's ``ViT-B-16`` config builds
``nn.GELU`` and only warns when given the ``openai`` tag. These tests build ViT-B/16 offline from a
random model saved in each format a user may have (a tag whose download is intercepted, open_clip
state dicts as .bin/.pt/.safetensors, OpenAI's TorchScript archive) and look at every block.
"""

from __future__ import annotations

import warnings

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file

from s3.encoders import models
from s3.encoders.models import ModelError, ModelSpec, is_torchscript_archive, load_model


def activations(model: torch.nn.Module) -> set[type]:
    """The activation class of every residual block's MLP, image and text towers."""
    blocks = [*model.visual.transformer.resblocks, *model.transformer.resblocks]
    assert len(blocks) == 24  # ViT-B/16: 12 + 12
    return {type(block.mlp.gelu) for block in blocks}


class _Node(torch.nn.Module):
    def forward(self) -> torch.Tensor:
        return torch.zeros(1)


def torchscript_archive(state: dict[str, torch.Tensor], path) -> None:
    """A TorchScript archive with OpenAI's layout: the state dict's keys as module attributes,
    plus the buffers OpenAI's archives carry (input_resolution, context_length, vocab_size)."""
    root = _Node()
    for key, value in {**state, "input_resolution": torch.tensor(224), "context_length": torch.tensor(77),
                       "vocab_size": torch.tensor(49408)}.items():
        *parents, leaf = key.split(".")
        node = root
        for name in parents:
            if not hasattr(node, name):
                node.add_module(name, _Node())
            node = getattr(node, name)
        node.register_buffer(leaf, value.clone())
    with warnings.catch_warnings():  # writing the archive is the fixture's business, not the code under test
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(root).save(str(path))


@pytest.fixture(scope="module")
def vit_b16_files(tmp_path_factory):
    """One random ViT-B/16 saved in every supported format (float16 to keep the files small)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    reference = models.quiet_random_init(lambda: open_clip.create_model("ViT-B-16", force_quick_gelu=True))
    state = {k: v.half() for k, v in reference.state_dict().items()}
    files = {".bin": folder / "open_clip_pytorch_model.bin", ".pt": folder / "checkpoint.pt",
             ".safetensors": folder / "open_clip_model.safetensors", "torchscript": folder / "ViT-B-16.pt"}
    torch.save(state, files[".bin"])
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 32}, files[".pt"])  # a training checkpoint
    save_file({k: v.contiguous() for k, v in state.items()}, files[".safetensors"])
    torchscript_archive(state, files["torchscript"])
    return files, state


def test_the_openai_tag_builds_quickgelu_in_every_block(vit_b16_files, monkeypatch):
    files, state = vit_b16_files
    fetched = []
    # Intercept the download: open_clip asks for the tag's file and gets our random one.
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(open_clip.factory, "download_pretrained",
                        lambda cfg, cache_dir=None, **kw: fetched.append(cfg) or str(files[".bin"]))
    spec = ModelSpec(arch="ViT-B-16", pretrained="openai", device="cpu", precision="fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # open_clip's "QuickGELU mismatch" warning would fail the test
        loaded = load_model(spec)
    assert fetched and fetched[0]["quick_gelu"] is True
    assert activations(loaded.model) == {QuickGELU}
    assert torch.equal(loaded.model.visual.conv1.weight.half(), state["visual.conv1.weight"])
    assert spec.identity["activation"] == "quick_gelu"


@pytest.mark.parametrize("fmt", [".bin", ".pt", ".safetensors", "torchscript"])
def test_a_local_checkpoint_of_openai_weights_builds_quickgelu(vit_b16_files, fmt):
    files, state = vit_b16_files
    spec = ModelSpec(arch="ViT-B-16", pretrained=str(files[fmt]), device="cpu", precision="fp32")  # activation: auto
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_model(spec)
    assert activations(loaded.model) == {QuickGELU}
    assert torch.equal(loaded.model.transformer.resblocks[3].mlp.c_fc.weight.half(),
                       state["transformer.resblocks.3.mlp.c_fc.weight"])
    assert spec.identity["activation"] == "quick_gelu"
    assert is_torchscript_archive(files[fmt]) == (fmt == "torchscript")


def test_gelu_can_be_asked_for_a_local_checkpoint_and_changes_the_identity(vit_b16_files):
    files, _ = vit_b16_files
    gelu = ModelSpec(arch="ViT-B-16", pretrained=str(files[".bin"]), device="cpu", activation="gelu")
    assert activations(load_model(gelu).model) == {torch.nn.GELU}
    quick = ModelSpec(arch="ViT-B-16", pretrained=str(files[".bin"]), device="cpu")
    assert gelu.identity != quick.identity  # cached features of one are never reused for the other


@pytest.mark.parametrize("spec, message", [
    (ModelSpec(arch="ViT-B-16", pretrained="openai", activation="gelu"), "trained with quick_gelu"),
    (ModelSpec(arch="ViT-B-16", pretrained="laion2b_s34b_b88k", activation="quick_gelu"), "trained with gelu"),
    (ModelSpec(arch="ViT-B-16-quickgelu", pretrained="none", activation="gelu"), "always builds QuickGELU"),
    (ModelSpec(arch="ViT-B-16", pretrained="openai", activation="swish"), "model.activation must be one of"),
])
def test_a_mismatched_activation_is_an_error_not_a_warning(spec, message):
    with pytest.raises(ModelError, match=message):
        spec.resolved_activation()


def test_an_openai_archive_refuses_gelu(vit_b16_files):
    files, _ = vit_b16_files
    spec = ModelSpec(arch="ViT-B-16", pretrained=str(files["torchscript"]), activation="gelu")
    with pytest.raises(ModelError, match="TorchScript archive.*QuickGELU"):
        spec.resolved_activation()


def test_random_weights_follow_the_architecture_and_a_tag_its_own_config():
    assert ModelSpec(arch="ViT-B-16", pretrained="none").resolved_activation() == "gelu"
    assert ModelSpec(arch="ViT-B-16-quickgelu", pretrained="none").resolved_activation() == "quick_gelu"
    assert ModelSpec(arch="ViT-B-16", pretrained="laion2b_s34b_b88k").resolved_activation() == "gelu"


def test_a_file_of_the_wrong_architecture_is_a_clear_error(vit_b16_files):
    files, _ = vit_b16_files
    with pytest.raises(ModelError, match="does not hold S3-Demo-Tiny weights"):
        load_model(ModelSpec(arch="S3-Demo-Tiny", pretrained=str(files[".bin"]), device="cpu"))
