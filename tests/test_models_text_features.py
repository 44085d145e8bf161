"""Model loading (offline), text embeddings, image features and their on-disk cache."""

import time

import numpy as np
import pytest
import torch
from conftest import TINY

from s3.data.benchmarks import load_benchmark
from s3.demo.world import write_demo_eurosat
from s3.encoders import models
from s3.encoders.cache import EmbeddingCache
from s3.encoders.images import cached_image_features
from s3.encoders.models import ModelError, ModelSpec, WeightsUnavailable, load_model
from s3.encoders.text import embed_classnames, embed_names


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_demo_eurosat(root, images_per_class=3)
    return load_benchmark("eurosat", root)


def test_random_weights_are_seeded(tiny):
    again = load_model(TINY)
    for a, b in zip(tiny.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    other = load_model(ModelSpec(**{**TINY.__dict__, "seed": 1}))
    assert not torch.equal(next(iter(tiny.model.state_dict().values())), next(iter(other.model.state_dict().values())))


def test_local_checkpoint_file_loads_the_same_weights(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    loaded = load_model(ModelSpec(arch="S3-Demo-Tiny", pretrained=str(path), device="cpu"))
    for a, b in zip(tiny.model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(a, b)


def test_unreachable_pretrained_tag_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(models, "cached_hub_file", lambda spec: None)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailable, match=r"pretrained: /path/to/checkpoint"):
        load_model(ModelSpec(arch="ViT-B-16", pretrained="openai", device="cpu"))
    assert time.perf_counter() - start < 10


def test_unknown_tag_and_arch_are_clear_errors():
    with pytest.raises(WeightsUnavailable, match="neither an existing file nor one of the tags"):
        load_model(ModelSpec(arch="S3-Demo-Tiny", pretrained="no-such-tag", device="cpu"))
    with pytest.raises(ModelError, match="not an open_clip architecture"):
        load_model(ModelSpec(arch="ViT-Z-99", pretrained="none", device="cpu"))


def test_embed_names_is_the_normalised_template_mean(tiny):
    templates = ["a photo of a {}.", "a drawing of a {}."]
    per_class = embed_names(tiny, [["cat", "kitty"], ["dog"]], templates)
    assert [e.shape for e in per_class] == [(2, 64), (1, 64)]
    np.testing.assert_allclose(np.linalg.norm(per_class[0], axis=1), 1, atol=1e-5)
    tokens = tiny.tokenizer([t.format("kitty") for t in templates])
    with torch.no_grad():
        direct = torch.nn.functional.normalize(tiny.model.encode_text(tokens), dim=-1).mean(0)
    np.testing.assert_allclose(per_class[0][1], torch.nn.functional.normalize(direct, dim=0).numpy(), atol=1e-5)
    classifier = embed_classnames(tiny, ["cat", "dog"], templates)
    np.testing.assert_allclose(classifier[1].numpy(), per_class[1][0], atol=1e-6)


def test_feature_cache_is_reused_and_rebuilt_when_corrupt(tiny, demo_images, tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "cache")
    first, cached = cached_image_features(tiny, demo_images, cache, num_workers=0)
    assert not cached and first.features.shape == (30, 64)
    np.testing.assert_allclose(first.features.norm(dim=1).numpy(), 1, atol=1e-5)
    assert first.labels.tolist() == demo_images.labels

    # A second method asking for the same features never runs the model.
    import s3.encoders.images as features_module

    monkeypatch.setattr(features_module, "encode_images", lambda *a, **k: pytest.fail("re-extracted"))
    again, cached = cached_image_features(tiny, demo_images, cache, num_workers=0)
    assert cached and torch.equal(again.features, first.features)
    assert repr(again.meta) == repr(first.meta)  # a notebook showing the meta cannot tell the two apart
    monkeypatch.undo()

    # Truncate the file: detected, rebuilt, identical features.
    (path,) = (tmp_path / "cache").glob("*.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    rebuilt, cached = cached_image_features(tiny, demo_images, cache, num_workers=0)
    assert not cached and torch.allclose(rebuilt.features, first.features, atol=1e-6)
    assert cache.load("eurosat-test", rebuilt.meta["key"]) is not None


def test_cache_key_changes_with_the_file_list(tiny, demo_images, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    cached_image_features(tiny, demo_images, cache, num_workers=0)
    fewer = load_benchmark("eurosat", demo_images.paths[0].parents[2].parent)
    fewer.paths, fewer.labels = fewer.paths[:5], fewer.labels[:5]
    features, cached = cached_image_features(tiny, fewer, cache, num_workers=0)
    assert not cached and features.features.shape[0] == 5


def test_text_embeddings_are_cached_by_model_and_texts(tiny, tmp_path, monkeypatch):
    from s3.encoders.text import encode_texts

    cache = EmbeddingCache(tmp_path / "text")
    first = encode_texts(tiny, ["a photo of a cat.", "a photo of a dog."], cache=cache)
    monkeypatch.setattr(tiny.model, "encode_text", lambda *a, **k: pytest.fail("re-encoded a cached text"))
    again = encode_texts(tiny, ["a photo of a cat.", "a photo of a dog."], cache=cache)
    assert torch.equal(first, again)
    monkeypatch.undo()
    other = encode_texts(tiny, ["a photo of a cow."], cache=cache)
    assert other.shape == (1, 64) and len(list((tmp_path / "text").glob("text-*.pt"))) == 2


def test_identity_includes_precision_on_gpu_only_and_expands_home(tmp_path, monkeypatch):
    assert TINY.identity["precision"] == "fp32"
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ckpt.bin").write_bytes(b"weights")
    identity = ModelSpec(arch="S3-Demo-Tiny", pretrained="~/ckpt.bin", device="cpu").identity
    assert identity["pretrained"].startswith(f"{tmp_path / 'ckpt.bin'}:7:")  # path, size, then mtime


def test_a_replaced_image_changes_the_cache_key(tiny, demo_images, tmp_path):
    from s3.encoders.images import cache_key

    before = cache_key(tiny, demo_images, "test")
    path = demo_images.paths[0]
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\0")
        assert cache_key(tiny, demo_images, "test") != before
    finally:
        path.write_bytes(original)
