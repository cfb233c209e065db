"""Edge and output settings: everything a re-render may change without running the network again."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from .errors import InvalidParameterError

Color = tuple[int, int, int]


@dataclass(frozen=True)
class EdgeSettings:
    """How the cached network matte becomes the final alpha. Radii are in full-resolution pixels.

    threshold: 0 keeps the soft matte; t in (0, 1] cuts it to binary at t (applied before erode and feather).
    erode: signed radius, > 0 grows the foreground, < 0 shrinks it.
    feather: Gaussian sigma softening the final edge.
    refine: guided-filter refinement of the upsampled matte by the full-resolution photo. refine_radius is in
        network-resolution pixels; radius 8 and eps 1e-4 were tuned on alphamatting-public (docs/QUALITY.md).
    use_input_alpha: multiply by the upload's own alpha channel, so transparent areas stay transparent.
    decontaminate: replace the photo's colour by the estimated foreground colour where 0 < alpha < 1, so a
        cutout carries no fringe of the old background (matting.foreground). Alpha is unchanged.
    """

    threshold: float = 0.0
    erode: int = 0
    feather: float = 0.0
    refine: bool = True
    refine_radius: int = 8
    refine_eps: float = 1e-4
    use_input_alpha: bool = True
    decontaminate: bool = True

    def __post_init__(self):
        _check_range("threshold", self.threshold, 0.0, 1.0)
        _check_range("feather", self.feather, 0.0, 100.0)
        _check_range("erode", self.erode, -100, 100)
        if int(self.erode) != self.erode:
            raise InvalidParameterError(f"erode must be a whole number of pixels, got {self.erode}")
        _check_range("refine_radius", self.refine_radius, 1, 64)
        _check_range("refine_eps", self.refine_eps, 1e-8, 1.0)

    @classmethod
    def raw(cls) -> "EdgeSettings":
        """Every edge option off: the network's matte resized to full size, the photo's own colours."""
        return cls(threshold=0.0, erode=0, feather=0.0, refine=False, use_input_alpha=False, decontaminate=False)

    def with_(self, **changes) -> "EdgeSettings":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)


def _check_range(name: str, value, low, high) -> None:
    try:   # a number, not text that reads as one ("2" would pass here and fail in the render)
        ok = not isinstance(value, (str, bytes)) and low <= float(value) <= high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidParameterError(f"{name} must be between {low} and {high}, got {value!r}")


def parse_color(value) -> Color:
    """'#RRGGBB', '#RGB', 'rgb(r, g, b)', 'r,g,b' or a 3-tuple of 0..255 ints -> (r, g, b)."""
    if isinstance(value, (tuple, list)) and len(value) == 3:
        rgb = _channels(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.startswith("#") and len(text) in (4, 7):
            digits = text[1:] if len(text) == 7 else "".join(c * 2 for c in text[1:])
            try:
                rgb = tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))
            except ValueError:
                rgb = None
        else:
            text = text.removeprefix("rgba(").removeprefix("rgb(").rstrip(")")
            parts = [p for p in text.replace(" ", "").split(",") if p]
            rgb = _channels(parts[:3]) if len(parts) in (3, 4) else None
    else:
        rgb = None
    if rgb is None or not all(0 <= c <= 255 for c in rgb):
        raise InvalidParameterError(f"not a colour: {value!r} (use #RRGGBB or r,g,b with values 0-255)")
    return rgb  # type: ignore[return-value]


def _channels(values) -> tuple[int, ...] | None:
    """Three channel values as whole numbers, or None where one is no finite number ("x", inf, nan)."""
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(n) for n in numbers):
        return None
    return tuple(int(round(n)) for n in numbers)
