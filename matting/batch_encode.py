"""Encoding a batch's outputs, in the calling thread or in helper processes.

fpng, the fast PNG encoder, holds the GIL while it runs. On the 16-core H100 host it takes 12.7 ms per 1 MP RGBA
image, and 16 threads encode 71 images/s, fewer than one thread alone (89): every other thread of the batch waits
for the GIL meanwhile. OpenCV releases the GIL but takes 146 ms for the same image there. So on a GPU run with fpng,
images are encoded in helper processes (``python -m matting.batch_encode``, one per worker; they import numpy,
OpenCV and fpng, not torch). Pixels cross through memory the parent and its helper both map (a memfd: one copy,
no pipe; through the pipe a 1 MP RGBA took 3.9 ms of a 5 ms encode, 2-core AMD EPYC), and the parent only waits on
the pipe with the GIL released; PNG bytes come back over the pipe when no file is to be written. Where there is no
memfd (not Linux), the pixels go over the pipe. On the CPU the network dominates and threads are enough.

The helpers are plain subprocesses rather than multiprocessing's spawn (helper_process.py): spawn re-imports the
parent's main module in every child (``python -m matting.bench`` would load torch sixteen times).
"""

from __future__ import annotations

import atexit
import logging
import mmap
import os
import queue
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from .batch_outputs import write_atomic
from .encode import encode, encode_jpeg, encode_png
from .env_numbers import whole_number
from .errors import MattingError
from .helper_process import start_helper

log = logging.getLogger(__name__)
PROCESSES_ENV = "MATTING_ENCODE_PROCESSES"  # 0 forces threads; N forces N helper processes


def encode_outputs(formats: list[tuple[str, str]], alpha, rgba, composite) -> list[bytes]:
    """Bytes for each (kind, format): the cutout from ``rgba``, the matte from ``alpha``, the composite."""
    out = []
    for kind, fmt in formats:
        if kind == "cutout":
            out.append(encode_png(rgba))
        elif kind == "alpha":
            out.append(encode_png(alpha))
        else:
            out.append(encode_png(composite) if fmt == "png" else encode_jpeg(composite))
    return out


def _one_job(array: np.ndarray, fmt: str):
    """One image as an (formats, alpha, rgba, composite) job: a grey matte, a PNG cutout or a JPEG composite."""
    fmt = fmt.lower().lstrip(".")
    if fmt != "png":
        return [("composite", fmt)], None, None, array
    if array.ndim == 2:
        return [("alpha", "png")], array, None, None
    return [("cutout", "png")], None, array, None


class ThreadEncoder:
    processes = 0

    @staticmethod
    def one(array: np.ndarray, fmt: str) -> bytes:
        """One image's bytes in ``fmt`` (png or jpg), encoded in the calling thread."""
        return encode(array, fmt)

    def __call__(self, formats, alpha, rgba, composite, paths=None) -> list[bytes]:
        """Encoded bytes per output; with ``paths`` (files of a folder output) they are also written there."""
        encoded = encode_outputs(formats, alpha, rgba, composite)
        for path, data in zip(paths or (), encoded):
            write_atomic(path, data)
        return encoded

    def close(self) -> None:
        pass


ALIGN = 64   # each array of a job starts on a cache line of the shared memory


