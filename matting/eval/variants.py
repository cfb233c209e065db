"""Experimental refinements, kept so that docs/QUALITY.md can be reproduced: each one was measured against the
engine's refinement and lost (or won too little for its cost). Each maps (result, full-size photo, settings) to a
(1, 1, H, W) alpha and replaces the engine's refine step; threshold, erode, feather and the input's own alpha are
not applied."""

from __future__ import annotations

from typing import Callable

import torch

from .. import ops


def _fgf(result, photo, settings, matte=None):
    matte = result.matte if matte is None else matte
    return ops.fast_guided_filter(result.guide, matte, photo, settings.refine_radius, settings.refine_eps)


def _hr_gf(result, photo, settings):
    """Guided filter at an intermediate resolution (longer side <= 1024): the matte upsampled, the colour
    filter run there with the radius scaled from network pixels, its coefficients upsampled to full size."""
    h, w = photo.shape[-2:]
    work_hw = ops.fit_size((h, w), 1024)
    guide = ops.resize(photo, work_hw, antialias=True)
    matte = ops.resize(result.matte, work_hw, antialias=False)
    radius = max(1, round(settings.refine_radius * work_hw[0] / result.matte.shape[-2]))
    if work_hw == (h, w):
        return ops.guided_filter(guide, matte, radius, settings.refine_eps).clamp(0, 1)
    return ops.fast_guided_filter(guide, matte, photo, radius, settings.refine_eps)


def _sharpen(result, photo, settings):
    """The network matte's contrast doubled around 0.5 before the guided filter."""
    return _fgf(result, photo, settings, ((result.matte - 0.5) * 2.0 + 0.5).clamp(0, 1))


def _band(result, photo, settings):
    """Guided filter only within the network's uncertain band (0.01 < m < 0.99, grown by 16 px); elsewhere
    the network matte cut at 0.5."""
    matte = ops.resize(result.matte, tuple(photo.shape[-2:]), antialias=False)
    band = ops.erode_dilate(((matte > 0.01) & (matte < 0.99)).float(), 16)
    return torch.where(band > 0, _fgf(result, photo, settings), (matte >= 0.5).float())


def _cascade(result, photo, settings):
    """The engine's guided filter, then a second colour guided filter at full resolution (radius 4)."""
    return ops.guided_filter(photo, _fgf(result, photo, settings), 4, settings.refine_eps).clamp(0, 1)


def _levels(result, photo, settings):
    """The engine's guided filter, then levels: 0.02 -> 0 and 0.98 -> 1 (clears the faint haze)."""
    return ((_fgf(result, photo, settings) - 0.02) / 0.96).clamp(0, 1)


VARIANTS: dict[str, Callable] = {"hr-gf": _hr_gf, "sharpen": _sharpen, "band": _band, "cascade": _cascade,
                                 "levels": _levels}


# ------------------------------------------------------------------------------------------ running
