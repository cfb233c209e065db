"""Pure tensor operations on images and alpha mattes (the engine's hot path).

Conventions (kornia style):

* images are float tensors ``(B, C, H, W)``, usually in ``[0, 1]``; alpha mattes are
  ``(B, 1, H, W)`` in ``[0, 1]``;
* no function modifies its inputs; non-contiguous inputs are accepted; the result has the
  input's dtype and device; ``B == 0`` gives an empty result of the right shape; a batch of
  N gives the same values as N single calls (every op is per image);
* identity settings (``sigma == 0``, ``radius == 0``, ``level == 0``, a resize to the same
  size, an image that already fits) return the input tensor itself, not a copy: the UI calls
  these on every slider move and an 8-megapixel copy is not free. Clone before writing into
  a result in place;
* float16 / bfloat16 inputs are computed in float32 where values are accumulated (filters,
  guided filter) and cast back;
* bad arguments and bad shapes raise :class:`~matting.errors.InvalidParameterError`.

Why shifted slices instead of ``max_pool2d`` / ``avg_pool2d`` / ``conv2d``: on a 2-core CPU
and an 8-megapixel single-channel alpha, ``max_pool2d`` takes 214 ms for a 3x3 window and
1.4 s for 65x65, ``conv2d`` with a 13-tap separable Gaussian 305 ms, a separable
``avg_pool2d`` box 50-270 ms; sliding windows built from whole-image shifted views
(``narrow`` + ``torch.maximum`` / ``+``, doubling the window each step, so O(log k) passes)
take 9-30 ms for the same results, bit for bit for max/min. On CUDA both are fast; the
same code runs there so results agree across devices.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InvalidParameterError

__all__ = [
    "to_float_image",
    "to_uint8_hwc",
    "resize",
    "normalize_for_model",
    "min_max_normalize",
    "threshold",
    "feather",
    "erode_dilate",
    "box_filter",
    "guided_filter",
    "fast_guided_filter",
    "composite",
    "fit_background",
    "downscale_to_fit",
    "fit_size",
]

_RESIZE_MODES = ("bilinear", "bicubic", "nearest", "nearest-exact", "area")
_FIT_MODES = ("cover", "stretch")

# feather(): from sigma >= 2 * this, blur on a grid f = floor(sigma / this) times coarser, so
# sigma stays >= this many coarse pixels (see _feather_downscaled for the measured error).
_FEATHER_LR_SIGMA = 4.0


# --------------------------------------------------------------------------- validation


def _check_tensor(x: object, name: str) -> None:
    if not isinstance(x, Tensor):
        raise InvalidParameterError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def _describe_channels(channels: Sequence[int]) -> str:
    return " or ".join(str(c) for c in channels)


def _check_image(
    x: object,
    name: str,
    *,
    channels: Sequence[int] | None = None,
    allow_uint8: bool = False,
) -> Tensor:
    """Check a (B, C, H, W) tensor with H, W >= 1; return it typed as Tensor."""
    _check_tensor(x, name)
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


def _check_alpha(x: object, name: str = "alpha") -> Tensor:
    return _check_image(x, name, channels=(1,))


def _check_same_geometry(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise InvalidParameterError(
            f"{b_name} must match {a_name} in batch size and H, W: "
            f"got {tuple(b.shape)} vs {tuple(a.shape)}"
        )
    if a.device != b.device:
        raise InvalidParameterError(
            f"{b_name} must be on the same device as {a_name}: got {b.device} vs {a.device}"
        )


def _int_param(value: object, name: str, *, minimum: int | None = None) -> int:
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


def _float_param(
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


def _size_param(size: object, name: str = "size") -> tuple[int, int]:
    if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 2:
        raise InvalidParameterError(f"{name} must be a pair of integers (H, W), got {size!r}")
    h = _int_param(size[0], f"{name}[0] (height)", minimum=1)
    w = _int_param(size[1], f"{name}[1] (width)", minimum=1)
    return h, w


def _work_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32: accumulations in half precision drift."""
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


# ------------------------------------------------------------------ sliding-window core


def _pad_axis(x: Tensor, before: int, after: int, dim: int, mode: str) -> Tensor:
    """Pad one spatial axis (dim -1 or -2) of a 4-D tensor."""
    if before == 0 and after == 0:
        return x
    if mode == "reflect" and max(before, after) >= x.shape[dim]:
        mode = "replicate"  # torch's reflect needs pad < size
    pad = (before, after, 0, 0) if dim == -1 else (0, 0, before, after)
    if mode == "constant":
        return F.pad(x, pad, mode="constant", value=0.0)
    return F.pad(x, pad, mode=mode)


