"""Turn whatever a user hands us into an upright 8-bit RGB array, plus alpha when there is one.

Inputs: encoded bytes, a file path, a binary file object, a PIL image or a numpy array.
Encoded files are identified from their header first; the pixel limit is checked there, before a
single pixel is decoded, so a tiny file that declares 50000 x 50000 costs nothing.

Decoding uses OpenCV where it is faster than Pillow (8-bit JPEG, 8/16-bit PNG without palette
or tRNS transparency, still WebP) and Pillow for everything else. A file that stops early is
always an error, never a half-grey picture: JPEG and PNG are checked for their end marker
ourselves, so nothing depends on Pillow's process-wide LOAD_TRUNCATED_IMAGES setting.

Alpha: returned only when it carries information; an alpha channel that is fully opaque
(all 255) comes back as ``alpha=None``, which callers can treat exactly like "no alpha".

Thread-safe: nothing module-level is mutated after import (no Pillow or OpenCV global settings
are touched); every call works on its own objects.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image

# Importing a plugin registers its opener in Image.OPEN; we need only these.
from PIL import (  # noqa: F401
    BmpImagePlugin,
    GifImagePlugin,
    IcoImagePlugin,
    JpegImagePlugin,
    PngImagePlugin,
    PpmImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from .decode_failures import (
    DISPLAY_NAMES,
    SUPPORTED_HINT,
    TOO_LARGE_FOR_PILLOW,
    amount,
    corrupt,
    identify_failure,
    too_large_from_bomb,
)
from .decode_warnings import caught
from .errors import (
    CorruptImageError,
    EmptyInputError,
    ImageTooLargeError,
    ImageTooSmallError,
    InvalidParameterError,
    UnsupportedFormatError,
)
from .notices import Notice
from .regular_file import MAX_FILE_BYTES, FileTooLarge, NotRegularFile, read_regular_file

try:  # AVIF arrived in Pillow 11.3; optional so an older Pillow still imports this module
    from PIL import AvifImagePlugin  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodedImage",
    "ImageHeader",
    "decode_image",
    "plain_jpeg_header",
    "read_header",
]

DEFAULT_MAX_PIXELS = 100_000_000


# Pillow formats we let Pillow identify, in the order tried. Everything else Pillow knows
# (PSD, EPS, TGA, ...) is refused: fewer parsers exposed to uploads, and TGA has no real
# signature, so it would "recognise" random bytes.
_PIL_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "ICO", "PPM", "AVIF")
_ANIMATED_FORMATS = {"GIF", "PNG", "WEBP", "AVIF"}
_EXIF_FORMATS = {"JPEG", "MPO", "WEBP", "TIFF", "AVIF"}
_EXIF_IFD_TAG, _PIXEL_X_TAG, _PIXEL_Y_TAG = 0x8769, 0xA002, 0xA003
_ORIENTATION_TAG = 0x0112
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([1-8])')
_FORMAT_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)

# What the user is told about a conversion (matting/notices.py; demo/i18n.py translates them by code)
NOTICE_16BIT = Notice("bit_depth_16")
NOTICE_32BIT = Notice("bit_depth_32")
NOTICE_CMYK = Notice("cmyk")
NOTICE_CLIPPED = Notice("clipped")
NOTICE_TIFF_PAGES = Notice("tiff_pages")
_BAD_DATA = "the image data is damaged or incomplete"

# A JPEG marker: 0xFF followed by anything but stuffing (00), fill (FF) or restart (D0-D7).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_STANDALONE = (0x01, 0xD8)  # markers without a length field (TEM, SOI)

# Decode JPEG straight to RGB when this OpenCV can (4.11+); otherwise BGR plus a conversion.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
_JPEG_FLAGS = (_IMREAD_RGB if _IMREAD_RGB is not None else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
_RAW_FLAGS = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION


@dataclass(frozen=True)
class ImageHeader:
    """What the file says about itself, read without decoding any pixel."""

    format: str  # "JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "ICO", "PPM", "AVIF"
    width: int  # as stored, before EXIF orientation
    height: int
    mode: str  # Pillow mode as stored: "RGB", "L", "P", "RGBA", "CMYK", "I;16", ...
    orientation: int = 1  # EXIF orientation 1..8, 1 when absent or invalid
    n_frames: int = 1

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) once the orientation is applied: 5..8 swap the axes."""
        if self.orientation >= 5:
            return self.height, self.width
        return self.width, self.height


