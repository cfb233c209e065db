"""Gradio's image input reports one upload twice (the upload, then its stored value), each a call of the same
event: a refused photo was decoded twice and its warning shown twice. This remembers, per session and input, the
last file handled and when its handling ended, for a moment only: the same file given again later is handled
again (Gradio names an upload by its content, so a second try of the same file has the same path)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

REPEAT_WINDOW_S = 2.0   # the second report runs right after the first ends; a person's second try takes longer
MAX_REMEMBERED = 1024   # sessions x inputs: the oldest go first


class RecentFiles:
    def __init__(self, window_s: float = REPEAT_WINDOW_S, capacity: int = MAX_REMEMBERED):
        self.window_s, self.capacity = window_s, capacity
        self._ended: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def just_handled(self, session: str, slot: str, path) -> bool:
        """True when ``slot`` of ``session`` finished handling ``path`` within the window."""
        with self._lock:
            last = self._ended.get((session, slot))
        return last is not None and last[0] == str(path) and time.monotonic() - last[1] < self.window_s

    def handled(self, session: str, slot: str, path) -> None:
        with self._lock:
            self._ended.pop((session, slot), None)
            self._ended[(session, slot)] = (str(path), time.monotonic())
            while len(self._ended) > self.capacity:
                self._ended.popitem(last=False)
