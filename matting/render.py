"""From a cached network matte to the final alpha, cutout and composite, at any output size.

Pure tensor work on the result's device (ops.py does the arithmetic). Radii in EdgeSettings are in working-
resolution pixels and are scaled with the output, so a screen-sized preview looks like the full render.
"""

from __future__ import annotations

import numpy as np
import torch

from . import foreground, ops
from .result import MatteResult
from .settings import Color, EdgeSettings

Background = Color | np.ndarray | torch.Tensor | None


def output_size(result: MatteResult, max_side: int | None) -> tuple[int, int]:
    """(H, W) of a render: the working resolution, or fitted within ``max_side`` for previews."""
    h, w = result.image.shape[:2]
    return (h, w) if max_side is None else ops.fit_size((h, w), max_side)


def photo_at(result: MatteResult, size_hw: tuple[int, int]) -> torch.Tensor:
    """The photo as (1, 3, H, W) float in [0, 1] at ``size_hw``; preview sizes are kept for the next render."""
    cached = result._previews.get(size_hw)
    if cached is not None:
        return cached
    photo = ops.to_float_image(result.image)
    if tuple(photo.shape[-2:]) != tuple(size_hw):
        photo = ops.resize(photo, size_hw, antialias=True).clamp_(0, 1)
        result._previews[size_hw] = photo
    return photo


def compute_alpha(result: MatteResult, settings: EdgeSettings, photo: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W) float alpha at the photo's size."""
    size_hw = tuple(photo.shape[-2:])
    scale = size_hw[0] / result.image.shape[0]
    if settings.refine:
        alpha = ops.fast_guided_filter(result.guide, result.matte, photo, settings.refine_radius, settings.refine_eps)
    else:
        alpha = ops.resize(result.matte, size_hw, antialias=False)
    alpha = alpha.clamp(0, 1)
    if settings.threshold > 0:
        alpha = ops.threshold(alpha, settings.threshold)
    radius = int(round(settings.erode * scale))
    if radius:
        alpha = ops.erode_dilate(alpha, radius)
    if settings.feather > 0:
        alpha = ops.feather(alpha, settings.feather * scale)
    if settings.use_input_alpha and result.input_alpha is not None:
        alpha = alpha * input_alpha_at(result, size_hw)
    return alpha


def input_alpha_at(result: MatteResult, size_hw: tuple[int, int]) -> torch.Tensor:
    own = result.input_alpha[None, None].float() / 255.0
    return own if tuple(own.shape[-2:]) == tuple(size_hw) else ops.resize(own, size_hw, antialias=True)


def background_tensor(background: Background, size_hw: tuple[int, int], device: torch.device) -> torch.Tensor | None:
    """None, an (r, g, b) colour 0..255, or an image (H, W, 3) uint8 -> (1, 3, H, W) float, or None."""
    if background is None:
        return None
    if isinstance(background, tuple):
        return torch.tensor(background, dtype=torch.float32, device=device).view(1, 3, 1, 1) / 255.0
    image = torch.as_tensor(background).to(device)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError("a background image must be (H, W, 3) or (H, W, 4)")
    image = ops.to_float_image(image[..., :3].contiguous())
    return ops.fit_background(image, size_hw)


def render_tensors(result: MatteResult, settings: EdgeSettings, background: Background = None,
                   max_side: int | None = None, want_rgba: bool = True):
    """Return (alpha uint8 (H, W), rgba uint8 (H, W, 4) or None, composite uint8 (H, W, 3) or None), on device."""
    size_hw = output_size(result, max_side)
    photo = photo_at(result, size_hw)
    alpha = compute_alpha(result, settings, photo)
    alpha_u8 = ops.to_uint8_hwc(alpha)[0, ..., 0]
    bg = background_tensor(background, size_hw, result.device)
    colour = photo
    if settings.decontaminate and (want_rgba or bg is not None):
        colour = foreground.decontaminate(photo, alpha)  # the soft edge's own colour, not the old background's
    rgba = None
    if want_rgba:
        colour_u8 = photo_u8(result, max_side) if colour is photo else ops.to_uint8_hwc(colour)[0]
        rgba = torch.cat((colour_u8, alpha_u8[..., None]), dim=-1)
    composite = None
    if bg is not None:
        composite = ops.to_uint8_hwc(ops.composite(colour, alpha, bg))[0]
    return alpha_u8, rgba, composite


def photo_u8(result: MatteResult, max_side: int | None = None) -> torch.Tensor:
    """The photo itself as (H, W, 3) uint8 at a render's size: the "before" of a before/after view."""
    size_hw = output_size(result, max_side)
    if tuple(result.image.shape[:2]) == tuple(size_hw):
        return result.image
    return ops.to_uint8_hwc(photo_at(result, size_hw))[0]
