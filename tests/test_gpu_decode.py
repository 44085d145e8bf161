"""The GPU pixel source (s3.encoders.gpu_decode) against the PIL path, on the CPU; GPU-only checks marked gpu.

Tolerance of the tensor path against PIL's, in uint8 levels of the pixels before normalisation
(one level is 1/255/std, about 0.015 after normalisation): at most 8 levels at any pixel and at
most 0.3 level on average over an image. Both decoders are libjpeg-turbo on the CPU (an image that
needs no resize matches exactly); the differences come from the bicubic resampling: PIL works in
fixed point and rounds to uint8 between its horizontal and vertical passes, torch stays in float
and rounds once. Measured here: mean 0.06-0.22 level, worst pixel 6 levels (high-contrast
palette/RGBA content), 1-2 levels on photo-like JPEGs.

torchvision 0.29 deprecates its image decoders in favour of TorchCodec and says so with a
DeprecationWarning on each call; Python hides it outside ``__main__``, pytest shows it: filtered
here, see ``s3.encoders.gpu_decode``.
"""


import pytest
import torch
from open_clip.transform import image_transform
from PIL import Image

from s3.analysis.synthetic_images import photo_like
from s3.data.benchmarks import ImageList, load_benchmark
from s3.demo.world import write_demo_eurosat
from s3.encoders import gpu_decode
from s3.encoders.cache import EmbeddingCache
from s3.encoders.gpu_decode import DecodeError, TensorPreprocess, gpu_pixel_batches, is_jpeg
from s3.encoders.images import cache_key, cached_image_features, pixel_batches, pixel_pipeline, resolve_decode
from s3.encoders.models import ModelSpec, load_model

MAX_LEVELS, MEAN_LEVELS = 8.0, 0.3
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning")
CPU = torch.device("cpu")
VIT_B16 = image_transform(224, is_train=False)  # ViT-B/16's open_clip preprocessing (no model needed)


def write_images(folder):
    """Landscape, portrait, upsampled, exact-size and large JPEGs, grey and CMYK JPEGs, RGB/RGBA/palette PNGs."""
    paths = []

    def save(name, image, **kwargs):
        paths.append(folder / name)
        image.save(paths[-1], **kwargs)

    for i, (w, h) in enumerate([(500, 375), (375, 500), (64, 64), (224, 224), (1024, 700), (300, 200)]):
        save(f"rgb{i}.jpg", Image.fromarray(photo_like(w, h, i)), quality=90)
    save("grey.jpg", Image.fromarray(photo_like(320, 240, 7)).convert("L"), quality=90)
    save("cmyk.jpg", Image.fromarray(photo_like(320, 240, 8)).convert("CMYK"), quality=90)
    save("rgb.png", Image.fromarray(photo_like(300, 200, 9)))
    save("rgba.png", Image.fromarray(photo_like(240, 320, 10)).convert("RGBA"))
    save("palette.png", Image.fromarray(photo_like(256, 256, 11)).convert("P"))
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    paths = write_images(tmp_path_factory.mktemp("images"))
    return ImageList("t", ["x"], paths, [0] * len(paths))


def levels(a: torch.Tensor, b: torch.Tensor, preprocess) -> torch.Tensor:
    """``(B,)`` max and mean absolute difference of normalised pixels, in uint8 levels."""
    std = torch.tensor(TensorPreprocess(preprocess).normalize.std).view(1, 3, 1, 1)
    diff = (a - b).abs() * std * 255
    return diff.amax(dim=(1, 2, 3)), diff.mean(dim=(1, 2, 3))


def collect(batches):
    batches = list(batches)
    indices = torch.cat([b.indices for b in batches]).tolist()
    pixels = torch.cat([b.pixels for b in batches if len(b.indices)])
    return indices, pixels, sorted(f for b in batches for f in b.failed)


@pytest.mark.parametrize("preprocess", [VIT_B16, image_transform(32, is_train=False)], ids=["vit-b16", "demo-tiny"])
def test_tensor_path_matches_the_pil_path(images, preprocess):
    positions = range(len(images))
    pil_indices, pil, pil_failed = collect(pixel_batches(images, positions, preprocess, 4, 0))
    indices, tensor, failed = collect(gpu_pixel_batches(images, positions, preprocess, 4, 0, CPU))
    assert indices == pil_indices == list(positions) and failed == pil_failed == []
    assert tensor.shape == pil.shape and tensor.dtype == torch.float32
    worst, mean = levels(tensor, pil, preprocess)
    assert worst.max() <= MAX_LEVELS, worst
    assert mean.max() <= MEAN_LEVELS, mean
    if preprocess is VIT_B16:  # the 224x224 JPEG needs no resize: both decoders agree exactly
        assert worst[[p.name for p in images.paths].index("rgb3.jpg")] == 0


