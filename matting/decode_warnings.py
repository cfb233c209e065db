"""Warnings a decoder raises about one image become that image's notices.

Pillow warns about damaged metadata it then ignores ("Corrupt EXIF data. Expecting to read 12 bytes but only got
8."): on stderr that line named Pillow's own source file, not the photo, and Python showed it once per process, so
in a batch only the first such photo was mentioned, by nobody's name. While ``caught()`` is open in a thread, the
warnings raised in that thread are collected instead of printed; every other thread's, and any outside it, are
shown as before. Pillow's UserWarnings are let through each time (not once per process) so that every photo's
are seen; outside ``caught()`` they print once per text and place, as Python's default would. (libpng's warnings,
from OpenCV's C code, go to stderr directly and cannot be caught here.)
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_local = threading.local()
_lock = threading.Lock()
_PILLOW = r"PIL\."
_shown_outside: set[tuple] = set()   # Pillow's UserWarnings already printed outside caught()


def _ensure_hook() -> None:
    """A showwarning that hands a thread's warnings to its open ``caught()``, and Pillow's UserWarnings shown each
    time. Checked at each ``caught()``, not set once: warnings.catch_warnings (pytest's, a caller's) puts back
    what it found when it ends, which may drop either."""
    with _lock:
        if not getattr(warnings.showwarning, "_collects", False):
            shown = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                collected = getattr(_local, "collected", None)
                if collected is None:
                    if _printed_before(message, category, filename, lineno):
                        return
                    shown(message, category, filename, lineno, file, line)
                else:
                    collected.append(" ".join(str(message).split()))
            show._collects = True
            warnings.showwarning = show
        if not any(map(_is_ours, warnings.filters)):
            warnings.filterwarnings("always", category=UserWarning, module=_PILLOW)


def _is_ours(rule) -> bool:
    """Whether a warnings filter is the one _ensure_hook adds."""
    action, _, category, module, _ = rule
    return action == "always" and category is UserWarning and module is not None and module.pattern == _PILLOW


def _printed_before(message, category, filename, lineno) -> bool:
    """Outside caught(), a Pillow UserWarning that only our filter let through (each time, for caught()'s sake) and
    that was printed already: the once per text and place that Python's default gives every other warning. One let
    through by a filter of the user's own (``python -W always``, a ``simplefilter("always")``) prints each time."""
    source, text = Path(filename), str(message)
    if not (issubclass(category, UserWarning) and "PIL" in source.parts
            and _ours_let_through(text, category, "PIL." + source.stem, lineno)):
        return False
    key = (text, category, filename, lineno)
    with _lock:
        if key in _shown_outside:
            return True
        _shown_outside.add(key)
    return False


def _ours_let_through(text: str, category, module: str, lineno: int) -> bool:
    """Whether the first filter that matches this warning (Python applies the first) is the one _ensure_hook adds."""
    for rule in warnings.filters:
        _, message, kind, where, line = rule
        if ((message is None or message.match(text)) and issubclass(category, kind)
                and (where is None or where.match(module)) and line in (0, lineno)):
            return _is_ours(rule)
    return False


@contextmanager
def caught() -> Iterator[list[str]]:
    """The warnings raised in this thread while open, each as one line of text (its order kept, repeats kept)."""
    _ensure_hook()
    outer = getattr(_local, "collected", None)
    _local.collected = collected = []
    try:
        yield collected
    finally:
        _local.collected = outer
