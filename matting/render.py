"""From a cached network matte to the final alpha, cutout and composite, at any output size.

Pure tensor work on the result's device (matting/ops does the arithmetic). Radii in EdgeSettings are in working-
resolution pixels and are scaled with the output, so a screen-sized preview looks like the full render.
"""

from __future__ import annotations

import numpy as np
import torch

from . import foreground, ops
from .errors import InvalidParameterError
from .host_copy import upload
from .result import MatteResult
from .settings import Color, EdgeSettings, parse_color

Background = Color | np.ndarray | torch.Tensor | None


def output_hw(result: MatteResult, max_side: int | None) -> tuple[int, int]:
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


def compute_alpha(result: MatteResult, settings: EdgeSettings, photo: torch.Tensor,
                  hints: np.ndarray | None, keep_soft: bool, coefficients=None) -> torch.Tensor:
    """(1, 1, H, W) float alpha at the photo's size; ``hints`` a hint mask (hints.py) of any size; ``keep_soft``
    (previews) keeps the soft matte with the result for the next render (soft_at); ``coefficients``: see
    soft_alpha."""
    alpha = shape_edges(soft_at(result, settings, photo, keep_soft, coefficients), settings,
                        photo.shape[-2] / result.image.shape[0], hints_at(hints, tuple(photo.shape[-2:]), photo.device))
    if settings.use_input_alpha and result.input_alpha is not None:
        alpha = alpha * input_alpha_at(result, tuple(photo.shape[-2:]))
    return alpha


def alpha_from(guide: torch.Tensor, matte: torch.Tensor, photo: torch.Tensor, settings: EdgeSettings,
               scale: float, hints: torch.Tensor | None = None, coefficients=None) -> torch.Tensor:
    """(B, 1, H, W) float alpha from network mattes (B, 1, h, w), their guides and the photos (B, 3, H, W);
    ``scale`` is the render's size over the working size (radii in settings are in working pixels);
    ``coefficients``: see soft_alpha."""
    return shape_edges(soft_alpha(guide, matte, photo, settings, coefficients), settings, scale, hints)


def hints_at(hints: np.ndarray | None, size_hw: tuple[int, int], device: torch.device) -> torch.Tensor | None:
    """A hint mask (H, W) uint8 as (1, 1, h, w) at a render's size: nearest, since hints are labels."""
    if hints is None:
        return None
    mask = upload(np.ascontiguousarray(hints), device)[None, None]
    if tuple(mask.shape[-2:]) != tuple(size_hw):
        mask = torch.nn.functional.interpolate(mask, size=size_hw, mode="nearest-exact")
    return mask


def soft_alpha(guide: torch.Tensor, matte: torch.Tensor, photo: torch.Tensor, settings: EdgeSettings,
               coefficients=None) -> torch.Tensor:
    """The matte at the photo's size before any edge setting: refined by the photo (or just resized), in [0, 1].
    The web page redraws threshold, erode and feather from this while a slider moves (demo/live_edges.js).
    ``coefficients``: the refinement's captured graphs, when the caller has them (matting.refine_graphs)."""
    size_hw = tuple(photo.shape[-2:])
    if settings.refine:
        alpha = ops.fast_guided_filter(guide, matte, photo, settings.refine_radius, settings.refine_eps,
                                       coefficients)
    else:
        alpha = ops.resize(matte, size_hw, antialias=False)
    return alpha.clamp(0, 1)


def soft_at(result: MatteResult, settings: EdgeSettings, photo: torch.Tensor, keep: bool,
            coefficients=None) -> torch.Tensor:
    """``soft_alpha`` of ``result`` at the photo's size. With ``keep`` (a preview: screen-sized, so a few MB)
    it is kept with the result, one per size, for the latest refinement settings: releasing a threshold, feather
    or erode slider then re-renders only the edges, not the guided filter. Callers never modify it in place."""
    if not keep:   # full-size downloads: once per setting, and too large to keep
        return soft_alpha(result.guide, result.matte, photo, settings, coefficients)
    size_hw = tuple(photo.shape[-2:])
    key = (True, settings.refine_radius, settings.refine_eps) if settings.refine else (False,)
    kept = result._previews.get(("soft", size_hw))
    if kept is not None and kept[0] == key:
        return kept[1]
    soft = soft_alpha(result.guide, result.matte, photo, settings, coefficients)
    result._previews[("soft", size_hw)] = (key, soft)
    return soft


