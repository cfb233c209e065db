"""The page's edge and background controls as one bundle: their names, in the order the events send them, and
their values turned into the engine's settings and background."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from matting.errors import InvalidParameterError
from matting.settings import EdgeSettings, parse_color

BG_TRANSPARENT, BG_COLOR, BG_IMAGE = "transparent", "color", "image"
EDGE_CONTROLS = ("threshold", "feather", "erode", "refine", "refine_radius", "use_input_alpha", "decontaminate")
BACKGROUND_CONTROLS = ("bg_mode", "bg_color", "bg_image")
DEFAULTS = EdgeSettings()


@dataclass(frozen=True, eq=False)
class Controls:
    """The controls' values as the page sends them (numbers may come as text or None, a slider's as float)."""

    threshold: Any = DEFAULTS.threshold
    feather: Any = DEFAULTS.feather
    erode: Any = DEFAULTS.erode
    refine: Any = DEFAULTS.refine
    refine_radius: Any = DEFAULTS.refine_radius
    use_input_alpha: Any = DEFAULTS.use_input_alpha
    decontaminate: Any = DEFAULTS.decontaminate
    bg_mode: str | None = BG_TRANSPARENT
    bg_color: str | None = None
    bg_image: np.ndarray | None = None   # the decoded background image (the session keeps it)

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Controls:
        """From a mapping that holds them (an event's keyword inputs, the page's exact-render request); other
        keys are ignored, missing ones take the defaults."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def settings(self) -> EdgeSettings:
        """The engine's settings (raises InvalidParameterError naming the control when out of range or not a
        number)."""
        radius = DEFAULTS.refine_radius if self.refine_radius is None else round(_number("refine_radius",
                                                                                           self.refine_radius))
        return EdgeSettings(threshold=_number("threshold", self.threshold or 0.0),
                            feather=_number("feather", self.feather or 0.0),
                            erode=round(_number("erode", self.erode or 0)), refine=bool(self.refine),
                            refine_radius=radius, use_input_alpha=bool(self.use_input_alpha),
                            decontaminate=bool(self.decontaminate))

    def background(self):
        """None (transparent), an (r, g, b) colour, or the background image (raises on a bad colour)."""
        if self.bg_mode == BG_COLOR and self.bg_color:
            return parse_color(self.bg_color)
        if self.bg_mode == BG_IMAGE and self.bg_image is not None:
            return self.bg_image
        return None


def _number(name: str, value) -> float:
    """A control's value as a number; text that is none ("abc" through the API) is refused by name."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidParameterError(f"{name} must be a finite number, got {value!r}")
    return number
