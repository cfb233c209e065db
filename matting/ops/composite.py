"""Compositing a cutout over a colour or an image, and fitting a background image to a size."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import InvalidParameterError
from .checks import check_alpha, check_image, check_same_geometry, float_param, size_param
from .resize import resize


_FIT_MODES = ("cover", "stretch")


def _background_tensor(background: object, rgb: Tensor) -> Tensor:
    if isinstance(background, Tensor):
        bg = background
        if not bg.is_floating_point():
            raise InvalidParameterError(f"background must be a floating-point tensor, got {bg.dtype}")
        if bg.device != rgb.device:
            raise InvalidParameterError(
                f"background must be on the same device as rgb: got {bg.device} vs {rgb.device}"
            )
        if bg.shape == (3,):
            bg = bg.view(1, 3, 1, 1)
        ok = (
            bg.ndim == 4
            and bg.shape[0] in (1, rgb.shape[0])
            and bg.shape[1] == 3
            and (bg.shape[2:] == (1, 1) or bg.shape[2:] == rgb.shape[2:])
        )
        if not ok:
            raise InvalidParameterError(
                "background tensor must have shape (3,), (B, 3, 1, 1) or (B, 3, H, W) matching rgb "
                f"{tuple(rgb.shape)} (B may be 1), got {tuple(background.shape)}"
            )
        return bg.to(rgb.dtype)
    if isinstance(background, Sequence) and not isinstance(background, str) and len(background) == 3:
        vals = [
            float_param(v, f"background[{i}]", minimum=0.0, maximum=1.0) for i, v in enumerate(background)
        ]
        return torch.tensor(vals, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    raise InvalidParameterError(
        "background must be None, 3 floats in [0, 1], or a tensor of shape (3,), (B, 3, 1, 1) "
        f"or (B, 3, H, W); got {type(background).__name__}"
    )


def composite(rgb: Tensor, alpha: Tensor, background: object = None) -> Tensor:
    """Cut out or composite the foreground.

    * ``background is None``: RGBA (B, 4, H, W), alpha appended, not premultiplied;
    * a colour (3 floats in [0, 1], or a (3,) / (B|1, 3, 1, 1) tensor) or an image
      (B|1, 3, H, W): RGB (B, 3, H, W) = alpha * rgb + (1 - alpha) * background, via
      ``torch.lerp`` (exact at alpha 0 and 1).

    >>> rgb = torch.ones(1, 3, 1, 1); a = torch.full((1, 1, 1, 1), 0.25)
    >>> composite(rgb, a, (0.0, 0.0, 1.0)).flatten().tolist()
    [0.25, 0.25, 1.0]
    """
    rgb = check_image(rgb, "rgb", channels=(3,))
    alpha = check_alpha(alpha)
    check_same_geometry(rgb, "rgb", alpha, "alpha")
    a = alpha.to(rgb.dtype)
    if background is None:
        return torch.cat([rgb, a], dim=1)
    bg = _background_tensor(background, rgb)
    return torch.lerp(bg, rgb, a)


def fit_background(bg: Tensor, size_hw: tuple[int, int], mode: str = "cover") -> Tensor:
    """Resize a background (B, 3, h, w) to ``size_hw = (H, W)``.

    ``"cover"``: scale keeping the aspect ratio so it covers (H, W), then centre-crop;
    ``"stretch"``: plain resize. Antialiased when shrinking; returns a contiguous tensor.

    >>> fit_background(torch.zeros(1, 3, 100, 200), (50, 50)).shape
    torch.Size([1, 3, 50, 50])
    """
    bg = check_image(bg, "bg", channels=(3,), allow_uint8=True)
    out_h, out_w = size_param(size_hw, "size_hw")
    if mode not in _FIT_MODES:
        raise InvalidParameterError(f"mode must be one of {', '.join(_FIT_MODES)}; got {mode!r}")
    h, w = bg.shape[-2:]
    if mode == "stretch":
        return resize(bg, (out_h, out_w))
    scale = max(out_h / h, out_w / w)
    # round() of a value >= the target can't fall below it; max() guards float fuzz.
    sh, sw = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    scaled = resize(bg, (sh, sw))
    top, left = (sh - out_h) // 2, (sw - out_w) // 2
    return scaled[..., top : top + out_h, left : left + out_w].contiguous()
