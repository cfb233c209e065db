"""The GPU's turn: one thread at a time queues its work on the GPU (Pipeline.device_turn says why), and when a turn
ends, a waiting preview for a page goes before the heavy work (network batches, full-resolution renders).

A slider's release queues some 6 ms of kernels; an upload's network batch, a download's full-size render or a
refinement takes longer. Served in order of arrival (or, with a plain lock, in no order at all), a release often
waits behind several of those; short jobs first cut the mean wait of all (the shortest-job-first rule). Under 64
users on the H200 a release's wait for the turn fell from about 100 to 20 ms (p50), while the uploads' handlers,
whose network runs now wait behind the previews, took 15-30 % longer (docs/RELIABILITY.md, session 19). So that
a stream of previews cannot hold the heavy work back for good, a heavy job that has waited HEAVY_WAIT_S goes next
whatever waits."""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager

# A bound for floods of previews, not a scheduling rule: under 64 users on the H200 heavy work often waits 250 ms,
# and at 0.25 s it then went before the previews so often that a release waited 60-106 ms for the turn (p50)
# against 45-51 ms at 2 s (release p95 366-413 against 252-300 ms; uploads' p95 2.5-3.2 s either way; side by
# side, docs/RELIABILITY.md, session 20).
HEAVY_WAIT_S = 2.0


class DeviceTurn:
    """A lock with two queues. ``with turn:`` waits in the normal queue, ``with turn.first():`` in the first;
    a turn that ends hands itself to the longest-waiting thread of the first queue, else of the normal one, unless
    the normal one's has waited ``heavy_wait_s`` or longer."""

    def __init__(self, heavy_wait_s: float = HEAVY_WAIT_S):
        self.heavy_wait_s = heavy_wait_s
        self._guard = threading.Lock()
        self._held = False
        self._first: deque[tuple[float, threading.Lock]] = deque()
        self._normal: deque[tuple[float, threading.Lock]] = deque()

    def acquire(self, first: bool = False) -> None:
        with self._guard:
            if not self._held:
                self._held = True
                return
            waiter = threading.Lock()
            waiter.acquire()
            (self._first if first else self._normal).append((time.monotonic(), waiter))
        waiter.acquire()   # released by release(): the turn is handed over, never free in between

    def release(self) -> None:
        with self._guard:
            overdue = self._normal and time.monotonic() - self._normal[0][0] >= self.heavy_wait_s
            queue = self._normal if overdue else (self._first or self._normal)
            if queue:
                queue.popleft()[1].release()
            else:
                self._held = False

    def __enter__(self) -> "DeviceTurn":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @contextmanager
    def first(self):
        self.acquire(first=True)
        try:
            yield self
        finally:
            self.release()
