"""The PNG encoder that runs where the pixels are (matting/png_device.py): every file it writes must read back, in
every reader we ship with, as exactly the pixels it was given. Run here on the CPU (the same torch code runs on the
GPU; its speed is measured by the batch bench)."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from matting import png_device
from matting.png_device import encode_png_stack


def _read_back(png: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(Pillow's pixels, OpenCV's pixels in RGB(A) order), after zlib checked every chunk's CRC and the Adler-32."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat = 8, b""
    while at < len(png):
        size, kind = struct.unpack(">I4s", png[at:at + 8])
        data = png[at + 8:at + 8 + size]
        assert struct.unpack(">I", png[at + 8 + size:at + 12 + size])[0] == zlib.crc32(kind + data), kind
        idat += data if kind == b"IDAT" else b""
        at += 12 + size
    zlib.decompress(idat)          # raises on a wrong Adler-32 or a malformed deflate stream
    pil = np.array(Image.open(io.BytesIO(png)))
    cv = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if cv.ndim == 3:
        cv = cv2.cvtColor(cv, cv2.COLOR_BGRA2RGBA if cv.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return pil, cv


def _expected(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image


@pytest.mark.parametrize("shape", [(2, 5, 7), (3, 4, 9, 4), (1, 1, 1, 3), (2, 33, 17, 3), (1, 17, 5, 1)])
def test_random_pixels_read_back_exactly(shape):
    images = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    outs = encode_png_stack(torch.from_numpy(images))
    assert len(outs) == shape[0]
    for image, png in zip(images, outs):
        pil, cv = _read_back(png)
        assert np.array_equal(pil, _expected(image))
        assert np.array_equal(cv, _expected(image))


def test_grey_and_alpha_two_channels_read_back_in_pillow():
    images = np.random.default_rng(5).integers(0, 256, (2, 6, 8, 2), dtype=np.uint8)
    for image, png in zip(images, encode_png_stack(torch.from_numpy(images))):
        assert np.array_equal(np.array(Image.open(io.BytesIO(png)).convert("LA")), image)


@pytest.mark.parametrize("run", [1, 7, 8, 9, 258, 259, 265, 266, 516, 517, 600, 1000])
def test_runs_of_every_length_around_the_match_limits(run):
    """Runs of one value become copies of the byte before: at most 258 bytes each, the rest literals or another
    copy; a run must not cross from one image into the next."""
    rng = np.random.default_rng(run)
    images = rng.integers(0, 256, (3, 4, 700), dtype=np.uint8)
    images[0, 1, 10:10 + run] = 17
    images[1, :, :] = 200                       # flat: every row a long run after filtering
    images[2, 0, 700 - min(run, 700):] = 0      # a run up to the end of the first row
    outs = encode_png_stack(torch.from_numpy(images))
    for image, png in zip(images, outs):
        pil, cv = _read_back(png)
        assert np.array_equal(pil, image) and np.array_equal(cv, image)


def test_a_flat_matte_is_small_and_a_matte_with_edges_near_the_cpu_encoders():
    flat = np.zeros((1, 1000, 1000), np.uint8)
    assert len(encode_png_stack(torch.from_numpy(flat))[0]) < 2_000      # 1 MB of zeros: runs, not literals
    yy, xx = np.mgrid[:600, :800]
    matte = (np.clip(1.2 - ((yy - 300) / 200) ** 2 - ((xx - 400) / 250) ** 2, 0, 1) * 255).astype(np.uint8)
    ours = encode_png_stack(torch.from_numpy(matte[None]))[0]
    opencv = cv2.imencode(".png", matte, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1]
    assert np.array_equal(_read_back(ours)[0], matte)
    assert len(ours) < 2 * len(opencv), (len(ours), len(opencv))


def test_photo_pixels_compress_below_their_raw_size(example_rgba):
    png = encode_png_stack(torch.from_numpy(example_rgba[None]))[0]
    pil, _ = _read_back(png)
    assert np.array_equal(pil, example_rgba)
    assert len(png) < 0.75 * example_rgba.nbytes


@pytest.fixture
def example_rgba():
    from tests.app_server import EXAMPLES
    rgb = np.array(Image.open(EXAMPLES / "rocket.jpg").convert("RGB"))[:300, :400]
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[50:250, 100:300] = 255
    alpha[40:50, 100:300] = np.linspace(0, 255, 10, dtype=np.uint8)[:, None]
    return np.dstack([rgb, alpha])


def test_a_step_hook_sees_every_step_in_order_and_changes_no_byte():
    """The bench times png_device's steps through encode_png_stack's ``step`` hook (matting/bench/png.py), so it
    measures the encoder's own sequence, not a copy of it."""
    images = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (2, 20, 30, 4), dtype=np.uint8))
    seen = []

    def step(name, function, *args):
        seen.append(name)
        return function(*args)

    assert encode_png_stack(images, step=step) == encode_png_stack(images)
    assert seen == ["filter rows", "tokens (runs)", "counts and Adler-32 (to the host)", "Huffman code (host)",
                    "pack (to the host)"]


