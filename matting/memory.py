"""glibc's allocator, tuned for image work: large buffers reused from the heap (speed), and a long-running
server's freed heap pages given back to the OS (memory).

Speed: a CPU forward pass of U^2-Net-P allocates and frees activation buffers of 3 to 26 MiB. glibc starts with a
128 KiB mmap threshold that only rises as mmapped blocks are freed, and gives back the top of its heap beyond a
trim threshold that follows it; until both have risen far enough, every such buffer is a fresh zero-filled mapping
and its page faults cost the bf16 network 94 instead of 71 ms per image (2 cores). ``keep_large_buffers_in_heap``
sets both from the start: the mmap threshold at glibc's own ceiling for it (32 MiB), and up to 256 MiB of free
heap top kept. configure_process (process.py) calls it once per process.

Memory: glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB). After that, the
megabyte-sized buffers of image work come from per-thread heap arenas, which fragment, and freed pages inside
them stay resident: in a 20-minute load test of the app (8 users) RSS rose from 2.0 to 3.3 GiB while live tensors
held about 0.2 GiB. Fixing the threshold at 1 MiB stopped that but made every large buffer a fresh, zero-filled
mapping: a CPU batch ran at 2.7 instead of 4.2 images/s. So the app instead calls malloc_trim every few seconds,
which returns the free pages of every arena at a cost of milliseconds (docs/RELIABILITY.md). Short-lived
processes (the CLI, a batch) need no trimming.

Arenas: glibc gives each new thread a heap arena of its own, up to eight per core, and a server's many worker
threads each keep free pages in theirs: under 64 users on the H200 host (16 cores) the app's free heap grew from
4 to 721 MiB in 180 s while the heap in use stayed near 1.2 GiB, and its RSS rose 6.8 % from the middle third of
the run to the last. With two arenas the free heap stayed under 80 MiB and RSS flat (+0.8 %), at the same request
rate (docs/RELIABILITY.md, session 22). So the app limits the arenas (``limit_heap_arenas``) before its threads
start; a batch or the CLI, short-lived and busy in many threads at once, keeps glibc's default.

Account: ``MemoryLog`` ($MATTING_MEMORY_LOG) writes what the resident memory is made of (the heap in use and free,
PyTorch's pinned buffers) every few seconds, for long load tests.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
import time
from pathlib import Path

from .periodic import Periodic

TRIM_EVERY_S = 5.0
MEMORY_LOG_ENV = "MATTING_MEMORY_LOG"   # a file: the app appends what its memory is made of, every MEMORY_LOG_EVERY_S
MEMORY_LOG_EVERY_S = 10.0
MMAP_THRESHOLD = 32 << 20    # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where its dynamic threshold ends up
TRIM_THRESHOLD = 256 << 20   # free heap top kept for the next image rather than unmapped and faulted in again
HEAP_ARENAS = 2              # what the app allows (see above); MALLOC_ARENA_MAX in its environment still wins
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # mallopt parameter numbers (malloc.h)


def _glibc(function: str):
    """A glibc function, or None where the C library is not glibc (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), function)
    except (OSError, AttributeError):
        return None


def _malloc_trim():
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


def _mallopt():
    mallopt = _glibc("mallopt")
    if mallopt is not None:
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
    return mallopt


_tuned = False


def keep_large_buffers_in_heap() -> bool:
    """Fix glibc's mmap and trim thresholds for buffer reuse (see above), once; False where not glibc."""
    global _tuned
    if _tuned:
        return True
    mallopt = _mallopt()
    if mallopt is None:
        return False
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned


def limit_heap_arenas(count: int = HEAP_ARENAS) -> bool:
    """At most ``count`` malloc arenas for the threads started from now on (those that have one keep it); False
    where not glibc, or where MALLOC_ARENA_MAX is set (the operator's choice stands). Call it before the process
    has nine threads: glibc fixes its limit for good once more than eight arenas exist, and the call then still
    returns True but changes nothing (tried here: ten threads first, and twelve more made two more arenas)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = _mallopt()
    return mallopt is not None and bool(mallopt(_M_ARENA_MAX, count))


def trim_heap() -> bool:
    """Return the free pages of every malloc arena to the OS now; False where that is not available."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class HeapTrimmer(Periodic):
    """A daemon thread calling malloc_trim every ``every_s`` seconds while the server runs."""

    thread_name = "matting-heap-trim"

    def __init__(self, every_s: float = TRIM_EVERY_S):
        super().__init__()
        self.every_s = every_s
        self._trim = _malloc_trim()
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def start(self) -> HeapTrimmer:
        return super().start() if self.available else self

    def tick(self) -> None:
        self._trim(0)
        self.trims += 1


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_usage() -> dict[str, int] | None:
    """glibc's own account of malloc's memory, every arena together (mallinfo2, glibc 2.33 and later): bytes handed
    out (in the arenas and in mappings of their own), bytes free inside the arenas (kept, or fragments between live
    blocks), bytes in mappings of their own; None where that is not available."""
    mallinfo2 = _glibc("mallinfo2")
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {"heap_in_use": info.uordblks + info.hblkhd, "heap_free": info.fordblks, "heap_mapped": info.hblkhd}


def pinned_usage() -> dict[str, int] | None:
    """PyTorch's page-locked host memory: the bytes its caching allocator holds (in use, or kept for reuse); None
    before CUDA is used. Its "active_bytes" is left out: under the app's load on torch 2.11 it climbed without end
    (to 80 GB in 180 s, with an RSS of 2.5 GB), so it does not say what is in use."""
    import torch

    if not torch.cuda.is_initialized():
        return None
    return {"pinned_held": int(torch.cuda.host_memory_stats().get("allocated_bytes.current", 0))}


def resident_bytes() -> int | None:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class MemoryLog(Periodic):
    """Every ``every_s`` seconds, one JSON line appended to ``path``: the time, RSS, and what it is made of (the heap
    in use and free, PyTorch's pinned memory). Set by $MATTING_MEMORY_LOG for a long load test (scripts/load_test.py
    reads it), so a rising RSS says whether it is live data, the allocator's free space or pinned buffers."""

    thread_name = "matting-memory-log"

    def __init__(self, path: str | Path, every_s: float = MEMORY_LOG_EVERY_S):
        super().__init__()
        self.path, self.every_s = Path(path), every_s

    def tick(self) -> None:
        line = {"time": round(time.time(), 2), "rss": resident_bytes(), **(heap_usage() or {}),
                **(pinned_usage() or {})}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
