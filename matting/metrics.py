"""Standard alpha-matting error measures: SAD, MSE, Grad and Conn (Rhemann et al., CVPR 2009).

All four take a predicted and a ground-truth matte as (H, W) arrays, uint8 (0..255) or float (0..1), and work in
float64 on alpha in [0, 1]. ``mask`` (bool, (H, W)) restricts the sum to a region, e.g. the unknown band of a
trimap; without it the whole image counts.

Definitions, following the benchmark's published MATLAB code (and its common Python ports):

* SAD  = sum |a - g| / 1000.
* MSE  = mean (a - g)^2 over the counted pixels.
* Grad = sum (|grad a| - |grad g|)^2 / 1000, where the gradient is the image filtered with first-order
  Gaussian derivative kernels, sigma 1.4: the 2-D kernel gauss(y) * dgauss(x) over a square of half-size
  ceil(sigma * sqrt(-2 ln(sqrt(2 pi) sigma 0.01))) (= 4 for 1.4, so 9 x 9), normalised to unit L2 norm, its
  transpose for y, replicate borders. Alpha is in [0, 1] (the code divides 8-bit mattes by 255 first); on
  [0, 255] the figure would be 255^2 times larger.
* Conn: for thresholds t_k = k / 10, k = 1..10, omega_k is the largest 4-connected component of
  (a >= t_k) & (g >= t_k). Each pixel's level l is t_{k-1} for the first k whose omega_k does not contain it,
  or 1 when every omega_k does. With d = alpha - l, phi = 1 - d * (d >= 0.15) for each matte, and
  Conn = sum |phi(a) - phi(g)| / 1000. A threshold where no pixel passes in both mattes has an empty omega.
  Ties between equally large components go to the first in row-major order (MATLAB's scan is column-major:
  the two can differ only on exact ties).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import InvalidParameterError

GRAD_SIGMA = 1.4
CONN_STEP = 0.1
CONN_DELTA = 0.15   # pixels within this much of their level count as connected
METRIC_NAMES = ("sad", "mse", "grad", "conn")


def as_unit_alpha(alpha: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 1) uint8 / float matte -> (H, W) float64 in [0, 1] (uint8 is divided by 255)."""
    a = np.asarray(alpha)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise InvalidParameterError(f"a matte must be (H, W), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 65535.0
    if not np.issubdtype(a.dtype, np.floating):
        raise InvalidParameterError(f"a matte must be uint8, uint16 or float, got {a.dtype}")
    return a.astype(np.float64)


def _pair(pred, gt, mask):
    a, g = as_unit_alpha(pred), as_unit_alpha(gt)
    if a.shape != g.shape:
        raise InvalidParameterError(f"prediction {a.shape} and ground truth {g.shape} differ in size")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape:
            raise InvalidParameterError(f"mask {mask.shape} does not match the mattes {a.shape}")
    return a, g, mask


def _total(values: np.ndarray, mask: np.ndarray | None) -> float:
    return float(values.sum() if mask is None else values[mask].sum())


def sad(pred, gt, mask=None) -> float:
    """Sum of absolute differences / 1000."""
    a, g, mask = _pair(pred, gt, mask)
    return _total(np.abs(a - g), mask) / 1000.0


def mse(pred, gt, mask=None) -> float:
    """Mean squared error over the image (or the mask; 0 for an empty mask)."""
    a, g, mask = _pair(pred, gt, mask)
    count = a.size if mask is None else int(mask.sum())
    return _total((a - g) ** 2, mask) / count if count else 0.0


def gaussian_derivative_kernels(sigma: float = GRAD_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """The separable factors (gauss, dgauss) of the benchmark's 2-D kernel, each 1-D float64 of odd length.

    The 2-D x-derivative kernel is outer(gauss, dgauss) (rows: y, columns: x); both factors are scaled to unit
    L2 norm, which makes the outer product unit-norm as the reference code requires.
    """
    half = math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * 0.01)))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-u * u / (2.0 * sigma * sigma)) / (sigma * math.sqrt(2.0 * math.pi))
    dgauss = -u * gauss / (sigma * sigma)
    return gauss / np.linalg.norm(gauss), dgauss / np.linalg.norm(dgauss)


def _convolve_axis(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """True convolution (kernel flipped) along one axis with replicated borders, float64."""
    half = len(kernel) // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (half, half)
    y = np.pad(x, pad, mode="edge")
    n = x.shape[axis]
    out = np.zeros_like(x)
    for j, w in enumerate(kernel[::-1]):
        if w != 0.0:
            out += w * np.take(y, np.arange(j, j + n), axis=axis)
    return out


def gradient_magnitude(alpha: np.ndarray, sigma: float = GRAD_SIGMA) -> np.ndarray:
    """|grad alpha| with the benchmark's Gaussian derivative filters (alpha in [0, 1], float64)."""
    gauss, dgauss = gaussian_derivative_kernels(sigma)
    a = as_unit_alpha(alpha)
    gx = _convolve_axis(_convolve_axis(a, dgauss, 1), gauss, 0)
    gy = _convolve_axis(_convolve_axis(a, gauss, 1), dgauss, 0)
    return np.sqrt(gx * gx + gy * gy)


def grad(pred, gt, mask=None, sigma: float = GRAD_SIGMA) -> float:
    """Gradient error: sum (|grad a| - |grad g|)^2 / 1000."""
    a, g, mask = _pair(pred, gt, mask)
    diff = gradient_magnitude(a, sigma) - gradient_magnitude(g, sigma)
    return _total(diff * diff, mask) / 1000.0


def _largest_component(binary: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=4)
    if count <= 1:
        return np.zeros(binary.shape, dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # label 0 is the background
    return labels == largest


def connectivity_levels(pred, gt, step: float = CONN_STEP) -> np.ndarray:
    """The level l of every pixel: the last threshold at which it is still in the largest common component."""
    a, g, _ = _pair(pred, gt, None)
    steps = int(round(1.0 / step))
    level = np.full(a.shape, -1.0)
    for k in range(1, steps + 1):
        t = k / steps
        omega = _largest_component((a >= t) & (g >= t))
        level[(level == -1.0) & ~omega] = (k - 1) / steps
    level[level == -1.0] = 1.0
    return level


def conn(pred, gt, mask=None, step: float = CONN_STEP) -> float:
    """Connectivity error (Rhemann et al.): sum |phi(a) - phi(g)| / 1000."""
    a, g, mask = _pair(pred, gt, mask)
    level = connectivity_levels(a, g, step)
    d_a, d_g = a - level, g - level
    phi_a = 1.0 - d_a * (d_a >= CONN_DELTA)
    phi_g = 1.0 - d_g * (d_g >= CONN_DELTA)
    return _total(np.abs(phi_a - phi_g), mask) / 1000.0


@dataclass(frozen=True)
class Scores:
    sad: float
    mse: float
    grad: float
    conn: float

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in METRIC_NAMES}


def evaluate(pred, gt, mask=None) -> Scores:
    """All four measures of one prediction."""
    a, g, mask = _pair(pred, gt, mask)
    return Scores(sad(a, g, mask), mse(a, g, mask), grad(a, g, mask), conn(a, g, mask))


def unknown_region(trimap: np.ndarray) -> np.ndarray:
    """Bool mask of a trimap's unknown band (values strictly between 0 and 255, i.e. the benchmark's 128)."""
    t = np.asarray(trimap)
    if t.ndim == 3:
        t = t[..., 0]
    return (t > 0) & (t < 255)
