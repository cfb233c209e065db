"""JPEGs decoded on the GPU (nvJPEG through torchvision), for the batch engine on CUDA (issue 17).

A CPU core spends about 5-8 ms decoding a 1 MP camera JPEG (40 ms at 8 MP); nvJPEG decodes a batch of them in
0.17 ms per image and leaves the pixels where the network and the render need them, so the 3 MB of RGB per
image never crosses to the GPU either. Opt-in: ``MATTING_JPEG_DECODER=device``. On the H200 with 16 cores it made
the batch slower (two engines: 402.8 against 501.6 images/s once started, docs/BENCHMARKS.md, session 23):
torchvision's decoder waits for its stream twice per call under a process-wide lock, in the inference thread that
limits the run, and its first call takes some 6 s. It is for hosts with few cores beside their GPU.

Which JPEGs: only the plain ones (decode.plain_jpeg_header: baseline YCbCr, upright, one frame, complete).
Everything else (PNG, WebP, CMYK, grey, progressive, EXIF-rotated, damaged) is decoded on the CPU exactly as
before, with the same errors; so is a JPEG that nvJPEG refuses or decodes to another size.

Not the same picture, pixel for pixel: nvJPEG upsamples the chroma of 4:2:0 JPEGs differently from libjpeg
(OpenCV): 0.34 levels on average, up to 55 on sharp colour edges (scripts/compare_gpu_jpeg.py), and the
refinement, guided by the full-resolution photo, turns that into alpha differences of up to 96 levels at a few
edge pixels.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .decode import DecodedImage, ImageHeader, plain_jpeg_header

log = logging.getLogger(__name__)

JPEG_DECODER_ENV = "MATTING_JPEG_DECODER"   # "device": plain JPEGs decoded on the GPU; "cpu" (default)


@dataclass
class PendingJpeg:
    """A JPEG the decode stage has read and checked, left for the GPU to decode with its network batch."""

    data: bytes
    header: ImageHeader
    name: str | None = None


def jpeg_on_device(device) -> bool:
    """Whether a batch on ``device`` decodes its plain JPEGs on the GPU: asked for, on CUDA, and torchvision's
    nvJPEG decoder is there (it is not a requirement: without it, the CPU decodes, as by default, and the log says
    why, once)."""
    if os.environ.get(JPEG_DECODER_ENV, "cpu") != "device":
        return False
    if getattr(device, "type", str(device)) != "cuda":
        _say_once(f"{JPEG_DECODER_ENV}=device needs a CUDA GPU; JPEGs are decoded on the CPU")
        return False
    if _nvjpeg() is None:
        _say_once(f"{JPEG_DECODER_ENV}=device needs torchvision with nvJPEG (pip install torchvision matching "
                  "torch); JPEGs are decoded on the CPU")
        return False
    return True


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.warning(message)


_said: set[str] = set()


def pending_jpeg(data: bytes, max_pixels: int, name: str | None = None) -> PendingJpeg | None:
    """``data`` as a JPEG for the GPU, or None when the CPU must decode it (see the module doc)."""
    header = plain_jpeg_header(data, max_pixels=max_pixels)
    return None if header is None else PendingJpeg(data, header, name)


def decode_pending(pending: list[PendingJpeg], device: torch.device,
                   decode_batch: Callable | None = None) -> list[DecodedImage | None]:
    """Each pending JPEG as an upright RGB image, its pixels a (H, W, 3) uint8 tensor on ``device``, in one batched
    call; None for one that must go to the CPU instead (refused, or a size other than its header's). When the
    batched call fails, each image is tried on its own, so one bad file costs only itself.
    ``decode_batch``: list of uint8 byte tensors -> list of (3, H, W) tensors (default: torchvision's nvJPEG)."""
    decode_batch = decode_batch or _nvjpeg_batch(device)
    encoded = [torch.frombuffer(bytearray(p.data), dtype=torch.uint8) for p in pending]
    try:
        planes = list(decode_batch(encoded))
    except Exception:  # noqa: BLE001 - find the file at fault: one by one
        planes = [_one(decode_batch, data) for data in encoded]
    out: list[DecodedImage | None] = []
    for job, chw in zip(pending, planes):
        size = (job.header.width, job.header.height)
        if chw is None or chw.ndim != 3 or chw.shape[0] != 3 or (chw.shape[2], chw.shape[1]) != size:
            out.append(None)
            continue
        out.append(DecodedImage(rgb=chw.permute(1, 2, 0).contiguous(), alpha=None, format="JPEG", name=job.name))
    return out


def _one(decode_batch: Callable, data: torch.Tensor):
    try:
        return decode_batch([data])[0]
    except Exception:  # noqa: BLE001 - the CPU decodes it, with its own error if the file is bad
        return None


def _nvjpeg():
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception:  # noqa: BLE001 - not installed, or built without image support
        return None
    return decode_jpeg, ImageReadMode


def _nvjpeg_batch(device: torch.device) -> Callable:
    decode_jpeg, mode = _nvjpeg()

    def decode(encoded: list[torch.Tensor]) -> list[torch.Tensor]:
        return decode_jpeg(encoded, mode=mode.RGB, device=device)

    return decode
