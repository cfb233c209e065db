"""The working-resolution policy: how large an image the engine processes, and what it tells the user.

The network itself always sees its training size (320 x 320 for U^2-Net-P); the working resolution is the size
at which the photo is kept, refined and returned. Past a cap the cost of refinement, compositing and above all
PNG encoding grows with no visible gain on a screen, and memory grows with it, so larger inputs are reduced
(aspect ratio kept) and the result says from what size to what size and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import InvalidParameterError
from .notices import Notice
from .ops.resize import fit_size

MAX_SIDE_ENV = "MATTING_MAX_SIDE"
# 4096 px keeps every consumer camera photo of up to 12 MP (4000 x 3000) at full size; see docs/BENCHMARKS.md
# for the render cost per megapixel that this cap bounds.
DEFAULT_MAX_SIDE = 4096


def resolve_max_side(value: int | None = None) -> int:
    if value is None:
        text = os.environ.get(MAX_SIDE_ENV, "").strip()
        try:
            value = int(text) if text else DEFAULT_MAX_SIDE
        except ValueError:
            raise InvalidParameterError(f"{MAX_SIDE_ENV} must be a whole number of pixels (64 to 32768), "
                                        f"got {text!r}") from None
    if not 64 <= int(value) <= 32768:
        raise InvalidParameterError(f"max side must be between 64 and 32768 pixels, got {value}")
    return int(value)


@dataclass(frozen=True)
class Resize:
    original: tuple[int, int]   # (width, height)
    working: tuple[int, int]
    max_side: int

    @property
    def changed(self) -> bool:
        return self.original != self.working

    def notice(self) -> Notice:
        (w0, h0), (w1, h1) = self.original, self.working
        return Notice("reduced", w0=w0, h0=h0, w1=w1, h1=h1, limit=self.max_side)


def plan_resize(width: int, height: int, max_side: int) -> Resize:
    height_out, width_out = fit_size((height, width), max_side)   # the one fit, shared with previews
    return Resize((width, height), (width_out, height_out), max_side)
