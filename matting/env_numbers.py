"""Numbers read from the environment (the engine's tuning knobs): one clear line naming the variable when a value is
not a number in range, raised where the knob is used, not a traceback when a module is imported."""

from __future__ import annotations

import os

from .errors import InvalidParameterError


def whole_number(name: str, default: int, minimum: int = 0) -> int:
    """``$name`` as a whole number of at least ``minimum``; ``default`` when unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise InvalidParameterError(f"{name} must be a whole number of at least {minimum}, got {text!r}")
    return value


def decimal_number(name: str, default: float, minimum: float = 0.0) -> float:
    """``$name`` as a finite number of at least ``minimum``; ``default`` when unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not minimum <= value < float("inf"):
        raise InvalidParameterError(f"{name} must be a number of at least {minimum:g}, got {text!r}")
    return value
