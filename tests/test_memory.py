"""Freed heap pages go back to the OS in the server (matting/memory.py)."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from matting import memory
from matting.memory import HeapTrimmer, trim_heap

ROOT = Path(__file__).resolve().parents[1]
glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim and mallopt are glibc's")

# Six threads each free one large block (glibc then raises its mmap threshold), then allocate and free twelve
# 4 MiB buffers while a small block allocated after them stays alive: the pattern of a server's workers.
SCENARIO = """
import sys, threading, psutil
sys.path.insert(0, {root!r})
from matting.memory import trim_heap
hold = []
def work():
    big = bytearray(40 << 20); del big
    blocks = [bytearray(4 << 20) for _ in range(12)]
    keep = bytearray(64 << 10)
    del blocks
    hold.append(keep)
base = psutil.Process().memory_info().rss
threads = [threading.Thread(target=work) for _ in range(6)]
[t.start() for t in threads]; [t.join() for t in threads]
if {trim}:
    assert trim_heap()
print((psutil.Process().memory_info().rss - base) / 2**20)
"""


def retained_mib(trim: bool) -> float:
    code = SCENARIO.format(root=str(ROOT), trim=trim)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return float(out.stdout.strip())


@glibc_only
def test_trim_gives_freed_buffers_back():
    assert retained_mib(trim=False) > 50   # the problem, as glibc shows it: 288 MiB freed, most of it kept
    assert retained_mib(trim=True) < 20    # after malloc_trim the free pages are released


@glibc_only
def test_the_trimmer_runs_until_stopped():
    trimmer = HeapTrimmer(every_s=0.01).start()
    try:
        deadline = time.monotonic() + 5
        while trimmer.trims < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert trimmer.available and trimmer.trims >= 3
    finally:
        trimmer.stop()
    trimmer._thread.join(timeout=2)
    assert not trimmer._thread.is_alive()


def test_trim_heap_reports_whether_it_could_trim(monkeypatch):
    """True where glibc's malloc_trim exists (Linux with glibc, as here and in CI), False where it does not."""
    import matting.memory as memory

    assert trim_heap() is (memory._glibc("malloc_trim") is not None)
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)   # a C library without it
    assert trim_heap() is False


def _app_main_until_the_model(monkeypatch, arenas=lambda: True, on_model=None) -> int:
    """``python app.py``'s main run up to the model's load, which is made to fail (exit 2): what it set up before
    is what the tests look at. ``arenas`` stands in for the arena limit, which would be process-wide and for good."""
    import demo.launch
    import matting.memory
    import matting.pipeline
    from matting.errors import ModelLoadError
    from tests.app_server import free_port

    monkeypatch.setattr(matting.memory, "limit_heap_arenas", arenas)

    def no_model(**kwargs):
        if on_model:
            on_model()
        raise ModelLoadError("stop here: what came before the model is what the test is about")

    monkeypatch.setattr(matting.pipeline, "get_pipeline", no_model)
    return demo.launch.main(["--port", str(free_port())])


def test_the_app_starts_it(monkeypatch):
    """python app.py starts a heap trimmer before it loads the model (seen by running its main, not by grep)."""
    import matting.memory

    started = []

    class Recorder:
        def start(self):
            started.append(True)
            return self

    monkeypatch.setattr(matting.memory, "HeapTrimmer", Recorder)
    assert _app_main_until_the_model(monkeypatch) == 2
    assert started == [True]


# Forward passes of U^2-Net-P on the CPU after two warm-up ones, counting page faults: its activation buffers
# (3 to 26 MiB) either come back from the heap or are mapped, and faulted in, afresh.
FORWARD = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from matting.memory import keep_large_buffers_in_heap
if {tune}:
    assert keep_large_buffers_in_heap()
from matting.models import create_model
model = create_model("u2netp", weights=False)
x = torch.zeros(1, 3, 320, 320)
with torch.inference_mode():
    model(x), model(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(x), model(x), model(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


def page_faults_per_pass(tune: bool) -> int:
    code = FORWARD.format(root=str(ROOT), tune=tune)
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              check=True).stdout.strip())


@glibc_only
def test_activation_buffers_are_reused_instead_of_mapped_afresh():
    """Measured: 83,000-89,000 faults per fp32 pass (about 340 MiB faulted in) with glibc's defaults, 0-8,500
    tuned."""
    untuned, tuned = page_faults_per_pass(False), page_faults_per_pass(True)
    assert tuned * 2 < untuned


