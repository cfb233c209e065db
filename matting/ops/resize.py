"""Resizing and the fit of a size within a longest side."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InvalidParameterError
from .checks import check_image, int_param, size_param


_RESIZE_MODES = ("bilinear", "bicubic", "nearest", "nearest-exact", "area")


def resize(
    x: Tensor,
    size_hw: tuple[int, int],
    *,
    mode: str = "bilinear",
    antialias: bool = True,
) -> Tensor:
    """Resize ``(B, C, H, W)`` to ``size_hw = (H', W')`` (``align_corners=False``).

    ``antialias`` only takes effect when some axis shrinks and only for bilinear/bicubic
    (``area`` averages by itself). uint8 input is resized in float32 and rounded back;
    float16 on CPU is computed in float32 (no half antialias kernel there). Bicubic can
    overshoot ``[0, 1]`` on float input; clamp if that matters. Same size returns ``x``.

    >>> resize(torch.ones(1, 1, 4, 6), (2, 3)).shape
    torch.Size([1, 1, 2, 3])
    """
    x = check_image(x, "x", allow_uint8=True)
    out_h, out_w = size_param(size_hw, "size_hw")
    if mode not in _RESIZE_MODES:
        raise InvalidParameterError(f"mode must be one of {', '.join(_RESIZE_MODES)}; got {mode!r}")
    if not isinstance(antialias, bool):
        raise InvalidParameterError(f"antialias must be a bool, got {antialias!r}")
    h, w = x.shape[-2:]
    if (out_h, out_w) == (h, w):
        return x
    if x.shape[0] == 0:
        return x.new_empty((0, x.shape[1], out_h, out_w))
    smooth = mode in ("bilinear", "bicubic")
    use_aa = antialias and smooth and (out_h < h or out_w < w)
    if x.dtype == torch.uint8 or (x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16)):
        work = torch.float32
    else:
        work = x.dtype
    y = F.interpolate(
        x.to(work),
        size=(out_h, out_w),
        mode=mode,
        align_corners=False if smooth else None,
        antialias=use_aa,
    )
    if x.dtype == torch.uint8:
        return y.add_(0.5).floor_().clamp_(0.0, 255.0).to(torch.uint8)
    return y.to(x.dtype)


def fit_size(size_hw: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The ``(h, w)`` that fits in ``max_side`` keeping the aspect ratio (never upscales).

    The long side becomes exactly ``max_side``; the short side is rounded half up and is
    never 0.

    >>> fit_size((3000, 4000), 1000)
    (750, 1000)
    >>> fit_size((1, 5000), 100)
    (1, 100)
    """
    h, w = size_param(size_hw, "size_hw")
    m = int_param(max_side, "max_side", minimum=1)
    if max(h, w) <= m:
        return h, w
    if h >= w:
        return m, max(1, (2 * w * m + h) // (2 * h))  # round(w * m / h), exactly
    return max(1, (2 * h * m + w) // (2 * w)), m


def downscale_to_fit(x: Tensor, max_side: int) -> Tensor:
    """Antialiased downscale so that max(H, W) <= ``max_side``; returns ``x`` when it fits.

    >>> downscale_to_fit(torch.zeros(1, 3, 300, 400), 100).shape
    torch.Size([1, 3, 75, 100])
    """
    x = check_image(x, "x", allow_uint8=True)
    h, w = x.shape[-2:]
    size = fit_size((h, w), max_side)
    if size == (h, w):
        return x
    return resize(x, size, mode="bilinear", antialias=True)
