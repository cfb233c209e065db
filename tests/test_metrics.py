"""SAD, MSE, Grad and Conn on small hand-made mattes with known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matting import metrics


def test_sad_of_a_constant_difference():
    a, g = np.full((10, 10), 0.5), np.zeros((10, 10))
    assert metrics.sad(a, g) == pytest.approx(0.05)        # 100 px * 0.5 / 1000
    assert metrics.sad(g, a) == pytest.approx(0.05)
    assert metrics.sad(a, a) == 0.0


def test_sad_and_mse_accept_uint8_as_alpha_over_255():
    a = np.zeros((4, 5), np.uint8)
    a[:, :2] = 255                                          # 8 px wrong by 1.0
    g = np.zeros((4, 5), np.uint8)
    assert metrics.sad(a, g) == pytest.approx(8 / 1000)
    assert metrics.mse(a, g) == pytest.approx(8 / 20)
    assert metrics.sad(a.astype(np.float32) / 255, g) == pytest.approx(metrics.sad(a, g))


def test_mse_known_value_and_mask():
    a = np.zeros((10, 10))
    a[:5] = 0.5                                             # half the image off by 0.5
    g = np.zeros((10, 10))
    assert metrics.mse(a, g) == pytest.approx(50 * 0.25 / 100)
    top = np.zeros((10, 10), bool)
    top[:5] = True
    assert metrics.mse(a, g, top) == pytest.approx(0.25)
    assert metrics.mse(a, g, ~top) == 0.0
    assert metrics.sad(a, g, top) == pytest.approx(0.025)
    assert metrics.mse(a, g, np.zeros((10, 10), bool)) == 0.0   # empty region: no error, no division by zero


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="differ"):
        metrics.sad(np.zeros((3, 4)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="mask"):
        metrics.sad(np.zeros((3, 4)), np.zeros((3, 4)), np.zeros((2, 2), bool))
    with pytest.raises(ValueError):
        metrics.as_unit_alpha(np.zeros((2, 2, 3)))


# --------------------------------------------------------------------------------------------- Grad


def reference_kernel(sigma: float = 1.4) -> np.ndarray:
    """The benchmark's 2-D x-derivative kernel built element by element, as its published code does."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 0.01)))
    size = 2 * half + 1

    def gauss(x):
        return math.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))

    k = np.array([[gauss(i - half) * (-(j - half) * gauss(j - half) / sigma ** 2) for j in range(size)]
                  for i in range(size)])
    return k / np.sqrt((k * k).sum())


def reference_gradient(alpha: np.ndarray) -> np.ndarray:
    """Direct, non-separable 2-D convolution with replicated borders (independent of the module's code)."""
    hx = reference_kernel()
    hy = hx.T
    half = hx.shape[0] // 2
    padded = np.pad(alpha, half, mode="edge")
    h, w = alpha.shape
    gx, gy = np.zeros((h, w)), np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            window = padded[y:y + 2 * half + 1, x:x + 2 * half + 1][::-1, ::-1]  # convolution flips
            gx[y, x] = (window * hx).sum()
            gy[y, x] = (window * hy).sum()
    return np.sqrt(gx * gx + gy * gy)


def test_gradient_kernel_matches_the_benchmark_definition():
    gauss, dgauss = metrics.gaussian_derivative_kernels(1.4)
    assert len(gauss) == len(dgauss) == 9                   # half-size ceil(3.62) = 4
    np.testing.assert_allclose(np.outer(gauss, dgauss), reference_kernel(), atol=1e-15)
    assert np.linalg.norm(np.outer(gauss, dgauss)) == pytest.approx(1.0)
    np.testing.assert_allclose(dgauss, -dgauss[::-1], atol=1e-15)


def test_grad_of_identical_mattes_is_zero():
    rng = np.random.default_rng(0)
    a = rng.random((20, 30))
    assert metrics.grad(a, a) == 0.0


def test_grad_on_a_ramp_has_the_closed_form_value():
    # On a ramp c * x, away from the borders, the x-gradient is c * sum(gauss) * sum(u * dgauss(u)).
    gauss, dgauss = metrics.gaussian_derivative_kernels(1.4)
    u = np.arange(-4, 5)
    slope = gauss.sum() * abs((u * dgauss).sum())
    x = np.arange(40, dtype=np.float64)
    a, g = np.tile(0.02 * x, (30, 1)), np.tile(0.01 * x, (30, 1))
    inside = np.zeros(a.shape, bool)
    inside[4:-4, 4:-4] = True
    np.testing.assert_allclose(metrics.gradient_magnitude(a)[inside], 0.02 * slope, rtol=1e-12)
    expected = inside.sum() * ((0.02 - 0.01) * slope) ** 2 / 1000
    assert metrics.grad(a, g, inside) == pytest.approx(expected, rel=1e-12)


