"""Encoders: lossless PNG (fpng or OpenCV), JPEG, atomic writes, clear refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from matting import encode
from matting.errors import InvalidParameterError


def sample(shape) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("use_fpng", [True, False])
@pytest.mark.parametrize("shape,mode", [((37, 53, 4), "RGBA"), ((37, 53, 3), "RGB"), ((37, 53), "L"),
                                        ((1, 2000, 4), "RGBA"), ((37, 53, 1), "L")])
def test_png_is_lossless(monkeypatch, use_fpng, shape, mode):
    if not use_fpng:
        monkeypatch.setattr(encode, "_fpng", None)
    elif encode._fpng is None:
        pytest.skip("fpng not installed")
    image = sample(shape)
    decoded = Image.open(io.BytesIO(encode.encode_png(image)))
    assert decoded.mode == mode
    expected = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    assert np.array_equal(np.asarray(decoded), expected)


def test_png_accepts_non_contiguous_views():
    image = sample((20, 40, 4))[:, ::2]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode.encode_png(image)))), image)


def test_jpeg_is_close_and_refuses_alpha():
    image = np.full((32, 48, 3), (200, 100, 50), np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode.encode_jpeg(image))))
    assert decoded.shape == image.shape and np.abs(decoded.astype(int) - image).max() <= 3
    with pytest.raises(InvalidParameterError, match="transparency"):
        encode.encode_jpeg(sample((8, 8, 4)))


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros(5, np.uint8)])
def test_bad_arrays_are_refused(bad):
    with pytest.raises(InvalidParameterError, match="cannot encode"):
        encode.encode_png(bad)


def test_write_image_by_suffix_and_atomically(tmp_path):
    png = encode.write_image(tmp_path / "a.png", sample((10, 12, 4)))
    jpg = encode.write_image(tmp_path / "b.JPG", sample((10, 12, 3)))
    assert Image.open(png).format == "PNG" and Image.open(jpg).format == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.JPG"]  # no leftover temp files
    with pytest.raises(InvalidParameterError, match="unsupported output format"):
        encode.write_image(tmp_path / "c.gif", sample((4, 4, 3)))


def test_download_encoder_processes_match_the_engine_and_survive_bad_input(monkeypatch):
    """The app's download pool (helper processes on a GPU; forced here) gives the engine's bytes for each kind of
    download, refuses a bad array with the engine's message, and the same helpers go on serving."""
    from matting.batch_encode import ProcessEncoder, ThreadEncoder, download_encoder
    from matting.errors import MattingError

    assert isinstance(download_encoder("cpu"), ThreadEncoder)   # the CPU default: no helpers
    monkeypatch.setenv("MATTING_ENCODE_PROCESSES", "2")
    pool = download_encoder("cpu")
    try:
        assert isinstance(pool, ProcessEncoder) and pool.processes == 2
        for shape, fmt in (((37, 53, 4), "png"), ((37, 53), "png"), ((37, 53, 3), "jpg"), ((37, 53, 3), "png"),
                           ((37, 53), "jpg")):
            image = sample(shape)
            assert pool.one(image, fmt) == encode.encode(image, fmt), (shape, fmt)
        with pytest.raises(MattingError, match="cannot encode an array of shape"):
            pool.one(np.zeros((4, 4, 4), np.float32), "png")
        with pytest.raises(InvalidParameterError, match="unsupported output format"):
            pool.one(sample((4, 4, 3)), "gif")
        image = sample((20, 30, 4))
        assert Image.open(io.BytesIO(pool.one(image, "png"))).size == (30, 20)
        assert len(pool._all) == 2
    finally:
        pool.close()


def test_output_store_encodes_with_the_encoder_it_is_given(tmp_path):
    from demo.files import OutputStore

    calls = []

    def encoder(array, fmt):
        calls.append((array.shape, fmt))
        return encode.encode(array, fmt)

    store = OutputStore(tmp_path / "store", encoder=encoder)
    path = store.write_image("s", "download-rgba", sample((8, 9, 4)), "png", "photo_cutout")
    assert calls == [((8, 9, 4), "png")] and path.endswith("photo_cutout.png")
    assert Image.open(path).size == (9, 8)
    store.close()
