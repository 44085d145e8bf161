"""Seeded TPT views and their resumable feature cache (tiny random-weight model, demo images)."""

import pytest
import torch
from PIL import Image

from s3.data.benchmarks import load_benchmark
from s3.demo.world import write_demo_eurosat
from s3.encoders.cache import EmbeddingCache
from s3.tta import views as views_module
from s3.tta.views import ViewRecipe, cached_view_features, make_views, uses_augmix


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_demo_eurosat(root, images_per_class=1)
    return load_benchmark("eurosat", root)


def test_views_are_identical_across_reruns_and_differ_by_seed(tiny, demo_images):
    recipe = ViewRecipe(n_views=5, seed=3, augmix=True)
    with Image.open(demo_images.paths[0]) as image:
        image = image.convert("RGB")
        torch.manual_seed(123)
        first = make_views(image, 0, tiny.preprocess, recipe)
        torch.manual_seed(456)  # the global generator's state must not matter
        again = make_views(image, 0, tiny.preprocess, recipe)
        other = make_views(image, 0, tiny.preprocess, ViewRecipe(n_views=5, seed=4))
        original = tiny.preprocess(image)
    assert first.shape == (5, *original.shape)
    assert torch.equal(first, again)
    assert torch.equal(first[0], original) and torch.equal(other[0], original)
    assert not torch.equal(first[1:], other[1:])
    assert not torch.equal(first[1], first[2])


def test_augmix_only_off_the_imagenet_family():
    assert not uses_augmix("imagenet") and not uses_augmix("imagenet_a")
    assert uses_augmix("eurosat") and uses_augmix("dtd")


def test_view_cache_resumes_after_an_interruption(tiny, demo_images, tmp_path, monkeypatch):
    recipe = ViewRecipe(n_views=3, seed=0, augmix=False)
    reference, _ = cached_view_features(tiny, demo_images, EmbeddingCache(tmp_path / "a"), recipe,
                                        batch_size=2, num_workers=0, shard_size=2)
    assert reference.features.shape == (len(demo_images), 3, reference.meta["dim"])
    assert reference.features.dtype == torch.float16
    real = views_module.encode_views
    encoded = []

    def interrupted(loaded, images, positions, recipe, batch_size, num_workers):
        for i, batch in enumerate(real(loaded, images, positions, recipe, batch_size, num_workers)):
            if i == 2:
                raise KeyboardInterrupt("killed")
            yield batch

    cache = EmbeddingCache(tmp_path / "b")
    monkeypatch.setattr(views_module, "encode_views", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached_view_features(tiny, demo_images, cache, recipe, batch_size=2, num_workers=0, shard_size=2)

    def counting(loaded, images, positions, recipe, batch_size, num_workers):
        encoded.extend(positions)
        yield from real(loaded, images, positions, recipe, batch_size, num_workers)

    monkeypatch.setattr(views_module, "encode_views", counting)
    resumed, cached = cached_view_features(tiny, demo_images, cache, recipe, batch_size=2, num_workers=0, shard_size=2)
    assert not cached
    assert encoded == list(range(4, len(demo_images)))  # the two complete shards were kept
    assert torch.equal(resumed.features, reference.features)
    again, cached = cached_view_features(tiny, demo_images, cache, recipe, batch_size=2, num_workers=0, shard_size=2)
    assert cached and torch.equal(again.features, reference.features)