def test_broken_files_are_reported_as_the_cpu_path_reports_them(images, tmp_path):
    good = images.paths[0].read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg \xff\xd9")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    paths = [images.paths[0], tmp_path / "truncated.jpg", images.paths[1], tmp_path / "garbage.jpg",
             tmp_path / "text.png", tmp_path / "empty.jpg", tmp_path / "missing.jpg", images.paths[2]]
    broken = ImageList("t", ["x"], paths, [0] * len(paths))
    pil_indices, pil, pil_failed = collect(pixel_batches(broken, range(len(paths)), VIT_B16, 3, 0))
    indices, tensor, failed = collect(gpu_pixel_batches(broken, range(len(paths)), VIT_B16, 3, 0, CPU))
    assert indices == pil_indices == [0, 2, 7]
    assert [p for p, _ in failed] == [p for p, _ in pil_failed] == [1, 3, 4, 5, 6]
    assert failed == pil_failed  # the same reasons, word for word
    assert levels(tensor, pil, VIT_B16)[0].max() <= MAX_LEVELS


def test_an_image_the_jpeg_decoder_refuses_is_decoded_by_pil(images, monkeypatch):
    refused = images.paths[1].read_bytes()
    real = gpu_decode.decode_jpeg

    def picky(data, **kwargs):
        streams = data if isinstance(data, list) else [data]
        if any(s.numel() == len(refused) for s in streams):
            raise RuntimeError("nvjpeg: unsupported stream")
        return real(data, **kwargs)

    monkeypatch.setattr(gpu_decode, "decode_jpeg", picky)
    indices, tensor, failed = collect(gpu_pixel_batches(images, [0, 1, 2], VIT_B16, 3, 0, CPU))
    _, pil, _ = collect(pixel_batches(images, [0, 1, 2], VIT_B16, 3, 0))
    assert indices == [0, 1, 2] and failed == []
    assert levels(tensor, pil, VIT_B16)[0].max() <= MAX_LEVELS


def test_jpeg_detection_needs_both_markers():
    assert is_jpeg(b"\xff\xd8\xff\xe0" + b"x" * 2000 + b"\xff\xd9")
    assert is_jpeg(b"\xff\xd8\xff\xe0" + b"x" * 10 + b"\xff\xd9" + b"trailer")
    assert not is_jpeg(b"\xff\xd8\xff\xe0" + b"x" * 2000)  # truncated: PIL decides
    assert not is_jpeg(b"\x89PNG\r\n\x1a\n" + b"\xff\xd9")


def test_preprocessing_the_tensor_path_cannot_mirror_is_refused(images):
    with pytest.raises(DecodeError, match="features.decode to cpu"):
        TensorPreprocess(image_transform(224, is_train=False, resize_mode="longest"))  # ResizeKeepRatio
    with pytest.raises(DecodeError, match="fixed output size"):
        TensorPreprocess(type("NoCrop", (), {"transforms": VIT_B16.transforms[:1] + VIT_B16.transforms[-1:]})())
    squash = image_transform(224, is_train=False, resize_mode="squash")  # Resize((224, 224)): mirrored
    _, pil, _ = collect(pixel_batches(images, [0, 1], squash, 2, 0))
    _, tensor, _ = collect(gpu_pixel_batches(images, [0, 1], squash, 2, 0, CPU))
    assert levels(tensor, pil, squash)[0].max() <= MAX_LEVELS


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelSpec(arch="S3-Demo-Tiny", pretrained="none", device="cpu", precision="fp32"))


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_demo_eurosat(root, images_per_class=2)
    return load_benchmark("eurosat", root)


