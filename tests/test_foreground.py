"""Colour decontamination: foreground estimation on composites with a known foreground, and its use in renders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matting import ops, render
from matting.errors import InvalidParameterError
from matting.foreground import SOFT_MIN, decontaminate, estimate_foreground
from matting.result import MatteResult
from matting.settings import EdgeSettings

RED = (0.9, 0.1, 0.1)
BLUE = (0.1, 0.2, 0.9)


def disc_scene(device="cpu", size=128, soft=2.0, batch=1):
    """A red disc with a soft edge ``soft`` px wide over blue: (image, alpha, true foreground)."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    radius = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt()
    alpha = ((size * 0.3 - radius) / soft + 0.5).clamp(0, 1)[None, None].repeat(batch, 1, 1, 1).to(device)
    fg = torch.tensor(RED, device=device).view(1, 3, 1, 1).expand(batch, 3, size, size)
    bg = torch.tensor(BLUE, device=device).view(1, 3, 1, 1).expand(batch, 3, size, size)
    return alpha * fg + (1 - alpha) * bg, alpha, fg


def edge_error(estimate, alpha, fg):
    """Mean of alpha |F_est - F| over the soft pixels: the error of a composite onto any new background."""
    soft = ((alpha > 0) & (alpha < 1)).expand_as(fg)
    return (alpha * (estimate - fg)).abs()[soft].mean().item()


def test_recovers_the_foreground_of_a_soft_edge(device):
    image, alpha, fg = disc_scene(device)
    estimate = estimate_foreground(image, alpha)
    assert estimate.shape == image.shape and estimate.dtype == image.dtype and estimate.device == image.device
    before, after = edge_error(image, alpha, fg), edge_error(estimate, alpha, fg)
    assert before > 0.09                  # the photo's own colour carries ~10 % of the old blue on the edge
    assert after < 0.25 * before
    assert 0.0 <= estimate.min().item() and estimate.max().item() <= 1.0


def test_opaque_pixels_keep_the_photo_and_clear_ones_are_finite(device):
    image = torch.rand(1, 3, 40, 50, device=device)
    ones = torch.ones(1, 1, 40, 50, device=device)
    torch.testing.assert_close(estimate_foreground(image, ones), image, atol=1e-4, rtol=0)
    zeros = torch.zeros_like(ones)
    assert torch.isfinite(estimate_foreground(image, zeros)).all()
    torch.testing.assert_close(decontaminate(image, zeros), image, atol=0, rtol=0)


def test_decontaminate_changes_only_soft_pixels(device):
    image, alpha, fg = disc_scene(device)
    alpha = alpha.clone()
    alpha[..., :4, :4] = 0.009                  # faint haze: left alone
    out = decontaminate(image, alpha)
    soft = ((alpha >= SOFT_MIN) & (alpha <= 1 - SOFT_MIN)).expand_as(image)
    assert torch.equal(out[~soft], image[~soft])
    assert not torch.equal(out[soft], image[soft])
    assert edge_error(out, alpha, fg) < 0.25 * edge_error(image, alpha, fg)


def test_batch_equals_single_calls_and_odd_layouts(device):
    image, alpha, _ = disc_scene(device, size=64, batch=2)
    image = image.clone()
    image[1] = image[1].flip(-1) * 0.8
    together = estimate_foreground(image, alpha)
    for k in range(2):
        torch.testing.assert_close(together[k:k + 1], estimate_foreground(image[k:k + 1], alpha[k:k + 1]))
    channels_last = image.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(estimate_foreground(channels_last, alpha), together)
    assert estimate_foreground(image[:0], alpha[:0]).shape == (0, 3, 64, 64)


def test_float64_is_kept_and_half_is_computed_in_float32(device):
    image, alpha, _ = disc_scene(device, size=48)
    assert estimate_foreground(image.double(), alpha.double()).dtype == torch.float64
    if device.type == "cuda":
        half = estimate_foreground(image.half(), alpha.half())
        assert half.dtype == torch.float16
        torch.testing.assert_close(half.float(), estimate_foreground(image, alpha), atol=2e-3, rtol=0)


def test_bad_arguments_are_refused():
    image, alpha, _ = disc_scene(size=16)
    with pytest.raises(InvalidParameterError):
        estimate_foreground(image[:, :1], alpha)
    with pytest.raises(InvalidParameterError):
        estimate_foreground(image, alpha[..., :8])
    with pytest.raises(InvalidParameterError, match="fractions"):
        estimate_foreground(image, alpha, coarse_radius=0)
    with pytest.raises(InvalidParameterError, match="fractions"):
        estimate_foreground(image, alpha, fine_radius=2)


def scene_result(size=160):
    """A MatteResult made by hand (no network): the disc scene with its true alpha as the 'network' matte."""
    image, alpha, _ = disc_scene(size=size)
    image_u8 = ops.to_uint8_hwc(image)[0]
    small = ops.resize(alpha, (size // 2, size // 2))
    guide = ops.resize(ops.to_float_image(image_u8), (size // 2, size // 2))
    return MatteResult(key="scene", name="scene", image=image_u8, matte=small, guide=guide, input_alpha=None,
                       original_size=(size, size))


def test_render_decontaminates_the_cutout_and_the_composite():
    result = scene_result()
    edges = EdgeSettings(refine=False)
    alpha, rgba, comp = render.render_tensors(result, edges, background=(0, 255, 0))
    _, rgba_plain, comp_plain = render.render_tensors(result, edges.with_(decontaminate=False), background=(0, 255, 0))
    seen, clear = alpha > 0, alpha == 0
    assert torch.equal(rgba[..., 3], alpha) and torch.equal(rgba_plain[..., :3][seen], result.image[seen])
    assert clear.any() and (rgba[clear] == 0).all() and (rgba_plain[clear] == 0).all()   # no colour where unseen
    hard = (alpha == 0) | (alpha == 255)
    assert torch.equal(rgba[..., :3][alpha == 255], result.image[alpha == 255])
    a = alpha.float()[..., None] / 255
    truth = a * torch.tensor(RED) + (1 - a) * torch.tensor((0.0, 1.0, 0.0))

    def error(c):
        return (c.float() / 255 - truth).abs()[~hard].mean().item()

    assert error(comp) < 0.5 * error(comp_plain)   # the old blue no longer tints the edge
    preview = render.render_tensors(result, edges, max_side=64)[1]
    assert preview.shape == (64, 64, 4)


def test_settings_switch_and_raw_turns_it_off():
    assert EdgeSettings().decontaminate is True
    assert EdgeSettings.raw().decontaminate is False
    assert EdgeSettings().with_(decontaminate=False).as_dict()["decontaminate"] is False
    assert np.isclose(EdgeSettings().refine_eps, 1e-4) and EdgeSettings().refine_radius == 8
