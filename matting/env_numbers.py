"""Numbers read from the environment (the engine's tuning knobs): one clear line naming the variable when a value is
not a number in range, raised where the knob is used, not a traceback when a module is imported."""

from __future__ import annotations

import os

from .errors import InvalidParameterError


def whole_number(name: str, default: int, minimum: int = 0) -> int:
    """``$name`` as a whole number of at least ``minimum``; ``default`` when unset or empty."""
    return _read(name, default, minimum, int, "a whole number")


def decimal_number(name: str, default: float, minimum: float = 0.0) -> float:
    """``$name`` as a finite number of at least ``minimum``; ``default`` when unset or empty."""
    return _read(name, default, minimum, float, "a number")


def _read(name: str, default, minimum, parse, kind: str):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not minimum <= value < float("inf"):   # NaN fails both comparisons
        raise InvalidParameterError(f"{name} must be {kind} of at least {minimum:g}, got {text!r}")
    return value
