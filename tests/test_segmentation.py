"""Segmentation: mIoU against a hand-computed confusion matrix, dense variants, sliding windows,
the window cache (re-scoring without a forward pass, its key), the VOC/Context loaders on tiny
trees, and dataset verification."""

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import s3.segmentation.windows as windows_module
from s3.analysis.throughput import synthetic_text_side
from s3.core.metrics import confusion_matrix, segmentation_metrics
from s3.core.spaces import SpaceConfig
from s3.data.verify import verify_benchmark
from s3.demo.world import write_demo_voc
from s3.encoders.cache import EmbeddingCache
from s3.segmentation.datasets import IGNORE_INDEX, load_seg_benchmark, read_mask
from s3.segmentation.dense import VARIANTS, dense_features
from s3.segmentation.evaluate import evaluate_segmentation
from s3.segmentation.slide import (
    SlideConfig,
    predict,
    slide_scores,
    window_boxes,
    window_features,
)
from s3.segmentation.windows import window_images, window_plan


def test_miou_matches_a_hand_computed_confusion_matrix():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    confusion = confusion_matrix(prediction, target, 4)
    # rows = truth, columns = prediction; the 255 pixel is ignored; class 3 never appears.
    expected = torch.tensor([[1, 1, 0, 0], [0, 2, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(confusion, expected)
    metrics = segmentation_metrics(confusion)
    # IoU: class0 1/(2+2-1)=1/3, class1 2/(3+3-2)=1/2, class2 1/(2+2-1)=1/3, class3 absent -> None
    assert metrics["per_class_iou"][:3] == pytest.approx([100 / 3, 50, 100 / 3]) and metrics["per_class_iou"][3] is None
    assert metrics["miou"] == pytest.approx((100 / 3 + 50 + 100 / 3) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx(4 / 7 * 100)


def test_mask_labels_beyond_the_class_list_are_an_error():
    with pytest.raises(ValueError, match="wrong class list"):
        confusion_matrix(torch.tensor([0]), torch.tensor([7]), 3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_dense_variants_shapes(tiny, variant):
    pooled, patches = dense_features(tiny.model.visual, torch.randn(2, 3, 48, 32), variant)
    assert pooled.shape == (2, 64) and patches.shape == (2, 6, 4, 64)
    assert torch.isfinite(patches).all()


def test_vanilla_pooled_token_is_open_clips_image_embedding(tiny):
    images = torch.randn(3, 3, 32, 32)
    pooled, _ = dense_features(tiny.model.visual, images, "vanilla")
    with torch.no_grad():
        torch.testing.assert_close(pooled, tiny.model.encode_image(images), atol=1e-5, rtol=1e-5)


def test_modified_blocks_differ_from_vanilla(tiny):
    images = torch.randn(1, 3, 32, 32)
    _, vanilla = dense_features(tiny.model.visual, images, "vanilla")
    _, clear = dense_features(tiny.model.visual, images, "clearclip")
    assert not torch.allclose(vanilla, clear)


def test_window_boxes_cover_the_image_flush_to_the_border():
    boxes = window_boxes(300, 500, 224, 112)
    assert boxes[0] == (0, 0) and boxes[-1] == (300 - 224, 500 - 224)
    covered = np.zeros((300, 500), bool)
    for y, x in boxes:
        covered[y : y + 224, x : x + 224] = True
    assert covered.all()
    assert window_boxes(100, 100, 224, 112) == [(0, 0)]


def test_sliding_window_equals_whole_image_pass_when_the_window_covers_it(tiny):
    image = torch.randn(3, 32, 32)
    config = SlideConfig(variant="naclip", window=32, stride=16, short_side=32)
    boxes, features, padded = window_features(tiny, image, config)
    assert boxes == [(0, 0)]
    _, whole = dense_features(tiny.model.visual, image[None], "naclip")
    torch.testing.assert_close(features[0], torch.nn.functional.normalize(whole[0], dim=-1))
    classes = torch.nn.functional.normalize(torch.randn(5, 64), dim=-1)
    slid = slide_scores(boxes, features @ classes.T, padded, (32, 32), 32)
    direct = torch.nn.functional.interpolate((features[0] @ classes.T).permute(2, 0, 1)[None], size=(32, 32),
                                             mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(slid, direct)


def test_overlapping_windows_are_averaged():
    scores = torch.stack([torch.full((2, 2, 1), 1.0), torch.full((2, 2, 1), 3.0)])
    out = slide_scores([(0, 0), (0, 2)], scores, (4, 6), (4, 6), 4)
    assert out[0, 0, 0] == 1 and out[0, 0, 5] == 3 and out[0, 0, 3] == 2


def test_background_threshold():
    scores = torch.zeros(3, 2, 2)
    scores[1, 0, 0] = 0.5  # confident foreground class 1 at one pixel, uniform elsewhere
    labels = predict(scores, (2, 2), "threshold", threshold=0.9)
    assert labels.tolist() == [[1, 0], [0, 0]]
    assert predict(scores, (2, 2), "names", threshold=0.9).tolist() == [[1, 0], [0, 0]]


def write_tree(root, year, masks_dir, split, ids, values):
    folder = root / "VOCdevkit" / year
    for sub in ("JPEGImages", masks_dir, split.rsplit("/", 1)[0]):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i, value in zip(ids, values):
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(folder / "JPEGImages" / f"{i}.jpg")
        Image.fromarray(np.array(value, np.uint8)).save(folder / masks_dir / f"{i}.png")
    (folder / split).write_text("\n".join(ids) + "\n")


def test_voc_and_context_loaders_on_tiny_trees(tmp_path):
    write_tree(tmp_path, "VOC2012", "SegmentationClass", "ImageSets/Segmentation/val.txt", ["a", "b"],
               [np.array([[0, 15], [255, 20]]), np.zeros((2, 2))])
    write_tree(tmp_path, "VOC2010", "SegmentationClassContext", "ImageSets/SegmentationContext/val.txt", ["c"],
               [np.array([[0, 59], [1, 30]])])
    voc21, voc20 = load_seg_benchmark("voc21", tmp_path), load_seg_benchmark("voc20", tmp_path)
    assert len(voc21) == 2 and voc21.classnames[0] == "background" and voc21.classnames[15] == "person"
    assert len(voc20.classnames) == 20 and voc20.classnames[14] == "person" and voc20.bank_indices[0] == 1
    assert read_mask(voc21.masks[0], False).tolist() == [[0, 15], [255, 20]]
    assert read_mask(voc20.masks[0], True).tolist() == [[255, 14], [255, 19]]
    pc60, pc59 = load_seg_benchmark("context60", tmp_path), load_seg_benchmark("context59", tmp_path)
    assert len(pc60.classnames) == 60 and len(pc59.classnames) == 59 and pc59.classnames[-1] == "wood"
    assert read_mask(pc59.masks[0], True).tolist() == [[IGNORE_INDEX, 58], [0, 29]]


def test_verify_reports_segmentation_problems(tmp_path):
    missing = verify_benchmark(tmp_path, "voc21")
    assert not missing.found and "split file" in missing.problems[0] and "VOC2012" in missing.problems[0]
    write_demo_voc(tmp_path, num_images=3, num_train=0)
    folder = tmp_path / "VOCdevkit/VOC2012"
    (folder / "SegmentationClass/demo_val_0001.png").unlink()
    (folder / "JPEGImages/demo_val_0002.jpg").write_bytes(b"not a jpeg")
    report = verify_benchmark(tmp_path, "voc21")
    text = "\n".join(report.problems)
    assert "3 validation images, expected 1449" in text
    assert "1 of 3 validation masks are missing" in text and "demo_val_0001.png" in text
    assert "cannot be read" in text and "demo_val_0002.jpg" in text
    Image.fromarray(np.full((4, 4), 40, np.uint8)).save(folder / "SegmentationClass/demo_val_0000.png")
    assert "labels beyond the 21 classes" in "\n".join(verify_benchmark(tmp_path, "voc21").problems)


def test_slide_config_rejects_unknown_background():
    with pytest.raises(ValueError, match="'names', 'threshold' or 'none'"):
        SlideConfig(background="thresold")


SEG_METHODS = ["clip_single", "synonyms_max", "s3_point_to_center", "s3_point_to_local_center"]
SMALL = SlideConfig(variant="naclip", short_side=48, window=32, stride=16)  # 48x48 images: 4 windows each


def small_voc(root, num_images=3):
    write_demo_voc(root, num_images=num_images, num_train=0)
    return load_seg_benchmark("voc21", root)


def text_side(**spaces):
    """21 classes (VOC's labels) of synthetic synonym embeddings in the tiny model's 64 dimensions."""
    return synthetic_text_side([4] * 21, 64, SpaceConfig(**spaces), seed=3, background=True)[0]


def segment(tiny, dataset, text, cache=None):
    confusions, _ = evaluate_segmentation(tiny, dataset, text, SEG_METHODS, SMALL, cache=cache, shard_size=2)
    return confusions


def assert_same(a, b, methods=SEG_METHODS):
    for method in methods:
        assert torch.equal(a[method], b[method]), method


def refuse_forward(monkeypatch, tiny):
    def forward(*args, **kwargs):
        raise RuntimeError("forward pass of the image tower")

    monkeypatch.setattr(tiny.model.visual.conv1, "forward", forward)


def test_a_spaces_change_rescores_from_the_window_cache_without_a_forward_pass(tiny, tmp_path, monkeypatch):
    dataset = small_voc(tmp_path / "data")
    cache = EmbeddingCache(tmp_path / "cache", "window cache")
    narrow, wide = text_side(radius_rule="global", epsilon=0.05), text_side(radius_rule="global", epsilon=0.3)
    uncached = segment(tiny, dataset, narrow)
    assert_same(segment(tiny, dataset, narrow, cache), uncached)  # cold cache: same as no cache at all
    shards = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.pt")}
    assert len(shards) == 2  # 3 images, 2 per shard

    refuse_forward(monkeypatch, tiny)
    with pytest.raises(RuntimeError, match="forward pass"):
        segment(tiny, dataset, wide)  # without the cache the patched tower is reached
    assert [len(s.kept) for s in narrow.spaces] == [1] * 21 and [len(s.kept) for s in wide.spaces] == [4] * 21
    rescored = segment(tiny, dataset, wide, cache)  # from the cache: completes
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.pt")} == shards
    monkeypatch.undo()

    assert_same(rescored, segment(tiny, dataset, wide))  # equal to a fresh run with the new spaces
    assert_same(rescored, uncached, ["clip_single", "synonyms_max"])  # these do not read the spaces
    assert any(not torch.equal(rescored[m], uncached[m]) for m in ("s3_point_to_center", "s3_point_to_local_center"))


def test_window_cache_resumes_from_its_complete_shards_and_rebuilds_a_corrupt_one(tiny, tmp_path, monkeypatch):
    dataset = small_voc(tmp_path / "data", num_images=5)
    cache = EmbeddingCache(tmp_path / "cache", "window cache")
    text = text_side()
    expected = segment(tiny, dataset, text)
    segment(tiny, dataset, text, cache)
    plan = window_plan(cache, tiny, window_images(dataset, len(dataset)), SMALL, 2)
    plan.path(1).write_bytes(plan.path(1).read_bytes()[:100])  # torn: images 2 and 3
    plan.path(2).unlink()  # gone: image 4
    encoded = []
    real = windows_module.window_features

    def counting(loaded, image, config):
        encoded.append(tuple(image.shape))
        return real(loaded, image, config)

    monkeypatch.setattr(windows_module, "window_features", counting)
    assert_same(segment(tiny, dataset, text, cache), expected)
    assert len(encoded) == 3 and plan.missing() == []


def test_window_cache_key_covers_the_window_settings_and_not_the_class_side(tiny, tmp_path):
    dataset = small_voc(tmp_path / "data", num_images=4)
    images = window_images(dataset, len(dataset))
    cache = EmbeddingCache(tmp_path / "cache")

    def keys(config, loaded=tiny):
        return window_plan(cache, loaded, images, config, 2).keys

    base = keys(SMALL)
    for changed in (dict(window=16), dict(stride=8), dict(short_side=64), dict(variant="clearclip"),
                    dict(variant="vanilla"), dict(naclip_sigma=2.0)):
        other = keys(replace(SMALL, **changed))
        assert all(a != b for a, b in zip(base, other)), changed
    for scoring_only in (dict(background="threshold"), dict(bg_threshold=0.9), dict(batch_size=1)):
        assert keys(replace(SMALL, **scoring_only)) == base, scoring_only
    vanilla = replace(SMALL, variant="vanilla")
    assert keys(replace(vanilla, naclip_sigma=2.0)) == keys(vanilla)  # sigma is NACLIP's only
    gelu = replace(tiny, spec=replace(tiny.spec, activation="quick_gelu"))
    assert gelu.spec.identity != tiny.spec.identity and all(a != b for a, b in zip(keys(SMALL, gelu), base))
    # one replaced image changes its own shard's key only; voc20 reads voc21's images and windows
    stat = os.stat(images.paths[3])
    os.utime(images.paths[3], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert keys(SMALL)[0] == base[0] and keys(SMALL)[1] != base[1]
    voc20 = window_images(load_seg_benchmark("voc20", tmp_path / "data"), len(dataset))
    assert window_plan(cache, tiny, voc20, SMALL, 2).path(0) == window_plan(cache, tiny, images, SMALL, 2).path(0)


def test_float16_windows_under_autocast_rescore_exactly_like_a_fresh_run(tiny, tmp_path, monkeypatch):
    """Under bfloat16 autocast (a GPU run) the windows are stored in float16, and a fresh run scores
    the same float16 features; an fp32 model keeps float32 (nothing rounded)."""
    dataset = small_voc(tmp_path / "data", num_images=2)
    images = window_images(dataset, len(dataset))
    cache = EmbeddingCache(tmp_path / "cache")
    assert windows_module.window_dtype(tiny) == torch.float32
    fp32_keys = window_plan(cache, tiny, images, SMALL, 2).keys
    monkeypatch.setattr(windows_module, "window_dtype", lambda loaded: torch.float16)
    assert window_plan(cache, tiny, images, SMALL, 2).keys != fp32_keys
    text = text_side()
    assert_same(segment(tiny, dataset, text, cache), segment(tiny, dataset, text))
    (stored,) = [p for p in (tmp_path / "cache").rglob("*.pt")]
    rows = window_plan(cache, tiny, images, SMALL, 2).load(0)
    assert stored.is_file() and {w.dtype for w in rows["windows"]} == {torch.float16}
    assert [tuple(w.shape) for w in rows["windows"]] == [(4, 4, 4, 64)] * 2 and rows["size"].tolist() == [[48, 48]] * 2
