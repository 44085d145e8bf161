"""Published reference numbers to check the harness against.

CLIP ViT-B/16 with OpenAI weights, single template ``a photo of a {}.``, CoOp splits, top-1 %, as
widely reported by the test-time adaptation papers (TPT protocol). A correct harness with the
same weights lands within about a point of these.
"""

from __future__ import annotations

__all__ = ["REFERENCE_ARCH", "REFERENCE_PRETRAINED", "CLIP_SINGLE_TEMPLATE_ACC1", "TOLERANCE"]

REFERENCE_ARCH = "ViT-B-16"
REFERENCE_PRETRAINED = "openai"
TOLERANCE = 1.0  # points of top-1 accuracy

CLIP_SINGLE_TEMPLATE_ACC1: dict[str, float] = {
    "imagenet": 66.73,
    "imagenet_a": 47.87,
    "imagenet_v2": 60.86,
    "imagenet_r": 73.98,
    "imagenet_sketch": 46.09,
    "fgvc_aircraft": 23.67,
    "caltech101": 93.35,
    "stanford_cars": 65.48,
    "dtd": 44.27,
    "eurosat": 42.01,
    "oxford_flowers": 67.44,
    "food101": 83.65,
    "oxford_pets": 88.25,
    "sun397": 62.59,
    "ucf101": 65.13,
}