@dataclass
class DecodedImage:
    rgb: np.ndarray  # uint8 (H, W, 3), C-contiguous, upright (a CUDA tensor when decoded on the GPU: decode_device)
    alpha: np.ndarray | None  # uint8 (H, W), or None when absent or fully opaque
    format: str  # header format, or "array" / "PIL" for in-memory inputs
    name: str | None = None
    notices: list[Notice] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.rgb.shape[1], self.rgb.shape[0]


@dataclass(frozen=True)
class _PngLayout:
    """The chunk facts that decide how a PNG is decoded, found by walking chunk lengths."""

    bit_depth: int
    color_type: int
    has_trns: bool
    exif: bytes | None
    complete: bool  # the IEND chunk was reached


# ---------------------------------------------------------------------------------------------
# Public API


def read_header(data: bytes | bytearray | memoryview, *, name: str | None = None) -> ImageHeader:
    """Identify an encoded image and read its size, mode and orientation without decoding it.

    Raises EmptyInputError, UnsupportedFormatError, CorruptImageError (or ImageTooSmallError
    when the header declares a zero width or height).
    """
    data = _bytes_like(data, name)
    header, image, _ = _probe(data, name)
    image.close()
    return header


def plain_jpeg_header(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader | None:
    """The header of a JPEG that any conforming decoder turns into the picture decode_image gives, up to its
    IDCT and chroma upsampling: a complete, baseline, three-channel YCbCr JPEG of one frame with no orientation
    to apply, within ``max_pixels``. None for anything else (CMYK, grey, progressive, Adobe's colour transforms,
    rotated, multi-picture, damaged, not a JPEG): decode_image handles those, with its exact errors. Used to
    pick the JPEGs a GPU may decode (decode_device.py); reads the header only."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    try:
        header, image, _ = _probe(data, None)
    except Exception:  # noqa: BLE001 - whatever it is, decode_image will say it properly
        return None
    try:
        plain = (header.format == "JPEG" and image.format == "JPEG" and header.mode == "RGB"
                 and header.orientation == 1 and header.n_frames == 1
                 and _jpeg_frame_marker(data) in _BASELINE_FRAMES and "adobe" not in image.info
                 and 0 < header.width * header.height <= max_pixels and _jpeg_complete(data))
    finally:
        image.close()
    return header if plain else None


def decode_image(
    source: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None
) -> DecodedImage:
    """Decode any supported input into an upright uint8 RGB array (+ alpha when meaningful).

    source: bytes / bytearray / memoryview, a path (str or os.PathLike), a binary file object
    (read from its current position), a PIL image, or a numpy array (H, W), (H, W, 1),
    (H, W, 3) or (H, W, 4) of uint8, uint16, bool or float in [0, 1].
    max_pixels: refuse anything with more pixels, checked before decoding (applies to
    in-memory inputs too, since the cost downstream is the same).
    The returned arrays never alias the caller's array or image.
    """
    _check_max_pixels(max_pixels)
    if isinstance(source, np.ndarray):
        return _decode_array(source, max_pixels, name)
    if isinstance(source, Image.Image):
        return _decode_pil_image(source, max_pixels, name)
    data, name = _read_source(source, name)
    return _decode_bytes(data, max_pixels, name)


# ---------------------------------------------------------------------------------------------
# Reading the input


def _check_max_pixels(max_pixels: Any) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise InvalidParameterError(f"max_pixels must be a positive whole number, got {max_pixels!r}")


def _bytes_like(data: Any, name: str | None) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise InvalidParameterError(
        f"expected the image file's bytes, got {type(data).__name__}", source=name
    )


def _read_source(source: Any, name: str | None) -> tuple[bytes, str | None]:
    """Bytes and a display name from bytes, a path or a file object."""
    if source is None:
        raise EmptyInputError("no image was provided", source=name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _bytes_like(source, name), name
    if isinstance(source, (str, os.PathLike)):
        return _read_path(source, name)
    if hasattr(source, "read"):
        return _read_file_object(source, name)
    raise InvalidParameterError(
        f"cannot read an image from a {type(source).__name__}; expected image bytes, a file path, "
        "a file object, a PIL image or a numpy array",
        source=name,
    )


def _read_path(path: str | os.PathLike, name: str | None) -> tuple[bytes, str | None]:
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    name = name or os.path.basename(text) or None
    shown = _one_line(text, 200)
    if "\x00" in text:
        raise InvalidParameterError("a file name cannot hold a NUL character",
                                    source=name.replace("\x00", "\\x00"))
    try:
        return read_regular_file(text, MAX_FILE_BYTES), name
    except FileNotFoundError:
        raise InvalidParameterError(f"file not found: {shown}", source=name) from None
    except IsADirectoryError:
        raise InvalidParameterError(f"not a file but a folder: {shown}", source=name) from None
    except PermissionError:
        raise InvalidParameterError(f"no permission to read the file: {shown}", source=name) from None
    except (NotRegularFile, FileTooLarge) as exc:
        raise InvalidParameterError(f"{exc}: {shown}", source=name) from None
    except OSError as exc:
        raise InvalidParameterError(f"cannot read the file: {_reason(exc)}", source=name) from exc


def _read_file_object(handle: Any, name: str | None) -> tuple[bytes, str | None]:
    handle_name = getattr(handle, "name", None)
    if name is None and isinstance(handle_name, str):
        name = os.path.basename(handle_name) or None
    try:
        data = handle.read()
    except OSError as exc:
        raise InvalidParameterError(f"cannot read the file: {_reason(exc)}", source=name) from exc
    except ValueError as exc:   # e.g. "read of closed file"
        raise InvalidParameterError(f"cannot read the file object: {exc}", source=name) from None
    if isinstance(data, str):
        raise InvalidParameterError(
            "the file was opened in text mode; open it in binary mode ('rb')", source=name
        )
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidParameterError(
            f"the file object returned {type(data).__name__} instead of bytes", source=name
        )
    return bytes(data), name


# ---------------------------------------------------------------------------------------------
# Identifying encoded data (header only)


def _probe(data: bytes, name: str | None) -> tuple[ImageHeader, Image.Image, _PngLayout | None]:
    """Header, the lazily opened Pillow image (caller closes it) and, for PNG, its chunk layout."""
    if not data:
        raise EmptyInputError("the file is empty (0 bytes)", source=name)
    image = _pil_open(data, name)
    try:
        png = _scan_png(data) if image.format == "PNG" else None
        width, height = _stored_size(image)
        header = ImageHeader(
            format="JPEG" if image.format == "MPO" else image.format,  # camera multi-picture JPEG
            width=width,
            height=height,
            mode=image.mode,
            orientation=_orientation(image, png),
            n_frames=_frame_count(image),
        )
    except BaseException:
        image.close()
        raise
    return header, image, png


def _pil_open(data: bytes, name: str | None) -> Image.Image:
    """Open data lazily with Pillow's registered openers, restricted to the formats we accept.

    Image.open would also run Pillow's decompression-bomb check, which depends on a
    process-wide limit, warns between 89 and 179 MP and hides the size in its error; calling
    the openers directly keeps the size check ours and changes no global setting.
    """
    prefix = data[:16]
    failure: BaseException | None = None
    for fmt in _PIL_FORMATS:
        opener = Image.OPEN.get(fmt)
        if opener is None:
            continue
        factory, accept = opener
        accepted = accept(prefix) if accept else True
        if not accepted or isinstance(accepted, str):  # a str is Pillow's "almost, but no"
            continue
        try:
            return factory(io.BytesIO(data), "")
        except Image.DecompressionBombError as exc:  # Pillow's own limit inside a plugin
            raise too_large_from_bomb(data, name) from exc
        except _FORMAT_ERRORS as exc:
            failure = exc
    raise identify_failure(data, name) from failure


def _stored_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as stored. Pillow 12 reports TIFF sizes already turned upright."""
    if image.format == "TIFF":
        width, height = image.tag_v2.get(256), image.tag_v2.get(257)  # ImageWidth, ImageLength
        if isinstance(width, int) and isinstance(height, int):
            return width, height
    return image.width, image.height


def _pillow_turned_upright(image: Image.Image, orientation: int) -> bool:
    """Whether Pillow's loader applied the orientation itself (Pillow 12 does for TIFF).

    It then also deletes the tag, which older versions, that leave pixels as stored, do not.
    """
    tags = getattr(image, "tag_v2", None)
    return orientation != 1 and tags is not None and _ORIENTATION_TAG not in tags


def _frame_count(image: Image.Image) -> int:
    try:
        return max(1, int(getattr(image, "n_frames", 1)))
    except _FORMAT_ERRORS:  # a damaged later frame must not hide the first one
        return 1


def _orientation(image: Image.Image, png: _PngLayout | None) -> int:
    """EXIF orientation 1..8 from metadata only; 1 when absent or unreadable."""
    try:
        if png is not None:
            value = _png_orientation(image, png)
        elif image.format in _EXIF_FORMATS:
            exif = image.getexif()
            value = exif.get(_ORIENTATION_TAG)
            if _already_rotated(exif, image.size, value):
                return 1
        else:
            return 1
    except Exception:  # broken metadata must not make a readable picture unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _already_rotated(exif, stored_size: tuple[int, int], orientation) -> bool:
    """A quarter-turn tag on pixels that an editor has already turned (and left the tag behind).

    The camera records its frame size in the Exif IFD (PixelXDimension, PixelYDimension). When the tag asks
    for a quarter turn (5..8) but the stored pixels already have those dimensions swapped, the rotation was
    applied to the pixels; applying it again would lay the picture on its side. Seen in the wild with
    editors such as ACDSee.
    """
    if orientation not in (5, 6, 7, 8) or stored_size[0] == stored_size[1]:
        return False
    try:
        exif_ifd = exif.get_ifd(_EXIF_IFD_TAG)
        camera_size = (int(exif_ifd.get(_PIXEL_X_TAG, 0)), int(exif_ifd.get(_PIXEL_Y_TAG, 0)))
    except Exception:  # unreadable sub-IFD: trust the tag
        return False
    return camera_size == (stored_size[1], stored_size[0])


def _png_orientation(image: Image.Image, png: _PngLayout) -> int | None:
    # Not image.getexif(): for PNG it decodes the whole image when eXIf is absent or
    # stored after the pixel data.
    raw = image.info.get("exif") or png.exif
    if raw:
        exif = Image.Exif()
        exif.load(raw)
        value = exif.get(_ORIENTATION_TAG)
        if value is not None:
            return value
    xmp = image.info.get("XML:com.adobe.xmp") or image.info.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8", "replace")
    match = _XMP_ORIENTATION.search(xmp) if xmp else None
    return int(match[1]) if match else None


def _scan_png(data: bytes) -> _PngLayout:
    """Walk the chunk list by its length fields (no decompression)."""
    bit_depth, color_type = data[24], data[25]  # IHDR, already validated by Pillow
    has_trns, exif, complete = False, None, False
    pos, end = 8, len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        chunk_end = pos + 12 + length
        if chunk_end > end:
            break
        if kind == b"IEND":
            complete = True
            break
        if kind == b"tRNS":
            has_trns = True
        elif kind == b"eXIf" and exif is None:
            exif = data[pos + 8 : pos + 8 + length]
        pos = chunk_end
    return _PngLayout(bit_depth, color_type, has_trns, exif, complete)


# ---------------------------------------------------------------------------------------------
# Decoding encoded data


def _decode_bytes(data: bytes, max_pixels: int, name: str | None) -> DecodedImage:
    with caught() as warned:   # Pillow's warnings about this image become its notices, naming it
        result = _decode_bytes_quietly(data, max_pixels, name)
    result.notices.extend(Notice("decoder_warning", detail=text) for text in dict.fromkeys(warned))
    return result


def _decode_bytes_quietly(data: bytes, max_pixels: int, name: str | None) -> DecodedImage:
    header, image, png = _probe(data, name)
    try:
        _check_dimensions(header.width, header.height, max_pixels, name)
        _check_complete(data, header.format, png, name)
        flags = _cv2_flags(header, png)
        orientation = header.orientation
        if flags is None:
            rgb, alpha, notices = _decode_with_pil(image, header.format, name)
            if _pillow_turned_upright(image, orientation):
                orientation = 1
        else:
            rgb, alpha, notices = _decode_with_cv2(data, flags, header.format, name)
    finally:
        image.close()
    result = _finish(rgb, alpha, orientation, header.format, name, _frame_notices(header) + notices)
    if result.size != header.upright_size:  # decoder and header disagree: a damaged file
        raise corrupt(header.format, "the decoded size does not match the header", name)
    return result


def _check_dimensions(width: int, height: int, max_pixels: int, name: str | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageTooSmallError(f"image is empty: {width} x {height} pixels", source=name)
    pixels = width * height
    if pixels > max_pixels:
        raise ImageTooLargeError(
            f"image too large: {width} x {height} = {amount(pixels)} exceeds the limit of "
            f"{amount(max_pixels, exact=True)}",
            source=name,
        )


def _check_complete(data: bytes, image_format: str, png: _PngLayout | None, name: str | None) -> None:
    """Refuse files that stop early, whatever decoder runs next and however Pillow is set up."""
    if image_format == "JPEG" and not _jpeg_complete(data):
        raise corrupt("JPEG", "the file ends before the image data does (incomplete upload?)", name)
    if png is not None and not png.complete:
        raise corrupt("PNG", "the file ends before its end marker (incomplete upload?)", name)
    if image_format == "WEBP" and len(data) < 8 + int.from_bytes(data[4:8], "little"):
        raise corrupt("WebP", "the file is shorter than its header says (incomplete upload?)", name)


def _jpeg_complete(data: bytes) -> bool:
    # Fast path: the file ends with EOI (ignoring zero padding). Otherwise trailers (Samsung
    # metadata, motion-photo videos) may follow the image, so find its EOI by walking markers.
    if data[-65536:].rstrip(b"\x00").endswith(b"\xff\xd9"):
        return True
    return _jpeg_end(data) is not None


def _jpeg_end(data: bytes) -> int | None:
    """Offset just past the main image's EOI marker, or None when the data stops first."""
    for marker, end in _jpeg_markers(data):
        if marker == 0xD9:
            return end
    return None


def _jpeg_markers(data: bytes) -> Iterator[tuple[int, int]]:
    """The main image's markers in order, each with the offset just past it; stops where the data does.

    Segments are skipped by their length (so an EXIF thumbnail's markers are not mistaken for
    ours); in entropy-coded data a marker cannot occur except as a real marker.
    """
    pos = 2
    while (match := _JPEG_MARKER.search(data, pos)) is not None:
        marker = data[match.end() - 1]
        pos = match.end()
        yield marker, pos
        if marker in _JPEG_STANDALONE:
            continue
        if pos + 2 > len(data):
            return
        pos += int.from_bytes(data[pos : pos + 2], "big")


_BASELINE_FRAMES = (0xC0, 0xC1)  # SOF0, SOF1: sequential, Huffman-coded (8 bits: Pillow refuses others)
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn; C4, C8, CC are DHT, JPG, DAC


def _jpeg_frame_marker(data: bytes) -> int | None:
    """The JPEG's start-of-frame marker (which coding: baseline, progressive, arithmetic, lossless); None when
    the scan starts, or the data ends, before one."""
    for marker, _ in _jpeg_markers(data):
        if marker in _FRAME_MARKERS:
            return marker
        if marker == 0xDA:
            return None
    return None


def _cv2_flags(header: ImageHeader, png: _PngLayout | None) -> int | None:
    """OpenCV imread flags when OpenCV decodes this file faster and exactly as intended, else None."""
    if header.format == "JPEG":
        return _JPEG_FLAGS if header.mode in ("RGB", "L") else None  # CMYK: Pillow's conversion
    if png is not None:
        simple = png.bit_depth in (8, 16) and png.color_type in (0, 2, 4, 6)
        # Palette, tRNS colour keys and APNG frames: Pillow handles them exactly.
        return _RAW_FLAGS if simple and not png.has_trns and header.n_frames == 1 else None
    if header.format == "WEBP" and header.n_frames == 1:
        return _RAW_FLAGS
    return None


def _decode_with_cv2(
    data: bytes, flags: int, image_format: str, name: str | None
) -> tuple[np.ndarray, np.ndarray | None, list[Notice]]:
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        array = None
    if array is None:  # OpenCV reports failure by returning None
        raise corrupt(image_format, _BAD_DATA, name)
    return _from_cv2(array, bgr=flags == _RAW_FLAGS or _IMREAD_RGB is None)


def _from_cv2(array: np.ndarray, *, bgr: bool) -> tuple[np.ndarray, np.ndarray | None, list[Notice]]:
    notices = []
    if array.dtype == np.uint16:
        array = _u16_to_u8(array)
        notices.append(NOTICE_16BIT)
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB), None, notices
    if array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB), np.ascontiguousarray(array[:, :, 3]), notices
    return (cv2.cvtColor(array, cv2.COLOR_BGR2RGB) if bgr else array), None, notices


