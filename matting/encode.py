"""Encoding results to files: fast, lossless PNG for cutouts and mattes, JPEG for composites.

Full-resolution RGBA PNG encoding costs far more than inference (docs/BENCHMARKS.md), so it happens once, when a
download is asked for, with the fastest lossless encoder at hand: fpng (a binding of the public-domain fpng
encoder) for RGB/RGBA, else OpenCV at compression level 1. Grey mattes go through OpenCV (fpng has no grey mode)
with zlib's run-length strategy: on a 1024 x 683 soft matte 159 KB in 9 ms against 203 KB in 12 ms.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import InvalidParameterError

try:  # optional accelerator; the output is a standard PNG either way
    import fpng as _fpng
except ImportError:  # pragma: no cover - depends on the environment
    _fpng = None

PNG_LEVEL = 1
JPEG_QUALITY = 92


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR)


def _check(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise InvalidParameterError(f"cannot encode an array of shape {image.shape} and type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return np.ascontiguousarray(image)


def encode_png(image: np.ndarray, *, level: int = PNG_LEVEL) -> bytes:
    """(H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA uint8 -> PNG bytes."""
    image = _check(image)
    if _fpng is not None and image.ndim == 3 and level <= 1:
        return bytes(_fpng.from_ndarray(image))
    params = [cv2.IMWRITE_PNG_COMPRESSION, int(level)]
    if image.ndim == 2:   # mattes: long runs of one value
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, buffer = cv2.imencode(".png", _to_bgr(image), params)
    if not ok:
        raise InvalidParameterError("PNG encoding failed")
    return buffer.tobytes()


def encode_jpeg(image: np.ndarray, *, quality: int = JPEG_QUALITY, full_chroma: bool = False) -> bytes:
    """(H, W, 3) RGB or (H, W) grey uint8 -> JPEG bytes (an alpha channel is refused: JPEG has none).
    ``full_chroma`` keeps colour at full resolution (4:4:4): thin coloured edges stay their colour."""
    image = _check(image)
    if image.ndim == 3 and image.shape[2] == 4:
        raise InvalidParameterError("JPEG has no transparency: composite onto a background first")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if full_chroma:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buffer = cv2.imencode(".jpg", _to_bgr(image), params)
    if not ok:
        raise InvalidParameterError("JPEG encoding failed")
    return buffer.tobytes()


def encode(image: np.ndarray, fmt: str) -> bytes:
    fmt = fmt.lower().lstrip(".")
    if fmt == "png":
        return encode_png(image)
    if fmt in ("jpg", "jpeg"):
        return encode_jpeg(image)
    raise InvalidParameterError(f"unsupported output format {fmt!r}: use png or jpg")


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Encode by the path's suffix and write atomically (a reader never sees half a file)."""
    path = Path(path)
    data = encode(image, path.suffix)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
