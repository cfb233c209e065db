"""Argument and shape checks shared by the tensor operations: each raises InvalidParameterError naming the
argument, its expected shape or range, and what it got."""

from __future__ import annotations

from collections.abc import Sequence
import math
import numbers
import operator

import torch
from torch import Tensor

from ..errors import InvalidParameterError


def check_tensor(x: object, name: str) -> None:
    if not isinstance(x, Tensor):
        raise InvalidParameterError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def _describe_channels(channels: Sequence[int]) -> str:
    return " or ".join(str(c) for c in channels)


def check_image(
    x: object,
    name: str,
    *,
    channels: Sequence[int] | None = None,
    allow_uint8: bool = False,
) -> Tensor:
    """Check a (B, C, H, W) tensor with H, W >= 1; return it typed as Tensor."""
    check_tensor(x, name)
    assert isinstance(x, Tensor)
    c_txt = _describe_channels(channels) if channels else "C"
    if x.ndim != 4:
        raise InvalidParameterError(
            f"{name} must have shape (B, {c_txt}, H, W), got {tuple(x.shape)}"
        )
    if channels is not None and x.shape[1] not in channels:
        raise InvalidParameterError(
            f"{name} must have {c_txt} channel(s), got shape {tuple(x.shape)}"
        )
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise InvalidParameterError(f"{name} must have H >= 1 and W >= 1, got {tuple(x.shape)}")
    if not (x.is_floating_point() or (allow_uint8 and x.dtype == torch.uint8)):
        allowed = "floating-point or uint8" if allow_uint8 else "floating-point"
        raise InvalidParameterError(f"{name} must be a {allowed} tensor, got {x.dtype}")
    return x


def check_alpha(x: object, name: str = "alpha") -> Tensor:
    return check_image(x, name, channels=(1,))


def check_same_geometry(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise InvalidParameterError(
            f"{b_name} must match {a_name} in batch size and H, W: "
            f"got {tuple(b.shape)} vs {tuple(a.shape)}"
        )
    if a.device != b.device:
        raise InvalidParameterError(
            f"{b_name} must be on the same device as {a_name}: got {b.device} vs {a.device}"
        )


def int_param(value: object, name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)  # ints and numpy ints, not floats
    except TypeError:
        raise InvalidParameterError(
            f"{name} must be an integer, got {type(value).__name__} {value!r}"
        ) from None
    if minimum is not None and v < minimum:
        raise InvalidParameterError(f"{name} must be an integer >= {minimum}, got {v}")
    return v


def float_param(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_exclusive: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidParameterError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    lo_ok = minimum is None or (v > minimum if min_exclusive else v >= minimum)
    hi_ok = maximum is None or v <= maximum
    if not math.isfinite(v) or not lo_ok or not hi_ok:
        lo = "-inf" if minimum is None else f"{minimum:g}"
        hi = "inf" if maximum is None else f"{maximum:g}"
        lb = "(" if (min_exclusive or minimum is None) else "["
        rb = "]" if maximum is not None else ")"
        raise InvalidParameterError(f"{name} must be a finite number in {lb}{lo}, {hi}{rb}, got {v!r}")
    return v


def size_param(size: object, name: str = "size") -> tuple[int, int]:
    if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 2:
        raise InvalidParameterError(f"{name} must be a pair of integers (H, W), got {size!r}")
    h = int_param(size[0], f"{name}[0] (height)", minimum=1)
    w = int_param(size[1], f"{name}[1] (width)", minimum=1)
    return h, w


def work_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32: accumulations in half precision drift."""
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32