def test_grad_of_a_shifted_step_edge_matches_a_direct_convolution():
    g = np.zeros((24, 24))
    g[:, 12:] = 1.0
    a = np.zeros((24, 24))
    a[:, 14:] = 1.0                                         # the edge two pixels off
    a[5:9, 3:6] = 0.5                                       # and a grey blob
    expected = ((reference_gradient(a) - reference_gradient(g)) ** 2).sum() / 1000
    assert metrics.grad(a, g) == pytest.approx(expected, rel=1e-10)
    assert metrics.grad(a, g) > 0.01
    np.testing.assert_allclose(metrics.gradient_magnitude(a), reference_gradient(a), atol=1e-12)


def test_grad_agrees_with_scipy_when_available():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(1)
    a = rng.random((17, 23))
    hx = reference_kernel()
    gx = ndimage.convolve(a, hx, mode="nearest")
    gy = ndimage.convolve(a, hx.T, mode="nearest")
    np.testing.assert_allclose(metrics.gradient_magnitude(a), np.hypot(gx, gy), atol=1e-12)


# --------------------------------------------------------------------------------------------- Conn


def test_conn_of_identical_mattes_is_zero():
    rng = np.random.default_rng(2)
    a = rng.random((15, 15))
    assert metrics.conn(a, a) == 0.0


def test_conn_by_hand_on_one_row():
    # Pixels 0-1 form the largest common component at every threshold (level 1); pixel 3 is cut off from it
    # already at t = 0.1, so its level is 0: d = alpha - 0. Truth: d = 1, phi = 0. Prediction 0.5: d = 0.5,
    # phi = 0.5. |0.5 - 0| / 1000.
    g = np.array([[1.0, 1.0, 0.0, 1.0]])
    a = np.array([[1.0, 1.0, 0.0, 0.5]])
    np.testing.assert_array_equal(metrics.connectivity_levels(a, g), [[1.0, 1.0, 0.0, 0.0]])
    assert metrics.conn(a, g) == pytest.approx(0.0005)
    # d = 0.1 < 0.15 counts as connected: phi = 1, against the truth's 0.
    a[0, 3] = 0.1
    assert metrics.conn(a, g) == pytest.approx(0.001)


def test_conn_uses_4_connectivity():
    # (1, 2) touches the big component only diagonally: with 4-connectivity its level is 0, so
    # phi = 1 - 0.65 and 1 - 0.8: |0.35 - 0.2| / 1000. (8-connectivity would give level 0.6 and 0.0002.)
    g = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.8]])
    a = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.65]])
    assert metrics.connectivity_levels(a, g)[1, 2] == 0.0
    assert metrics.conn(a, g) == pytest.approx(0.00015)


def test_conn_level_is_the_last_threshold_still_connected():
    # A vertical bar of 0.55 under a larger block of 1: the bar stays attached up to t = 0.5.
    g = np.zeros((6, 6))
    g[:3, :] = 1.0
    g[3:, 2] = 0.55
    levels = metrics.connectivity_levels(g, g)
    assert (levels[:3] == 1.0).all()
    assert (levels[3:, 2] == 0.5).all()
    assert (levels[3:, 0] == 0.0).all()


def test_conn_with_no_common_foreground_is_finite():
    a, g = np.zeros((5, 5)), np.zeros((5, 5))
    g[2, 2] = 1.0
    assert metrics.conn(a, g) == pytest.approx(0.001)      # level 0: phi(g) = 0, phi(a) = 1


# --------------------------------------------------------------------------------------- the bundle


def test_evaluate_bundles_the_four_measures():
    g = np.zeros((12, 12), np.uint8)
    g[3:9, 3:9] = 255
    a = g.copy()
    a[3, 3:9] = 128
    scores = metrics.evaluate(a, g)
    assert scores.as_dict() == {"sad": metrics.sad(a, g), "mse": metrics.mse(a, g),
                                "grad": metrics.grad(a, g), "conn": metrics.conn(a, g)}
    assert scores.sad == pytest.approx(6 * 127 / 255 / 1000)
    assert metrics.evaluate(g, g).as_dict() == {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0}


def test_unknown_region_of_a_trimap():
    trimap = np.array([[0, 128, 255], [128, 0, 255]], np.uint8)
    np.testing.assert_array_equal(metrics.unknown_region(trimap), [[False, True, False], [True, False, False]])
