"""JPEGs decoded on the GPU (matting/decode_device.py): which ones go, and that the batch loses nothing when the GPU
refuses one. nvJPEG itself needs CUDA and torchvision (the last test, on the GPU machine); elsewhere a stand-in
that decodes with OpenCV plays its part, so the batch's outputs must equal a CPU-decoded run's exactly."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import matting.batch as batch_module
import matting.decode_device as decode_device
from matting.batch import run_batch
from matting.decode import decode_image, plain_jpeg_header

W, H = 64, 48


def photo(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    pixels[H // 4: 3 * H // 4, W // 4: 3 * W // 4] = (250, 40, 40)
    return pixels


def jpeg(seed: int = 0, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo(seed)).convert(options.pop("mode", "RGB")).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def rotated(seed: int = 0) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg(seed, exif=exif.tobytes())


def png(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo(seed)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("data, plain", [
    (jpeg(), True),
    (jpeg(subsampling=0), True),                       # 4:4:4
    (jpeg(exif=Image.Exif().tobytes()), True),         # EXIF without an orientation
    (jpeg(progressive=True), False),
    (jpeg(mode="CMYK"), False),
    (jpeg(mode="L"), False),
    (rotated(), False),
    (jpeg()[:-300], False),                            # stops early
    (png(), False),
    (b"\xff\xd8\xff\xe0 not a jpeg", False),
    (b"", False),
])
def test_only_plain_jpegs_are_left_for_the_gpu(data, plain):
    header = plain_jpeg_header(data)
    assert (header is not None) == plain
    if plain:
        assert (header.width, header.height, header.mode) == (W, H, "RGB")


def test_a_jpeg_over_the_pixel_limit_stays_on_the_cpu():
    """The CPU path refuses it with its own message; the GPU never sees it."""
    assert plain_jpeg_header(jpeg(), max_pixels=W * H) is not None
    assert plain_jpeg_header(jpeg(), max_pixels=W * H - 1) is None


def opencv_stand_in(calls: list, refuse: bytes | None = None, wrong_size: bytes | None = None):
    """Plays nvJPEG: (3, H, W) tensors from OpenCV (the CPU decoder's own pixels); raises for the whole call when
    it holds ``refuse``, and gives ``wrong_size`` back cut in half."""
    def decode(encoded: list[torch.Tensor]) -> list[torch.Tensor]:
        blobs = [bytes(t.numpy()) for t in encoded]
        calls.append(len(blobs))
        if refuse is not None and refuse in blobs:
            raise RuntimeError("nvjpeg: unsupported")
        out = []
        for blob in blobs:
            rgb = decode_image(blob).rgb
            if blob == wrong_size:
                rgb = rgb[: H // 2]
            out.append(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1))
        return out
    return decode


def test_decode_pending_retries_one_by_one_and_hands_back_what_it_cannot_take():
    good, refused, wrong = jpeg(1), jpeg(2), jpeg(3)
    pending = [decode_device.pending_jpeg(data, 10**8, name) for data, name in
               ((good, "good"), (refused, "refused"), (wrong, "wrong"))]
    calls: list[int] = []
    out = decode_device.decode_pending(pending, torch.device("cpu"), opencv_stand_in(calls, refused, wrong))
    assert calls == [3, 1, 1, 1]   # the batch, then each alone
    assert out[1] is None and out[2] is None
    assert out[0].name == "good" and np.array_equal(out[0].rgb.numpy(), decode_image(good).rgb)


def test_the_batch_decodes_plain_jpegs_on_the_gpu_and_the_rest_as_before(pipe, tmp_path, monkeypatch):
    """Forced on the CPU with the stand-in: the plain JPEGs go to it in network batches; one it refuses, one it
    gets wrong, a progressive and a rotated JPEG, a PNG and a damaged JPEG are decoded on the CPU; every output is
    the CPU-decoded run's, byte for byte, and the damaged file fails with the same message."""
    src = tmp_path / "in"
    src.mkdir()
    refused, wrong = jpeg(4), jpeg(5)
    inputs = {"a.jpg": jpeg(1), "b.jpg": jpeg(2), "c.jpg": jpeg(3), "refused.jpg": refused, "wrong.jpg": wrong,
              "progressive.jpg": jpeg(6, progressive=True), "turned.jpg": rotated(7), "d.png": png(8),
              "damaged.jpg": jpeg(9)[:200]}
    for name, data in inputs.items():
        (src / name).write_bytes(data)
    kinds = ("cutout", "alpha")
    before = run_batch([src], tmp_path / "cpu", pipeline=pipe, kinds=kinds, batch_size=4)

    calls: list[int] = []
    monkeypatch.setattr(batch_module, "jpeg_on_device", lambda device: True)
    monkeypatch.setattr(decode_device, "_nvjpeg_batch", lambda device: opencv_stand_in(calls, refused, wrong))
    after = run_batch([src], tmp_path / "gpu", pipeline=pipe, kinds=kinds, batch_size=4)

    assert sum(calls) >= 5 and max(calls) <= 4, calls   # the five plain JPEGs, in batches of at most four
    assert (before.done, before.failed) == (after.done, after.failed) == (8, 1)
    failed = {r.name: r.error for r in after.results if r.status == "failed"}
    assert failed == {r.name: r.error for r in before.results if r.status == "failed"} and "damaged.jpg" in failed
    for path in sorted((tmp_path / "cpu").glob("*.png")):
        assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED),
                              cv2.imread(str(tmp_path / "gpu" / path.name), cv2.IMREAD_UNCHANGED)), path.name


