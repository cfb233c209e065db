"""Hostile and unusual inputs, generated on the spot (nothing downloaded), with what each must produce.

Shared by the engine, CLI and web API tests: each case is either a specific one-line error (the error class
and a word the message must contain) or a correct result (its expected upright output size).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    filename: str
    data: bytes
    error: str | None = None           # MattingError subclass name, when the input must be refused
    message_word: str | None = None    # a word the one-line message must contain
    size: tuple[int, int] | None = None  # expected (width, height) of the result, when it must succeed


def _png(array: np.ndarray, **params) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", **params)
    return buffer.getvalue()


def _photo(width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), (xx + yy) % 256], -1)
    return rgb.astype(np.uint8)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 50000, height: int = 50000) -> bytes:
    """A valid-looking PNG whose header declares width x height pixels, in a few dozen bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _chunk(b"IEND", b""))


def _jpeg(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **params)
    return buffer.getvalue()


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return _jpeg(Image.fromarray(_photo(64, 40)), exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.fromarray(np.full((30, 40, 3), c, np.uint8)).convert("P") for c in (30, 120, 220)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def _palette_with_transparency() -> bytes:
    image = Image.fromarray(_photo(48, 32)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)
    return buffer.getvalue()


def zip_bomb() -> bytes:
    """A zip whose single entry declares a huge uncompressed size (deflated zeros, about 10 MB -> 10 GB claimed)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("huge.png", b"\x00" * (4 << 20))
    data = bytearray(buffer.getvalue())
    # Rewrite the declared uncompressed size in the central directory to 4 GB - 1.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", 0xFFFFFFFF - 1)
    local = data.find(b"PK\x03\x04")
    data[local + 22:local + 26] = struct.pack("<I", 0xFFFFFFFF - 1)
    return bytes(data)


def traversal_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../escape.png", _png(_photo(20, 10)))
        archive.writestr("/abs/evil.png", _png(_photo(20, 10)))
        archive.writestr("ok/fine.png", _png(_photo(20, 10)))
    return buffer.getvalue()


def image_cases() -> list[Case]:
    jpeg = _jpeg(Image.fromarray(_photo(64, 48)))
    png = _png(_photo(64, 48))
    gray16 = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50)
    return [
        Case("empty.png", b"", error="EmptyInputError", message_word="empty"),
        Case("random.jpg", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
             error="UnsupportedFormatError", message_word="image"),
        Case("truncated.jpg", jpeg[: len(jpeg) // 2], error="CorruptImageError", message_word="JPEG"),
        Case("truncated.png", png[: len(png) // 2], error="CorruptImageError", message_word="PNG"),
        Case("bomb.png", bomb_png(), error="ImageTooLargeError", message_word="50000"),
        Case("one_pixel.png", _png(_photo(1, 1)), size=(1, 1)),
        Case("tall.png", _png(_photo(1, 20000)), size=(1, 4096)),  # reduced to the working-size cap
        Case("gray16.png", _png(gray16), size=(40, 30)),
        Case("palette_transparent.png", _palette_with_transparency(), size=(48, 32)),
        Case("cmyk.jpg", _jpeg(Image.fromarray(_photo(40, 30)).convert("CMYK")), size=(40, 30)),
        Case("rotated.jpg", _exif_rotated_jpeg(), size=(40, 64)),
        Case("animated.gif", _animated_gif(), size=(40, 30)),
        Case("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
             error="UnsupportedFormatError", message_word="SVG"),
        Case("notes.jpg", "just some text, not a picture\n".encode() * 20,
             error="UnsupportedFormatError", message_word="text"),
        Case("archive.png", traversal_zip(), error="UnsupportedFormatError", message_word="zip"),
    ]


def write_cases(folder: Path, cases: list[Case] | None = None) -> list[tuple[Path, Case]]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for case in cases or image_cases():
        path = folder / case.filename
        path.write_bytes(case.data)
        written.append((path, case))
    return written
