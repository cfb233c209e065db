"""matting/batch_encode.py in-process: the helper's serving loop over real pipes (what runs in each encoder
process), one-image jobs, the choice between threads and processes."""

from __future__ import annotations

import io
import os
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from matting import batch_encode
from matting.errors import InvalidParameterError, MattingError


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
    send.send((formats, [None if a is None else (a.shape, str(a.dtype)) for a in arrays], paths, None))
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


PROJECT = Path(batch_encode.__file__).resolve().parent.parent   # the folder that holds the matting package


def helper_environment(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.decode().split("=", 1) for item in f.read().split(b"\0") if b"=" in item)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads the helper's /proc entry (Linux)")
@pytest.mark.parametrize("pythonpath", [None, "/elsewhere/lib"])
def test_a_helper_process_imports_the_project_from_any_folder_reads_no_stdin_and_has_1_mb_pipes(
        monkeypatch, tmp_path, pythonpath):
    """The helper runs `python -m matting.batch_encode` from wherever the parent runs, so its PYTHONPATH leads with
    the project (keeping the caller's after it); its stdin is /dev/null, not the terminal or a stdin input list."""
    import fcntl

    if os.environ.get("MUTANT_UNDER_TEST") != "stats":   # mutmut's coverage pass reads its config from the cwd
        monkeypatch.chdir(tmp_path)
    if pythonpath is None:
        monkeypatch.delenv("PYTHONPATH", raising=False)
    else:
        monkeypatch.setenv("PYTHONPATH", pythonpath)
    stdin_r, stdin_w = os.pipe()   # the parent's stdin is a pipe here, so an inherited stdin would show
    saved_stdin = os.dup(0)
    os.dup2(stdin_r, 0)
    try:
        helper = batch_encode._Helper()
    finally:
        os.dup2(saved_stdin, 0)
        for fd in (saved_stdin, stdin_r, stdin_w):
            os.close(fd)
    try:
        alpha = np.arange(30, dtype=np.uint8).reshape(5, 6)
        (data,) = helper.call([("alpha", "png")], [alpha, None, None], None)   # it has started: /proc shows it
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), alpha)
        path = helper_environment(helper.proc.pid)["PYTHONPATH"].split(os.pathsep)
        assert path == [str(PROJECT)] + ([pythonpath] if pythonpath else [])
        assert os.readlink(f"/proc/{helper.proc.pid}/fd/0") == os.devnull
        get_size = getattr(fcntl, "F_GETPIPE_SZ", 1032)
        assert [fcntl.fcntl(c.fileno(), get_size) for c in (helper.send, helper.recv)] == [1 << 20] * 2
    finally:
        helper.close()
    assert helper.proc.returncode == 0


def test_a_process_encoder_encodes_every_spelling_of_png_and_jpg_in_its_helpers(monkeypatch, tmp_path):
    """The point of the helpers: this thread only waits. Each spelling of png and jpg goes to a helper and gives the
    engine's bytes; another format gets the engine's own error; with paths the helper writes the files and b""
    comes back for each."""
    from matting import encode

    rng = np.random.default_rng(1)
    images = {"png": rng.integers(0, 256, (9, 11, 4), dtype=np.uint8),
              "jpg": rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)}
    in_this_thread = []
    monkeypatch.setattr(batch_encode, "encode", lambda a, f: in_this_thread.append(f) or encode.encode(a, f))
    pool = batch_encode.ProcessEncoder(1)
    try:
        for fmt in ("png", "PNG", ".png", ".Png", "jpg", "JPG", ".jpg", "jpeg", ".JPEG"):
            kind = "png" if "png" in fmt.lower() else "jpg"
            assert pool.one(images[kind], fmt) == encode.encode(images[kind], kind), fmt
        assert in_this_thread == []
        with pytest.raises(InvalidParameterError, match="unsupported output format 'bmp'"):
            pool.one(images["png"], ".bmp")
        assert pool([("cutout", "png")], None, images["png"], None, [tmp_path / "c.png"]) == [b""]
        assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), images["png"])
    finally:
        pool.close()