def test_huffman_codes_stay_within_fifteen_bits_and_are_complete():
    """Skewed counts (one byte value everywhere, others once) would give codes deeper than deflate allows."""
    counts = np.zeros(png_device._NONE, np.int64)
    counts[:256] = [10 ** 9 if v == 0 else 2 ** (v % 30) for v in range(256)]
    table = png_device._HuffmanTable(counts)
    used = table.lengths[table.lengths > 0]
    assert used.max() <= 15
    assert sum(2.0 ** -used) == pytest.approx(1.0)       # Kraft: complete, as zlib requires of literal codes


def test_length_codes_follow_rfc_1951():
    symbol, bits, value = png_device._LENGTH_SYMBOL, png_device._LENGTH_EXTRA_BITS, png_device._LENGTH_EXTRA
    assert (symbol[3], bits[3]) == (257, 0) and (symbol[10], bits[10]) == (264, 0)
    assert (symbol[11], bits[11], value[11]) == (265, 1, 0) and (symbol[12], value[12]) == (265, 1)
    assert (symbol[227], bits[227], value[227]) == (284, 5, 0) and (symbol[257], value[257]) == (284, 30)
    assert (symbol[258], bits[258]) == (285, 0)


def test_wrong_inputs_are_refused_with_what_was_given():
    with pytest.raises(ValueError, match="uint8"):
        encode_png_stack(torch.zeros((1, 2, 2), dtype=torch.float32))
    with pytest.raises(ValueError, match=r"\(1, 2, 2, 5\)"):
        encode_png_stack(torch.zeros((1, 2, 2, 5), dtype=torch.uint8))
    assert encode_png_stack(torch.zeros((0, 2, 2, 4), dtype=torch.uint8)) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs on the lent H200; CI has none)")
def test_the_gpu_writes_the_same_files_as_the_cpu():
    """Integer work only: the device's files must be byte for byte the CPU's, runs, stacks and all."""
    images = np.random.default_rng(9).integers(0, 256, (3, 50, 300, 4), dtype=np.uint8)
    images[1, 10:40] = 0
    images[2, :, :, 3] = 255
    on_cpu = encode_png_stack(torch.from_numpy(images))
    on_gpu = encode_png_stack(torch.from_numpy(images).cuda())
    assert on_gpu == on_cpu
    matte = torch.from_numpy(images[..., 3].copy())
    assert encode_png_stack(matte.cuda()) == encode_png_stack(matte)


def test_the_png_bench_prints_both_encoders_and_the_steps(capsys, tmp_path):
    """python -m matting.bench --png on the CPU, on synthetic pictures (no photos folder): every file exact."""
    from matting.bench.pipeline import main

    code = main(["--png", "--device", "cpu", "--photos", str(tmp_path), "--count", "2", "--megapixels", "0.05",
                 "--rounds", "1", "--stack", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert ", one CPU thread |" in out and "| png_device, stacks of 2 |" in out
    assert out.count("| yes |") == 2                      # stacks of 1 and of 2 both read back exactly
    for step in ("filter rows", "tokens (runs)", "pack (to the host)"):
        assert f"| {step} |" in out