def _decode_with_pil(
    image: Image.Image, image_format: str, name: str | None
) -> tuple[np.ndarray, np.ndarray | None, list[Notice]]:
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(TOO_LARGE_FOR_PILLOW, source=name) from exc
    except _FORMAT_ERRORS as exc:  # the cause stays chained for the logs
        raise corrupt(image_format, _BAD_DATA, name) from exc
    return _pil_pixels(image, name)


def _frame_notices(header: ImageHeader) -> list[Notice]:
    if header.n_frames <= 1:
        return []
    label = DISPLAY_NAMES.get(header.format, header.format)
    if header.format in _ANIMATED_FORMATS:
        return [Notice("animated", label=label)]
    if header.format == "TIFF":
        return [NOTICE_TIFF_PAGES]
    return []  # MPO's extra pictures, ICO's extra sizes: nothing the user needs to know


# ---------------------------------------------------------------------------------------------
# Pillow images (decoded files and PIL inputs)


def _decode_pil_image(image: Image.Image, max_pixels: int, name: str | None) -> DecodedImage:
    filename = getattr(image, "filename", None)
    if name is None and isinstance(filename, str) and filename:
        name = os.path.basename(filename)
    _check_dimensions(image.width, image.height, max_pixels, name)
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(TOO_LARGE_FOR_PILLOW, source=name) from exc
    except _FORMAT_ERRORS as exc:
        raise CorruptImageError(_BAD_DATA, source=name) from exc
    # Read after loading: a loader that turns pixels upright itself (TIFF) removes the tag.
    orientation = _pil_image_orientation(image)
    rgb, alpha, notices = _pil_pixels(image, name)
    if _frame_count(image) > 1:
        notices.insert(0, Notice("multi_frame"))
    return _finish(rgb, alpha, orientation, "PIL", name, notices)