def shape_edges(alpha: torch.Tensor, settings: EdgeSettings, scale: float,
                hints: torch.Tensor | None = None) -> torch.Tensor:
    """Threshold, then erode/dilate, then the touch-up hints (hints.py: 0 erases, 255 restores; uint8 at the
    alpha's size), then feather, in that order; radii scaled by ``scale`` (render over working size).
    demo/live_edges.js does the same steps in the browser: change both together."""
    if settings.threshold > 0:
        alpha = ops.threshold(alpha, settings.threshold)
    radius = int(round(settings.erode * scale))
    if radius:
        alpha = ops.erode_dilate(alpha, radius)
    if hints is not None:
        alpha = torch.where(hints == 0, 0.0, torch.where(hints == 255, 1.0, alpha))
    if settings.feather > 0:
        alpha = ops.feather(alpha, settings.feather * scale)
    return alpha


def soft_alpha_tensors(result: MatteResult, settings: EdgeSettings, max_side: int | None = None, coefficients=None):
    """(soft alpha uint8 (H, W), the upload's own alpha uint8 (H, W) or None), on device, at a render's size."""
    photo = photo_at(result, output_hw(result, max_side))
    soft = soft_at(result, settings, photo, keep=max_side is not None, coefficients=coefficients)
    own = None
    if settings.use_input_alpha and result.input_alpha is not None:
        own = ops.to_uint8_hwc(input_alpha_at(result, tuple(photo.shape[-2:])))[0, ..., 0]
    return ops.to_uint8_hwc(soft)[0, ..., 0], own


def input_alpha_at(result: MatteResult, size_hw: tuple[int, int]) -> torch.Tensor:
    own = result.input_alpha[None, None].float() / 255.0
    return own if tuple(own.shape[-2:]) == tuple(size_hw) else ops.resize(own, size_hw, antialias=True)


def background_tensor(background: Background, size_hw: tuple[int, int], device: torch.device) -> torch.Tensor | None:
    """None, an (r, g, b) colour 0..255, or an image (H, W, 3) uint8 -> (1, 3, H, W) float, or None."""
    if background is None:
        return None
    if isinstance(background, (tuple, list, str)):   # a colour: checked, so 300 or "red" is refused, not clamped
        colour = parse_color(background)
        return upload(torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1) / 255.0, device)
    if not isinstance(background, (np.ndarray, torch.Tensor)):
        raise InvalidParameterError(f"a background is a colour (#RRGGBB or r, g, b) or an image array, "
                                    f"not {type(background).__name__}")
    image = upload(background, device)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise InvalidParameterError("a background image must be (H, W, 3) or (H, W, 4)")
    image = ops.to_float_image(image[..., :3].contiguous())
    return ops.fit_background(image, size_hw)


def render_tensors(result: MatteResult, settings: EdgeSettings, background: Background = None,
                   max_side: int | None = None, want_rgba: bool = True, hints: np.ndarray | None = None,
                   coefficients=None):
    """Return (alpha uint8 (H, W), rgba uint8 (H, W, 4) or None, composite uint8 (H, W, 3) or None), on device;
    ``coefficients``: see soft_alpha."""
    size_hw = output_hw(result, max_side)
    photo = photo_at(result, size_hw)
    alpha = compute_alpha(result, settings, photo, hints, keep_soft=max_side is not None, coefficients=coefficients)
    alpha_u8, rgba, composite = _outputs(photo, alpha, lambda: photo_u8(result, max_side)[None], settings,
                                         background, want_rgba, clear_hidden=max_side is None)
    return alpha_u8[0], None if rgba is None else rgba[0], None if composite is None else composite[0]