def _aligned(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


class SharedPixels:
    """The memory one helper and its parent both map (a memfd), grown to the largest job seen. The parent writes
    a job's arrays into it (``put``) and the helper reads them in place (``arrays``); one job at a time, since a
    helper serves one call at a time. A mapping is replaced, never closed, when it grows: arrays still viewing
    the old one keep it alive until they go."""

    def __init__(self, fd: int):
        self.fd, self.size, self._map = fd, 0, None

    @classmethod
    def create(cls) -> "SharedPixels | None":
        make = getattr(os, "memfd_create", None)
        if make is None:
            return None
        try:
            return cls(make("matting-encode"))
        except OSError:
            return None

    def put(self, arrays: list[np.ndarray | None]) -> list[tuple | None]:
        """Copy ``arrays`` in; their (shape, dtype, offset) for the helper."""
        need = sum(_aligned(a.nbytes) for a in arrays if a is not None)
        if need > self.size:
            self.size = max(need, 2 * self.size)   # doubling: a few growths, however the sizes come
            os.ftruncate(self.fd, self.size)
            self._map = mmap.mmap(self.fd, self.size)
        specs, offset = [], 0
        for array in arrays:
            if array is None:
                specs.append(None)
                continue
            np.copyto(np.ndarray(array.shape, array.dtype, buffer=self._map, offset=offset), array)
            specs.append((array.shape, str(array.dtype), offset))
            offset += _aligned(array.nbytes)
        return specs

    def arrays(self, specs: list[tuple | None], size: int) -> list[np.ndarray | None]:
        """The helper's side: views of the arrays the parent put, the mapping grown to ``size`` first."""
        if size > self.size:
            self.size, self._map = size, mmap.mmap(self.fd, size)
        return [None if spec is None else np.ndarray(spec[0], spec[1], buffer=self._map, offset=spec[2])
                for spec in specs]

    def close(self) -> None:
        self._map = None
        os.close(self.fd)


class _Helper:
    """One helper process, the two pipes to it and the memory they share."""

    def __init__(self):
        self.shared = SharedPixels.create()
        shared_fd = () if self.shared is None else (self.shared.fd,)
        try:
            self.proc, self.send, self.recv = start_helper("matting.batch_encode", *shared_fd)
        except BaseException:
            if self.shared is not None:
                self.shared.close()
            raise
        self.started = False

    def call(self, formats, arrays: list[np.ndarray | None], paths) -> list[bytes]:
        if not self.started:  # the helper says "ready" once, when its imports are done
            if self.recv.recv() != "ready":
                raise EOFError("the encoder process did not start")
            self.started = True
        paths = None if paths is None else [str(p) for p in paths]
        if self.shared is not None:
            specs = self.shared.put(arrays)
            self.send.send((formats, specs, paths, self.shared.size))
        else:
            self.send.send((formats, [None if a is None else (a.shape, str(a.dtype)) for a in arrays], paths, None))
            for array in arrays:
                if array is not None:
                    self.send.send_bytes(memoryview(np.ascontiguousarray(array)).cast("B"))
        status = self.recv.recv()
        if status != "ok":
            raise MattingError(status)
        return [b""] * len(formats) if paths is not None else [self.recv.recv_bytes() for _ in formats]

    def close(self) -> None:
        for conn in (self.send, self.recv):
            conn.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.shared is not None:
            self.shared.close()


class ProcessEncoder:
    """Encodes in ``processes`` helpers; any thread may call it, each call takes a free helper."""

    def __init__(self, processes: int):
        self.processes = processes
        self._idle: queue.SimpleQueue[_Helper] = queue.SimpleQueue()
        self._all: list[_Helper] = []
        self._lock = threading.Lock()
        for _ in range(processes):  # they import their encoders while the first images decode and infer
            helper = _Helper()
            self._all.append(helper)
            self._idle.put(helper)

    def __call__(self, formats, alpha, rgba, composite, paths=None) -> list[bytes]:
        """As ThreadEncoder; with ``paths`` the helper writes the files and no bytes come back (b"" each)."""
        helper = self._idle.get()
        try:
            result = helper.call(formats, [alpha, rgba, composite], paths)
        except (EOFError, OSError, BrokenPipeError) as exc:  # the helper died: replace it, fail this image only
            with self._lock:
                self._all.remove(helper)
            helper.close()
            try:
                replacement = _Helper()
                with self._lock:
                    self._all.append(replacement)
                self._idle.put(replacement)
            except (OSError, EOFError):
                log.error("could not restart an encoder process")
            raise MattingError(f"the encoder process failed ({type(exc).__name__})") from exc
        self._idle.put(helper)
        return result

    def one(self, array: np.ndarray, fmt: str) -> bytes:
        """One image's bytes in ``fmt`` (png or jpg), encoded by a free helper while this thread waits GIL-free."""
        if fmt.lower().lstrip(".") not in ("png", "jpg", "jpeg"):
            return encode(array, fmt)   # the engine's own error for the format, in this thread
        formats, alpha, rgba, composite = _one_job(array, fmt)
        return self(formats, alpha, rgba, composite)[0]

    def close(self) -> None:
        with self._lock:
            helpers, self._all = self._all, []
        for helper in helpers:
            helper.close()


def uses_processes(device) -> bool:
    """Helper processes on a GPU run with fpng (see the module doc), threads otherwise."""
    from . import encode

    wanted = whole_number(PROCESSES_ENV, -1)
    if wanted >= 0:
        return wanted > 0
    return getattr(device, "type", str(device)) == "cuda" and encode._fpng is not None


def encoder_processes(device, workers: int) -> int:
    """Helper processes a batch on ``device`` with ``workers`` threads per pool encodes with (0: threads):
    ``MATTING_ENCODE_PROCESSES`` when set, else one per worker."""
    if not uses_processes(device):
        return 0
    wanted = whole_number(PROCESSES_ENV, -1)
    return wanted if wanted >= 0 else workers


def make_encoder(device, workers: int) -> ThreadEncoder | ProcessEncoder:
    processes = encoder_processes(device, workers)
    if processes <= 0:
        return ThreadEncoder()
    try:
        return ProcessEncoder(processes)
    except (OSError, RuntimeError, EOFError) as exc:
        log.warning("encoder processes could not start (%s); encoding in threads", exc)
        return ThreadEncoder()


# Encoders started ahead of the runs and kept between them, by their helper count (keep_encoders).
_kept: dict[int, ProcessEncoder] = {}
_kept_lock = threading.Lock()


def keep_encoders(device, workers: int) -> ProcessEncoder | None:
    """Start the helpers a run on ``device`` with ``workers`` would start, now, and keep them for this process's
    runs: an engine about to run batches starts them beside its model's load instead of at each run's start, where
    their imports held up the first image (about a second on the H200, session 21). Returns the encoder it started
    (None where the batch encodes in threads, or one of that size is kept already), for drop_kept_encoder."""
    processes = encoder_processes(device, workers)
    if processes <= 0:
        return None
    with _kept_lock:
        if processes in _kept:
            return None
        try:
            _kept[processes] = ProcessEncoder(processes)
        except (OSError, RuntimeError, EOFError) as exc:
            log.warning("encoder processes could not start (%s); each run starts its own", exc)
            return None
        return _kept[processes]


def drop_kept_encoder(encoder: ProcessEncoder | None) -> None:
    """The engine that kept ``encoder`` is done: close it (its runs have given it back)."""
    if encoder is None:
        return
    with _kept_lock:
        if _kept.get(encoder.processes) is encoder:
            del _kept[encoder.processes]
    encoder.close()


def take_kept_encoder(device, workers: int) -> ProcessEncoder | None:
    """The kept encoder a run of this size would start, when there is one and no other run has it (else None: the
    run makes its own, which give_back closes)."""
    with _kept_lock:
        encoder = _kept.pop(encoder_processes(device, workers), None)
    if encoder is not None:
        encoder.kept = True
    return encoder


def give_back(encoder) -> None:
    """The end of a run: a kept encoder is kept for the next, any other closed."""
    if getattr(encoder, "kept", False):
        with _kept_lock:
            if encoder.processes not in _kept:
                _kept[encoder.processes] = encoder
                return
    encoder.close()


def close_kept_encoders() -> None:
    with _kept_lock:
        kept = list(_kept.values())
        _kept.clear()
    for encoder in kept:
        encoder.close()


atexit.register(close_kept_encoders)


def download_encoder(device, cpus: int | None = None) -> ThreadEncoder | ProcessEncoder:
    """The web app's encoder for full-resolution downloads: on a GPU with fpng, a few helper processes (a quarter
    of the cores, at least 2), so that one user's 8 MP PNG does not hold the GIL every other request needs."""
    cpus = cpus or os.cpu_count() or 1
    return make_encoder(device, max(2, cpus // 4))


def _serve(read_fd: int, write_fd: int, shared_fd: int | None = None) -> None:
    """The helper's loop: read a job, encode, answer; stop at end of input. A job's arrays are in the shared
    memory when it gives that memory's size, else they follow on the pipe."""
    recv, send = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    shared = None if shared_fd is None else SharedPixels(shared_fd)
    send.send("ready")
    while True:
        try:
            formats, specs, paths, shared_size = recv.recv()
        except EOFError:
            return
        if shared_size is None:
            arrays = [None if spec is None else np.frombuffer(recv.recv_bytes(), spec[1]).reshape(spec[0])
                      for spec in specs]
        else:
            arrays = shared.arrays(specs, shared_size)
        try:
            encoded = encode_outputs(formats, *arrays)
            for path, data in zip(paths or (), encoded):
                write_atomic(Path(path), data)
        except Exception as exc:  # noqa: BLE001 - report it for this image; the helper lives on
            send.send(_one_line(exc))
            continue
        send.send("ok")
        if paths is None:
            for data in encoded:
                send.send_bytes(data)


def _one_line(exc: Exception) -> str:
    if isinstance(exc, MattingError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot write the output: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    try:
        _serve(*map(int, sys.argv[1:4]))
    except BrokenPipeError:   # the parent closed its end before we were ready (it ended, or gave up): nothing to say
        pass
