"""Tests for matting.ops: generic contract (shape, dtype, device, B = 0, batching, views,
no input mutation) for every op, then exact values and references per op."""

from __future__ import annotations

import doctest
import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from matting import foreground, ops
from matting.errors import InvalidParameterError

OPS_MODULES = ("checks", "windows", "convert", "resize", "filters", "guided", "composite")

DTYPES = [torch.float32, torch.float64, torch.float16]
# Max error of feather's downscaled path (sigma >= 8) against the exact Gaussian, as documented.
FEATHER_APPROX_TOL = 3.5e-3


def tol(dtype: torch.dtype) -> float:
    return 2e-3 if dtype == torch.float16 else 1e-6


def assert_close(a: torch.Tensor, b: torch.Tensor, atol: float) -> None:
    assert a.shape == b.shape
    diff = (a.double().cpu() - b.double().cpu()).abs().max().item() if a.numel() else 0.0
    assert diff <= atol, f"max abs diff {diff} > {atol}"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=gen(seed), dtype=torch.float64)


def matte(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A matte-like float64 alpha: hard edges, a soft ramp and a noisy patch."""
    g = gen(seed)
    yy = torch.arange(h, dtype=torch.float64).view(-1, 1)
    xx = torch.arange(w, dtype=torch.float64).view(1, -1)
    out = []
    for i in range(b):
        cy, cx = h * (0.4 + 0.1 * i), w * 0.5
        a = (((yy - cy) ** 2 + (xx - cx) ** 2) < (0.3 * min(h, w)) ** 2).double()
        a[:, : max(1, w // 8)] = (xx[:, : max(1, w // 8)] / max(1, w // 8)).expand(h, -1)
        a[h // 2 :, w - w // 4 :] = torch.rand(h - h // 2, w // 4, generator=g, dtype=torch.float64)
        out.append(a)
    return torch.stack(out).unsqueeze(1) if out else torch.zeros(0, 1, h, w, dtype=torch.float64)


# --------------------------------------------------------------------------- generic contract

# name -> (function of the input tensors, input specs). An input spec is (channels, h, w, kind).
H, W = 20, 24
CASES = {
    "to_uint8_hwc": (lambda x: ops.to_uint8_hwc(x), [(3, H, W, "img")]),
    "resize_down": (lambda x: ops.resize(x, (9, 7)), [(3, H, W, "img")]),
    "resize_up": (lambda x: ops.resize(x, (31, 40), mode="bicubic"), [(3, H, W, "img")]),
    "normalize_for_model": (
        lambda x: ops.normalize_for_model(x, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), scale_by_max=True),
        [(3, H, W, "img")],
    ),
    "min_max_normalize": (ops.min_max_normalize, [(1, H, W, "img")]),
    "threshold": (lambda a: ops.threshold(a, 0.5), [(1, H, W, "alpha")]),
    "feather_exact": (lambda a: ops.feather(a, 1.5), [(1, H, W, "alpha")]),
    "feather_downscaled": (lambda a: ops.feather(a, 9.0), [(1, 48, 56, "alpha")]),
    "dilate": (lambda a: ops.erode_dilate(a, 4), [(1, H, W, "alpha")]),
    "erode": (lambda a: ops.erode_dilate(a, -3), [(1, H, W, "alpha")]),
    "box_filter": (lambda x: ops.box_filter(x, 3), [(3, H, W, "img")]),
    "guided_gray": (lambda g, p: ops.guided_filter(g, p, 2, 1e-3), [(1, H, W, "img"), (1, H, W, "alpha")]),
    "guided_color": (lambda g, p: ops.guided_filter(g, p, 2, 1e-3), [(3, H, W, "img"), (1, H, W, "alpha")]),
    "fast_guided_gray": (
        lambda g, p, gh: ops.fast_guided_filter(g, p, gh, 2, 1e-3),
        [(1, 10, 12, "img"), (1, 10, 12, "alpha"), (1, H, W, "img")],
    ),
    "fast_guided_color": (
        lambda g, p, gh: ops.fast_guided_filter(g, p, gh, 2, 1e-3),
        [(3, 10, 12, "img"), (1, 10, 12, "alpha"), (3, H, W, "img")],
    ),
    "composite_rgba": (lambda x, a: ops.composite(x, a), [(3, H, W, "img"), (1, H, W, "alpha")]),
    "composite_color": (lambda x, a: ops.composite(x, a, (0.1, 0.5, 0.9)), [(3, H, W, "img"), (1, H, W, "alpha")]),
    "composite_image": (
        lambda x, a, bg: ops.composite(x, a, bg),
        [(3, H, W, "img"), (1, H, W, "alpha"), (3, H, W, "img")],
    ),
    "fit_background": (lambda bg: ops.fit_background(bg, (11, 23)), [(3, H, W, "img")]),
    "downscale_to_fit": (lambda x: ops.downscale_to_fit(x, 10), [(3, H, W, "img")]),
}
ALPHA_OUTPUTS = {
    "threshold", "feather_exact", "feather_downscaled", "dilate", "erode", "fast_guided_gray", "fast_guided_color"
}


def make_inputs(specs, b: int, device, dtype, seed: int = 0) -> list[torch.Tensor]:
    out = []
    for i, (c, h, w, kind) in enumerate(specs):
        if kind == "alpha":
            t = matte(b, h, w, seed + i)
        else:
            t = rand(b, c, h, w, seed=seed + i)
        out.append(t.to(device=device, dtype=dtype))
    return out


@pytest.fixture(params=DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def dtype(request) -> torch.dtype:
    return request.param


@pytest.mark.parametrize("name", sorted(CASES))
def test_contract(name, device, dtype):
    fn, specs = CASES[name]
    xs = make_inputs(specs, 3, device, dtype)
    before = [x.clone() for x in xs]
    out = fn(*xs)
    # inputs untouched
    for x, x0 in zip(xs, before):
        assert torch.equal(x, x0)
    expect_dtype = torch.uint8 if name == "to_uint8_hwc" else dtype
    assert out.dtype == expect_dtype
    assert out.device.type == device.type
    assert out.shape[0] == 3
    if name in ALPHA_OUTPUTS:
        assert out.shape[1] == 1
        assert out.min().item() >= 0.0 and out.max().item() <= 1.0
    assert torch.isfinite(out.double()).all()

    # batch of N == N single calls
    singles = torch.cat([fn(*[x[i : i + 1] for x in xs]) for i in range(3)])
    assert_close(out, singles, tol(dtype) if out.is_floating_point() else 0)

    # B = 0
    empty = fn(*make_inputs(specs, 0, device, dtype))
    assert empty.shape == (0, *out.shape[1:])
    assert empty.dtype == out.dtype and empty.device == out.device

    # non-contiguous views: transposed storage and a strided slice give the same result
    transposed = [x.transpose(-1, -2).contiguous().transpose(-1, -2) for x in xs]
    sliced = [torch.repeat_interleave(x, 2, dim=-1)[..., ::2] for x in xs]
    for views in (transposed, sliced):
        assert not any(v.is_contiguous() for v in views)
        assert_close(fn(*views), out, tol(dtype) if out.is_floating_point() else 0)


@pytest.mark.parametrize("module", [ops, *(importlib.import_module(f"matting.ops.{name}") for name in OPS_MODULES),
                                    foreground], ids=lambda m: m.__name__)
def test_doctests(module):
    """Every module's examples run and say what they show (the family modules of ops, and foreground.py)."""
    result = doctest.testmod(module, verbose=False)
    assert result.failed == 0
    if module.__name__ in ("matting.ops.filters", "matting.ops.resize", "matting.foreground"):
        assert result.attempted >= 2, module.__name__


# ------------------------------------------------------------------------ conversions


def test_to_float_image_values_and_shapes(device):
    u8 = torch.tensor([0, 128, 255], dtype=torch.uint8, device=device).view(1, 3, 1).expand(1, 3, 3)  # (H, W, 3)
    x = ops.to_float_image(u8)
    assert x.shape == (1, 3, 1, 3) and x.dtype == torch.float32 and x.device.type == device.type
    assert_close(x[0, 0, 0], torch.tensor([0.0, 128 / 255, 1.0]), 1e-7)
    batch = torch.randint(0, 256, (2, 4, 5, 3), dtype=torch.uint8, device=device)
    xb = ops.to_float_image(batch)
    assert xb.shape == (2, 3, 4, 5)
    assert torch.equal(xb, batch.permute(0, 3, 1, 2).float() / 255)
    assert ops.to_float_image(batch, dtype=torch.float16).dtype == torch.float16
    assert ops.to_float_image(batch[:0]).shape == (0, 3, 4, 5)


def test_uint8_round_trip_and_rounding(device):
    u8 = torch.arange(256, dtype=torch.uint8, device=device).view(1, 16, 16, 1).expand(1, 16, 16, 3).contiguous()
    for dt in DTYPES:
        assert torch.equal(ops.to_uint8_hwc(ops.to_float_image(u8, dtype=dt)), u8)
    x = torch.tensor([-0.5, 0.0, 0.49 / 255, 0.5 / 255, 0.5, 1.0, 1.7], device=device).view(1, 1, 1, 7)
    assert ops.to_uint8_hwc(x).flatten().tolist() == [0, 0, 0, 1, 128, 255, 255]
    out = ops.to_uint8_hwc(rand(2, 3, 4, 5).to(device))
    assert out.shape == (2, 4, 5, 3) and out.is_contiguous()
    # large enough for the CPU path to work in several bands; channels-last input too
    x = (rand(2, 3, 300, 500, seed=3) * 1.2 - 0.1).float().to(device)
    expect = (x.permute(0, 2, 3, 1) * 255 + 0.5).floor().clamp(0, 255).to(torch.uint8)
    assert torch.equal(ops.to_uint8_hwc(x), expect)
    assert torch.equal(ops.to_uint8_hwc(x.contiguous(memory_format=torch.channels_last)), expect)
    # out=: written into a view (the colour channels of an RGBA image), the other channel untouched
    rgba = torch.full((2, 300, 500, 4), 7, dtype=torch.uint8, device=device)
    assert ops.to_uint8_hwc(x, out=rgba[..., :3]).data_ptr() == rgba.data_ptr()
    assert torch.equal(rgba[..., :3], expect) and bool((rgba[..., 3] == 7).all())
    with pytest.raises(InvalidParameterError, match="out must be"):
        ops.to_uint8_hwc(x, out=rgba)


def test_float_image_is_plain_contiguous(device):
    """Later arithmetic mixes it with (B, 1, H, W) alphas: a channels-last photo takes slower paths on a CPU."""
    batch = torch.randint(0, 256, (2, 40, 50, 3), dtype=torch.uint8, device=device)
    assert ops.to_float_image(batch).is_contiguous()


# --------------------------------------------------------------------------- resizing


def test_resize_values(device):
    const = torch.full((2, 3, 10, 14), 0.3, device=device)
    assert_close(ops.resize(const, (4, 5)), torch.full((2, 3, 4, 5), 0.3), 1e-6)
    assert ops.resize(const, (10, 14)) is const  # identity returns the input
    # antialias only when shrinking: upscaling gives the plain bilinear result
    x = rand(1, 1, 6, 7).to(device)
    plain = F.interpolate(x, (12, 15), mode="bilinear", align_corners=False)
    assert torch.equal(ops.resize(x, (12, 15)), plain)
    # downscaling a 1-px checkerboard: antialiased -> flat grey, aliased -> not
    checker = ((torch.arange(16).view(-1, 1) + torch.arange(16)) % 2).double().view(1, 1, 16, 16).to(device)
    assert_close(ops.resize(checker, (3, 3)), torch.full((1, 1, 3, 3), 0.5), 5e-3)
    assert (ops.resize(checker, (3, 3), antialias=False) - 0.5).abs().max() > 0.2
    # uint8 in, uint8 out, rounded
    u8 = torch.tensor([[0, 255], [255, 0]], dtype=torch.uint8, device=device).view(1, 1, 2, 2)
    down = ops.resize(u8, (1, 1))
    assert down.dtype == torch.uint8 and down.item() == 128  # 127.5 rounds half up
    assert ops.resize(u8, (3, 5), mode="nearest").dtype == torch.uint8
    for mode in ("area", "nearest-exact", "bicubic"):
        assert ops.resize(x, (3, 4), mode=mode).shape == (1, 1, 3, 4)


def test_fit_size():
    assert ops.fit_size((3000, 4000), 1000) == (750, 1000)
    assert ops.fit_size((4000, 3000), 1000) == (1000, 750)
    assert ops.fit_size((100, 50), 1000) == (100, 50)  # never upscales
    assert ops.fit_size((1, 5000), 100) == (1, 100)  # never 0
    assert ops.fit_size((5000, 1), 100) == (100, 1)
    assert ops.fit_size((3, 2), 2) == (2, 1)  # 1.333 rounds to 1
    assert ops.fit_size((4, 3), 2) == (2, 2)  # 1.5 rounds half up
    assert ops.fit_size((1000, 1000), 1000) == (1000, 1000)


def test_downscale_to_fit(device):
    x = rand(2, 3, 30, 40).to(device)
    assert ops.downscale_to_fit(x, 40) is x
    y = ops.downscale_to_fit(x, 20)
    assert y.shape == (2, 3, 15, 20)
    assert torch.equal(y, ops.resize(x, (15, 20)))
    u8 = torch.randint(0, 256, (1, 3, 30, 40), dtype=torch.uint8, device=device)
    assert ops.downscale_to_fit(u8, 8).shape == (1, 3, 6, 8)


# ------------------------------------------------------------------- normalisation


def test_normalize_for_model(device):
    x = torch.zeros(3, 3, 2, 2, device=device)
    x[0] = 0.5
    x[1, 0, 0, 0] = 0.25  # max 0.25: scaled to 1 there, 0 elsewhere
    # x[2] stays zero: max == 0 must not produce NaN
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = ops.normalize_for_model(x, mean, std, scale_by_max=True)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    assert_close(out[0], ((torch.ones(1, 3, 2, 2, device=device) - m) / s)[0], 1e-6)  # own max, not the batch's
    assert_close(out[1, 0, 0, 0], (1 - m.flatten()[0]) / s.flatten()[0], 1e-6)
    assert_close(out[2], ((0 - m) / s).expand(1, 3, 2, 2)[0], 1e-6)
    isnet = ops.normalize_for_model(x, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), scale_by_max=False)
    assert_close(isnet, x - 0.5, 0)
    assert_close(ops.normalize_for_model(x, 0.5, 1.0, scale_by_max=False), x - 0.5, 0)


