"""Pixels decoded and preprocessed on the model's device: the ``features.decode: gpu`` source.

Same contract as ``s3.encoders.images.pixel_batches`` (``PixelBatch``: positions, pixels, failed),
so ``encode_images`` consumes either. The work is split so that the model stays the bottleneck:

* DataLoader workers only read each file's bytes (JPEGs stay encoded); a file that is not a
  complete JPEG stream (PNG, or a truncated JPEG) is decoded there by PIL to ``uint8`` RGB (the CPU
  path's decoder), and one PIL cannot read is reported with PIL's reason.
* A background thread decodes each batch of JPEGs with torchvision's batched nvJPEG decoder
  (``decode_jpeg(..., device='cuda')``) on a side CUDA stream, then applies the model's own
  open_clip preprocessing to the ``uint8`` tensors, images of equal size together: shortest-side
  resize (torchvision's tensor kernel: bicubic with antialias, rounded to ``uint8`` as PIL does),
  center crop, ``/255``, mean/std. The model's stream waits for that stream's event, so decoding
  batch k+1 overlaps the forward pass of batch k.
* A batch that nvJPEG refuses is decoded image by image; an image that it still refuses (CMYK,
  unusual subsampling, a damaged stream) is decoded by PIL; one that PIL cannot read either is
  reported as failed with PIL's reason, exactly like the CPU path.

On a CPU device the same code runs with torchvision's CPU JPEG decoder (tests, smoke runs). The
pixels differ from the PIL path by the decoder's IDCT and the resampling arithmetic (a few
``uint8`` levels, ``tests/test_gpu_decode.py`` states the tolerance), so features from the two
paths are never mixed: the decode path is part of the feature cache key
(``s3.encoders.images.pixel_pipeline``).

torchvision 0.29 deprecates its image decoders (``torchvision.io``) in favour of TorchCodec 0.16's
``torchcodec.decoders.decode_jpeg`` (same call, CPU and CUDA) and warns with a DeprecationWarning,
which Python shows only in ``__main__`` (and pytest). TorchCodec is not a dependency yet and the GPU
machines' image has torchvision 0.26 without it; moving to it is a one-line change here.
"""

from __future__ import annotations

import io
import queue
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import CenterCrop, Normalize, Resize, ToTensor

from s3.data.benchmarks import ImageList
from s3.errors import S3Error

__all__ = ["DecodeError", "TensorPreprocess", "gpu_pixel_batches", "is_jpeg", "nvjpeg_problem"]

_JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"
_SKIPPED = ("MaybeConvertMode",)  # PIL-only steps: a decoded tensor is RGB already


class DecodeError(S3Error):
    """The GPU decode path cannot reproduce the model's preprocessing, or nvJPEG is unusable."""


def is_jpeg(data: bytes | memoryview) -> bool:
    """Whether ``data`` is a complete JPEG stream: a start-of-image marker first and an end-of-image
    marker near the end (some writers append bytes after it). A truncated stream goes to PIL, which
    refuses it as the CPU path does, where a GPU decoder might return a partly grey image."""
    return bytes(data[:3]) == _JPEG_MAGIC and _JPEG_END in bytes(data[-1024:])


