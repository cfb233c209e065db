"""Edge filters on alpha mattes: threshold, feather (Gaussian), erode/dilate, box filter."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_alpha, check_image, float_param, int_param, work_dtype
from .windows import Workspace, cross_extreme, pad_axis, sliding_diagonal, sliding_extreme, sliding_sum, window_counts


# feather(): from sigma >= 2 * this, blur on a grid f = floor(sigma / this) times coarser, so
# sigma stays >= this many coarse pixels (see _feather_downscaled for the measured error).
_FEATHER_LR_SIGMA = 4.0


def threshold(alpha: Tensor, level: float) -> Tensor:
    """Binary matte: 1 where ``alpha >= level`` else 0; ``level == 0`` returns ``alpha`` itself.

    >>> threshold(torch.tensor([0.2, 0.5, 0.8]).view(1, 1, 1, 3), 0.5).flatten().tolist()
    [0.0, 1.0, 1.0]
    """
    alpha = check_alpha(alpha)
    lv = float_param(level, "level", minimum=0.0, maximum=1.0)
    if lv == 0.0:
        return alpha
    return (alpha >= lv).to(alpha.dtype)



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
    alpha = check_alpha(alpha)
    s = float_param(sigma, "sigma", minimum=0.0)
    if s == 0.0:
        return alpha
    if alpha.shape[0] == 0:
        return alpha.new_empty(alpha.shape)
    x = alpha.to(work_dtype(alpha))
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
    alpha = check_alpha(alpha)
    r_signed = int_param(radius, "radius")
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
    ws = Workspace(y, 2)  # every pass ping-pongs between the padded copy and one buffer
    y = sliding_extreme(y, 2 * a + 1, -1, op, ws)
    y = sliding_extreme(y, 2 * a + 1, -2, op, ws)
    if b > 0:
        # diamond(2c+1) = diag(c) + antidiag(c) + cross: the two diagonals alone reach only
        # pixels with x + y even, the cross fills the others. diamond(2c) = diamond(2c-1) + cross.
        c, crosses = (b // 2, 1) if b % 2 else (b // 2 - 1, 2)
        if c > 0:
            y = sliding_diagonal(y, 2 * c + 1, op, False, ws)
            y = sliding_diagonal(y, 2 * c + 1, op, True, ws)
        for _ in range(crosses):
            y = cross_extreme(y, op, ws)
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
    x = check_image(x, "x")
    r = int_param(radius, "radius", minimum=0)
    if r == 0:
        return x
    if x.shape[0] == 0:
        return x.new_empty(x.shape)
    h, w = x.shape[-2:]
    wd = work_dtype(x)
    # A window wider than the axis covers all of it: clip the radius, same result.
    rh, rw = min(r, h - 1), min(r, w - 1)
    if rh == 0 and rw == 0:
        return x
    y = x.to(wd)
    if rw > 0:
        y = sliding_sum(pad_axis(y, rw, rw, -1, "constant"), 2 * rw + 1, -1)
    if rh > 0:
        y = sliding_sum(pad_axis(y, rh, rh, -2, "constant"), 2 * rh + 1, -2)
    counts = window_counts(h, rh, y.device, wd)[:, None] * window_counts(w, rw, y.device, wd)
    return torch.div(y, counts).to(x.dtype)  # out of place: a compact result, not a scratch view



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
    y = pad_axis(x, r, r, dim, "reflect")
    out = y.narrow(dim, r, n) * w[0]
    for j in range(1, r + 1):  # in place: no 8 MP temporary per tap
        out.add_(y.narrow(dim, r - j, n), alpha=w[j]).add_(y.narrow(dim, r + j, n), alpha=w[j])
    return out


def gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The normalised truncated Gaussian (2r + 1,), r = ceil(3 sigma), made on ``device`` by a few tensor ops:
    no host copy, so nothing to wait for, and nothing shared between streams."""
    r = math.ceil(3.0 * sigma)
    taps = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    w = taps.square_().mul_(-1.0 / (2.0 * sigma * sigma)).exp_()
    return w.div_(w.sum()).to(dtype)


def gaussian_axis_conv(x: Tensor, kernel: Tensor, dim: int) -> Tensor:
    """_gaussian_axis as one convolution with ``kernel`` (gaussian_kernel): two or three kernel launches on a
    GPU where the tap loop takes 2 r + 1 (a release's render holds the GPU's turn while it queues them; on the
    CPU the loop is the faster, see feather())."""
    r = (kernel.numel() - 1) // 2
    b, c, h, w = x.shape
    y = pad_axis(x, r, r, dim, "reflect")
    weight = kernel.view(1, 1, 1, -1) if dim == -1 else kernel.view(1, 1, -1, 1)
    return F.conv2d(y.reshape(b * c, 1, *y.shape[-2:]), weight.to(y.dtype)).reshape(b, c, h, w)


def _gaussian_exact(x: Tensor, sigma: float) -> Tensor:
    # cuDNN's TF32 would round the taps to 10 bits: only where the process turned it off (process.configure_process)
    if x.is_cuda and not torch.backends.cudnn.allow_tf32:
        kernel = gaussian_kernel(sigma, x.device, torch.float32)
        return gaussian_axis_conv(gaussian_axis_conv(x, kernel, -1), kernel, -2)
    return _gaussian_exact_taps(x, sigma)


def _gaussian_exact_taps(x: Tensor, sigma: float) -> Tensor:
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
    y = pad_axis(x, pad, wp - w - pad, -1, "reflect")
    y = pad_axis(y, pad, hp - h - pad, -2, "reflect")
    y = F.interpolate(y, size=(hp // f, wp // f), mode="bilinear", align_corners=False, antialias=True)
    sigma_lr = math.sqrt(max(sigma * sigma - f * f / 3.0, 0.0)) / f
    if sigma_lr > 0:
        y = _gaussian_exact(y, sigma_lr)
    y = F.interpolate(y, size=(hp, wp), mode="bilinear", align_corners=False)
    return y[..., pad : pad + h, pad : pad + w]
