"""Seeded TPT views and their resumable feature cache (tiny random-weight model, demo images)."""

import pytest
import torch
from PIL import Image

from s3.data.benchmarks import load_benchmark
from s3.demo.world import write_demo_eurosat
from s3.encoders.cache import EmbeddingCache
from s3.encoders.gpu_decode import TensorPreprocess
from s3.encoders.models import ModelSpec, load_model
from s3.tta import views as views_module
from s3.tta.adapt import TTAError
from s3.tta.gpu_views import RATIO, SCALE, TensorViews
from s3.tta.views import (
    ViewRecipe,
    augmenter_kind,
    cached_view_features,
    make_views,
    resolve_augmenter,
    uses_augmix,
    view_cache_key,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# the tensor augmenter decodes with torchvision.io, deprecated in 0.29 (explained in s3/encoders/gpu_decode.py)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning")


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


@pytest.mark.parametrize("augment_on", ["cpu", "device"])
def test_view_cache_resumes_after_an_interruption(tiny, demo_images, tmp_path, monkeypatch, augment_on):
    recipe = ViewRecipe(n_views=3, seed=0, augmix=augment_on == "device")
    run = dict(batch_size=2, num_workers=0, shard_size=2, augment_on=augment_on)
    reference, _ = cached_view_features(tiny, demo_images, EmbeddingCache(tmp_path / "a"), recipe, **run)
    assert reference.meta["augmenter"] == ("pil" if augment_on == "cpu" else "tensor-cpu")
    assert reference.features.shape == (len(demo_images), 3, reference.meta["dim"])
    assert reference.features.dtype == torch.float16
    real = views_module.encode_views
    encoded = []

    def interrupted(loaded, images, positions, recipe, *rest):
        for i, batch in enumerate(real(loaded, images, positions, recipe, *rest)):
            if i == 2:
                raise KeyboardInterrupt("killed")
            yield batch

    cache = EmbeddingCache(tmp_path / "b")
    monkeypatch.setattr(views_module, "encode_views", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached_view_features(tiny, demo_images, cache, recipe, **run)

    def counting(loaded, images, positions, recipe, *rest):
        encoded.extend(positions)
        yield from real(loaded, images, positions, recipe, *rest)

    monkeypatch.setattr(views_module, "encode_views", counting)
    resumed, cached = cached_view_features(tiny, demo_images, cache, recipe, **run)
    assert not cached
    assert encoded == list(range(4, len(demo_images)))  # the two complete shards were kept
    assert torch.equal(resumed.features, reference.features)
    again, cached = cached_view_features(tiny, demo_images, cache, recipe, **run)
    assert cached and torch.equal(again.features, reference.features)


def synthetic(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_tensor_views_are_deterministic_and_independent_of_the_batch(tiny):
    images = [synthetic(120, 160, 0), synthetic(90, 70, 1), synthetic(120, 160, 2)]
    augment = TensorViews(tiny.preprocess, n_views=6, seed=3, augmix=True)
    torch.manual_seed(1)
    first = augment(images, [5, 9, 11])
    torch.manual_seed(2)  # the global generator's state must not matter
    again = augment(images, [5, 9, 11])
    reordered = augment([images[2], images[0]], [11, 5])
    alone = augment([images[1]], [9])
    assert torch.equal(first, again)
    assert torch.equal(reordered[0], first[2]) and torch.equal(reordered[1], first[0])
    assert torch.equal(alone[0], first[1])
    assert not torch.equal(augment([images[0]], [6])[0, 1:], first[0, 1:])  # another position, other views
    assert not torch.equal(TensorViews(tiny.preprocess, 6, 4, True)([images[0]], [5])[0, 1:], first[0, 1:])


def test_tensor_views_shape_range_and_original(tiny):
    images = [synthetic(120, 160, 0), synthetic(60, 50, 1)]
    augment = TensorViews(tiny.preprocess, n_views=5, seed=0, augmix=True)
    views = augment(images, [0, 1])
    size = augment.size
    assert views.shape == (2, 5, 3, size, size) and views.dtype == torch.float32
    assert torch.equal(views[:, 0], TensorPreprocess(tiny.preprocess)(images))  # view 0: the model's own
    normalize = augment.base.normalize
    mean, std = torch.tensor(normalize.mean)[:, None, None], torch.tensor(normalize.std)[:, None, None]
    pixels = views[:, 1:] * std + mean  # back to [0, 1], on the uint8 grid
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert (pixels * 255 - (pixels * 255).round()).abs().max() < 1e-3
    assert not torch.equal(views[:, 1], views[:, 2])


def test_crop_boxes_respect_scale_and_ratio_and_flips_are_fair(tiny):
    augment = TensorViews(tiny.preprocess, n_views=9, seed=0, augmix=False)
    height, width = 150, 200
    boxes, flips = zip(*(augment.boxes(height, width, p) for p in range(150)))
    boxes, flips = torch.cat(boxes), torch.cat(flips)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = w * h / (height * width)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    # torchvision rounds w and h to whole pixels after drawing scale and ratio: allow that rounding
    assert area.min() >= SCALE[0] * 0.9 and area.max() <= SCALE[1]
    assert (w / h).min() >= RATIO[0] * 0.9 and (w / h).max() <= RATIO[1] * 1.1
    assert area.min() < 0.2 and area.max() > 0.8  # the whole range is drawn
    assert abs(flips.float().mean().item() - 0.5) < 0.06  # 1,200 draws: 0.5 +- 4 standard deviations


def test_crops_cut_the_drawn_box_and_flip_it(tiny):
    """A horizontal ramp (value = x) shows where each crop was cut: its columns read the box's x range."""
    augment = TensorViews(tiny.preprocess, n_views=17, seed=1, augmix=False)
    height, width = 180, 256
    ramp = torch.arange(width, dtype=torch.uint8).expand(3, height, width).contiguous()
    crops = augment.augmented(ramp, 7)
    boxes, flips = augment.boxes(height, width, 7)
    size = augment.size
    assert crops.shape == (16, 3, size, size) and crops.dtype == torch.uint8
    assert flips.any() and not flips.all()  # both cases are checked
    for crop, box, flip in zip(crops, boxes, flips):
        x0, x1 = box[0].item(), box[2].item()
        centres = x0 + (torch.arange(size) + 0.5) * (x1 - x0) / size - 0.5  # aligned=True: pixel centres
        expected = centres.clamp(0, width - 1)
        row = crop[0].float().mean(0)
        row = row.flip(0) if flip else row
        assert (row - expected).abs().max() <= 1.0, (box, flip)
        assert (crop == crop[:, :1]).all()  # rows agree: the ramp has no vertical structure


def test_augmix_path_runs_and_changes_the_views(tiny):
    images = [synthetic(120, 160, 0)]
    plain = TensorViews(tiny.preprocess, 6, 0, augmix=False).augmented(images[0], 3)
    mixed = TensorViews(tiny.preprocess, 6, 0, augmix=True).augmented(images[0], 3)
    assert mixed.shape == plain.shape and mixed.dtype == torch.uint8
    assert not torch.equal(mixed, plain)
    assert all(not torch.equal(m, p) for m, p in zip(mixed, plain))  # every view is mixed


def test_augmenter_is_in_the_cache_key_and_auto_is_cpu_without_cuda(tiny, demo_images):
    recipe = ViewRecipe(n_views=3)
    keys = {on: view_cache_key(tiny, demo_images, recipe, augment_on=on) for on in ("cpu", "device", "auto")}
    assert keys["cpu"] != keys["device"] and keys["auto"] == keys["cpu"]
    assert resolve_augmenter("auto", torch.device("cpu")) == "cpu"
    assert resolve_augmenter("device", torch.device("cpu")) == "device"
    assert augmenter_kind(tiny, "device") == "tensor-cpu" and augmenter_kind(tiny, "cpu") == "pil"
    with pytest.raises(TTAError, match="tta.augment_on"):
        resolve_augmenter("gpu", torch.device("cpu"))


def test_tensor_views_are_close_to_the_pil_views_in_feature_space(tiny, demo_images):
    """Different decoder and resampling, same boxes: a view's content must be the same crop."""
    recipe = ViewRecipe(n_views=4, seed=0, augmix=False)
    with Image.open(demo_images.paths[0]) as image:
        pil = make_views(image.convert("RGB"), 0, tiny.preprocess, recipe)
    from s3.encoders.gpu_decode import _pil_rgb
    tensor = TensorViews(tiny.preprocess, 4, 0, False)([_pil_rgb(demo_images.paths[0])], [0])[0]
    other = TensorViews(tiny.preprocess, 4, 1, False)([_pil_rgb(demo_images.paths[0])], [0])[0]
    assert torch.allclose(pil[0], tensor[0], atol=0.05)  # the original: resampling arithmetic only
    # the PIL path draws crop, flip per view in turn, as TensorViews does when AugMix is off: same boxes
    # (measured: mean gap 0.02-0.04 in normalised units on the demo images; other boxes: 0.16-0.27)
    assert (pil[1:] - tensor[1:]).abs().mean() < 0.06 < (pil[1:] - other[1:]).abs().mean()


@pytest.mark.gpu
@needs_cuda
def test_cuda_tensor_views_are_deterministic_and_match_the_cpu_geometry():
    loaded = load_model(ModelSpec(arch="S3-Demo-Tiny", pretrained="none", device="cuda", precision="fp32"))
    images = [synthetic(120, 160, 0), synthetic(90, 70, 1)]
    augment = TensorViews(loaded.preprocess, 6, 0, augmix=True)
    on_gpu = [image.cuda() for image in images]
    first = augment(on_gpu, [0, 1])
    assert first.is_cuda and torch.equal(first, augment(on_gpu, [0, 1]))
    assert torch.equal(augment([on_gpu[1]], [1])[0], first[1])
    plain = TensorViews(loaded.preprocess, 6, 0, augmix=False)
    levels = (plain.augmented(on_gpu[0], 0).cpu().int() - plain.augmented(images[0], 0).int()).abs()
    assert levels.max() <= 1  # same boxes and flips; roi_align's float rounding only


def test_decoded_views_do_not_depend_on_the_batch_size(tiny, demo_images):
    from s3.encoders.gpu_decode import gpu_pixel_batches

    augment = TensorViews(tiny.preprocess, 4, 0, True)
    cpu = torch.device("cpu")
    positions = [0, 2, 3, 5, 8]

    def views(batch_size):
        batches = list(gpu_pixel_batches(demo_images, positions, tiny.preprocess, batch_size, 0, cpu,
                                         channels_last=False, transform=augment))
        assert all(b.failed == [] for b in batches)
        return torch.cat([b.indices for b in batches]), torch.cat([b.pixels for b in batches])

    (one_at_a_time, singles), (three_at_a_time, triples) = views(1), views(3)
    assert one_at_a_time.tolist() == three_at_a_time.tolist() == positions
    assert singles.shape == (5, 4, 3, augment.size, augment.size) and torch.equal(singles, triples)


@pytest.mark.gpu
@needs_cuda
def test_cuda_views_stage_takes_the_device_augmenter_and_agrees_with_the_cpu_tensor_path(demo_images, tmp_path):
    cuda = load_model(ModelSpec(arch="S3-Demo-Tiny", pretrained="none", device="cuda", precision="fp32", seed=0))
    cpu = load_model(ModelSpec(arch="S3-Demo-Tiny", pretrained="none", device="cpu", precision="fp32", seed=0))
    recipe = ViewRecipe(n_views=4, seed=0, augmix=False)  # AugMix's mixing weights come from each device's generator
    cache = EmbeddingCache(tmp_path / "cache")
    run = dict(batch_size=3, num_workers=2, shard_size=4)
    on_gpu, _ = cached_view_features(cuda, demo_images, cache, recipe, augment_on="auto", **run)
    on_cpu, _ = cached_view_features(cpu, demo_images, cache, recipe, augment_on="device", **run)
    assert on_gpu.meta["augmenter"] == "tensor-cuda" and on_cpu.meta["augmenter"] == "tensor-cpu"
    assert on_gpu.meta["key"] != on_cpu.meta["key"]
    # same boxes and flips; nvJPEG vs libjpeg-turbo and roi_align rounding differ by a few uint8 levels
    cosine = (on_gpu.features.float() * on_cpu.features.float()).sum(-1)
    assert cosine.mean() > 0.99, cosine.min()