def test_without_cuda_or_torchvision_or_when_not_asked_the_cpu_decodes_and_the_log_says_why_once(monkeypatch,
                                                                                                  caplog):
    monkeypatch.setattr(decode_device, "_said", set())
    monkeypatch.setenv("MATTING_JPEG_DECODER", "device")
    assert not decode_device.jpeg_on_device(torch.device("cpu"))
    assert not decode_device.jpeg_on_device(torch.device("cpu"))
    monkeypatch.setattr(decode_device, "_nvjpeg", lambda: None)
    assert not decode_device.jpeg_on_device(torch.device("cuda"))
    said = [r.getMessage() for r in caplog.records if r.name == "matting.decode_device"]
    assert len(said) == 2 and "CUDA" in said[0] and "torchvision" in said[1]
    monkeypatch.setattr(decode_device, "_nvjpeg", lambda: (object(), object()))
    assert decode_device.jpeg_on_device(torch.device("cuda"))
    monkeypatch.setenv("MATTING_JPEG_DECODER", "cpu")
    assert not decode_device.jpeg_on_device(torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available() or decode_device._nvjpeg() is None,
                    reason="nvJPEG needs a CUDA GPU and torchvision")
def test_nvjpeg_gives_the_cpu_decoders_picture_within_chroma_upsampling():
    """On the GPU machine: real nvJPEG against OpenCV, batched. The same size, and the same picture but for the
    chroma: nvJPEG upsamples a 4:2:0 JPEG's colour planes differently (1 MP crops of camera photos, session 23:
    a mean of 0.34 levels, up to 55 levels at sharp colour edges), while the brightness (luma), decoded from the
    full-resolution plane, stays within IDCT rounding."""
    def photo_like(seed: int, **options) -> bytes:   # smooth gradients and one sharp colour edge, a disc
        y, x = np.mgrid[0:96, 0:128]
        rgb = np.stack([x * 2, y * 2, x + y], -1).astype(np.uint8)
        colour = tuple(int(c) for c in np.random.default_rng(seed).integers(40, 215, 3))
        cv2.circle(rgb, (64 + seed, 48), 25, colour, -1)
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, "JPEG", quality=90, **options)
        return buffer.getvalue()

    def luma(rgb: np.ndarray) -> np.ndarray:
        return rgb.astype(float) @ np.array([0.299, 0.587, 0.114])

    blobs = [photo_like(seed) for seed in range(6)] + [photo_like(9, subsampling=0)]
    pending = [decode_device.pending_jpeg(data, 10**8) for data in blobs]
    out = decode_device.decode_pending(pending, torch.device("cuda"))
    for data, image in zip(blobs, out):
        assert image is not None and image.rgb.is_cuda
        cpu = decode_image(data).rgb
        gpu = image.rgb.cpu().numpy()
        assert gpu.shape == cpu.shape
        colour = np.abs(gpu.astype(int) - cpu.astype(int))
        brightness = np.abs(luma(gpu) - luma(cpu))
        stats = (f"colour mean {colour.mean():.3f} max {colour.max()}, luma mean {brightness.mean():.3f} "
                 f"p99.9 {np.percentile(brightness, 99.9):.2f}")
        print(stats)
        assert colour.mean() < 3 and brightness.mean() < 0.5 and np.percentile(brightness, 99.9) < 4, stats
