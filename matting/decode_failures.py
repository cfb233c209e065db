"""Why a file is not a readable image, in words a user can act on: what it really is (a PDF, a HEIC photo, an
SVG, plain text...), whether its header is damaged, or how large it claims to be. decode.py asks here once its
openers have failed, and shares the message helpers.
"""

from __future__ import annotations

import struct

from .errors import CorruptImageError, ImageTooLargeError, ImageTooSmallError, MattingError, UnsupportedFormatError

SUPPORTED_HINT = "please upload JPEG, PNG, WebP, BMP, TIFF or GIF"
DISPLAY_NAMES = {"WEBP": "WebP"}
BAD_HEADER = "the file header is damaged or incomplete"
TOO_LARGE_FOR_PILLOW = "image too large: it has more pixels than the decoder's safety limit allows"

_STRONG_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

_ZIP = "ZIP archive (or an Office document)"
_NON_IMAGE_SIGNATURES = (
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", _ZIP),
    (b"PK\x05\x06", _ZIP),
    (b"\x1f\x8b", "gzip-compressed file"),
    (b"Rar!", "RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"8BPS", "Photoshop document (PSD)"),
    (b"%!PS", "PostScript/EPS document"),
    (b"\xc5\xd0\xd3\xc6", "PostScript/EPS document"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 image"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL image"),
    (b"\xff\x0a", "JPEG XL image"),
    (b"\xd0\xcf\x11\xe0", "Microsoft Office document"),
    (b"OggS", "Ogg audio/video file"),
    (b"\x1a\x45\xdf\xa3", "WebM/Matroska video"),
    (b"\x7fELF", "program file"),
)
# Two or three letters a text file could start with: only tried once the text test has failed.
_WEAK_NON_IMAGE_SIGNATURES = ((b"MZ", "Windows program file"), (b"ID3", "MP3 audio file"))

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


def identify_failure(data: bytes, name: str | None) -> MattingError:
    """The most specific error for data no accepted opener could read."""
    size = _declared_size(data)
    if size is not None and 0 in size:
        return ImageTooSmallError(f"image is empty: {size[0]} x {size[1]} pixels", source=name)
    image_format = _image_signature(data)
    if image_format is not None:
        return corrupt(image_format, BAD_HEADER, name)
    kind = _non_image_kind(data)
    if kind is not None:
        return UnsupportedFormatError(f"unsupported file type: {kind}; {SUPPORTED_HINT}", source=name)
    if _looks_like_text(data):
        return UnsupportedFormatError(f"not an image: the file is plain text; {SUPPORTED_HINT}", source=name)
    for signature, kind in _WEAK_NON_IMAGE_SIGNATURES:
        if data.startswith(signature):
            return UnsupportedFormatError(f"unsupported file type: {kind}; {SUPPORTED_HINT}", source=name)
    if data[:2] == b"BM" and len(data) >= 14:  # weak signature, so only after the text test
        return corrupt("BMP", BAD_HEADER, name)
    return UnsupportedFormatError(f"not a recognised image format; {SUPPORTED_HINT}", source=name)


def _image_signature(data: bytes) -> str | None:
    for signature, image_format in _STRONG_SIGNATURES:
        if data.startswith(signature):
            return image_format
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _non_image_kind(data: bytes) -> str | None:
    """A user-facing name for common files that are not (supported) images."""
    for signature, kind in _NON_IMAGE_SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[4:8] == b"ftyp":  # ISO media: HEIC photos and MP4/MOV videos
        if data[8:12] in _HEIF_BRANDS:
            return "HEIC/HEIF photo (iPhone format; export it as JPEG)"
        return "video file"
    if data[:4] == b"RIFF":
        return {b"WAVE": "WAV audio file", b"AVI ": "AVI video"}.get(data[8:12], "RIFF media file")
    return _markup_kind(data)


def _markup_kind(data: bytes) -> str | None:
    head = data[:4096].decode("utf-8", "replace").lstrip("\ufeff \t\r\n").lower()
    if not head.startswith("<"):
        return None
    if head.startswith(("<!doctype html", "<html")):  # before SVG: pages often inline SVG icons
        return "HTML web page"
    if "<svg" in head:  # also after an XML declaration, DOCTYPE or generator comment
        return "SVG vector image"
    if "<html" in head or "<body" in head:
        return "HTML web page"
    if head.startswith("<?xml"):
        return "XML document"
    return None


def _looks_like_text(data: bytes) -> bool:
    sample = data[:4096]
    if b"\x00" in sample:
        return False
    text = sample.decode("utf-8", "replace")
    odd = sum(1 for ch in text if ch == "\ufffd" or not (ch.isprintable() or ch in "\t\n\r\f\v"))
    cut = 1 if len(data) > len(sample) else 0  # a multi-byte character cut at the sample's end
    return odd <= cut + len(text) // 50


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the fixed-position headers of PNG, GIF and BMP, else None."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            return struct.unpack_from(">II", data, 16)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack_from("<HH", data, 6)
        if data[:2] == b"BM":
            if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 header, 16-bit sizes
                return struct.unpack_from("<HH", data, 18)
            width, height = struct.unpack_from("<ii", data, 18)
            return abs(width), abs(height)  # negative height means top-down rows
    except struct.error:
        return None
    return None


def too_large_from_bomb(data: bytes, name: str | None) -> ImageTooLargeError:
    """Pillow's own limit (about 179 MP), which some plugins (GIF) apply while reading the header."""
    size = _declared_size(data)
    if size is not None:
        return ImageTooLargeError(
            f"image too large: {size[0]} x {size[1]} = {amount(size[0] * size[1])} exceeds the "
            "decoder's safety limit",
            source=name,
        )
    return ImageTooLargeError(TOO_LARGE_FOR_PILLOW, source=name)


def corrupt(image_format: str, detail: str, name: str | None) -> CorruptImageError:
    label = DISPLAY_NAMES.get(image_format, image_format)
    return CorruptImageError(f"corrupt or truncated {label}: {detail}", source=name)


def amount(pixels: int, *, exact: bool = False) -> str:
    """Pixel counts for messages: megapixels, or plain pixels for tiny numbers."""
    if pixels < 1_000_000:
        return f"{pixels:,} pixels"
    return f"{pixels / 1e6:g} MP" if exact else f"{pixels / 1e6:.1f} MP"
