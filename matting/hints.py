"""Touch-up hints: where the user says "not the subject" (erase) or "the subject" (restore), as a mask.

A hint mask is uint8: 0 erases (alpha 0), 255 restores (alpha 1), anything else leaves the model's matte. The
render applies it after threshold and erode/dilate and before the feather, so a stroke survives every edge
setting and the feather softens its edge like any other (render.shape_edges). Brush strokes from the web page
are drawn into such a mask at the working resolution here; a client can also send a mask of its own.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import InvalidParameterError

ERASE, KEEP_MODEL, RESTORE = 0, 128, 255
MAX_STROKES = 500
MAX_POINTS = 20_000          # over all strokes: a long drag sends a few hundred
MODES = {"erase": ERASE, "restore": RESTORE}


def rasterize_strokes(strokes: list, size_hw: tuple[int, int], scale: float) -> np.ndarray | None:
    """Brush strokes -> a hint mask (H, W) uint8 at ``size_hw``, or None when there are none.

    ``strokes``: [{"mode": "erase" | "restore", "radius": r, "points": [[x, y], ...]}, ...] in the page's pixels;
    ``scale`` multiplies them into the mask's (working size over preview size). Later strokes paint over earlier
    ones; each is a round-capped, round-joined line of its radius, as the page draws it (live_view.js).
    """
    if not strokes:
        return None
    if not isinstance(strokes, list) or len(strokes) > MAX_STROKES:
        raise InvalidParameterError(f"strokes must be a list of at most {MAX_STROKES} brush strokes")
    mask = np.full(size_hw, KEEP_MODEL, np.uint8)
    total = 0
    for stroke in strokes:
        value, radius, points = _stroke(stroke)
        total += len(points)
        if total > MAX_POINTS:
            raise InvalidParameterError(f"too many brush points (more than {MAX_POINTS})")
        pts = np.round(np.asarray(points, np.float64) * scale).astype(np.int32)
        thickness = max(1, int(round(2 * radius * scale)))
        if len(pts) == 1:
            cv2.circle(mask, tuple(int(v) for v in pts[0]), max(0, thickness // 2), value, -1, cv2.LINE_8)
        else:
            cv2.polylines(mask, [pts.reshape(-1, 1, 2)], False, value, thickness, cv2.LINE_8)
            for point in (pts[0], pts[-1]):   # round caps (OpenCV's thick lines already join round)
                cv2.circle(mask, (int(point[0]), int(point[1])), thickness // 2, value, -1, cv2.LINE_8)
    return mask


def _stroke(stroke) -> tuple[int, float, list]:
    if not isinstance(stroke, dict) or stroke.get("mode") not in MODES:
        raise InvalidParameterError('each brush stroke needs a mode, "erase" or "restore"')
    try:
        radius = float(stroke.get("radius"))
        points = [(float(x), float(y)) for x, y in stroke.get("points") or []]
    except (TypeError, ValueError):
        raise InvalidParameterError("a brush stroke needs a radius and points [[x, y], ...]") from None
    if not points or not 0 < radius <= 1000 or not all(np.isfinite(points).ravel()):
        raise InvalidParameterError("a brush stroke needs a radius in (0, 1000] and at least one finite point")
    return MODES[stroke["mode"]], radius, points


def hint_mask_from_image(gray: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """A client's hint image (H, W) or (H, W, C) uint8 -> a mask at ``size_hw`` (nearest: hints are labels)."""
    if gray.ndim == 3:
        gray = gray[..., 0]
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise InvalidParameterError("a hint mask must be an 8-bit image")
    if gray.shape != tuple(size_hw):
        gray = cv2.resize(gray, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(gray)