def test_a_helper_that_dies_fails_only_its_image_and_is_replaced(monkeypatch):
    alpha = np.full((6, 7), 77, np.uint8)
    pool = batch_encode.ProcessEncoder(1)
    try:
        first = pool.one(alpha, "png")
        victim = pool._all[0]
        victim.proc.kill()
        victim.proc.wait()
        with pytest.raises(MattingError, match=r"^the encoder process failed \((EOFError|BrokenPipeError|"
                                               r"ConnectionResetError|OSError)\)$"):
            pool.one(alpha, "png")
        assert pool.one(alpha, "png") == first
        assert len(pool._all) == 1 and pool._all[0] is not victim
        procs = [helper.proc for helper in pool._all]
    finally:
        pool.close()
    assert all(proc.returncode == 0 for proc in procs), "close ends every helper, the replacement too"


def test_a_helper_that_cannot_be_replaced_fails_its_image_and_says_so_in_the_log(monkeypatch, caplog):
    pool = batch_encode.ProcessEncoder(1)
    pool._all[0].proc.kill()
    pool._all[0].proc.wait()

    def no_more_processes():
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(batch_encode, "_Helper", no_more_processes)
    with pytest.raises(MattingError, match="the encoder process failed"):
        pool.one(np.zeros((3, 3), np.uint8), "png")
    assert "could not restart an encoder process" in caplog.text
    assert pool._all == []
    pool.close()


@pytest.fixture
def fpng_present(monkeypatch):
    """encode._fpng as where fpng is installed (only its presence is read here; nothing is encoded in-process)."""
    from matting import encode

    monkeypatch.setattr(encode, "_fpng", encode._fpng or object())
    monkeypatch.delenv(batch_encode.PROCESSES_ENV, raising=False)
    return encode


def test_processes_are_for_a_gpu_run_with_fpng_however_the_device_is_given(monkeypatch, fpng_present):
    for device in (torch.device("cuda"), "cuda", SimpleNamespace(type="cuda")):
        assert batch_encode.uses_processes(device), device
    for device in (torch.device("cpu"), "cpu", SimpleNamespace(type="cpu")):
        assert not batch_encode.uses_processes(device), device
    monkeypatch.setattr(fpng_present, "_fpng", None)
    assert not batch_encode.uses_processes(SimpleNamespace(type="cuda"))
    monkeypatch.setenv(batch_encode.PROCESSES_ENV, "1")
    assert batch_encode.uses_processes("cpu")


@pytest.mark.parametrize("env, device, workers, processes", [
    (None, SimpleNamespace(type="cuda"), 2, 2),   # one helper per worker
    (None, "cpu", 2, 0),
    ("2", "cpu", 1, 2),                           # the environment's count, whatever the workers
    ("1", "cpu", 4, 1),
    ("0", SimpleNamespace(type="cuda"), 4, 0),    # 0: threads
])
def test_the_encoder_has_one_helper_per_worker_or_as_many_as_the_environment_says(
        monkeypatch, fpng_present, env, device, workers, processes):
    if env is not None:
        monkeypatch.setenv(batch_encode.PROCESSES_ENV, env)
    encoder = batch_encode.make_encoder(device, workers)
    try:
        assert batch_encode.encoder_processes(device, workers) == encoder.processes == processes
        assert isinstance(encoder, batch_encode.ProcessEncoder if processes else batch_encode.ThreadEncoder)
        assert len(getattr(encoder, "_all", [])) == processes
    finally:
        encoder.close()


@pytest.mark.parametrize("cpus, cpu_count, processes", [(None, 12, 3), (8, 12, 2), (13, 64, 3), (None, None, 2)])
def test_the_apps_download_encoder_takes_a_quarter_of_the_cores_and_at_least_two(
        monkeypatch, fpng_present, cpus, cpu_count, processes):
    monkeypatch.setattr(os, "cpu_count", lambda: cpu_count)
    encoder = batch_encode.download_encoder(SimpleNamespace(type="cuda"), cpus)
    try:
        assert isinstance(encoder, batch_encode.ProcessEncoder) and len(encoder._all) == processes
    finally:
        encoder.close()


