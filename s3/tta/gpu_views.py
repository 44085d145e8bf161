"""TPT views from decoded ``uint8`` image tensors, with batched tensor ops on the model's device.

The tensor twin of ``s3.tta.views.make_views`` (``tta.augment_on: device``), fed by the GPU decode
path (``s3.encoders.gpu_decode.gpu_pixel_batches``: nvJPEG on CUDA, torchvision's CPU decoder on a
CPU device). Per image, of size ``H x W``:

* view 0: the model's preprocessing on the tensor (``TensorPreprocess``, as ``features.decode: gpu``);
* views 1..V-1: ``RandomResizedCrop(S)`` boxes (torchvision's own ``get_params``: scale
  ``(0.08, 1)``, ratio ``(3/4, 4/3)``, TPT's) and a horizontal flip with probability 1/2, drawn
  on the CPU from the image's seed ``(seed, position)`` exactly as the PIL path seeds them; all
  ``V - 1`` crops of the image are cut and resized by ONE ``torchvision.ops.roi_align`` call
  (bilinear samples, ``sampling_ratio`` adaptive: a crop larger than ``S`` averages
  ``ceil(crop / S)^2`` samples per output pixel, a box-filter antialias), rounded to ``uint8``, and
  flipped together;
* AugMix (severity 1, ``torchvision.transforms.v2.AugMix``) on each augmented view for the
  fine-grained sets. v2's AugMix applied to a batch draws its operations ONCE for the whole batch
  (only the mixing weights are per element), so it is applied view by view, each view drawing in
  turn from its image's generator: views stay independent as in TPT, at the price of one call per
  view (the cost ``bench/tta.py`` measures);
* ``/255`` and the model's ``Normalize``.

Every random draw happens inside ``torch.random.fork_rng`` seeded by ``(seed, position)`` only, so
the views of an image do not depend on the batch it is in, the order of the batch, or the global
generator; reruns on the same device are bit-identical. (torchvision's random transforms draw from
the process-wide generators, which ``fork_rng`` saves, seeds and restores around each image: on CUDA
the views are made in the decode thread of ``gpu_pixel_batches``, so the consumer, ``encode_views``,
must not draw random numbers meanwhile; it draws none.) AugMix's Dirichlet mixing weights are drawn
on the tensor's device (CUDA's generator on a GPU), so CUDA and CPU views differ in those draws.

Not bit-identical to the PIL path: the decoder (nvJPEG / libjpeg-turbo vs PIL), the resampling
(bilinear ``roi_align`` averaging vs PIL's bicubic with antialias) and the draw order differ (the
crop and flip draws of all views come before the AugMix draws). The views' cache key names the
augmenter (``augmenter_kind``), so CPU and tensor views never share a cache entry.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision import transforms as T
from torchvision.ops import roi_align
from torchvision.transforms import v2

from s3.encoders.gpu_decode import TensorPreprocess

__all__ = ["TensorViews", "image_seed", "SCALE", "RATIO"]

SCALE = (0.08, 1.0)  # torchvision's RandomResizedCrop defaults (TPT uses them)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


def image_seed(seed: int, position: int) -> int:
    """The seed image ``position`` draws its views from (shared with the PIL path)."""
    return seed * 1_000_003 + position


def _crop_size(preprocess) -> int:
    steps = list(getattr(preprocess, "transforms", []))
    size = next((s.size for s in steps if isinstance(s, T.CenterCrop)), (224, 224))
    return int(size[0] if isinstance(size, (tuple, list)) else size)


class TensorViews:
    """``(B, V, 3, S, S)`` float32 normalised views of B decoded images, on the images' device.

    Args:
        preprocess: the model's open_clip preprocessing (``loaded.preprocess``): view 0, ``S`` and the
            normalisation come from it.
        n_views: V, the original included.
        seed: base seed; image ``position`` draws from ``image_seed(seed, position)``.
        augmix: AugMix (severity 1) on top of crop + flip.
    """

    def __init__(self, preprocess, n_views: int, seed: int, augmix: bool) -> None:
        self.base = TensorPreprocess(preprocess)
        self.size = _crop_size(preprocess)
        self.n_views, self.seed = n_views, seed
        self.augmix = v2.AugMix(severity=1) if augmix else None

    def boxes(self, height: int, width: int, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V-1, 4)`` float32 crop boxes ``(x0, y0, x1, y1)`` in pixels and ``(V-1,)`` bool flips of one
        image, drawn from its seed (on the CPU, whatever the device)."""
        shape_only = torch.empty(1, 1, 1).expand(1, height, width)  # get_params reads the size only
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(image_seed(self.seed, position))
            return self._draw_boxes(shape_only)

    def _draw_boxes(self, shape_only: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, flips = [], []
        for _ in range(self.n_views - 1):
            top, left, h, w = T.RandomResizedCrop.get_params(shape_only, list(SCALE), list(RATIO))
            boxes.append((left, top, left + w, top + h))
            flips.append(bool(torch.rand(1) < 0.5))  # RandomHorizontalFlip's draw
        return torch.tensor(boxes, dtype=torch.float32), torch.tensor(flips)

    def augmented(self, image: torch.Tensor, position: int) -> torch.Tensor:
        """``(V-1, 3, S, S)`` uint8 augmented views of one ``(3, H, W)`` uint8 image."""
        device = image.device
        devices = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(image_seed(self.seed, position))  # seeds CUDA's generators too
            boxes, flips = self._draw_boxes(torch.empty(1, 1, 1).expand(1, *image.shape[-2:]))
            crops = roi_align(image[None].float(), [boxes.to(device)], output_size=self.size, spatial_scale=1.0,
                              sampling_ratio=-1, aligned=True)
            crops = crops.round_().clamp_(0, 255).to(torch.uint8)
            flips = flips.to(device)[:, None, None, None]
            crops = torch.where(flips, crops.flip(-1), crops)
            if self.augmix is not None:
                crops = torch.stack([self.augmix(view) for view in crops])
        return crops

    def __call__(self, images: Sequence[torch.Tensor], positions: Sequence[int]) -> torch.Tensor:
        """``(B, V, 3, S, S)`` float32 from B ``uint8`` ``(3, H_i, W_i)`` images and their positions."""
        if len(images) != len(positions):
            raise ValueError(f"{len(images)} images but {len(positions)} positions")
        originals = self.base(images)  # (B, 3, S, S) normalised
        if originals.shape[-1] != self.size or originals.shape[-2] != self.size:
            raise ValueError(f"the preprocessing gives {tuple(originals.shape[-2:])} pixels but its CenterCrop is "
                             f"{self.size}; the tensor augmenter needs a square centre crop")
        augmented = torch.stack([self.augmented(image, int(p)) for image, p in zip(images, positions)])
        views = self.base.finish(augmented.flatten(0, 1)).unflatten(0, augmented.shape[:2])
        return torch.cat([originals[:, None], views], dim=1)
