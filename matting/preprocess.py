"""From decoded pixels to the network's input, on the pipeline's device.

The seed project lost most of its time here (Pillow LANCZOS on the full photo). Downscaling happens in one
antialiased pass straight from uint8, on the GPU when there is one; only the 320 x 320 result becomes float.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import ops
from .host_copy import upload
from .models.registry import ModelSpec


def shrink_u8(image: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Antialiased downscale of an (H, W, C) uint8 image, returning uint8 (H', W', C)."""
    if tuple(image.shape[:2]) == tuple(size_hw):
        return image
    if image.device.type == "cpu":
        # OpenCV's area interpolation is the fastest exact box-average downscale on the CPU.
        out = cv2.resize(image.numpy(), (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(out.reshape(size_hw[0], size_hw[1], -1))
    x = image.permute(2, 0, 1)[None].half()
    x = F.interpolate(x, size=size_hw, mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)[0].permute(1, 2, 0).contiguous()


def network_input(images: list[torch.Tensor], spec: ModelSpec, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (guide, x): guide (B, 3, h, w) float32 in [0, 1] at the model's size, x the normalised input."""
    small = [shrink_u8(image, spec.input_hw) for image in images]
    guide = ops.to_float_image(torch.stack(small)) if small else torch.zeros(0, 3, *spec.input_hw)
    x = ops.normalize_for_model(guide, spec.mean, spec.std, scale_by_max=spec.scale_by_max)
    return guide, x.to(dtype)


def place_image(array: np.ndarray | torch.Tensor | None, working: tuple[int, int], device: torch.device,
                reduce_on_host: bool = False) -> torch.Tensor | None:
    """A decoded (H, W) or (H, W, C) uint8 image as an (h, w, C) tensor on ``device`` at the working size (w, h):
    reduced after the upload (on a GPU, the fast way) or, with ``reduce_on_host``, before it (less device memory)."""
    if array is None:
        return None
    size_hw = (working[1], working[0])
    if isinstance(array, torch.Tensor):  # decoded on the GPU already (decode_device.py)
        if not reduce_on_host:
            return shrink_u8(upload(array, device), size_hw)
        array = array.cpu().numpy()
    if array.ndim == 2:
        array = array[..., None]
    if reduce_on_host:
        array = shrink_u8(torch.from_numpy(np.ascontiguousarray(array)), size_hw).numpy()
    return shrink_u8(as_tensor_image(array, device), size_hw)


def as_tensor_image(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A decoded (H, W, C) uint8 numpy image on ``device`` (pinned, async upload on CUDA: host_copy.upload)."""
    return upload(np.ascontiguousarray(array), device)