def test_features_of_the_two_decode_paths_agree_and_are_cached_apart(tiny, demo_images, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    pil, cached = cached_image_features(tiny, demo_images, cache, num_workers=0, decode="cpu")
    tensor, cached_gpu = cached_image_features(tiny, demo_images, cache, num_workers=0, decode="gpu")
    assert not cached and not cached_gpu  # never served from the other decoder's entry
    assert torch.equal(tensor.labels, pil.labels)
    cosine = (tensor.features * pil.features).sum(dim=1)
    assert cosine.min() > 0.999, cosine.min()
    assert cache_key(tiny, demo_images, "test", "cpu") != cache_key(tiny, demo_images, "test", "gpu")
    assert pil.meta["pixels"]["decoder"] == "pil" and tensor.meta["pixels"]["decoder"] == "torchvision-cpu"
    again, cached = cached_image_features(tiny, demo_images, cache, num_workers=0, decode="gpu")
    assert cached and torch.equal(again.features, tensor.features)


def test_decode_values_and_the_pipeline_identity(tiny):
    assert resolve_decode("auto", CPU) == "cpu" and resolve_decode("gpu", CPU) == "gpu"
    with pytest.raises(DecodeError, match="must be one of"):
        resolve_decode("nvjpeg", CPU)
    assert pixel_pipeline(tiny, "cpu") == {"decoder": "pil", "resample": "pil", "autocast": "off", "compile": False,
                                           "channels_last": False}
    assert pixel_pipeline(tiny, "cpu", compile=True)["compile"] is True


def test_params_schema_checks_decode_and_compile():
    from s3.pipeline.params import section_problems

    good = {"batch_size": 256, "num_workers": 8, "shard_size": 4096, "cache_dir": "c", "decode": "auto",
            "compile": False}
    assert section_problems("features", good) == []
    assert any("features.decode" in p for p in section_problems("features", {**good, "decode": "nvjpeg"}))
    assert any("features.compile" in p for p in section_problems("features", {**good, "compile": "yes"}))
    assert any("features.decode: missing" in p for p in section_problems("features", {k: v for k, v in good.items()
                                                                                       if k != "decode"}))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
def test_nvjpeg_path_matches_the_cpu_tensor_path(images):
    positions = range(len(images))
    cuda = torch.device("cuda")
    indices, on_gpu, failed = collect(gpu_pixel_batches(images, positions, VIT_B16, 4, 2, cuda))
    cpu_indices, on_cpu, cpu_failed = collect(gpu_pixel_batches(images, positions, VIT_B16, 4, 0, CPU))
    assert on_gpu.is_cuda and on_gpu.is_contiguous(memory_format=torch.channels_last)
    assert indices == cpu_indices and failed == cpu_failed == []
    # nvJPEG's IDCT and colour conversion differ from libjpeg-turbo's by a few levels.
    worst, mean = levels(on_gpu.cpu(), on_cpu, VIT_B16)
    assert worst.max() <= 2 * MAX_LEVELS and mean.max() <= 2 * MEAN_LEVELS, (worst, mean)


@pytest.mark.gpu
@needs_cuda
def test_gpu_source_reports_broken_files_like_the_cpu_path(images, tmp_path):
    good = images.paths[0].read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg \xff\xd9")
    paths = [images.paths[0], tmp_path / "truncated.jpg", tmp_path / "garbage.jpg", images.paths[3]]
    broken = ImageList("t", ["x"], paths, [0] * len(paths))
    gpu = collect(gpu_pixel_batches(broken, range(4), VIT_B16, 4, 1, torch.device("cuda")))
    cpu = collect(pixel_batches(broken, range(4), VIT_B16, 4, 0))
    assert gpu[0] == cpu[0] == [0, 3] and gpu[2] == cpu[2]


@pytest.mark.gpu
@needs_cuda
def test_cuda_features_agree_across_decode_paths(demo_images, tmp_path):
    loaded = load_model(ModelSpec(arch="S3-Demo-Tiny", pretrained="none", device="cuda", precision="amp"))
    cache = EmbeddingCache(tmp_path / "cache")
    pil, _ = cached_image_features(loaded, demo_images, cache, batch_size=8, num_workers=2, decode="cpu")
    gpu, _ = cached_image_features(loaded, demo_images, cache, batch_size=8, num_workers=2, decode="gpu")
    assert gpu.meta["pixels"] == {"decoder": "nvjpeg", "resample": "torchvision-tensor", "autocast": "bfloat16",
                                  "compile": False, "channels_last": True}
    assert (gpu.features * pil.features).sum(dim=1).min() > 0.99  # bfloat16 autocast in both


@pytest.mark.slow
def test_compiled_tower_pads_short_batches_and_matches_eager(tiny):
    from s3.encoders.images import image_tower

    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        eager = image_tower(tiny, False, 4)(pixels)
        compiled = image_tower(tiny, True, 4)(pixels)  # padded to the compiled batch of 4
    assert compiled.shape == eager.shape == (3, 64)
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=0)


def test_the_prefetch_thread_keeps_order_and_contract_and_passes_errors_on(images, monkeypatch):
    positions = list(range(len(images)))
    direct = collect(gpu_pixel_batches(images, positions, VIT_B16, 3, 0, CPU))
    threaded = collect(gpu_pixel_batches(images, positions, VIT_B16, 3, 0, CPU, prefetch=2))
    assert threaded[0] == direct[0] and threaded[2] == direct[2] and torch.equal(threaded[1], direct[1])

    first = next(gpu_pixel_batches(images, positions, VIT_B16, 2, 0, CPU, prefetch=1))  # closed early: no hang
    assert first.indices.tolist() == [0, 1]

    def broken(*args, **kwargs):
        raise RuntimeError("device lost")

    monkeypatch.setattr(gpu_decode, "_to_pixels", broken)
    with pytest.raises(RuntimeError, match="device lost"):
        list(gpu_pixel_batches(images, positions, VIT_B16, 3, 0, CPU, prefetch=2))