class TensorPreprocess:
    """The model's open_clip preprocessing, applied to ``uint8`` ``(3, H, W)`` tensors on any device.

    Reads the steps off ``loaded.preprocess`` (a torchvision ``Compose``): ``Resize`` and
    ``CenterCrop`` run as they are (torchvision applies them to tensors with the same size
    arithmetic as to PIL images: open_clip's default shortest-side resize and its ``squash``
    resize); the conversion to float becomes ``/255``; ``Normalize`` runs as it is. Any other step
    (e.g. open_clip's aspect-keeping ``longest`` resize) is refused, since the tensor path could not
    mirror it.
    """

    def __init__(self, preprocess: Callable) -> None:
        steps = list(getattr(preprocess, "transforms", []))
        self.geometry: list[Callable] = []
        self.normalize: Normalize | None = None
        for step in steps:
            name = type(step).__name__
            if isinstance(step, (Resize, CenterCrop)) and self.normalize is None:
                self.geometry.append(step)
            elif isinstance(step, ToTensor) or name in _SKIPPED:
                continue
            elif isinstance(step, Normalize):
                self.normalize = step
            else:
                raise DecodeError(f"features.decode: gpu cannot reproduce the preprocessing step {step!r} of this "
                                  "model; set features.decode to cpu")
        fixed_size = any(isinstance(s, CenterCrop) or (isinstance(s, Resize) and isinstance(s.size, (tuple, list))
                                                       and len(s.size) == 2) for s in self.geometry)
        if self.normalize is None or not fixed_size:
            raise DecodeError(f"features.decode: gpu needs a preprocessing with a fixed output size and Normalize, "
                              f"got {preprocess!r}; set features.decode to cpu")

    def resize_crop(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` or ``(3, H, W)`` ``uint8`` -> cropped ``uint8`` of the model's input size."""
        for step in self.geometry:
            images = step(images)
        return images

    def finish(self, crops: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` ``uint8`` crops -> ``(B, 3, h, w)`` float32 normalised pixels."""
        return self.normalize(crops.float().div_(255))

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(B, 3, h, w)`` float32 from B ``uint8`` ``(3, H_i, W_i)`` images; equal sizes are resized together."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(tuple(image.shape), []).append(i)
        crops: list[torch.Tensor | None] = [None] * len(images)
        for members in groups.values():
            batch = self.resize_crop(torch.stack([images[i] for i in members]))
            for i, crop in zip(members, batch):
                crops[i] = crop
        return self.finish(torch.stack(crops))


class _Encoded(NamedTuple):
    """One batch as the workers hand it over: JPEG bytes, CPU-decoded images, failures."""

    jpeg_positions: list[int]
    jpegs: list[torch.Tensor]          # 1-D uint8 encoded streams
    raw_positions: list[int]
    raws: list[torch.Tensor]           # (3, H, W) uint8, decoded by PIL in a worker
    failed: list[tuple[int, str]]

    def pin_memory(self) -> "_Encoded":
        return self._replace(jpegs=[t.pin_memory() for t in self.jpegs], raws=[t.pin_memory() for t in self.raws])


def _pil_rgb(path: Path) -> torch.Tensor:
    """``(3, H, W)`` uint8 RGB, decoded by PIL exactly as the CPU path opens files."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


class _FileBytes(Dataset):
    """Reads one file; a JPEG stays encoded, anything else is decoded by PIL here."""

    def __init__(self, images: ImageList, positions: Sequence[int]) -> None:
        self.images, self.positions = images, list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[int, str, torch.Tensor | str]:
        position = self.positions[i]
        try:
            path = self.images.paths[position]
            data = path.read_bytes()
            if is_jpeg(data):
                return position, "jpeg", torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return position, "raw", _pil_rgb(path)
        except (OSError, ValueError, SyntaxError) as error:  # as the CPU path: PIL raises all three
            return position, "failed", f"{type(error).__name__}: {error}"


def _collate(items: list[tuple[int, str, torch.Tensor | str]]) -> _Encoded:
    pick = lambda kind: [(p, x) for p, k, x in items if k == kind]  # noqa: E731
    jpegs, raws = pick("jpeg"), pick("raw")
    return _Encoded([p for p, _ in jpegs], [x for _, x in jpegs], [p for p, _ in raws], [x for _, x in raws],
                    [(p, x) for p, x in pick("failed")])


def _decode_jpegs(streams: list[torch.Tensor], paths: list[Path], device: torch.device) -> list[torch.Tensor | str]:
    """Each stream decoded to ``(3, H, W)`` uint8 on ``device``, or PIL's reason for refusing its file."""
    if not streams:
        return []
    try:
        return list(decode_jpeg(streams, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:  # one bad stream fails the batch: find it
        pass
    decoded: list[torch.Tensor | str] = []
    for stream, path in zip(streams, paths):
        try:
            decoded.append(decode_jpeg(stream, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            try:  # nvJPEG/libjpeg refused it: PIL is more lenient (and is the CPU path's decoder)
                decoded.append(_pil_rgb(path).to(device, non_blocking=True))
            except (OSError, ValueError, SyntaxError) as error:
                decoded.append(f"{type(error).__name__}: {error}")
    return decoded


def _to_pixels(encoded: _Encoded, images: ImageList, transform: Callable, device: torch.device,
               channels_last: bool):
    """Decode and preprocess one batch on ``device``: a ``PixelBatch`` (positions ascending);
    ``transform(decoded, positions)`` maps the ``uint8`` images to the batch's pixels."""
    from s3.encoders.images import PixelBatch  # images imports this module

    decoded = _decode_jpegs(encoded.jpegs, [images.paths[p] for p in encoded.jpeg_positions], device)
    failed = list(encoded.failed) + [(p, d) for p, d in zip(encoded.jpeg_positions, decoded) if isinstance(d, str)]
    good = [(p, d) for p, d in zip(encoded.jpeg_positions, decoded) if not isinstance(d, str)]
    good += [(p, r.to(device, non_blocking=True)) for p, r in zip(encoded.raw_positions, encoded.raws)]
    good.sort(key=lambda item: item[0])
    indices = torch.tensor([p for p, _ in good], dtype=torch.long)
    if not good:
        return PixelBatch(indices, torch.zeros(0), sorted(failed))
    pixels = transform([image for _, image in good], [p for p, _ in good])
    if channels_last:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    return PixelBatch(indices, pixels, sorted(failed))


def nvjpeg_problem(device: torch.device) -> str | None:
    """Why nvJPEG cannot decode on ``device`` (None when it can): decodes a tiny JPEG there."""
    if device.type != "cuda":
        return f"the model runs on {device.type}, not CUDA"
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(buffer, format="JPEG")
    try:
        decode_jpeg(torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8), device=device)
    except RuntimeError as error:
        return str(error).splitlines()[0]
    return None


def _threaded(batches: Iterator[_Encoded], produce: Callable, device: torch.device, depth: int) -> Iterator:
    """Run ``produce`` on the batches in a background thread, ``depth`` batches ahead of the consumer;
    on CUDA on a side stream whose event the consumer's stream waits for."""
    cuda = device.type == "cuda"
    side = torch.cuda.Stream(device) if cuda else None
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(item: tuple) -> bool:
        """Queue ``item`` unless the consumer has gone away; whether it was queued."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            with ExitStack() as context:
                if cuda:
                    context.enter_context(torch.cuda.device(device))
                    context.enter_context(torch.cuda.stream(side))
                for encoded in batches:
                    batch = produce(encoded)
                    event = torch.cuda.Event() if cuda else None
                    if event is not None:
                        event.record(side)
                    if not offer((batch, event)):
                        return
            offer((done, None))
        except BaseException as error:  # noqa: BLE001  (handed to the consumer, which re-raises it)
            offer((error, None))

    thread = threading.Thread(target=work, name="s3-gpu-decode", daemon=True)
    thread.start()
    try:
        while True:
            batch, event = ready.get()
            if batch is done:
                return
            if isinstance(batch, BaseException):
                raise batch
            if event is not None:
                stream = torch.cuda.current_stream(device)
                stream.wait_event(event)
                if batch.pixels.is_cuda:
                    batch.pixels.record_stream(stream)  # allocated on the side stream, used and freed on this one
            yield batch
    finally:
        stop.set()
        thread.join(timeout=10)


def gpu_pixel_batches(images: ImageList, positions: Sequence[int], preprocess: Callable, batch_size: int,
                      num_workers: int, device: torch.device, channels_last: bool | None = None,
                      prefetch: int | None = None, transform: Callable | None = None) -> Iterator:
    """``PixelBatch``es of the images at ``positions``, in order, decoded and preprocessed on ``device``.

    Args:
        preprocess: the model's open_clip preprocessing (``loaded.preprocess``), mirrored on tensors.
        num_workers: DataLoader workers reading the files (and decoding the non-JPEGs).
        channels_last: pixels in channels-last memory order (default: on CUDA).
        prefetch: batches decoded ahead in a background thread (default: 2 on CUDA, 0 on the CPU,
            where decoding and the model share the same cores).
        transform: ``transform(decoded, positions)``: the ``uint8`` ``(3, H_i, W_i)`` images of a batch
            on ``device`` and their positions -> the batch's pixels (default: ``TensorPreprocess``
            of ``preprocess``, ``(B, 3, h, w)``; the test-time views: ``(B, V, 3, h, w)``, where
            channels-last does not apply).

    Yields:
        ``PixelBatch`` with ``pixels`` ``(B, 3, h, w)`` float32 on ``device``.
    """
    device = torch.device(device)
    if transform is None:
        tensor_preprocess = TensorPreprocess(preprocess)
        transform = lambda decoded, _positions: tensor_preprocess(decoded)  # noqa: E731
    cuda = device.type == "cuda"
    channels_last = cuda if channels_last is None else channels_last
    prefetch = (2 if cuda else 0) if prefetch is None else prefetch
    loader = DataLoader(_FileBytes(images, positions), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_collate, pin_memory=cuda, persistent_workers=False)
    produce = lambda encoded: _to_pixels(encoded, images, transform, device, channels_last)  # noqa: E731
    if not prefetch:
        for encoded in loader:
            yield produce(encoded)
        return
    yield from _threaded(iter(loader), produce, device, prefetch)
