"""Tests for matting.decode: every input kind, format, mode, orientation and failure.

All images are generated here with Pillow / numpy / struct; nothing is read from disk or network.
"""

from __future__ import annotations

import io
import struct
import threading
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, features

from matting.decode import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    ImageHeader,
    decode_image,
    read_header,
)
from matting.errors import (
    CorruptImageError,
    EmptyInputError,
    ImageTooLargeError,
    ImageTooSmallError,
    InvalidParameterError,
    MattingError,
    UnsupportedFormatError,
)

# ---------------------------------------------------------------------------------------------
# Helpers


def gradient(height: int = 32, width: int = 48) -> np.ndarray:
    """Smooth, asymmetric RGB image: survives JPEG well and shows any flip or rotation."""
    y, x = np.mgrid[0:height, 0:width]
    red = x * 255 // max(width - 1, 1)
    green = y * 255 // max(height - 1, 1)
    blue = (x + 2 * y) * 255 // max(width + 2 * height - 3, 1)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def noise(height: int = 24, width: int = 40, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def handmade_png(samples: np.ndarray, bit_depth: int, color_type: int, *, width=None, height=None) -> bytes:
    """A PNG written byte by byte, for layouts Pillow cannot save (16-bit RGB, fake sizes)."""
    rows_height, rows_width = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + samples[row].astype(dtype).tobytes() for row in range(rows_height))
    header = struct.pack(
        ">IIBBBBB",
        rows_width if width is None else width,
        rows_height if height is None else height,
        bit_depth,
        color_type,
        0,
        0,
        0,
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows for stored pixels with this EXIF orientation (numpy, independent)."""
    swap = (1, 0, 2) if array.ndim == 3 else (1, 0)
    return {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(swap),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(swap),
        8: lambda a: np.rot90(a, 1),
    }[orientation](array)


def u16_to_u8(values: np.ndarray) -> np.ndarray:
    return ((values.astype(np.int64) + 128) // 257).astype(np.uint8)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def check_result(result: DecodedImage, width: int, height: int) -> None:
    """Invariants every decode must meet."""
    assert result.rgb.dtype == np.uint8
    assert result.rgb.shape == (height, width, 3)
    assert result.rgb.flags["C_CONTIGUOUS"]
    assert result.size == (width, height)
    if result.alpha is not None:
        assert result.alpha.dtype == np.uint8
        assert result.alpha.shape == (height, width)
        assert result.alpha.flags["C_CONTIGUOUS"]


def expect_error(error_class, call, *words):
    """The call raises error_class with a one-line message that mentions every word."""
    with pytest.raises(error_class) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert len(message) < 300, message
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    return info.value


# ---------------------------------------------------------------------------------------------
# Input kinds


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_bytes_like_inputs(wrap):
    pixels = noise()
    result = decode_image(wrap(encode(Image.fromarray(pixels), "PNG")))
    check_result(result, 40, 24)
    assert np.array_equal(result.rgb, pixels)
    assert result.alpha is None and result.format == "PNG" and result.notices == []


@pytest.mark.parametrize("as_path", [str, Path])
def test_path_inputs(tmp_path, as_path):
    pixels = noise()
    path = tmp_path / "holiday.png"
    path.write_bytes(encode(Image.fromarray(pixels), "PNG"))
    result = decode_image(as_path(path))
    assert np.array_equal(result.rgb, pixels)
    assert result.name == "holiday.png"


def test_file_object_inputs(tmp_path):
    pixels = noise()
    data = encode(Image.fromarray(pixels), "PNG")
    path = tmp_path / "upload.png"
    path.write_bytes(data)
    with open(path, "rb") as handle:
        result = decode_image(handle)
    assert np.array_equal(result.rgb, pixels) and result.name == "upload.png"
    result = decode_image(io.BytesIO(data), name="given.png")
    assert np.array_equal(result.rgb, pixels) and result.name == "given.png"


def test_pil_image_inputs():
    pixels = noise(channels=4)
    pixels[0, 0, 3] = 10
    source = Image.fromarray(pixels, "RGBA")
    result = decode_image(source)
    check_result(result, 40, 24)
    assert result.format == "PIL"
    assert np.array_equal(result.rgb, pixels[:, :, :3]) and np.array_equal(result.alpha, pixels[:, :, 3])
    result.rgb[:] = 0  # the caller's image must not share memory with the result
    assert np.array_equal(np.asarray(source), pixels)


def test_pil_image_input_lazy_file_keeps_orientation_and_name(tmp_path):
    pixels = noise()
    path = tmp_path / "phone.png"
    Image.fromarray(pixels).save(path, exif=exif_bytes(6))
    with Image.open(path) as lazy:
        result = decode_image(lazy)
    assert np.array_equal(result.rgb, upright(pixels, 6))
    assert result.name == "phone.png"


@pytest.mark.parametrize("mode", ["YCbCr", "HSV", "LAB", "CMYK", "1", "L", "P", "RGBa", "La", "PA"])
def test_pil_image_input_modes(mode):
    if mode == "La":  # premultiplied gray + alpha cannot be converted to directly
        source = Image.new("LA", (48, 32), (90, 200)).convert("La")
    else:
        source = Image.fromarray(gradient()).convert(mode)
    result = decode_image(source)
    check_result(result, 48, 32)
    if mode in ("RGBa", "La", "PA"):
        reference = source.convert("LA" if mode == "La" else "RGBA").convert("RGBA")
        assert max_diff(result.rgb, np.asarray(reference)[:, :, :3]) <= 1
    else:
        assert max_diff(result.rgb, np.asarray(source.convert("RGB"))) <= 1


def test_pil_image_input_truncated_file():
    data = encode(Image.fromarray(noise(64, 64)), "PNG")
    lazy = Image.open(io.BytesIO(data[: len(data) // 2]))
    expect_error(CorruptImageError, lambda: decode_image(lazy, name="half.png"), "half.png", "damaged")


def test_numpy_uint8_shapes():
    gray = noise(channels=1)
    for array in (gray, gray[:, :, None]):
        result = decode_image(array)
        check_result(result, 40, 24)
        assert result.format == "array"
        assert all(np.array_equal(result.rgb[:, :, c], gray) for c in range(3))
    rgb = noise()
    result = decode_image(rgb)
    assert np.array_equal(result.rgb, rgb) and result.alpha is None
    result.rgb[:] = 0
    assert not np.all(rgb == 0), "the result must not alias the caller's array"


def test_numpy_rgba_keeps_alpha_and_drops_opaque_alpha():
    rgba = noise(channels=4)
    result = decode_image(rgba)
    assert np.array_equal(result.rgb, rgba[:, :, :3]) and np.array_equal(result.alpha, rgba[:, :, 3])
    rgba[:, :, 3] = 255
    assert decode_image(rgba).alpha is None


def test_numpy_non_contiguous_views():
    rgb = noise(height=30, width=50)
    view = rgb[::2, ::-3]
    result = decode_image(view)
    assert np.array_equal(result.rgb, view) and result.rgb.flags["C_CONTIGUOUS"]


def test_numpy_uint16_scaled_with_rounding():
    values = np.array([[0, 128, 129, 385, 386], [257, 32896, 65407, 65408, 65535]], dtype=np.uint16)
    result = decode_image(values)
    assert np.array_equal(result.rgb[:, :, 0], u16_to_u8(values))
    assert result.rgb[1, 4, 0] == 255 and result.rgb[0, 2, 0] == 1
    assert any("16-bit" in notice for notice in result.notices)
    rgb16 = np.random.default_rng(1).integers(0, 65536, (6, 9, 3)).astype(np.uint16)
    assert np.array_equal(decode_image(rgb16).rgb, u16_to_u8(rgb16))
    big_endian = rgb16.astype(">u2")
    assert np.array_equal(decode_image(big_endian).rgb, u16_to_u8(rgb16))


def test_numpy_bool():
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:3, 2:5] = True
    result = decode_image(mask)
    assert set(np.unique(result.rgb)) == {0, 255}
    assert np.array_equal(result.rgb[:, :, 1] == 255, mask)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_numpy_float_unit_range(dtype):
    values = np.array([[0.0, 0.5, 1.0], [0.2, 0.002, 0.998]], dtype=dtype)
    result = decode_image(values)
    expected = np.rint(values.astype(np.float64) * 255).astype(np.uint8)
    assert max_diff(result.rgb[:, :, 0], expected) <= (1 if dtype == np.float16 else 0)
    assert result.notices == []


def test_numpy_float_out_of_range_is_clipped_with_notice():
    values = np.array([[-0.5, 0.5, 3.0]], dtype=np.float32)
    result = decode_image(values)
    assert list(result.rgb[0, :, 0]) == [0, 128, 255]
    assert any("clipped" in notice for notice in result.notices)


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros(10, np.uint8), ["shape", "(10,)"]),
        (np.zeros((2, 3, 4, 3), np.uint8), ["shape", "(2, 3, 4, 3)"]),
        (np.zeros((4, 4, 2), np.uint8), ["shape", "(4, 4, 2)"]),
        (np.zeros((4, 4, 5), np.uint8), ["shape", "(4, 4, 5)"]),
        (np.zeros((4, 4), np.int64), ["int64", "uint8"]),
        (np.zeros((4, 4, 3), np.int16), ["int16"]),
        (np.zeros((4, 4), np.complex64), ["complex64"]),
        (np.zeros((4, 4), object), ["object"]),
        (np.array([[0.5, np.nan]], np.float32), ["nan"]),
        (np.array([[0.5, np.inf]], np.float64), ["infinite"]),
    ],
)
def test_numpy_bad_inputs(array, words):
    expect_error(InvalidParameterError, lambda: decode_image(array), *words)


def test_numpy_empty_array_is_too_small():
    expect_error(ImageTooSmallError, lambda: decode_image(np.zeros((0, 5, 3), np.uint8)), "5 x 0")


def test_numpy_and_pil_respect_max_pixels():
    array, image = np.zeros((20, 30), np.uint8), Image.new("RGB", (30, 20))
    expect_error(ImageTooLargeError, lambda: decode_image(array, max_pixels=500), "30 x 20", "500")
    expect_error(ImageTooLargeError, lambda: decode_image(image, max_pixels=500), "30 x 20")


@pytest.mark.parametrize(
    "source, error_class, words",
    [
        (None, EmptyInputError, ["no image"]),
        (12345, InvalidParameterError, ["int"]),
        ([[1, 2], [3, 4]], InvalidParameterError, ["list", "numpy array"]),
        (io.StringIO("text"), InvalidParameterError, ["text mode", "binary"]),
    ],
)
def test_bad_source_types(source, error_class, words):
    expect_error(error_class, lambda: decode_image(source), *words)


def test_missing_path_and_folder(tmp_path):
    expect_error(InvalidParameterError, lambda: decode_image(tmp_path / "nope.jpg"), "not found", "nope.jpg")
    expect_error(InvalidParameterError, lambda: decode_image(str(tmp_path)), "folder")


@pytest.mark.parametrize("bad", [0, -5, 1.5, "100", True, None])
def test_bad_max_pixels(bad):
    expect_error(InvalidParameterError, lambda: decode_image(noise(), max_pixels=bad), "max_pixels")


# ---------------------------------------------------------------------------------------------
# Formats


@pytest.mark.parametrize(
    "fmt, options, tolerance",
    [
        ("JPEG", {"quality": 95}, 12),
        ("PNG", {}, 0),
        ("WEBP", {"lossless": True}, 0),
        ("WEBP", {"quality": 95}, 20),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("TIFF", {"compression": "tiff_lzw"}, 0),
        ("PPM", {}, 0),
        ("ICO", {"sizes": [(48, 32)]}, 0),
    ],
)
def test_formats_decode(fmt, options, tolerance):
    pixels = gradient()
    data = encode(Image.fromarray(pixels), fmt, **options)
    header = read_header(data)
    assert (header.format, header.width, header.height, header.orientation, header.n_frames) == (
        fmt,
        48,
        32,
        1,
        1,
    )
    result = decode_image(data, name=f"picture.{fmt.lower()}")
    check_result(result, 48, 32)
    assert result.format == fmt and result.name == f"picture.{fmt.lower()}"
    assert max_diff(result.rgb, pixels) <= tolerance
    assert result.alpha is None


def test_gif_palette_is_exact():
    pixels = (gradient() // 64 * 64).astype(np.uint8)  # 4 levels per channel: fits a palette
    data = encode(Image.fromarray(pixels), "GIF")
    assert read_header(data).format == "GIF"
    result = decode_image(data)
    assert np.array_equal(result.rgb, pixels) and result.notices == []


@pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF")
def test_avif_decodes():
    pixels = gradient()
    result = decode_image(encode(Image.fromarray(pixels), "AVIF", quality=90))
    check_result(result, 48, 32)
    assert result.format == "AVIF" and max_diff(result.rgb, pixels) <= 30


def test_jpeg_cv2_path_matches_pillow_exactly_enough():
    data = encode(Image.fromarray(noise(64, 80)), "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as reference:
        assert max_diff(decode_image(data).rgb, np.asarray(reference.convert("RGB"))) <= 2


def test_jpeg_with_trailer_after_eoi_decodes():
    # Phones append data after the JPEG (Samsung trailers, motion-photo videos).
    pixels = gradient()
    data = encode(Image.fromarray(pixels), "JPEG", quality=95)
    samsung = b"SEFH" + bytes(range(256)) * 4 + b"SEFT"
    motion_photo = b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 300
    for tail in (samsung, b"\x00" * 5000, motion_photo):
        result = decode_image(data + tail)
        assert max_diff(result.rgb, pixels) <= 12


def test_mpo_camera_jpeg_is_a_jpeg():
    first, second = Image.fromarray(gradient()), Image.new("RGB", (48, 32), (0, 0, 255))
    data = encode(first, "MPO", save_all=True, append_images=[second], quality=95)
    header = read_header(data)
    assert header.format == "JPEG" and header.n_frames == 2
    result = decode_image(data)
    assert result.format == "JPEG" and result.notices == []
    assert max_diff(result.rgb, gradient()) <= 12


def test_progressive_jpeg():
    pixels = gradient()
    result = decode_image(encode(Image.fromarray(pixels), "JPEG", quality=95, progressive=True))
    assert max_diff(result.rgb, pixels) <= 12


# ---------------------------------------------------------------------------------------------
# Modes


def test_gray_png_and_jpeg():
    gray = gradient()[:, :, 0]
    result = decode_image(encode(Image.fromarray(gray), "PNG"))
    assert all(np.array_equal(result.rgb[:, :, c], gray) for c in range(3))
    data = encode(Image.fromarray(gray), "JPEG", quality=95)
    assert read_header(data).mode == "L"
    result = decode_image(data)
    assert max_diff(result.rgb[:, :, 0], gray) <= 6
    assert np.array_equal(result.rgb[:, :, 0], result.rgb[:, :, 2])


def test_gray_alpha_png():
    gray, alpha = noise(channels=1, seed=1), noise(channels=1, seed=2)
    data = encode(Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG")
    assert read_header(data).mode == "LA"
    result = decode_image(data)
    assert np.array_equal(result.rgb[:, :, 1], gray) and np.array_equal(result.alpha, alpha)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "GIF"])
def test_bilevel(fmt):
    bits = noise(channels=1) > 127
    image = Image.fromarray(bits.astype(np.uint8) * 255).convert("1")
    result = decode_image(encode(image, fmt))
    assert np.array_equal(result.rgb[:, :, 0] == 255, bits)
    assert set(np.unique(result.rgb)) <= {0, 255}


def test_palette_png_without_transparency():
    image = Image.fromarray(gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    data = encode(image, "PNG")
    assert read_header(data).mode == "P"
    result = decode_image(data)
    assert np.array_equal(result.rgb, np.asarray(image.convert("RGB"))) and result.alpha is None


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_gives_alpha(fmt):
    image = Image.fromarray(gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    indices = np.asarray(image)
    transparent = int(indices[0, 0])
    result = decode_image(encode(image, fmt, transparency=transparent))
    assert result.alpha is not None
    assert np.array_equal(result.alpha == 0, indices == transparent)
    assert set(np.unique(result.alpha)) == {0, 255}


def test_png_palette_with_partial_alpha():
    image = Image.new("P", (4, 2))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    image.putdata([0, 1, 2, 0, 1, 2, 0, 1])
    data = encode(image, "PNG", transparency=bytes([0, 128, 255]))
    result = decode_image(data)
    assert list(result.alpha[0]) == [0, 128, 255, 0]
    assert list(result.rgb[0, 1]) == [0, 255, 0]


def test_rgb_and_gray_png_colour_key_transparency():
    pixels = noise(channels=3)
    pixels[2:4, 3:6] = (9, 8, 7)
    result = decode_image(encode(Image.fromarray(pixels), "PNG", transparency=(9, 8, 7)))
    assert np.array_equal(result.alpha == 0, np.all(pixels == (9, 8, 7), axis=-1))
    gray = noise(channels=1)
    gray[0, :5] = 77
    result = decode_image(encode(Image.fromarray(gray), "PNG", transparency=77))
    assert np.array_equal(result.alpha == 0, gray == 77)


@pytest.mark.parametrize(
    "fmt, options", [("PNG", {}), ("WEBP", {"lossless": True, "exact": True}), ("TIFF", {})]
)
def test_rgba_keeps_alpha(fmt, options):
    rgba = noise(channels=4)
    result = decode_image(encode(Image.fromarray(rgba, "RGBA"), fmt, **options))
    assert np.array_equal(result.rgb, rgba[:, :, :3]) and np.array_equal(result.alpha, rgba[:, :, 3])


def test_opaque_alpha_becomes_none():
    rgba = noise(channels=4)
    rgba[:, :, 3] = 255
    result = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert result.alpha is None and np.array_equal(result.rgb, rgba[:, :, :3])


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_matches_pillow_conversion(fmt):
    data = encode(Image.fromarray(gradient()).convert("CMYK"), fmt)
    header = read_header(data)
    assert header.mode == "CMYK"
    result = decode_image(data)
    with Image.open(io.BytesIO(data)) as reference:
        assert max_diff(result.rgb, np.asarray(reference.convert("RGB"))) <= 2
    assert any("CMYK" in notice for notice in result.notices)


def test_16bit_gray_png_and_tiff():
    values = np.random.default_rng(3).integers(0, 65536, (12, 17)).astype(np.uint16)
    values[0, :4] = [0, 128, 129, 65535]
    for fmt in ("PNG", "TIFF"):
        data = encode(Image.fromarray(values), fmt)
        assert read_header(data).mode.startswith("I;16")
        result = decode_image(data)
        assert np.array_equal(result.rgb[:, :, 0], u16_to_u8(values)), fmt
        assert np.array_equal(result.rgb[:, :, 2], u16_to_u8(values)), fmt
        assert any("16-bit" in notice for notice in result.notices)


def test_16bit_rgb_and_rgba_png():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 65536, (9, 11, 3)).astype(np.uint16)
    result = decode_image(handmade_png(rgb, 16, 2))
    assert np.array_equal(result.rgb, u16_to_u8(rgb))
    assert any("16-bit" in notice for notice in result.notices)
    rgba = rng.integers(0, 65536, (9, 11, 4)).astype(np.uint16)
    result = decode_image(handmade_png(rgba, 16, 6))
    assert np.array_equal(result.rgb, u16_to_u8(rgba[:, :, :3]))
    assert np.array_equal(result.alpha, u16_to_u8(rgba[:, :, 3]))
    gray_alpha = rng.integers(0, 65536, (9, 11, 2)).astype(np.uint16)
    result = decode_image(handmade_png(gray_alpha, 16, 4))
    assert np.array_equal(result.rgb[:, :, 1], u16_to_u8(gray_alpha[:, :, 0]))
    assert np.array_equal(result.alpha, u16_to_u8(gray_alpha[:, :, 1]))


def test_16bit_gray_png_with_colour_key():
    values = np.random.default_rng(5).integers(0, 65536, (6, 9)).astype(np.uint16)
    values[2, :3] = 4660
    data = handmade_png(values, 16, 0)
    ihdr_end = 8 + 12 + 13
    data = data[:ihdr_end] + png_chunk(b"tRNS", struct.pack(">H", 4660)) + data[ihdr_end:]
    result = decode_image(data)
    assert np.array_equal(result.rgb[:, :, 0], u16_to_u8(values))
    assert np.array_equal(result.alpha == 0, values == 4660)


def test_int32_and_float_tiff():
    values = np.array([[0, 255, 257, 65535]], dtype=np.int32)
    result = decode_image(encode(Image.fromarray(values, "I"), "TIFF"))
    assert list(result.rgb[0, :, 0]) == [0, 1, 1, 255]
    wide = np.array([[0, 50000, 100000, 200000]], dtype=np.int32)
    assert list(decode_image(encode(Image.fromarray(wide, "I"), "TIFF")).rgb[0, :, 0]) == [0, 64, 128, 255]
    floats = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    data = encode(Image.fromarray(floats, "F"), "TIFF")
    assert read_header(data).mode == "F"
    result = decode_image(data)
    assert list(result.rgb[0, :, 0]) == [0, 64, 128, 255]


def test_lab_tiff_matches_pillow_conversion():
    image = Image.fromarray(gradient()).convert("LAB")
    data = encode(image, "TIFF")
    assert read_header(data).mode == "LAB"
    assert max_diff(decode_image(data).rgb, np.asarray(image.convert("RGB"))) <= 1


# ---------------------------------------------------------------------------------------------
# EXIF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_png_orientation_exact(orientation):
    pixels = noise(height=5, width=8)  # non-square, asymmetric
    data = encode(Image.fromarray(pixels), "PNG", exif=exif_bytes(orientation))
    header = read_header(data)
    assert header.orientation == orientation
    assert header.upright_size == ((5, 8) if orientation >= 5 else (8, 5))
    result = decode_image(data)
    assert np.array_equal(result.rgb, upright(pixels, orientation))
    with Image.open(io.BytesIO(data)) as reference:  # agrees with Pillow's own rule
        assert np.array_equal(result.rgb, np.asarray(ImageOps.exif_transpose(reference)))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_orientation(orientation):
    pixels = gradient()
    data = encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif_bytes(orientation))
    header = read_header(data)
    assert header.orientation == orientation and (header.width, header.height) == (48, 32)
    result = decode_image(data)
    check_result(result, *header.upright_size)
    with Image.open(io.BytesIO(data)) as stored:
        stored_pixels = np.asarray(stored.convert("RGB"))
    assert max_diff(result.rgb, upright(stored_pixels, orientation)) <= 2
    assert max_diff(result.rgb, upright(pixels, orientation)) <= 12


def test_rgba_orientation_turns_alpha_too():
    rgba = noise(height=5, width=8, channels=4)
    result = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG", exif=exif_bytes(6)))
    assert np.array_equal(result.alpha, upright(rgba[:, :, 3], 6))


def test_webp_and_tiff_orientation():
    pixels = noise(height=5, width=8)
    data = encode(Image.fromarray(pixels), "WEBP", lossless=True, exif=exif_bytes(8))
    assert np.array_equal(decode_image(data).rgb, upright(pixels, 8))
    for orientation in (3, 6):  # Pillow turns TIFF upright itself: it must not happen twice
        data = encode(Image.fromarray(pixels), "TIFF", exif=exif_bytes(orientation))
        header = read_header(data)
        assert (header.width, header.height, header.orientation) == (8, 5, orientation)
        assert np.array_equal(decode_image(data).rgb, upright(pixels, orientation))
        with Image.open(io.BytesIO(data)) as lazy:
            assert np.array_equal(decode_image(lazy).rgb, upright(pixels, orientation))


def test_png_exif_chunk_after_pixel_data():
    pixels = noise(height=5, width=8)
    data = encode(Image.fromarray(pixels), "PNG")
    iend = data.rindex(b"IEND") - 4
    payload = exif_bytes(6)
    moved = data[:iend] + png_chunk(b"eXIf", payload) + data[iend:]
    assert read_header(moved).orientation == 6
    assert np.array_equal(decode_image(moved).rgb, upright(pixels, 6))


@pytest.mark.parametrize("value", [0, 9, 255])
def test_invalid_orientation_is_ignored(value):
    pixels = noise(height=5, width=8)
    data = encode(Image.fromarray(pixels), "PNG", exif=exif_bytes(value))
    assert read_header(data).orientation == 1
    assert np.array_equal(decode_image(data).rgb, pixels)


def test_read_header_never_decodes_pixels(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("read_header decoded pixels")

    images = {
        "JPEG": encode(Image.fromarray(gradient()), "JPEG", exif=exif_bytes(6)),
        "PNG": encode(Image.fromarray(gradient()), "PNG"),  # no eXIf: Pillow's getexif would load
        "GIF": encode(
            Image.fromarray(gradient()), "GIF", save_all=True, append_images=[Image.new("RGB", (48, 32))]
        ),
        "WEBP": encode(Image.fromarray(gradient()), "WEBP"),
        "TIFF": encode(Image.fromarray(gradient()), "TIFF", exif=exif_bytes(3)),
    }
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    for fmt, data in images.items():
        header = read_header(data)
        assert header.format == fmt and (header.width, header.height) == (48, 32)


# ---------------------------------------------------------------------------------------------
# Animation


def frames(count: int = 3) -> list[Image.Image]:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    return [Image.new("RGB", (10, 6), colours[i]) for i in range(count)]


@pytest.mark.parametrize("fmt, label", [("GIF", "GIF"), ("PNG", "PNG"), ("WEBP", "WebP")])
def test_animation_uses_first_frame_with_notice(fmt, label):
    first, *rest = frames()
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(first, fmt, save_all=True, append_images=rest, duration=100, **options)
    assert read_header(data).n_frames == 3
    result = decode_image(data)
    check_result(result, 10, 6)
    assert np.all(result.rgb == (255, 0, 0))
    assert f"animated {label}: only the first frame is used" in result.notices


def test_multipage_tiff_notice():
    first, *rest = frames()
    result = decode_image(encode(first, "TIFF", save_all=True, append_images=rest))
    assert np.all(result.rgb == (255, 0, 0))
    assert any("multi-page TIFF" in notice for notice in result.notices)


# ---------------------------------------------------------------------------------------------
# Sizes


def bomb_png(width: int = 50000, height: int = 50000) -> bytes:
    """A valid-looking PNG whose IHDR declares a huge size over a tiny IDAT."""
    return handmade_png(np.zeros((1, 3), np.uint8), 8, 2, width=width, height=height)


def test_huge_declared_png_refused_fast():
    data = bomb_png()
    assert len(data) < 100
    header = read_header(data)
    assert (header.width, header.height) == (50000, 50000)
    start = time.perf_counter()
    error = expect_error(
        ImageTooLargeError,
        lambda: decode_image(data, name="bomb.png"),
        "50000 x 50000",
        "2500.0 MP",
        "100 MP",
        "bomb.png",
    )
    # from the header alone: decoding 2500 MP would take minutes and 7.5 GB (the bound leaves a loaded machine room)
    assert time.perf_counter() - start < 0.5
    assert error.code == "image_too_large" and DEFAULT_MAX_PIXELS == 100_000_000


def test_huge_declared_jpeg_and_gif_refused():
    data = bytearray(jpeg_data())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
    expect_error(ImageTooLargeError, lambda: decode_image(bytes(data)), "60000 x 60000", "3600.0 MP")
    gif = bytearray(encode(Image.new("P", (4, 3)), "GIF"))
    gif[6:10] = struct.pack("<HH", 60000, 60000)  # logical screen
    descriptor = gif.index(b",")
    gif[descriptor + 5 : descriptor + 9] = struct.pack("<HH", 60000, 60000)  # first frame
    expect_error(ImageTooLargeError, lambda: decode_image(bytes(gif)), "60000 x 60000")


def test_max_pixels_is_checked_from_header():
    data = encode(Image.fromarray(noise()), "PNG")
    expect_error(
        ImageTooLargeError, lambda: decode_image(data, max_pixels=959), "40 x 24", "960 pixels", "959 pixels"
    )
    assert decode_image(data, max_pixels=960).size == (40, 24)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
@pytest.mark.parametrize("size", [(1, 1), (1, 20000), (20000, 1)])
def test_extreme_aspect_and_tiny_images(fmt, size):
    if fmt == "WEBP" and max(size) > 16383:
        pytest.skip("WebP cannot store more than 16383 pixels per side")
    width, height = size
    pixels = np.full((height, width, 3), (200, 100, 50), np.uint8)
    result = decode_image(encode(Image.fromarray(pixels), fmt))
    check_result(result, width, height)
    assert max_diff(result.rgb, pixels) <= (8 if fmt in ("JPEG", "WEBP", "GIF") else 0)


@pytest.mark.parametrize("width, height", [(0, 5), (7, 0)])
def test_zero_sized_png_is_too_small(width, height):
    data = handmade_png(np.zeros((1, 3), np.uint8), 8, 2, width=width, height=height)
    expect_error(ImageTooSmallError, lambda: decode_image(data), f"{width} x {height}")


# ---------------------------------------------------------------------------------------------
# Not images, broken images


SUPPORTED = "JPEG, PNG, WebP"


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", b"not really")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data, words",
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', ["SVG", SUPPORTED]),
        (b'\xef\xbb\xbf<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', ["SVG"]),
        (b'<?xml version="1.0"?><note>hi</note>', ["XML"]),
        (b"<!-- Generator: Illustrator -->\n<svg viewBox='0 0 1 1'/>", ["SVG"]),
        (b"<!DOCTYPE html><html><body>hi</body></html>", ["HTML"]),
        (b"<!doctype html><html><body><svg></svg></body></html>", ["HTML"]),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", ["PDF"]),
        (zip_bytes(), ["ZIP"]),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", ["HEIC"]),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", ["video"]),
        (b"8BPS\x00\x01" + bytes(40), ["Photoshop"]),
        (b"hello, this is a note\nwith two lines\n", ["plain text", SUPPORTED]),
        (b"MZ-1000 manual: press START\n", ["plain text"]),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00", ["program"]),
        ("Grüße, ça va? 日本語".encode() * 300, ["plain text"]),
        (np.random.default_rng(5).bytes(3000), ["not a recognised image format"]),
        (np.random.default_rng(6).bytes(7), ["not a recognised image format"]),
    ],
)
def test_not_images(data, words):
    expect_error(UnsupportedFormatError, lambda: decode_image(data), *words)
    expect_error(UnsupportedFormatError, lambda: read_header(data), *words)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: milk, eggs\n")
    error = expect_error(UnsupportedFormatError, lambda: decode_image(path), "notes.jpg", "plain text")
    assert error.source == "notes.jpg" and error.code == "unsupported_format"


def test_empty_inputs(tmp_path):
    expect_error(EmptyInputError, lambda: decode_image(b""), "empty")
    expect_error(EmptyInputError, lambda: read_header(b""), "empty")
    path = tmp_path / "blank.png"
    path.write_bytes(b"")
    expect_error(EmptyInputError, lambda: decode_image(path), "blank.png", "empty")
    expect_error(EmptyInputError, lambda: decode_image(io.BytesIO()), "empty")


def jpeg_data(**options) -> bytes:
    return encode(Image.fromarray(gradient(96, 128)), "JPEG", quality=90, **options)


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.95, -2])
def test_truncated_jpeg(progressive, keep):
    data = jpeg_data(progressive=progressive)
    cut = data[:keep] if keep < 0 else data[: int(len(data) * keep)]
    expect_error(CorruptImageError, lambda: decode_image(cut, name="cut.jpg"), "JPEG", "cut.jpg")
    expect_error(CorruptImageError, lambda: decode_image(cut + b"\x00" * 4096), "JPEG")


@pytest.mark.parametrize("keep", [0.3, 0.7, 0.95, -4])
def test_truncated_png(keep):
    data = encode(Image.fromarray(noise(64, 64)), "PNG")
    cut = data[:keep] if keep < 0 else data[: int(len(data) * keep)]
    expect_error(CorruptImageError, lambda: decode_image(cut), "PNG")


@pytest.mark.parametrize("fmt", ["WEBP", "GIF", "BMP", "TIFF"])
def test_truncated_other_formats(fmt):
    data = encode(Image.fromarray(noise(64, 64)), fmt)
    expect_error(CorruptImageError, lambda: decode_image(data[: len(data) // 2]), "truncated")


def test_truncation_detected_even_if_pillow_is_lenient(monkeypatch):
    # Another library may flip Pillow's global switch; our own checks must still refuse.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    cmyk = encode(Image.fromarray(gradient(96, 128)).convert("CMYK"), "JPEG")
    palette = encode(Image.fromarray(noise(64, 64)).convert("P"), "PNG")
    for data, fmt in ((cmyk, "JPEG"), (palette, "PNG"), (jpeg_data(), "JPEG")):
        expect_error(CorruptImageError, lambda: decode_image(data[: len(data) * 2 // 3]), fmt)


def test_decoding_leaves_pillow_settings_alone():
    before = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
    decode_image(jpeg_data())
    with pytest.raises(ImageTooLargeError):
        decode_image(bomb_png())
    assert (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS) == before


@pytest.mark.parametrize(
    "data, fmt",
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 10, "PNG"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"GIF89a\x05", "GIF"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "WebP"),
    ],
)
def test_damaged_headers(data, fmt):
    expect_error(CorruptImageError, lambda: decode_image(data), fmt, "damaged")


def test_png_with_bad_ihdr_crc():
    data = bytearray(encode(Image.fromarray(noise()), "PNG"))
    data[29] ^= 0xFF  # IHDR CRC
    expect_error(CorruptImageError, lambda: decode_image(bytes(data)), "PNG")


def test_corrupt_png_pixel_data():
    data = bytearray(encode(Image.fromarray(noise(64, 64)), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 400] = bytes(390)  # destroy the zlib stream, keep the length
    expect_error(CorruptImageError, lambda: decode_image(bytes(data)), "PNG")


# ---------------------------------------------------------------------------------------------
# Concurrency and result type


def test_concurrent_decodes_are_independent():
    inputs = [
        encode(Image.fromarray(gradient()), "JPEG", quality=95, exif=exif_bytes(6)),  # OpenCV path
        encode(Image.fromarray(noise(channels=4), "RGBA"), "PNG"),
        encode(Image.fromarray(gradient()).convert("CMYK"), "JPEG"),  # Pillow path
        encode(Image.fromarray(noise()).convert("P"), "GIF"),
    ]
    expected = [decode_image(data).rgb for data in inputs]
    barrier = threading.Barrier(4)

    def work(index: int) -> bool:
        barrier.wait()  # start together to maximise overlap
        picks = [i % len(inputs) for i in range(index, index + 12)]
        return all(np.array_equal(decode_image(inputs[i]).rgb, expected[i]) for i in picks)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(4)))


def test_header_dataclass_is_frozen():
    header = ImageHeader("PNG", 10, 20, "RGB", 6, 1)
    assert header.upright_size == (20, 10)
    with pytest.raises(AttributeError):
        header.width = 5  # type: ignore[misc]


def test_all_errors_are_matting_errors():
    errors = (CorruptImageError, EmptyInputError, ImageTooLargeError, ImageTooSmallError)
    errors += (InvalidParameterError, UnsupportedFormatError)
    assert all(issubclass(error_class, MattingError) for error_class in errors)


def _jpeg_with_camera_size(stored_wh, camera_wh, orientation=6) -> bytes:
    image = Image.new("RGB", stored_wh, (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0xA002] = camera_wh[0]
    exif.get_ifd(0x8769)[0xA003] = camera_wh[1]
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_quarter_turn_tag_left_on_already_rotated_pixels_is_ignored():
    # An editor turned the 60 x 40 camera frame to 40 x 60 pixels but kept orientation 6.
    stale = _jpeg_with_camera_size(stored_wh=(40, 60), camera_wh=(60, 40))
    assert decode_image(stale).size == (40, 60)
    assert read_header(stale).orientation == 1


def test_quarter_turn_tag_on_camera_frame_is_applied():
    fresh = _jpeg_with_camera_size(stored_wh=(60, 40), camera_wh=(60, 40))
    assert decode_image(fresh).size == (40, 60)
    assert read_header(fresh).orientation == 6


def test_notices_are_codes_with_parameters_and_their_english_sentence():
    """A notice is data (code and parameters, for the UI's translations) and its English sentence (for scripts):
    it survives pickling with both."""
    import pickle

    from matting.notices import Notice

    notice = Notice("animated", label="GIF")
    assert notice == "animated GIF: only the first frame is used"
    assert (notice.code, notice.params) == ("animated", {"label": "GIF"})
    back = pickle.loads(pickle.dumps(notice))
    assert back == notice and (back.code, back.params) == ("animated", {"label": "GIF"})
    with pytest.raises(KeyError):
        Notice("no_such_notice")


# ---------------------------------------------------------------- decoders' warnings
def _jpeg_with_corrupt_exif(seed: int = 0) -> bytes:
    image = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    out = io.BytesIO()
    image.save(out, "JPEG")
    data = out.getvalue()
    exif = b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00" + b"\xff\xff" + b"\x00" * 20   # 65535 entries, 20 bytes
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + data[2:]


def test_a_decoders_warning_becomes_a_notice_of_that_image_each_time_and_prints_nothing(capfd):
    """Pillow's "Corrupt EXIF data" went to stderr naming Pillow's source file, once per process: now each image
    that has it gets it as a notice (its name is said where notices are shown), from any thread, and the other
    images of a batch get none."""
    from matting.notices import Notice

    def notices(data: bytes, name: str) -> list[Notice]:
        return [n for n in decode_image(data, name=name).notices if n.code == "decoder_warning"]

    bad, good = _jpeg_with_corrupt_exif(), encode(Image.new("RGB", (48, 40)), "JPEG")
    first = notices(bad, "a.jpg")
    assert len(first) == 1 and first[0].startswith("Corrupt EXIF data") and "\n" not in first[0]
    assert first[0].endswith("(the image was read anyway)")
    assert notices(bad, "b.jpg") == first   # the second time too, not once per process
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(notices, [bad, good] * 8, [f"p{i}.jpg" for i in range(16)]))
    assert found == [first, []] * 8
    assert "EXIF" not in capfd.readouterr().err


def test_a_warning_outside_a_decode_is_shown_as_python_shows_it():
    import warnings

    from matting.decode_warnings import caught

    with caught() as inside:
        warnings.warn("collected here", UserWarning)
    with pytest.warns(UserWarning, match="not ours"):
        warnings.warn("not ours", UserWarning)
    assert inside == ["collected here"]


def test_pillows_warning_outside_a_decode_is_printed_once_as_python_would(tmp_path):
    """caught() lets Pillow's UserWarnings through every time so that each photo gets its notice; outside a decode
    (the web framework opening an upload, say) the same warning must still print once, not at every image.
    In a fresh interpreter: pytest records warnings instead of printing them."""
    import subprocess
    import sys

    (tmp_path / "bad.jpg").write_bytes(_jpeg_with_corrupt_exif())
    script = ("import io, sys, warnings\nfrom PIL import Image\nfrom matting.decode import decode_image\n"
              "data = open(sys.argv[1], 'rb').read()\ndecode_image(data)\n"
              "for _ in range(3):\n    Image.open(io.BytesIO(data)).getexif()\n"
              "print('--', file=sys.stderr)\nwarnings.simplefilter('always')\n"   # the user's own filter wins
              "for _ in range(2):\n    Image.open(io.BytesIO(data)).getexif()\n")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "bad.jpg")], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr
    ours, users = run.stderr.split("--\n")
    assert (ours.count("Corrupt EXIF data"), users.count("Corrupt EXIF data")) == (1, 2), run.stderr