def test_the_shared_pipeline_and_the_cli_configure_their_process(monkeypatch, tmp_path):
    """get_pipeline (library users, the app) and the CLI set the process up before they build a pipeline."""
    from matting import pipeline as pipeline_module
    from matting import process
    from matting.cli import main

    calls = []
    monkeypatch.setattr(process, "keep_large_buffers_in_heap", lambda: calls.append("heap") or True)
    monkeypatch.setattr(pipeline_module, "_PIPELINE", None)
    pipeline_module.get_pipeline(device="cpu", warm_up=False, cache_bytes=0)
    monkeypatch.setattr(pipeline_module, "_PIPELINE", None)
    assert calls == ["heap"]
    photo = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(photo)
    assert main([str(photo), "-o", str(tmp_path / "out"), "--no-progress", "--device", "cpu"]) == 0
    assert calls == ["heap", "heap"]


def test_building_a_pipeline_changes_no_process_setting():
    """TF32 and the heap thresholds are the process owner's choice (matting/process.py): a Pipeline built in a
    process that never called configure_process leaves cuDNN's TF32 switch as it found it."""
    import torch

    from matting.pipeline import Pipeline
    from matting.process import configure_process

    before = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        Pipeline(device="cpu", warm_up=False, cache_bytes=0)
        assert torch.backends.cudnn.allow_tf32 is True
        settings = configure_process()
        assert torch.backends.cudnn.allow_tf32 is False and settings["cudnn_tf32"] is False
        assert settings["heap_tuned"] == sys.platform.startswith("linux")
    finally:
        torch.backends.cudnn.allow_tf32 = before


def test_the_heap_account_sees_a_block_handed_out_and_given_back():
    from matting.memory import heap_usage

    before = heap_usage()
    if before is None:
        pytest.skip("glibc's mallinfo2 is not available here")
    block = bytearray(64 << 20)   # above the mmap threshold: a mapping of its own
    held = heap_usage()
    del block
    after = heap_usage()
    assert held["heap_in_use"] - before["heap_in_use"] >= 60 << 20
    assert held["heap_in_use"] - after["heap_in_use"] >= 60 << 20


def test_the_memory_log_writes_what_the_rss_is_made_of(tmp_path):
    import json

    import torch

    from matting.memory import MemoryLog

    path = tmp_path / "memory.jsonl"
    log = MemoryLog(path, every_s=0.02).start()
    deadline = time.monotonic() + 10
    while (not path.exists() or len(path.read_text().splitlines()) < 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    log.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) >= 2 and lines[1]["time"] >= lines[0]["time"]
    assert lines[0]["rss"] > 10 << 20
    assert {"heap_in_use", "heap_free", "heap_mapped"} <= set(lines[0])   # glibc here
    assert "pinned_held" not in lines[0] or torch.cuda.is_initialized()


def test_the_app_keeps_a_memory_log_when_asked(monkeypatch, tmp_path):
    import matting.memory

    started = []

    class Recorder:
        def __init__(self, path):
            started.append(path)

        def start(self):
            return self

    monkeypatch.setattr(matting.memory, "MemoryLog", Recorder)
    monkeypatch.setenv("MATTING_MEMORY_LOG", str(tmp_path / "memory.jsonl"))
    assert _app_main_until_the_model(monkeypatch) == 2
    assert started == [str(tmp_path / "memory.jsonl")]


_ARENA_PROBE = r"""
import ctypes, sys, threading
from matting.memory import limit_heap_arenas
if sys.argv[1] == "limit":
    assert limit_heap_arenas(2)
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]
together = threading.Barrier(8)

def work():                     # ctypes drops the GIL: each thread's malloc runs as that thread
    libc.malloc(100_000)
    together.wait()             # all alive at once, so none inherits the arena of one that ended

threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
out = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, out)
libc.fclose(out)
print(open(sys.argv[2]).read().count("<heap nr="))
"""


@pytest.mark.skipif(memory._glibc("mallopt") is None, reason="glibc only")
def test_the_arena_limit_keeps_eight_busy_threads_in_two_arenas(tmp_path):
    """glibc's own account (malloc_info) of the arenas after eight threads allocate at once: one each without the
    limit, two in all with it. A fresh process each, as the app sets it before its threads start."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    counts = {}
    for mode in ("default", "limit"):
        run = subprocess.run([sys.executable, "-c", _ARENA_PROBE, mode, str(tmp_path / f"{mode}.xml")], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        counts[mode] = int(run.stdout.split()[-1])
    assert counts["default"] >= 5 and counts["limit"] <= 2, counts


def test_an_operators_malloc_arena_max_stands(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert memory.limit_heap_arenas() is False


def test_the_app_limits_its_arenas_before_loading_the_model(monkeypatch):
    calls = []
    assert _app_main_until_the_model(monkeypatch, arenas=lambda: calls.append("arenas") or True,
                                     on_model=lambda: calls.append("model")) == 2
    assert calls == ["arenas", "model"]