def test_min_max_normalize(device):
    const = torch.full((2, 1, 3, 3), 0.7, device=device)
    out = ops.min_max_normalize(const)
    assert torch.equal(out, torch.zeros_like(const))
    x = torch.tensor([2.0, 4.0, 6.0, 3.0, 3.0, 5.0], device=device).view(2, 1, 1, 3)
    assert ops.min_max_normalize(x).flatten().tolist() == [0.0, 0.5, 1.0, 0.0, 0.0, 1.0]  # per image


def test_threshold(device):
    a = torch.tensor([0.2, 0.5, 0.8], device=device).view(1, 1, 1, 3)
    assert ops.threshold(a, 0.5).flatten().tolist() == [0.0, 1.0, 1.0]
    assert ops.threshold(a, 1.0).flatten().tolist() == [0.0, 0.0, 0.0]
    assert ops.threshold(a, 0.2).flatten().tolist() == [1.0, 1.0, 1.0]
    assert ops.threshold(a, 0) is a  # level 0: the input itself


# ------------------------------------------------------------------------- feather


def gaussian_reference(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """float64 separable conv2d with the truncated normalised kernel and the documented padding."""
    r = math.ceil(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=x.device)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    y = x.double()
    for dim in (-1, -2):
        mode = "reflect" if r < y.shape[dim] else "replicate"
        pad = (r, r, 0, 0) if dim == -1 else (0, 0, r, r)
        y = F.pad(y, pad, mode=mode)
        y = F.conv2d(y, k.view(1, 1, 1, -1) if dim == -1 else k.view(1, 1, -1, 1))
    return y


@pytest.mark.parametrize(
    "sigma, shape, atol",
    [
        (0.6, (2, 1, 17, 23), 2e-6),
        (2.0, (2, 1, 17, 23), 2e-6),
        (5.5, (1, 1, 40, 50), 2e-6),
        (3.0, (1, 1, 4, 40), 2e-6),  # H shorter than the radius: replicate on that axis
        (8.0, (1, 1, 90, 120), FEATHER_APPROX_TOL),  # downscaled path from here on
        (13.0, (1, 1, 130, 110), FEATHER_APPROX_TOL),
        (21.0, (1, 1, 160, 200), FEATHER_APPROX_TOL),
        (30.0, (1, 1, 40, 60), 2e-6),  # too small to pad for the downscaled path: exact
    ],
)
def test_feather_matches_float64_gaussian(device, sigma, shape, atol):
    a = matte(shape[0], shape[2], shape[3]).to(device=device, dtype=torch.float32)
    out = ops.feather(a, sigma)
    assert out.shape == a.shape and out.dtype == torch.float32
    assert_close(out, gaussian_reference(a, sigma).clamp(0, 1), atol)


@pytest.mark.parametrize("sigma, shape", [(0.6, (2, 1, 17, 23)), (5.5, (1, 2, 40, 50)), (3.0, (1, 1, 4, 40))])
def test_feather_convolution_matches_the_tap_loop(device, sigma, shape):
    """The GPU's feather (one convolution per axis) against the CPU's tap loop, both run here on this device."""
    from matting.ops.filters import _gaussian_exact_taps, gaussian_axis_conv, gaussian_kernel

    a = torch.rand(shape, generator=torch.Generator().manual_seed(3)).to(device)
    kernel = gaussian_kernel(sigma, a.device, torch.float32)
    assert kernel.numel() == 2 * math.ceil(3 * sigma) + 1 and abs(kernel.sum().item() - 1.0) < 1e-6
    convolved = gaussian_axis_conv(gaussian_axis_conv(a, kernel, -1), kernel, -2)
    assert_close(convolved, _gaussian_exact_taps(a, sigma), 2e-6)
    per_channel = torch.cat([gaussian_reference(a[:, c:c + 1], sigma) for c in range(shape[1])], dim=1)
    assert_close(convolved, per_channel, 2e-6)


def test_feather_misc(device):
    a = matte(1, 20, 20).to(device)
    assert ops.feather(a, 0) is a
    impulse = torch.zeros(1, 1, 21, 21, device=device)
    impulse[..., 10, 10] = 1.0
    blurred = ops.feather(impulse, 2.0)
    assert_close(blurred.sum(), torch.tensor(1.0), 1e-6)
    assert torch.equal(blurred, blurred.flip(-1)) and torch.equal(blurred, blurred.transpose(-1, -2))
    ones = torch.ones(1, 1, 64, 64, device=device)
    assert_close(ops.feather(ones, 12.0), ones, 1e-6)  # output stays in [0, 1] and constants survive


# ---------------------------------------------------------------------- morphology


def octagon_mask(r: int) -> torch.Tensor:
    a = max(1, int(math.floor(0.39 * r + 0.5)))
    b = r - a
    t = torch.arange(-r, r + 1)
    y, x = torch.meshgrid(t, t, indexing="ij")
    return ((y.abs() - a).clamp(min=0) + (x.abs() - a).clamp(min=0)) <= b


def morph_reference(x: torch.Tensor, radius: int) -> torch.Tensor:
    r = abs(radius)
    win = F.unfold(F.pad(x.double(), (r, r, r, r), mode="replicate"), 2 * r + 1)
    win = win[:, octagon_mask(r).flatten().to(x.device)]
    out = win.amax(1) if radius > 0 else win.amin(1)
    return out.view(x.shape).to(x.dtype)


def test_erode_dilate_single_pixel(device):
    a = torch.zeros(1, 1, 5, 5, device=device)
    a[..., 2, 2] = 1.0
    block = torch.zeros_like(a)
    block[..., 1:4, 1:4] = 1.0
    assert torch.equal(ops.erode_dilate(a, 1), block)
    assert torch.equal(ops.erode_dilate(a, -1), torch.zeros_like(a))
    assert ops.erode_dilate(a, 0) is a
    # radius 2: the 5x5 square minus its corners (the digital disk of radius 2.5)
    d2 = ops.erode_dilate(a, 2)[0, 0].cpu()
    expect = torch.ones(5, 5)
    expect[0, 0] = expect[0, 4] = expect[4, 0] = expect[4, 4] = 0
    assert torch.equal(d2, expect)


@pytest.mark.parametrize("radius", [1, -2, 3, -5, 6, 9, -12, 17])
def test_erode_dilate_matches_brute_force(device, radius):
    x = rand(2, 1, 23, 29, seed=abs(radius))
    x = torch.where(x > 0.93, x, x * 0.1).to(device=device, dtype=torch.float32)  # sparse bright grey dots
    assert torch.equal(ops.erode_dilate(x, radius), morph_reference(x, radius))


@pytest.mark.parametrize("r", [3, 8, 15, 20])
def test_structuring_element_is_near_disk(r):
    dot = torch.zeros(1, 1, 2 * r + 1, 2 * r + 1)
    dot[..., r, r] = 1.0
    se = ops.erode_dilate(dot, r)[0, 0].bool()
    t = torch.arange(-r, r + 1)
    disk = (t.view(-1, 1) ** 2 + t.view(1, -1) ** 2) <= (r + 0.5) ** 2
    assert (se ^ disk).sum().item() <= 0.06 * disk.sum().item()
    assert se[r, 0] and se[0, r] and not se[0, 0]  # reaches r along the axes, not the square's corner


def test_erode_dilate_border(device):
    # foreground touching the border does not erode from outside the image
    a = torch.zeros(1, 1, 12, 12, device=device)
    a[..., :, :6] = 1.0
    eroded = ops.erode_dilate(a, -2)
    assert torch.equal(eroded[..., :, :4], torch.ones(1, 1, 12, 4, device=device))
    assert eroded[..., :, 4:].sum() == 0
    ones = torch.ones(1, 1, 7, 9, device=device)
    assert torch.equal(ops.erode_dilate(ones, -3), ones)
    # radii beyond the image: global max / min
    x = rand(1, 1, 6, 9).to(device)
    assert torch.equal(ops.erode_dilate(x, 100), torch.full_like(x, x.max().item()))
    assert torch.equal(ops.erode_dilate(x, -100), torch.full_like(x, x.min().item()))


# ----------------------------------------------------------------------- box filter


def box_reference(x: torch.Tensor, r: int) -> torch.Tensor:
    """float64: zero-padded window sums divided by in-image counts, via conv2d with ones."""
    c = x.shape[1]
    ones = torch.ones(c, 1, 2 * r + 1, 2 * r + 1, dtype=torch.float64, device=x.device)
    sums = F.conv2d(F.pad(x.double(), (r, r, r, r)), ones, groups=c)
    counts = F.conv2d(F.pad(torch.ones_like(x[:1, :1], dtype=torch.float64), (r, r, r, r)), ones[:1])
    return sums / counts


def test_box_filter_values(device):
    x = torch.arange(9.0, device=device).view(1, 1, 3, 3)
    out = ops.box_filter(x, 1)
    assert out[0, 0, 0, 0].item() == 2.0  # (0 + 1 + 3 + 4) / 4
    assert out[0, 0, 0, 1].item() == 2.5  # (0 + 1 + 2 + 3 + 4 + 5) / 6
    assert out[0, 0, 1, 1].item() == 4.0
    const = torch.full((2, 3, 7, 11), 0.37, device=device)
    assert_close(ops.box_filter(const, 4), const, 1e-7)
    assert ops.box_filter(const, 0) is const


@pytest.mark.parametrize("r", [1, 2, 5, 8, 16, 40])
def test_box_filter_matches_reference(device, r):
    x = rand(2, 3, 19, 33, seed=r).to(device=device, dtype=torch.float32)
    assert_close(ops.box_filter(x, r), box_reference(x, r), 1e-6)


# -------------------------------------------------------------------- guided filters


def guided_reference(i: torch.Tensor, p: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """float64 He et al. with torch.linalg.solve for the colour case (checks the closed-form inverse)."""
    i, p = i.double(), p.double()
    box = lambda t: box_reference(t, r)  # noqa: E731
    m_i, m_p = box(i), box(p)
    cov_ip = box(i * p) - m_i * m_p
    c = i.shape[1]
    prods = torch.stack([i[:, k] * i[:, l] for k in range(c) for l in range(c)], 1)
    sigma = (box(prods) - torch.stack([m_i[:, k] * m_i[:, l] for k in range(c) for l in range(c)], 1))
    b_, _, h, w = i.shape
    sigma = sigma.permute(0, 2, 3, 1).reshape(b_, h, w, c, c) + eps * torch.eye(c, dtype=torch.float64, device=i.device)
    a = torch.linalg.solve(sigma, cov_ip.permute(0, 2, 3, 1).unsqueeze(-1)).squeeze(-1).permute(0, 3, 1, 2)
    b = m_p - (a * m_i).sum(1, keepdim=True)
    return (box(a) * i).sum(1, keepdim=True) + box(b)


@pytest.mark.parametrize("channels", [1, 3])
def test_guided_filter_matches_reference(device, channels):
    g = rand(2, channels, 21, 26, seed=1).to(device)
    p = matte(2, 21, 26).to(device)
    for r, eps in [(1, 1e-2), (3, 1e-4), (30, 1e-3)]:
        assert_close(ops.guided_filter(g, p, r, eps), guided_reference(g, p, r, eps), 1e-9)
        out32 = ops.guided_filter(g.float(), p.float(), r, eps)
        assert_close(out32, guided_reference(g, p, r, eps), 2e-4)


def test_guided_filter_limits(device):
    p = matte(1, 24, 24).to(device=device, dtype=torch.float32)
    # eps -> 0 with guide == src: every window fits p = 1 * I + 0 exactly
    assert_close(ops.guided_filter(p, p, 2, 1e-8), p, 1e-3)
    # colour guide whose first channel is src: the fit a = (1, 0, 0) is exact as eps -> 0
    g = torch.cat([p, rand(1, 2, 24, 24, seed=5).float().to(device)], 1)
    assert_close(ops.guided_filter(g, p, 2, 1e-8), p, 2e-3)
    # eps huge: a -> 0, b -> local mean, result = mean of local means
    for guide in (p, g):
        smooth = ops.box_filter(ops.box_filter(p, 3), 3)
        assert_close(ops.guided_filter(guide, p, 3, 1e6), smooth, 1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_fast_guided_filter(device, channels):
    g = rand(2, channels, 16, 20, seed=2).to(device)
    p = matte(2, 16, 20).to(device)
    # same resolution: equals the guided filter, clamped
    same = ops.fast_guided_filter(g, p, g, 2, 1e-3)
    assert_close(same, ops.guided_filter(g, p, 2, 1e-3).clamp(0, 1), 1e-9)
    # upsampling: constant matte stays constant, output at the guide's size and in [0, 1]
    g_hr = rand(2, channels, 64, 80, seed=3).to(device)
    g_lr = ops.resize(g_hr, (16, 20))
    const = torch.full((2, 1, 16, 20), 0.6, dtype=torch.float64, device=device)
    expect = torch.full((2, 1, 64, 80), 0.6, dtype=torch.float64)
    assert_close(ops.fast_guided_filter(g_lr, const, g_hr, 2, 1e-3), expect, 1e-9)
    out = ops.fast_guided_filter(g_lr, p, g_hr, 2, 1e-3)
    assert out.shape == (2, 1, 64, 80) and 0 <= out.min() and out.max() <= 1
    # an edge in the photo is followed at full resolution
    step_hr = torch.zeros(1, channels, 64, 80, dtype=torch.float64, device=device)
    step_hr[..., 37:, :] = 1.0
    step_lr = ops.resize(step_hr, (16, 20))
    refined = ops.fast_guided_filter(step_lr, step_lr[:, :1], step_hr, 2, 1e-4)
    assert refined[..., 30, :].max() < 0.05 and refined[..., 44, :].min() > 0.95
    # mixed precision: half guide_hr, float32 matte
    if device.type == "cuda":
        mixed = ops.fast_guided_filter(g_lr.float(), p.float(), g_hr.half(), 2, 1e-3)
        assert mixed.dtype == torch.float32
        assert_close(mixed, out, 2e-3)


# ----------------------------------------------------------------------- compositing


def test_composite_values(device):
    rgb = torch.tensor([1.0, 0.5, 0.0], device=device).view(1, 3, 1, 1).expand(1, 3, 1, 3).contiguous()
    alpha = torch.tensor([0.0, 0.25, 1.0], device=device).view(1, 1, 1, 3)
    rgba = ops.composite(rgb, alpha)
    assert rgba.shape == (1, 4, 1, 3)
    assert torch.equal(rgba[:, :3], rgb) and torch.equal(rgba[:, 3:], alpha)
    bg = (0.0, 1.0, 0.2)
    out = ops.composite(rgb, alpha, bg)
    expect = torch.tensor(
        [[1 * 0 + 0.0, 0.75 * 0 + 0.25 * 1.0, 1.0], [1.0, 0.75 * 1 + 0.25 * 0.5, 0.5], [0.2, 0.75 * 0.2, 0.0]]
    )
    assert_close(out[0, :, 0], expect, 1e-7)
    for as_tensor in (torch.tensor(bg, device=device), torch.tensor(bg, device=device).view(1, 3, 1, 1)):
        assert torch.equal(ops.composite(rgb, alpha, as_tensor), out)
    image_bg = torch.tensor(bg, device=device).view(1, 3, 1, 1).expand(1, 3, 1, 3).contiguous()
    assert torch.equal(ops.composite(rgb, alpha, image_bg), out)
    # alpha 0 / 1 give the background / foreground exactly
    x, b = rand(2, 3, 5, 6, seed=1).to(device), rand(2, 3, 5, 6, seed=2).to(device)
    assert torch.equal(ops.composite(x, torch.zeros_like(x[:, :1]), b), b)
    assert torch.equal(ops.composite(x, torch.ones_like(x[:, :1]), b), x)
    # float64 alpha with float32 rgb: result follows rgb
    assert ops.composite(x.float(), torch.ones_like(x[:, :1]), bg).dtype == torch.float32


def test_fit_background(device):
    # columns encode x: "cover" of a 2:1 image into a square keeps the middle half
    xs = torch.arange(200, dtype=torch.float32, device=device).view(1, 1, 1, 200) / 199
    bg = xs.expand(1, 3, 100, 200).contiguous()
    out = ops.fit_background(bg, (50, 50))
    assert out.shape == (1, 3, 50, 50) and out.is_contiguous()
    assert 0.23 < out[0, 0, 0, 0].item() < 0.27 and 0.73 < out[0, 0, 0, -1].item() < 0.77
    tall = ops.fit_background(bg, (300, 10))
    assert tall.shape == (1, 3, 300, 10)
    assert ops.fit_background(bg, (30, 70), mode="stretch").shape == (1, 3, 30, 70)
    assert_close(ops.fit_background(bg, (100, 200)), bg, 0)


# ------------------------------------------------------------------ invalid arguments

A = torch.rand(1, 1, 8, 8)
IMG = torch.rand(1, 3, 8, 8)
INVALID = {
    "to_float_float_input": lambda: ops.to_float_image(torch.rand(4, 4, 3)),
    "to_float_4_channels": lambda: ops.to_float_image(torch.zeros(4, 4, 4, dtype=torch.uint8)),
    "to_float_2d": lambda: ops.to_float_image(torch.zeros(4, 3, dtype=torch.uint8)),
    "to_float_not_tensor": lambda: ops.to_float_image([[0, 0, 0]]),
    "to_uint8_3d": lambda: ops.to_uint8_hwc(torch.rand(3, 4, 4)),
    "resize_zero": lambda: ops.resize(IMG, (0, 4)),
    "resize_float_size": lambda: ops.resize(IMG, (4.5, 4)),
    "resize_one_int": lambda: ops.resize(IMG, 4),
    "resize_mode": lambda: ops.resize(IMG, (4, 4), mode="lanczos"),
    "resize_int64": lambda: ops.resize(IMG.long(), (4, 4)),
    "resize_empty_hw": lambda: ops.resize(torch.rand(1, 3, 0, 4), (4, 4)),
    "normalize_std_zero": lambda: ops.normalize_for_model(IMG, 0.5, (1.0, 0.0, 1.0), scale_by_max=False),
    "normalize_mean_len": lambda: ops.normalize_for_model(IMG, (0.5, 0.5), 1.0, scale_by_max=False),
    "normalize_flag": lambda: ops.normalize_for_model(IMG, 0.5, 1.0, scale_by_max="yes"),
    "min_max_3d": lambda: ops.min_max_normalize(torch.rand(3, 8, 8)),
    "threshold_high": lambda: ops.threshold(A, 1.5),
    "threshold_negative": lambda: ops.threshold(A, -0.1),
    "threshold_nan": lambda: ops.threshold(A, float("nan")),
    "threshold_3ch": lambda: ops.threshold(IMG, 0.5),
    "feather_negative": lambda: ops.feather(A, -1.0),
    "feather_inf": lambda: ops.feather(A, float("inf")),
    "feather_str": lambda: ops.feather(A, "2"),
    "feather_3ch": lambda: ops.feather(IMG, 2.0),
    "erode_float_radius": lambda: ops.erode_dilate(A, 1.5),
    "erode_bool_radius": lambda: ops.erode_dilate(A, True),
    "erode_5d": lambda: ops.erode_dilate(A[None], 1),
    "box_negative": lambda: ops.box_filter(A, -1),
    "box_uint8": lambda: ops.box_filter(A.to(torch.uint8), 1),
    "guided_eps_zero": lambda: ops.guided_filter(A, A, 2, 0.0),
    "guided_radius_zero": lambda: ops.guided_filter(A, A, 0, 1e-3),
    "guided_2ch_guide": lambda: ops.guided_filter(torch.rand(1, 2, 8, 8), A, 2, 1e-3),
    "guided_size_mismatch": lambda: ops.guided_filter(IMG, torch.rand(1, 1, 8, 9), 2, 1e-3),
    "guided_batch_mismatch": lambda: ops.guided_filter(IMG, torch.rand(2, 1, 8, 8), 2, 1e-3),
    "guided_src_3ch": lambda: ops.guided_filter(IMG, IMG, 2, 1e-3),
    "fast_guided_channels": lambda: ops.fast_guided_filter(IMG, A, torch.rand(1, 1, 16, 16), 2, 1e-3),
    "fast_guided_batch": lambda: ops.fast_guided_filter(IMG, A, torch.rand(2, 3, 16, 16), 2, 1e-3),
    "fast_guided_lr_mismatch": lambda: ops.fast_guided_filter(IMG, torch.rand(1, 1, 4, 4), IMG, 2, 1e-3),
    "composite_alpha_2ch": lambda: ops.composite(IMG, torch.rand(1, 2, 8, 8)),
    "composite_size": lambda: ops.composite(IMG, torch.rand(1, 1, 8, 9)),
    "composite_rgba_in": lambda: ops.composite(torch.rand(1, 4, 8, 8), A),
    "composite_bg_range": lambda: ops.composite(IMG, A, (0.0, 1.5, 0.0)),
    "composite_bg_len": lambda: ops.composite(IMG, A, (0.0, 0.5)),
    "composite_bg_shape": lambda: ops.composite(IMG, A, torch.rand(1, 3, 4, 4)),
    "composite_bg_type": lambda: ops.composite(IMG, A, "white"),
    "fit_background_mode": lambda: ops.fit_background(IMG, (4, 4), mode="contain"),
    "fit_background_size": lambda: ops.fit_background(IMG, (4, -4)),
    "fit_size_zero": lambda: ops.fit_size((0, 10), 5),
    "fit_size_max_zero": lambda: ops.fit_size((10, 10), 0),
    "downscale_max_float": lambda: ops.downscale_to_fit(IMG, 2.5),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_arguments(name):
    with pytest.raises(InvalidParameterError) as info:
        INVALID[name]()
    message = str(info.value)
    assert "\n" not in message and len(message) < 300


def test_window_counts_are_kept_per_size_and_right(device):
    from matting.ops.windows import _window_counts, window_counts

    counts = window_counts(7, 2, device, torch.float32)
    assert counts.tolist() == [3, 4, 5, 5, 5, 4, 3] and counts.device.type == device.type
    assert window_counts(7, 2, device, torch.float32) is counts   # kept: no kernels for the next render
    assert window_counts(7, 1, device, torch.float32) is not counts
    assert torch.equal(window_counts(300, 17, device, torch.float64), _window_counts(300, 17, device, torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="graph capture: CUDA only")
def test_a_captured_graph_owns_its_window_counts():
    """A tensor kept for later calls must not be made inside a capture (it would be the graph's, filled only on
    replay) nor read by one (the graph would read it after the cache let it go)."""
    from matting.ops.windows import _kept_window_counts, window_counts

    x = torch.rand(1, 1, 64, 48, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        ops.box_filter(x, 3)   # warm-up outside the capture, as CUDA graphs need
    torch.cuda.current_stream().wait_stream(stream)
    before = _kept_window_counts.cache_info()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = ops.box_filter(x, 3)
        window_counts(64, 3, x.device, torch.float32)
    assert _kept_window_counts.cache_info().hits == before.hits
    assert _kept_window_counts.cache_info().currsize == before.currsize
    graph.replay()
    torch.cuda.synchronize()
    assert_close(captured, ops.box_filter(x, 3), 1e-6)