def test_helpers_that_cannot_start_leave_the_encoding_to_threads_and_say_why(monkeypatch, caplog):
    def no_pipes():
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(batch_encode, "_Helper", no_pipes)
    monkeypatch.setenv(batch_encode.PROCESSES_ENV, "2")
    assert isinstance(batch_encode.make_encoder("cpu", 2), batch_encode.ThreadEncoder)
    (record,) = [r for r in caplog.records if r.name == batch_encode.__name__]
    message = record.getMessage()
    assert record.levelname == "WARNING" and "could not start" in message and "Too many open files" in message
    assert "encoding in threads" in message


def _three_outputs(rng, h: int, w: int):
    return (rng.integers(0, 256, (h, w), dtype=np.uint8), rng.integers(0, 256, (h, w, 4), dtype=np.uint8),
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("shared", [True, False], ids=["shared memory", "pipe"])
def test_a_helper_gets_every_array_of_every_size_right(monkeypatch, shared):
    """A job's arrays cross in the memory the helper shares with its parent (grown for a larger job, reused for a
    smaller), or over the pipe where there is no memfd: the same bytes either way."""
    if not shared:
        monkeypatch.setattr(batch_encode.SharedPixels, "create", classmethod(lambda cls: None))
    rng = np.random.default_rng(2)
    formats = [("alpha", "png"), ("cutout", "png"), ("composite", "png")]
    helper = batch_encode._Helper()
    try:
        assert (helper.shared is not None) == shared
        for h, w in [(5, 7), (61, 83), (3, 2), (120, 90), (61, 83)]:
            alpha, rgba, composite = _three_outputs(rng, h, w)
            matte, cutout, picture = helper.call(formats, [alpha, rgba, composite], None)
            assert np.array_equal(_decoded(matte), alpha) and np.array_equal(_decoded(cutout), rgba)
            assert np.array_equal(_decoded(picture), composite)
        if shared:   # grown by doubling to hold the largest job, three arrays at aligned offsets
            largest = sum(batch_encode._aligned(120 * 90 * c) for c in (1, 4, 3))
            assert largest <= helper.shared.size < 2 * largest + 2 * batch_encode.ALIGN * 3
    finally:
        helper.close()
    assert helper.proc.returncode == 0


def test_shared_pixels_put_each_array_where_the_other_side_reads_it():
    shared = batch_encode.SharedPixels.create()
    assert shared is not None   # Linux: CI and the lent machines
    reader = batch_encode.SharedPixels(os.dup(shared.fd))   # the helper's side of the same memory
    try:
        rng = np.random.default_rng(3)
        alpha, rgba, _ = _three_outputs(rng, 7, 9)
        specs = shared.put([alpha, None, rgba])
        assert specs[1] is None and specs[0][2] == 0 and specs[2][2] == batch_encode._aligned(alpha.nbytes)
        got = reader.arrays(specs, shared.size)
        assert got[1] is None and np.array_equal(got[0], alpha) and np.array_equal(got[2], rgba)
        bigger = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
        kept = got[2]   # a view of the old mapping can still be read after the memory grows (not unmapped)
        specs = shared.put([bigger])
        assert np.array_equal(reader.arrays(specs, shared.size)[0], bigger)
        assert kept.copy().shape == rgba.shape
    finally:
        shared.close()
        reader.close()


@pytest.fixture
def shared_helper():
    """_serve in a thread with its shared memory, as a helper process runs it; yields (send, recv, the parent's
    SharedPixels)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    parent = batch_encode.SharedPixels.create()
    thread = threading.Thread(target=batch_encode._serve, args=(to_child_r, from_child_w, os.dup(parent.fd)),
                              daemon=True)
    thread.start()
    send, recv = Connection(to_child_w, readable=False), Connection(from_child_r, writable=False)
    assert recv.recv() == "ready"
    yield send, recv, parent
    send.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    recv.close()
    parent.close()


def test_the_helper_reads_a_jobs_arrays_from_the_shared_memory(shared_helper):
    """The helper's side of the shared memory: each job names the memory's size (grown between jobs) and where
    each array lies; None where an output has no array."""
    send, recv, parent = shared_helper
    rng = np.random.default_rng(4)
    for h, w in [(6, 5), (70, 90), (6, 5)]:
        alpha, rgba, _ = _three_outputs(rng, h, w)
        send.send(([("cutout", "png"), ("alpha", "png")], parent.put([alpha, rgba, None]), None, parent.size))
        assert recv.recv() == "ok"
        cutout, matte = _decoded(recv.recv_bytes()), _decoded(recv.recv_bytes())
        assert np.array_equal(cutout, rgba) and np.array_equal(matte, alpha)


def test_the_pipe_carries_a_job_with_missing_arrays(monkeypatch):
    """Without shared memory, outputs with no array (a cutout alone) send only the arrays there are."""
    monkeypatch.setattr(batch_encode.SharedPixels, "create", classmethod(lambda cls: None))
    rgba = np.random.default_rng(5).integers(0, 256, (9, 8, 4), dtype=np.uint8)
    helper = batch_encode._Helper()
    try:
        (cutout,) = helper.call([("cutout", "png")], [None, rgba, None], None)
        assert np.array_equal(_decoded(cutout), rgba)
    finally:
        helper.close()


def test_no_memfd_no_shared_memory(monkeypatch):
    monkeypatch.delattr(os, "memfd_create")
    assert batch_encode.SharedPixels.create() is None


def test_the_shared_memory_grows_by_doubling_and_only_when_a_job_needs_more():
    shared = batch_encode.SharedPixels.create()
    try:
        sizes = []
        for nbytes in (100, 100, 130, 300, 700, 10_000, 64):
            shared.put([np.zeros(nbytes, np.uint8)])
            sizes.append(shared.size)
        assert sizes == [128, 128, 256, 512, 1024, 10_048, 10_048]
    finally:
        shared.close()


def test_a_helper_that_cannot_start_gives_its_shared_memory_back(monkeypatch):
    closed = []
    real_close = batch_encode.SharedPixels.close
    monkeypatch.setattr(batch_encode.SharedPixels, "close", lambda self: closed.append(self.fd) or real_close(self))

    def no_process(*args, **kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(batch_encode.subprocess, "Popen", no_process)
    with pytest.raises(OSError):
        batch_encode._Helper()
    assert len(closed) == 1


def test_kept_encoders_serve_every_run_and_other_runs_close_their_own(monkeypatch, tmp_path, pipe):
    """keep_encoders (an engine about to run batches) starts the helpers once; every run then uses them and leaves
    them running; a run with none kept starts its own and closes them."""
    import psutil

    from matting.batch import run_batch
    from tests.test_batch import image_bytes, write

    def encoder_helpers() -> set[int]:
        return {p.pid for p in psutil.Process().children()
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                and "matting.batch_encode" in " ".join(p.cmdline())}

    monkeypatch.setenv(batch_encode.PROCESSES_ENV, "2")   # helpers on the CPU too
    for i in range(2):
        write(tmp_path / "in" / f"p{i}.jpg", image_bytes(seed=i))
    before = encoder_helpers()
    batch_encode.keep_encoders(torch.device("cpu"), 2)
    try:
        kept = encoder_helpers() - before
        assert len(kept) == 2
        for out in ("a", "b"):
            during = []
            assert run_batch([tmp_path / "in"], tmp_path / out, pipeline=pipe, workers=2,
                             on_result=lambda *_: during.append(encoder_helpers() - before)).done == 2
            assert during == [kept, kept]               # the run encodes with them, and starts no others
            assert encoder_helpers() - before == kept   # the same two, still there
    finally:
        batch_encode.close_kept_encoders()
    assert encoder_helpers() == before
    assert run_batch([tmp_path / "in"], tmp_path / "c", pipeline=pipe, workers=2).done == 2
    assert encoder_helpers() == before   # its own, closed with the run


def test_helpers_closed_before_they_are_ready_end_quietly(capfd):
    """An engine whose run never came (its model failed to load, or every output was already made) closes the
    encoder helpers it kept while they are still importing: they end without a traceback on the user's terminal."""
    pool = batch_encode.ProcessEncoder(2)
    pool.close()   # waits for them to end
    assert "Traceback" not in capfd.readouterr().err