def _pil_image_orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION_TAG)
    except Exception:  # broken metadata must not make a readable picture unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _pil_pixels(image: Image.Image, name: str | None) -> tuple[np.ndarray, np.ndarray | None, list[Notice]]:
    """RGB and alpha arrays from a loaded Pillow image of any mode."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _pil_high_depth(image)
    notices = [NOTICE_CMYK] if mode == "CMYK" else []
    if mode == "La":  # premultiplied; Pillow converts it to RGBA only via LA
        image = image.convert("LA")
    try:
        if image.has_transparency_data:  # alpha band, palette alpha or a tRNS colour key
            rgba = np.asarray(image if image.mode == "RGBA" else image.convert("RGBA"))
            return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3]), notices
        rgb = image if image.mode == "RGB" else image.convert("RGB")
    except ValueError:
        message = f"unsupported colour mode {mode}; {SUPPORTED_HINT}"
        raise UnsupportedFormatError(message, source=name) from None
    return np.array(rgb, dtype=np.uint8), None, notices


def _pil_high_depth(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None, list[Notice]]:
    """16-bit, 32-bit integer and float gray images, scaled to 8 bits."""
    values = np.asarray(image)
    if image.mode == "F":
        gray, notice = _float_to_u8(values), Notice("floating_point")
    elif image.mode == "I":
        gray, notice = _int32_to_u8(values)
    else:
        gray, notice = _u16_to_u8(values.astype(np.uint16, copy=False)), NOTICE_16BIT
    key = image.info.get("transparency")  # PNG tRNS on a gray image: one transparent value
    alpha = None
    if isinstance(key, int) and not isinstance(key, bool):
        alpha = np.where(values == key, 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2RGB), alpha, [notice] if notice else []


# ---------------------------------------------------------------------------------------------
# numpy inputs

_SHAPE_HINT = "expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"


def _decode_array(array: np.ndarray, max_pixels: int, name: str | None) -> DecodedImage:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InvalidParameterError(f"unsupported array shape {array.shape}; {_SHAPE_HINT}", source=name)
    height, width = array.shape[:2]
    _check_dimensions(width, height, max_pixels, name)
    values, notices = _array_to_u8(array, name)
    alpha = None
    if values.ndim == 2:
        rgb = cv2.cvtColor(np.ascontiguousarray(values), cv2.COLOR_GRAY2RGB)
    elif values.shape[2] == 4:
        rgb, alpha = np.ascontiguousarray(values[:, :, :3]), np.ascontiguousarray(values[:, :, 3])
    else:
        rgb = np.array(values, dtype=np.uint8, order="C", copy=True)  # never alias the caller's array
    return _finish(rgb, alpha, 1, "array", name, notices)


def _array_to_u8(array: np.ndarray, name: str | None) -> tuple[np.ndarray, list[Notice]]:
    kind, itemsize = array.dtype.kind, array.dtype.itemsize
    if kind == "u" and itemsize == 1:
        return array, []
    if kind == "u" and itemsize == 2:
        return _u16_to_u8(np.ascontiguousarray(array, dtype=np.uint16)), [NOTICE_16BIT]
    if kind == "b":
        return array.astype(np.uint8) * np.uint8(255), []
    if kind == "f":
        return _float_array_to_u8(array, name)
    raise InvalidParameterError(
        f"unsupported array type {array.dtype}; use uint8 (0-255), uint16, bool or float in [0, 1]",
        source=name,
    )


def _float_array_to_u8(array: np.ndarray, name: str | None) -> tuple[np.ndarray, list[Notice]]:
    values = array.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        raise InvalidParameterError("the array contains NaN or infinite values", source=name)
    notices = []
    if values.min() < 0.0 or values.max() > 1.0:
        notices.append(NOTICE_CLIPPED)
    return _unit_float_to_u8(values), notices


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _finish(
    rgb: np.ndarray,
    alpha: np.ndarray | None,
    orientation: int,
    image_format: str,
    name: str | None,
    notices: list[Notice],
) -> DecodedImage:
    """Apply the orientation, drop an all-opaque alpha and package the result."""
    if alpha is not None and int(alpha.min()) == 255:
        alpha = None  # carries no information; saves the callers work
    rgb = _orient(rgb, orientation)
    if alpha is not None:
        alpha = _orient(alpha, orientation)
    return DecodedImage(rgb=rgb, alpha=alpha, format=image_format, name=name, notices=notices)


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Make an array upright according to EXIF orientation (OpenCV: faster than numpy + copy)."""
    if orientation == 2:
        return cv2.flip(array, 1)
    if orientation == 3:
        return cv2.rotate(array, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(array, 0)
    if orientation == 5:
        return cv2.transpose(array)
    if orientation == 6:
        return cv2.rotate(array, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(array), -1)
    if orientation == 8:
        return cv2.rotate(array, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return array


def _u16_to_u8(values: np.ndarray) -> np.ndarray:
    # round(v / 257) maps 0..65535 exactly onto 0..255; OpenCV does it ~15x faster than numpy
    # and never hits a tie, as v / 257 is never k + 0.5.
    return cv2.convertScaleAbs(values, alpha=1.0 / 257.0)


def _unit_float_to_u8(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (clipped) to rounded uint8."""
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _float_to_u8(values: np.ndarray) -> np.ndarray:
    """Pillow "F" images: [0, 1] data is scaled, anything larger is read as 0..255; NaN as 0."""
    values = np.nan_to_num(values.astype(np.float32, copy=False), nan=0.0, posinf=255.0, neginf=0.0)
    if values.size and float(values.max()) <= 1.0:
        return _unit_float_to_u8(values)
    return np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8)


def _int32_to_u8(values: np.ndarray) -> tuple[np.ndarray, Notice | None]:
    """Pillow "I" images: 8-bit range kept, 16-bit range scaled, wider data stretched to its maximum."""
    values = np.clip(values, 0, None)
    top = int(values.max()) if values.size else 0
    if top <= 255:
        return values.astype(np.uint8), None
    if top <= 65535:
        return _u16_to_u8(values.astype(np.uint16)), NOTICE_16BIT
    scaled = np.rint(values.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    return scaled, NOTICE_32BIT


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown reason"
    return _one_line(str(exc), 120) or type(exc).__name__


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