class _Workspace:
    """Scratch buffers of one shape for a chain of shrinking valid-mode passes.

    Each pass writes into the top-left corner of a buffer that holds none of its operands,
    so a chain allocates nothing after its first buffers. Why: on CPU a fresh 32 MB tensor
    costs ~5 ms of page faults here, more than the ~1-2 ms pass that fills it.
    ``first`` must be a tensor this module owns (it gets overwritten).
    """

    def __init__(self, first: Tensor, count: int):
        self.bufs = [first] + [torch.empty_like(first) for _ in range(count - 1)]

    def out(self, shape: torch.Size, *live: Tensor) -> Tensor:
        busy = {t.untyped_storage().data_ptr() for t in live}
        for b in self.bufs:
            if b.untyped_storage().data_ptr() not in busy:
                return b[tuple(slice(0, n) for n in shape)]
        raise AssertionError("workspace has no free buffer")


def _doubling_passes(x: Tensor, k: int, step: Callable[[Tensor, int], Tensor]) -> Tensor:
    """Cover a window of length k in ceil(log2 k) passes: double the covered length each pass, then one
    overlapping pass for the remainder (exact for max/min, which involve no rounding)."""
    p = 1
    while 2 * p <= k:
        x = step(x, p)
        p *= 2
    if p < k:
        x = step(x, k - p)
    return x


def _sliding_extreme(x: Tensor, k: int, dim: int, op: Callable[..., Tensor], ws: _Workspace) -> Tensor:
    """Valid-mode max/min over windows of length k along dim (output shrinks by k - 1).

    Doubles the covered window each pass, then one overlapping pass for the remainder:
    ceil(log2 k) whole-image passes. Exact (max/min involve no rounding).
    """

    def step(t: Tensor, s: int) -> Tensor:
        n = t.shape[dim] - s
        a, b = t.narrow(dim, 0, n), t.narrow(dim, s, n)
        return op(a, b, out=ws.out(a.shape, t))

    return _doubling_passes(x, k, step)


def _sliding_diagonal(x: Tensor, k: int, op: Callable[..., Tensor], anti: bool, ws: _Workspace) -> Tensor:
    """Valid-mode max/min over k pixels along the (anti-)diagonal; both axes shrink by k - 1."""

    def step(t: Tensor, s: int) -> Tensor:
        h, w = t.shape[-2] - s, t.shape[-1] - s
        if anti:  # window runs from (y, x + k - 1) down-left to (y + k - 1, x)
            a, b = t[..., :h, s:], t[..., s:, :w]
        else:
            a, b = t[..., :h, :w], t[..., s:, s:]
        return op(a, b, out=ws.out(a.shape, t))

    return _doubling_passes(x, k, step)


def _cross(x: Tensor, op: Callable[..., Tensor], ws: _Workspace) -> Tensor:
    """Valid-mode max/min over the 3x3 plus-shaped neighbourhood; both axes shrink by 2."""
    centre = x[..., 1:-1, 1:-1]
    m = op(x[..., 1:-1, :-2], x[..., 1:-1, 2:], out=ws.out(centre.shape, x))
    op(m, x[..., :-2, 1:-1], out=m)
    op(m, x[..., 2:, 1:-1], out=m)
    op(m, centre, out=m)
    return m


def _sliding_sum(x: Tensor, k: int, dim: int) -> Tensor:
    """Valid-mode sum over windows of length k along dim, by binary decomposition of k.

    O(log k) whole-image additions of pairwise partial sums, so float32 error stays ~1e-7
    (a float32 cumulative sum over a 3264-pixel row is off by up to 7e-5). ``x`` must be a
    tensor this module owns: it is reused as scratch.
    """
    n_in = x.shape[dim]
    ws = _Workspace(x, 3)  # live at once: the running sum, the doubled window, the result
    acc: Tensor | None = None
    acc_len = 0
    cur, p = x, 1  # cur[i] = sum of x[i : i + p]
    while True:
        if k & p:
            if acc is None:
                acc, acc_len = cur, p
            else:
                n = n_in - (acc_len + p) + 1
                a, b = acc.narrow(dim, 0, n), cur.narrow(dim, acc_len, n)
                acc = torch.add(a, b, out=ws.out(a.shape, acc, cur))
                acc_len += p
        if 2 * p > k:
            break
        n = cur.shape[dim] - p
        a, b = cur.narrow(dim, 0, n), cur.narrow(dim, p, n)
        cur = torch.add(a, b, out=ws.out(a.shape, acc, cur) if acc is not None else ws.out(a.shape, cur))
        p *= 2
    assert acc is not None
    return acc


