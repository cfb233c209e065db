"""matting/batch_encode.py in-process: the helper's serving loop over real pipes (what runs in each encoder
process), one-image jobs, the choice between threads and processes."""

from __future__ import annotations

import io
import os
import threading
from multiprocessing.connection import Connection

import numpy as np
import pytest
import torch
from PIL import Image

from matting import batch_encode
from matting.errors import MattingError


@pytest.fixture
def helper():
    """_serve in a thread over two pipes, as the helper process runs it; yields (send, recv)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    thread = threading.Thread(target=batch_encode._serve, args=(to_child_r, from_child_w), daemon=True)
    thread.start()
    send, recv = Connection(to_child_w, readable=False), Connection(from_child_r, writable=False)
    assert recv.recv() == "ready"
    yield send, recv
    send.close()       # end of input: the loop returns
    thread.join(timeout=10)
    assert not thread.is_alive()
    recv.close()


def job(send, formats, arrays, paths=None):
    send.send((formats, [None if a is None else (a.shape, str(a.dtype)) for a in arrays], paths))
    for array in arrays:
        if array is not None:
            send.send_bytes(memoryview(np.ascontiguousarray(array)).cast("B"))


def test_the_helper_encodes_each_output_and_sends_the_bytes_back(helper):
    send, recv = helper
    rng = np.random.default_rng(0)
    alpha = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    composite = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    job(send, [("cutout", "png"), ("alpha", "png"), ("composite", "jpg")], [alpha, rgba, composite])
    assert recv.recv() == "ok"
    cutout, matte, jpeg = (Image.open(io.BytesIO(recv.recv_bytes())) for _ in range(3))
    assert np.array_equal(np.asarray(cutout), rgba) and np.array_equal(np.asarray(matte), alpha)
    assert jpeg.format == "JPEG" and jpeg.size == (30, 20)


def test_the_helper_writes_files_itself_and_reports_one_images_failure_then_goes_on(helper, tmp_path):
    send, recv = helper
    alpha = np.full((4, 5), 200, np.uint8)
    job(send, [("alpha", "png")], [alpha, None, None], [str(tmp_path / "a.png")])
    assert recv.recv() == "ok"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), alpha)
    job(send, [("alpha", "png")], [alpha, None, None], [str(tmp_path / "missing" / "b.png")])
    assert recv.recv() == "cannot write the output: No such file or directory"
    job(send, [("alpha", "png")], [alpha, None, None], [str(tmp_path / "c.png")])
    assert recv.recv() == "ok" and (tmp_path / "c.png").is_file()


def test_the_helpers_failure_lines():
    assert batch_encode._one_line(MattingError("bad picture")) == "bad picture"
    assert batch_encode._one_line(OSError(28, "No space left on device")) == \
        "cannot write the output: No space left on device"
    assert batch_encode._one_line(ValueError("odd")) == "ValueError: odd"


@pytest.mark.parametrize("shape, fmt, kind", [((6, 7), "png", "alpha"), ((6, 7, 4), "PNG", "cutout"),
                                             ((6, 7, 3), ".jpg", "composite"), ((6, 7, 3), "jpeg", "composite")])
def test_one_image_is_a_job_of_its_kind(shape, fmt, kind):
    array = np.zeros(shape, np.uint8)
    formats, alpha, rgba, composite = batch_encode._one_job(array, fmt)
    wanted = {"alpha": (alpha, [("alpha", "png")]), "cutout": (rgba, [("cutout", "png")]),
              "composite": (composite, [("composite", fmt.lower().lstrip("."))])}
    assert wanted[kind][0] is array and formats == wanted[kind][1]
    assert sum(x is not None for x in (alpha, rgba, composite)) == 1


def test_threads_or_processes(monkeypatch):
    """Helper processes on a GPU with fpng; threads on the CPU; MATTING_ENCODE_PROCESSES decides when set."""
    monkeypatch.delenv(batch_encode.PROCESSES_ENV, raising=False)
    assert not batch_encode.uses_processes(torch.device("cpu"))
    from matting import encode

    assert batch_encode.uses_processes(torch.device("cuda")) == (encode._fpng is not None)
    monkeypatch.setenv(batch_encode.PROCESSES_ENV, "0")
    assert not batch_encode.uses_processes(torch.device("cuda"))
    assert isinstance(batch_encode.make_encoder(torch.device("cuda"), 4), batch_encode.ThreadEncoder)
    monkeypatch.setenv(batch_encode.PROCESSES_ENV, "2")
    assert batch_encode.uses_processes(torch.device("cpu"))


def test_the_thread_encoder_gives_bytes_and_writes_files(tmp_path):
    encoder = batch_encode.ThreadEncoder()
    alpha = np.full((3, 4), 9, np.uint8)
    assert Image.open(io.BytesIO(encoder.one(alpha, "png"))).size == (4, 3)
    data = encoder([("alpha", "png")], alpha, None, None, [tmp_path / "m.png"])
    assert (tmp_path / "m.png").read_bytes() == data[0]
    encoder.close()
