"""A daemon thread that runs one job every few seconds until stopped (heap trimming, upload-folder sweeps)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Periodic:
    """Subclasses set ``every_s`` and ``thread_name`` and define ``tick()``; a failing tick is logged, not fatal."""

    every_s: float = 5.0
    thread_name: str = "matting-periodic"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        raise NotImplementedError

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one failed run must not end the thread
                log.exception("%s failed", self.thread_name)