def _window_counts(n: int, r: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """How many of the 2r+1 window positions fall inside an axis of length n."""
    i = torch.arange(n, device=device)
    return ((i + r).clamp(max=n - 1) - (i - r).clamp(min=0) + 1).to(dtype)


def _gaussian_half_kernel(sigma: float) -> list[float]:
    """Normalised Gaussian weights w[0..r], r = ceil(3 sigma), as Python floats (no device copy)."""
    r = math.ceil(3.0 * sigma)
    w = [math.exp(-(j * j) / (2.0 * sigma * sigma)) for j in range(r + 1)]
    total = w[0] + 2.0 * sum(w[1:])
    return [v / total for v in w]


def _gaussian_axis(x: Tensor, sigma: float, dim: int) -> Tensor:
    """Exact truncated Gaussian along one axis, reflect padding (replicate if too small)."""
    w = _gaussian_half_kernel(sigma)
    r = len(w) - 1
    n = x.shape[dim]
    y = _pad_axis(x, r, r, dim, "reflect")
    out = y.narrow(dim, r, n) * w[0]
    for j in range(1, r + 1):  # in place: no 8 MP temporary per tap
        out.add_(y.narrow(dim, r - j, n), alpha=w[j]).add_(y.narrow(dim, r + j, n), alpha=w[j])
    return out


def _gaussian_exact(x: Tensor, sigma: float) -> Tensor:
    return _gaussian_axis(_gaussian_axis(x, sigma, -1), sigma, -2)


def _feather_downscaled(x: Tensor, sigma: float, f: int) -> Tensor | None:
    """Gaussian blur computed on a grid f times coarser; None when the image is too small.

    Reflect-pads by >= 3 sigma (a multiple of f, so the coarse grid lines up with the fine
    one), downsamples by exactly f with the antialiased triangle filter, blurs exactly with
    the remaining variance, upsamples bilinearly and crops. Each resampling adds about f^2/6
    px^2 of variance, subtracted from sigma^2. Measured max abs error against the exact
    truncated Gaussian on step edges, 1-px lines, dots and noise: <= 0.003 for sigma in
    8..80 (below one 8-bit level, 0.0039), at the border too; 0.001-0.002 is typical.
    """
    h, w = x.shape[-2:]
    pad = -(-math.ceil(3.0 * sigma) // f) * f
    hp = -(-(h + 2 * pad) // f) * f
    wp = -(-(w + 2 * pad) // f) * f
    if hp - h - pad >= h or wp - w - pad >= w:
        return None  # reflect padding would not fit; the exact path handles small images
    y = _pad_axis(x, pad, wp - w - pad, -1, "reflect")
    y = _pad_axis(y, pad, hp - h - pad, -2, "reflect")
    y = F.interpolate(y, size=(hp // f, wp // f), mode="bilinear", align_corners=False, antialias=True)
    sigma_lr = math.sqrt(max(sigma * sigma - f * f / 3.0, 0.0)) / f
    if sigma_lr > 0:
        y = _gaussian_exact(y, sigma_lr)
    y = F.interpolate(y, size=(hp, wp), mode="bilinear", align_corners=False)
    return y[..., pad : pad + h, pad : pad + w]


# ------------------------------------------------------------------------ conversions


def to_float_image(rgb_uint8_hwc: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(H, W, 3)`` or ``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float in ``[0, 1]``.

    The result is a contiguous float copy (the transposition happens in the one conversion
    pass: later arithmetic mixing it with (B, 1, H, W) alphas is 30 % faster on a CPU than
    with a channels-last photo); ``dtype`` lets CUDA callers ask for float16 directly.

    >>> to_float_image(torch.full((2, 2, 3), 255, dtype=torch.uint8)).shape
    torch.Size([1, 3, 2, 2])
    """
    x = rgb_uint8_hwc
    _check_tensor(x, "rgb_uint8_hwc")
    if x.dtype != torch.uint8:
        raise InvalidParameterError(f"rgb_uint8_hwc must be a uint8 tensor, got {x.dtype}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InvalidParameterError(
            f"rgb_uint8_hwc must have shape (H, W, 3) or (B, H, W, 3), got {tuple(rgb_uint8_hwc.shape)}"
        )
    if not dtype.is_floating_point:
        raise InvalidParameterError(f"dtype must be a floating-point dtype, got {dtype}")
    b, h, w, c = x.shape
    return torch.empty((b, c, h, w), dtype=dtype, device=x.device).copy_(x.permute(0, 3, 1, 2)).div_(255.0)


def to_uint8_hwc(x: Tensor, out: Tensor | None = None) -> Tensor:
    """``(B, C, H, W)`` float in ``[0, 1]`` -> contiguous ``(B, H, W, C)`` uint8.

    Rounds half up (``floor(x * 255 + 0.5)``) and clamps to ``[0, 255]``; float16 is
    scaled in float32. ``out``: a (B, H, W, C) uint8 tensor (or a view, such as the colour
    channels of an RGBA image) to write into instead, returned.

    >>> to_uint8_hwc(torch.tensor([0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 4)).flatten().tolist()
    [0, 128, 255, 255]
    """
    x = _check_image(x, "x")
    b, c, h, w = x.shape
    wd = _work_dtype(x)
    y = x.permute(0, 2, 3, 1)
    if out is not None and (out.shape != (b, h, w, c) or out.dtype != torch.uint8 or out.device != x.device):
        raise InvalidParameterError(f"out must be a {(b, h, w, c)} uint8 tensor on {x.device}, got "
                                    f"{tuple(out.shape)} {out.dtype} on {out.device}")
    # After the clamp the value is >= 0, so the float -> uint8 cast (truncation) is the floor.
    if x.device.type != "cpu" or b == 0:
        u8 = (y.to(wd) * 255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)
        return u8.contiguous() if out is None else out.copy_(u8)
    # CPU: bands of ~256 K values through one small float buffer that stays in cache: 3x
    # faster on 8 MP than whole-image temporaries (15 vs 44 ms RGB), which page-fault.
    if out is None:
        out = torch.empty((b, h, w, c), dtype=torch.uint8)
    rows = max(1, (1 << 18) // (b * w * c))
    buf = torch.empty((b, min(rows, h), w, c), dtype=wd)
    for r0 in range(0, h, rows):
        band = y[:, r0 : r0 + rows]
        t = buf[:, : band.shape[1]]
        t.copy_(band).mul_(255.0).add_(0.5).clamp_(0.0, 255.0)
        out[:, r0 : r0 + rows].copy_(t)
    return out


# --------------------------------------------------------------------------- resizing


def resize(
    x: Tensor,
    size: tuple[int, int],
    *,
    mode: str = "bilinear",
    antialias: bool = True,
) -> Tensor:
    """Resize ``(B, C, H, W)`` to ``size = (H', W')`` (``align_corners=False``).

    ``antialias`` only takes effect when some axis shrinks and only for bilinear/bicubic
    (``area`` averages by itself). uint8 input is resized in float32 and rounded back;
    float16 on CPU is computed in float32 (no half antialias kernel there). Bicubic can
    overshoot ``[0, 1]`` on float input; clamp if that matters. Same size returns ``x``.

    >>> resize(torch.ones(1, 1, 4, 6), (2, 3)).shape
    torch.Size([1, 1, 2, 3])
    """
    x = _check_image(x, "x", allow_uint8=True)
    out_h, out_w = _size_param(size)
    if mode not in _RESIZE_MODES:
        raise InvalidParameterError(f"mode must be one of {', '.join(_RESIZE_MODES)}; got {mode!r}")
    if not isinstance(antialias, bool):
        raise InvalidParameterError(f"antialias must be a bool, got {antialias!r}")
    h, w = x.shape[-2:]
    if (out_h, out_w) == (h, w):
        return x
    if x.shape[0] == 0:
        return x.new_empty((0, x.shape[1], out_h, out_w))
    smooth = mode in ("bilinear", "bicubic")
    use_aa = antialias and smooth and (out_h < h or out_w < w)
    if x.dtype == torch.uint8 or (x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16)):
        work = torch.float32
    else:
        work = x.dtype
    y = F.interpolate(
        x.to(work),
        size=(out_h, out_w),
        mode=mode,
        align_corners=False if smooth else None,
        antialias=use_aa,
    )
    if x.dtype == torch.uint8:
        return y.add_(0.5).floor_().clamp_(0.0, 255.0).to(torch.uint8)
    return y.to(x.dtype)


def fit_size(size_hw: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The ``(h, w)`` that fits in ``max_side`` keeping the aspect ratio (never upscales).

    The long side becomes exactly ``max_side``; the short side is rounded half up and is
    never 0.

    >>> fit_size((3000, 4000), 1000)
    (750, 1000)
    >>> fit_size((1, 5000), 100)
    (1, 100)
    """
    h, w = _size_param(size_hw, "size_hw")
    m = _int_param(max_side, "max_side", minimum=1)
    if max(h, w) <= m:
        return h, w
    if h >= w:
        return m, max(1, (2 * w * m + h) // (2 * h))  # round(w * m / h), exactly
    return max(1, (2 * h * m + w) // (2 * w)), m


def downscale_to_fit(x: Tensor, max_side: int) -> Tensor:
    """Antialiased downscale so that max(H, W) <= ``max_side``; returns ``x`` when it fits.

    >>> downscale_to_fit(torch.zeros(1, 3, 300, 400), 100).shape
    torch.Size([1, 3, 75, 100])
    """
    x = _check_image(x, "x", allow_uint8=True)
    h, w = x.shape[-2:]
    size = fit_size((h, w), max_side)
    if size == (h, w):
        return x
    return resize(x, size, mode="bilinear", antialias=True)


# ------------------------------------------------------------------- normalisation


def _per_channel(value: object, name: str, channels: int, *, positive: bool) -> list[float]:
    if isinstance(value, Tensor):
        value = value.detach().flatten().tolist()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = [value] * channels
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != channels:
        raise InvalidParameterError(
            f"{name} must be a number or a sequence of {channels} numbers (one per channel), got {value!r}"
        )
    return [
        _float_param(v, f"{name}[{i}]", minimum=0.0 if positive else None, min_exclusive=positive)
        for i, v in enumerate(value)
    ]


def normalize_for_model(
    x: Tensor,
    mean: Sequence[float] | float,
    std: Sequence[float] | float,
    *,
    scale_by_max: bool,
) -> Tensor:
    """U^2-Net family preprocessing: optional per-image ``x / max(x)``, then ``(x - mean) / std``.

    The max is taken per image over all channels (as the reference code's ``img /
    np.max(img)``); an all-zero image is left unscaled. ``mean``/``std`` are one number or
    one per channel; ``std > 0``. U^2-Net: mean (0.485, 0.456, 0.406), std (0.229, 0.224,
    0.225), scale_by_max True; ISNet: mean 0.5, std 1.0, scale_by_max False.

    >>> normalize_for_model(torch.full((1, 3, 1, 1), 0.5), 0.5, 1.0, scale_by_max=False).flatten().tolist()
    [0.0, 0.0, 0.0]
    """
    x = _check_image(x, "x")
    if not isinstance(scale_by_max, bool):
        raise InvalidParameterError(f"scale_by_max must be a bool, got {scale_by_max!r}")
    c = x.shape[1]
    mean_l = _per_channel(mean, "mean", c, positive=False)
    std_l = _per_channel(std, "std", c, positive=True)
    mean_t = torch.tensor(mean_l, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    std_t = torch.tensor(std_l, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    if scale_by_max:
        peak = x.amax(dim=(1, 2, 3), keepdim=True)
        x = x / torch.where(peak > 0, peak, torch.ones_like(peak))
    return (x - mean_t) / std_t


def min_max_normalize(x: Tensor) -> Tensor:
    """Per image ``(x - min) / (max - min)`` over (C, H, W); a constant image gives zeros.

    >>> min_max_normalize(torch.tensor([2.0, 4.0, 6.0]).view(1, 1, 1, 3)).flatten().tolist()
    [0.0, 0.5, 1.0]
    """
    x = _check_image(x, "x")
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    span = x.amax(dim=(1, 2, 3), keepdim=True) - lo
    return (x - lo) / torch.where(span > 0, span, torch.ones_like(span))


def threshold(alpha: Tensor, level: float) -> Tensor:
    """Binary matte: 1 where ``alpha >= level`` else 0; ``level == 0`` returns ``alpha`` itself.

    >>> threshold(torch.tensor([0.2, 0.5, 0.8]).view(1, 1, 1, 3), 0.5).flatten().tolist()
    [0.0, 1.0, 1.0]
    """
    alpha = _check_alpha(alpha)
    lv = _float_param(level, "level", minimum=0.0, maximum=1.0)
    if lv == 0.0:
        return alpha
    return (alpha >= lv).to(alpha.dtype)


# ------------------------------------------------------------------------- filtering


def feather(alpha: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of the matte; ``sigma`` in pixels (0 returns ``alpha`` itself).

    Kernel radius ceil(3 sigma), normalised truncated Gaussian, reflect padding (replicate
    on an axis shorter than the radius), result clamped to ``[0, 1]``.

    * sigma < 8: exact separable convolution (float32 accumulation, error ~1e-7); cost grows
      with sigma (8 MP, 2 CPU cores: ~20 ms at sigma 1, ~120 ms just below 8).
    * sigma >= 8: computed on a grid f = floor(sigma / 4) times coarser (sigma stays >= 4
      coarse pixels), then upsampled; cost stops growing with sigma (~25-35 ms at sigma
      8..50 where the exact path takes 0.12-0.7 s). Max abs error vs the exact Gaussian
      <= 0.003 (< one 8-bit level). Three box passes were rejected: 0.8-1.8 % error from
      integer box widths, and no faster.

    >>> a = torch.zeros(1, 1, 9, 9); a[..., 4, 4] = 1.0
    >>> round(feather(a, 1.0).sum().item(), 4)
    1.0
    """
    alpha = _check_alpha(alpha)
    s = _float_param(sigma, "sigma", minimum=0.0)
    if s == 0.0:
        return alpha
    if alpha.shape[0] == 0:
        return alpha.new_empty(alpha.shape)
    x = alpha.to(_work_dtype(alpha))
    f = int(s // _FEATHER_LR_SIGMA)
    y = _feather_downscaled(x, s, f) if f >= 2 else None
    if y is None:
        y = _gaussian_exact(x, s).clamp_(0.0, 1.0)  # a fresh tensor: clamp in place
    else:
        y = y.clamp(0.0, 1.0)  # compacts the cropped view
    return y.to(alpha.dtype)


def erode_dilate(alpha: Tensor, radius: int) -> Tensor:
    """Grey-level morphology with an octagonal (near-disk) element; signed ``radius``.

    ``radius > 0`` dilates (grows the foreground), ``< 0`` erodes, ``0`` returns ``alpha``
    itself. The structuring element is a (2a+1)^2 square Minkowski-added to an L1 diamond of
    radius b, a = max(1, round(0.39 |r|)), b = |r| - a: it reaches |r| along the axes and
    approximates the digital disk of radius |r| + 0.5 (radius 1 is the 3x3 square; for
    |r| <= 80 it differs from that disk by <= 6 % of its area). A square element
    reaches 41 % further along the diagonals, this one ~8 %; it costs 1.2-2x the square
    (8 MP, 2 CPU cores: r=3 ~18 ms, r=15 ~30 ms; max_pool2d squares take 0.2-0.7 s).
    The diamond is built from two diagonal line windows and 3x3 crosses, each a few
    shifted-view max/min passes, so cost grows with log |r|. The image is extended by
    replicating its border (one pad by |r|, then every pass in valid mode), so nothing
    erodes in from the border.

    >>> a = torch.zeros(1, 1, 5, 5); a[..., 2, 2] = 1.0
    >>> int(erode_dilate(a, 1).sum().item()), int(erode_dilate(a, -1).sum().item())
    (9, 0)
    """
    alpha = _check_alpha(alpha)
    r_signed = _int_param(radius, "radius")
    if r_signed == 0:
        return alpha
    if alpha.shape[0] == 0:
        return alpha.new_empty(alpha.shape)
    op = torch.maximum if r_signed > 0 else torch.minimum
    h, w = alpha.shape[-2:]
    # Beyond H + W every pixel already sees the whole (replicated) image: same result.
    r = min(abs(r_signed), h + w)
    a = max(1, int(math.floor(0.39 * r + 0.5)))
    b = r - a
    y = F.pad(alpha, (r, r, r, r), mode="replicate")
    ws = _Workspace(y, 2)  # every pass ping-pongs between the padded copy and one buffer
    y = _sliding_extreme(y, 2 * a + 1, -1, op, ws)
    y = _sliding_extreme(y, 2 * a + 1, -2, op, ws)
    if b > 0:
        # diamond(2c+1) = diag(c) + antidiag(c) + cross: the two diagonals alone reach only
        # pixels with x + y even, the cross fills the others. diamond(2c) = diamond(2c-1) + cross.
        c, crosses = (b // 2, 1) if b % 2 else (b // 2 - 1, 2)
        if c > 0:
            y = _sliding_diagonal(y, 2 * c + 1, op, False, ws)
            y = _sliding_diagonal(y, 2 * c + 1, op, True, ws)
        for _ in range(crosses):
            y = _cross(y, op, ws)
    return y.contiguous()  # a corner view of a padded buffer: compact it


def box_filter(x: Tensor, radius: int) -> Tensor:
    """Mean over the (2r+1)^2 window, counting only pixels inside the image.

    Any channel count; ``radius == 0`` returns ``x`` itself. Separable sliding sums by
    binary decomposition of the window (O(log r) passes, float32 error ~1e-7). Measured on
    8 MP, 2 CPU cores, r = 1/4/8/16/32: this 21-60 ms; separable ``avg_pool2d``
    (count_include_pad=False) 51-270 ms; cumulative sums 58-67 ms in float32 (error up to
    7e-5, too much for variances) and ~210 ms in float64.

    >>> box_filter(torch.arange(9.0).view(1, 1, 3, 3), 1)[0, 0, 0, 0].item()  # (0+1+3+4)/4
    2.0
    """
    x = _check_image(x, "x")
    r = _int_param(radius, "radius", minimum=0)
    if r == 0:
        return x
    if x.shape[0] == 0:
        return x.new_empty(x.shape)
    h, w = x.shape[-2:]
    wd = _work_dtype(x)
    # A window wider than the axis covers all of it: clip the radius, same result.
    rh, rw = min(r, h - 1), min(r, w - 1)
    if rh == 0 and rw == 0:
        return x
    y = x.to(wd)
    if rw > 0:
        y = _sliding_sum(_pad_axis(y, rw, rw, -1, "constant"), 2 * rw + 1, -1)
    if rh > 0:
        y = _sliding_sum(_pad_axis(y, rh, rh, -2, "constant"), 2 * rh + 1, -2)
    counts = _window_counts(h, rh, y.device, wd)[:, None] * _window_counts(w, rw, y.device, wd)
    return torch.div(y, counts).to(x.dtype)  # out of place: a compact result, not a scratch view


# ------------------------------------------------------------------- guided filter


def _check_guided_inputs(guide: Tensor, src: Tensor, g_name: str, s_name: str) -> None:
    _check_image(guide, g_name, channels=(1, 3))
    _check_alpha(src, s_name)
    _check_same_geometry(guide, g_name, src, s_name)


def _guided_coefficients(i: Tensor, p: Tensor, r: int, eps: float) -> tuple[Tensor, Tensor]:
    """Box-averaged linear coefficients (mean_a (B, C, H, W), mean_b (B, 1, H, W)) of He et al."""
    c = i.shape[1]
    if c == 1:
        stats = box_filter(torch.cat([i, p, i * p, i * i], dim=1), r)
        m_i, m_p, m_ip, m_ii = stats.split(1, dim=1)
        var = (m_ii - m_i * m_i).clamp_min_(0.0)  # rounding can make it slightly negative
        a = (m_ip - m_i * m_p) / (var + eps)
        b = m_p - a * m_i
    else:
        ir, ig, ib = i.split(1, dim=1)
        stats = box_filter(
            torch.cat([i, p, i * p, ir * ir, ir * ig, ir * ib, ig * ig, ig * ib, ib * ib], dim=1), r
        )
        m_r, m_g, m_b, m_p, m_rp, m_gp, m_bp, m_rr, m_rg, m_rb, m_gg, m_gb, m_bb = stats.split(1, dim=1)
        cov_r = m_rp - m_r * m_p
        cov_g = m_gp - m_g * m_p
        cov_b = m_bp - m_b * m_p
        # Sigma + eps*I (symmetric), inverted in closed form via its adjugate.
        s_rr = m_rr - m_r * m_r + eps
        s_rg = m_rg - m_r * m_g
        s_rb = m_rb - m_r * m_b
        s_gg = m_gg - m_g * m_g + eps
        s_gb = m_gb - m_g * m_b
        s_bb = m_bb - m_b * m_b + eps
        inv_rr = s_gg * s_bb - s_gb * s_gb
        inv_rg = s_gb * s_rb - s_rg * s_bb
        inv_rb = s_rg * s_gb - s_gg * s_rb
        inv_gg = s_rr * s_bb - s_rb * s_rb
        inv_gb = s_rb * s_rg - s_rr * s_gb
        inv_bb = s_rr * s_gg - s_rg * s_rg
        det = s_rr * inv_rr + s_rg * inv_rg + s_rb * inv_rb
        a_r = (inv_rr * cov_r + inv_rg * cov_g + inv_rb * cov_b) / det
        a_g = (inv_rg * cov_r + inv_gg * cov_g + inv_gb * cov_b) / det
        a_b = (inv_rb * cov_r + inv_gb * cov_g + inv_bb * cov_b) / det
        a = torch.cat([a_r, a_g, a_b], dim=1)
        b = m_p - a_r * m_r - a_g * m_g - a_b * m_b
    mean_ab = box_filter(torch.cat([a, b], dim=1), r)
    return mean_ab[:, :c], mean_ab[:, c:]


def _apply_linear(mean_a: Tensor, mean_b: Tensor, guide: Tensor) -> Tensor:
    """q = mean_b + sum_c mean_a_c * guide_c, in mean_a's dtype (guide may be lower precision)."""
    q = torch.addcmul(mean_b, mean_a[:, :1], guide[:, :1])
    for ch in range(1, guide.shape[1]):
        q.addcmul_(mean_a[:, ch : ch + 1], guide[:, ch : ch + 1])
    return q


def guided_filter(guide: Tensor, src: Tensor, radius: int, eps: float) -> Tensor:
    """He et al. guided filter of ``src`` (B, 1, H, W) steered by ``guide`` (B, 1 or 3, H, W).

    Grey guide: per-window ``q = a I + b``; colour guide: ``q = a . I + b`` with the 3x3
    covariance (+ eps I) inverted in closed form per pixel. ``radius >= 1`` (window 2r+1),
    ``eps > 0`` (regularisation, in squared intensity units). Computed in float32 (float64 if
    an input is float64), returned in ``src``'s dtype; not clamped (the filter can overshoot
    [0, 1] slightly; fast_guided_filter clamps).

    >>> p = torch.rand(1, 1, 8, 8)
    >>> bool((guided_filter(p, p, 2, 1e-8) - p).abs().max() < 1e-3)
    True
    """
    _check_guided_inputs(guide, src, "guide", "src")
    r = _int_param(radius, "radius", minimum=1)
    e = _float_param(eps, "eps", minimum=0.0, min_exclusive=True)
    if src.shape[0] == 0:
        return src.new_empty(src.shape)
    wd = _work_dtype(guide, src)
    i = guide.to(wd)
    mean_a, mean_b = _guided_coefficients(i, src.to(wd), r, e)
    return _apply_linear(mean_a, mean_b, i).to(src.dtype)


def fast_guided_filter(
    guide_lr: Tensor,
    src_lr: Tensor,
    guide_hr: Tensor,
    radius: int,
    eps: float,
) -> Tensor:
    """Fast guided filter (He & Sun 2015): coefficients at low resolution, applied at high.

    ``guide_lr`` (B, 1|3, h, w) is the photo downscaled to the matte's size, ``src_lr``
    (B, 1, h, w) the network matte, ``guide_hr`` (B, same C, H, W) the full-size photo.
    ``radius`` is in low-resolution pixels. mean_a, mean_b are upsampled bilinearly
    (align_corners=False) and the result ``sum_c A_c I_c + b`` is clamped to [0, 1], in
    ``src_lr``'s dtype. guide_hr may be float16 on CUDA; the arithmetic is float32.

    >>> g = torch.rand(1, 3, 16, 16)
    >>> fast_guided_filter(resize(g, (8, 8)), torch.rand(1, 1, 8, 8), g, 2, 1e-3).shape
    torch.Size([1, 1, 16, 16])
    """
    _check_guided_inputs(guide_lr, src_lr, "guide_lr", "src_lr")
    _check_image(guide_hr, "guide_hr", channels=(1, 3))
    if guide_hr.shape[:2] != guide_lr.shape[:2] or guide_hr.device != guide_lr.device:
        raise InvalidParameterError(
            "guide_hr must match guide_lr in batch size, channels and device: "
            f"got {tuple(guide_hr.shape)} on {guide_hr.device} vs {tuple(guide_lr.shape)} on {guide_lr.device}"
        )
    r = _int_param(radius, "radius", minimum=1)
    e = _float_param(eps, "eps", minimum=0.0, min_exclusive=True)
    bsz, c = guide_lr.shape[:2]
    out_h, out_w = guide_hr.shape[-2:]
    if bsz == 0:
        return src_lr.new_empty((0, 1, out_h, out_w))
    wd = _work_dtype(guide_lr, src_lr, guide_hr)
    mean_a, mean_b = _guided_coefficients(guide_lr.to(wd), src_lr.to(wd), r, e)
    ab = torch.cat([mean_a, mean_b], dim=1)
    h, w = ab.shape[-2:]
    up = F.interpolate(
        ab.reshape(bsz * (c + 1), 1, h, w), size=(out_h, out_w), mode="bilinear", align_corners=False
    ).view(bsz, c + 1, out_h, out_w)
    q = _apply_linear(up[:, :c], up[:, c:], guide_hr)
    return q.clamp_(0.0, 1.0).to(src_lr.dtype)


# ---------------------------------------------------------------------- compositing


def _background_tensor(background: object, rgb: Tensor) -> Tensor:
    if isinstance(background, Tensor):
        bg = background
        if not bg.is_floating_point():
            raise InvalidParameterError(f"background must be a floating-point tensor, got {bg.dtype}")
        if bg.device != rgb.device:
            raise InvalidParameterError(
                f"background must be on the same device as rgb: got {bg.device} vs {rgb.device}"
            )
        if bg.shape == (3,):
            bg = bg.view(1, 3, 1, 1)
        ok = (
            bg.ndim == 4
            and bg.shape[0] in (1, rgb.shape[0])
            and bg.shape[1] == 3
            and (bg.shape[2:] == (1, 1) or bg.shape[2:] == rgb.shape[2:])
        )
        if not ok:
            raise InvalidParameterError(
                "background tensor must have shape (3,), (B, 3, 1, 1) or (B, 3, H, W) matching rgb "
                f"{tuple(rgb.shape)} (B may be 1), got {tuple(background.shape)}"
            )
        return bg.to(rgb.dtype)
    if isinstance(background, Sequence) and not isinstance(background, str) and len(background) == 3:
        vals = [
            _float_param(v, f"background[{i}]", minimum=0.0, maximum=1.0) for i, v in enumerate(background)
        ]
        return torch.tensor(vals, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    raise InvalidParameterError(
        "background must be None, 3 floats in [0, 1], or a tensor of shape (3,), (B, 3, 1, 1) "
        f"or (B, 3, H, W); got {type(background).__name__}"
    )


def composite(rgb: Tensor, alpha: Tensor, background: object = None) -> Tensor:
    """Cut out or composite the foreground.

    * ``background is None``: RGBA (B, 4, H, W), alpha appended, not premultiplied;
    * a colour (3 floats in [0, 1], or a (3,) / (B|1, 3, 1, 1) tensor) or an image
      (B|1, 3, H, W): RGB (B, 3, H, W) = alpha * rgb + (1 - alpha) * background, via
      ``torch.lerp`` (exact at alpha 0 and 1).

    >>> rgb = torch.ones(1, 3, 1, 1); a = torch.full((1, 1, 1, 1), 0.25)
    >>> composite(rgb, a, (0.0, 0.0, 1.0)).flatten().tolist()
    [0.25, 0.25, 1.0]
    """
    rgb = _check_image(rgb, "rgb", channels=(3,))
    alpha = _check_alpha(alpha)
    _check_same_geometry(rgb, "rgb", alpha, "alpha")
    a = alpha.to(rgb.dtype)
    if background is None:
        return torch.cat([rgb, a], dim=1)
    bg = _background_tensor(background, rgb)
    return torch.lerp(bg, rgb, a)


def fit_background(bg: Tensor, size: tuple[int, int], mode: str = "cover") -> Tensor:
    """Resize a background (B, 3, h, w) to ``size = (H, W)``.

    ``"cover"``: scale keeping the aspect ratio so it covers (H, W), then centre-crop;
    ``"stretch"``: plain resize. Antialiased when shrinking; returns a contiguous tensor.

    >>> fit_background(torch.zeros(1, 3, 100, 200), (50, 50)).shape
    torch.Size([1, 3, 50, 50])
    """
    bg = _check_image(bg, "bg", channels=(3,), allow_uint8=True)
    out_h, out_w = _size_param(size)
    if mode not in _FIT_MODES:
        raise InvalidParameterError(f"mode must be one of {', '.join(_FIT_MODES)}; got {mode!r}")
    h, w = bg.shape[-2:]
    if mode == "stretch":
        return resize(bg, (out_h, out_w))
    scale = max(out_h / h, out_w / w)
    # round() of a value >= the target can't fall below it; max() guards float fuzz.
    sh, sw = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    scaled = resize(bg, (sh, sw))
    top, left = (sh - out_h) // 2, (sw - out_w) // 2
    return scaled[..., top : top + out_h, left : left + out_w].contiguous()
