"""A small progress display for the command line: one self-rewriting line on a terminal, plain lines otherwise.

Written here rather than taken from tqdm: it is forty lines, it knows our counts (done, skipped, failed) and it
keeps the runtime requirements as they are.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

MIN_RATE_SECONDS = 1.0
BAR_WIDTH = 24


class Progress:
    """``update(finished, total, failed)`` after each image; ``write(line)`` prints above the bar; ``status(text)``
    says what happens before the first image."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True, interval: float | None = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        # A terminal line is cheap to redraw; a log file gets a line every 10 s at most.
        self.interval = interval if interval is not None else (0.1 if self.tty else 10.0)
        self._last: float | None = None   # when the line was last drawn; the first update always draws it
        self._width = 0
        self._first_processed: tuple[float, int] | None = None

    def update(self, finished: int, total: int, processed: int, failed: int, *, force: bool = False) -> None:
        """``processed``: images that went through the network (skips excluded: they say nothing about speed)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._first_processed is None and processed:
            self._first_processed = (now, processed)
        if not force and self._last is not None and now - self._last < self.interval and finished < total:
            return
        self._last = now
        line = self._line(finished, total, processed, failed, now)
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        """What the run is doing before its first image ("listing the inputs..."): on a terminal only, replaced by
        the next status or the bar (a log gets the bar's lines and the summary; a wait needs no line there)."""
        if not (self.enabled and self.tty):
            return
        self.stream.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self.stream.flush()

    def write(self, line: str) -> None:
        """A message that must stay on screen (a notice), printed above the bar."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def _line(self, finished: int, total: int, processed: int, failed: int, now: float) -> str:
        fraction = finished / total if total else 1.0
        filled = int(round(fraction * BAR_WIDTH))
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        rate = self._rate(processed, now)
        remaining = total - finished
        eta = _clock(remaining / rate) if rate and remaining else "--:--"
        failures = f", {failed} failed" if failed else ""
        speed = f"{rate:.1f} img/s" if rate else "-- img/s"
        return f"[{bar}] {finished}/{total} {fraction:4.0%} {speed} ETA {eta}{failures}"

    def _rate(self, processed: int, now: float) -> float:
        """Images per second since the first image came out (start-up and skips would distort it), once a second
        has passed: results that arrive in a burst (a Ray block, a batch) say nothing about the speed before."""
        if self._first_processed is None:
            return 0.0
        t0, n0 = self._first_processed
        return (processed - n0) / (now - t0) if now - t0 >= MIN_RATE_SECONDS and processed > n0 else 0.0


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"
