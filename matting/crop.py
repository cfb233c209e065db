"""Crop to the subject: the bounding box of what the matte keeps, plus a margin, for downloads and batch outputs.

Soft mattes leave a faint haze over much of the background (on a camera photo 41 % of the pixels had an alpha
between 0 and 1), so the box counts only pixels at least CROP_MIN_ALPHA opaque: what a viewer sees as subject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import InvalidParameterError

CROP_MIN_ALPHA = 13          # of 255: 5 %
_MARGIN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(px|%)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class CropMargin:
    """Space kept around the subject's box on each side: pixels, or a percentage of the box's width (left and
    right) and height (top and bottom)."""

    value: float = 0.0
    percent: bool = False

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{self.value:g} px"


def parse_margin(text) -> CropMargin:
    """'10', '10px', '5%' -> CropMargin; anything else is an InvalidParameterError that says what is expected."""
    if isinstance(text, CropMargin):
        return text
    match = _MARGIN.match(str(text if text is not None else ""))
    if not match:
        raise InvalidParameterError(f"crop margin must be pixels (10, 10px) or a percentage (5%), got {text!r}")
    value, unit = float(match.group(1)), (match.group(2) or "px").lower()
    if value > (1000 if unit == "%" else 100_000):
        raise InvalidParameterError(f"crop margin {text!r} is too large")
    return CropMargin(value, unit == "%")


def subject_box(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom), right and bottom exclusive, of the pixels at least CROP_MIN_ALPHA opaque; None
    when there are none."""
    seen = np.asarray(alpha) >= CROP_MIN_ALPHA
    rows, cols = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_box(alpha: np.ndarray, margin: CropMargin) -> tuple[int, int, int, int]:
    """The box to cut: the subject's plus the margin, clipped to the image; the whole image when nothing is
    visible (an empty crop would be no image at all)."""
    height, width = alpha.shape[:2]
    box = subject_box(alpha)
    if box is None:
        return 0, 0, width, height
    left, top, right, bottom = box
    dx = margin.value * (right - left) / 100 if margin.percent else margin.value
    dy = margin.value * (bottom - top) / 100 if margin.percent else margin.value
    return (max(0, int(left - round(dx))), max(0, int(top - round(dy))),
            min(width, int(right + round(dx))), min(height, int(bottom + round(dy))))


def cut_to(box: tuple[int, int, int, int], *arrays: np.ndarray | None) -> list[np.ndarray | None]:
    """Each (H, W[, C]) array cut to ``box``, contiguous (None stays None)."""
    left, top, right, bottom = box
    return [None if a is None else np.ascontiguousarray(a[top:bottom, left:right]) for a in arrays]