def render_stack_tensors(results: list[MatteResult], settings: EdgeSettings, background: Background = None,
                         want_rgba: bool = True, coefficients=None):
    """Full-size renders of results that share one working size and have no alpha of their own, in one pass over
    the stacked batch: on a GPU one kernel launch per operation for all of them instead of one per image
    (``coefficients``: the refinement's captured graphs, matting.refine_graphs).
    Returns (alpha (B, H, W), rgba (B, H, W, 4) or None, composite (B, H, W, 3) or None), uint8, on device."""
    sizes = {tuple(r.image.shape) for r in results}
    if len(sizes) != 1 or any(r.input_alpha is not None for r in results):
        raise InvalidParameterError(
            "render_stack_tensors needs results of one working size without an alpha of their own")
    images = torch.stack([r.image for r in results])
    photo = ops.to_float_image(images)
    guide = torch.cat([r.guide for r in results])
    matte = torch.cat([r.matte for r in results])
    alpha = alpha_from(guide, matte, photo, settings, 1.0, coefficients=coefficients)
    return _outputs(photo, alpha, lambda: images, settings, background, want_rgba, clear_hidden=True)


def _outputs(photo: torch.Tensor, alpha: torch.Tensor, photo_u8_of, settings: EdgeSettings,
             background: Background, want_rgba: bool, clear_hidden: bool):
    """(alpha (B, H, W), rgba (B, H, W, 4) or None, composite (B, H, W, 3) or None), uint8, from float photos
    and alphas; ``photo_u8_of()`` gives the photos as (B, H, W, 3) uint8 when the cutout keeps their colours.
    ``clear_hidden``: the cutout's fully transparent pixels become (0, 0, 0, 0) (full-resolution renders, the
    ones written to files)."""
    alpha_u8 = ops.to_uint8_hwc(alpha)[..., 0]
    bg = background_tensor(background, tuple(photo.shape[-2:]), photo.device)
    colour = photo
    if settings.decontaminate and (want_rgba or bg is not None):
        colour = foreground.decontaminate(photo, alpha)  # the soft edge's own colour, not the old background's
    rgba = None
    if want_rgba:  # written in place: no torch.cat copy of the whole RGBA
        b, _, h, w = photo.shape
        rgba = torch.empty((b, h, w, 4), dtype=torch.uint8, device=photo.device)
        if colour is photo:
            rgba[..., :3] = photo_u8_of()
        else:
            ops.to_uint8_hwc(colour, out=rgba[..., :3])
        rgba[..., 3] = alpha_u8
        if clear_hidden:
            # A fully transparent pixel of a file carries no colour, (0, 0, 0, 0), as other cutout tools write it:
            # nobody sees it, and the PNG is smaller and faster to make (scripts/bench_clear_pixels.py, six 1 MP
            # camera-photo cutouts on a 2-core Intel Xeon with AMX: fpng 2.3-4.4 against 4.3-4.8 ms, files 5-81 %
            # smaller; session 24). Previews keep the photo's colour: the page's JPEG of the edge colour would ring
            # against black. Each pixel as one 32-bit word: a sixth of the time of the byte-wise fill on one thread
            # of that CPU (1 ms for 1 MP).
            rgba.view(torch.int32).masked_fill_((alpha_u8 == 0).unsqueeze(-1), 0)
    composite = None
    if bg is not None:
        composite = ops.to_uint8_hwc(ops.composite(colour, alpha, bg))
    return alpha_u8, rgba, composite


def photo_u8(result: MatteResult, max_side: int | None = None) -> torch.Tensor:
    """The photo itself as (H, W, 3) uint8 at a render's size: the "before" of a before/after view."""
    size_hw = output_hw(result, max_side)
    if tuple(result.image.shape[:2]) == tuple(size_hw):
        return result.image
    return ops.to_uint8_hwc(photo_at(result, size_hw))[0]
