"""matting/render.py on synthetic results (no network): the touch-up hints reach every render path, the upload's
own alpha is resampled like a photo, previews keep their soft matte and full renders do not, and the stacked
batch render equals one render per image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matting import ops, render
from matting.errors import InvalidParameterError
from matting.result import MatteResult
from matting.settings import EdgeSettings

H, W = 96, 128


def synthetic(seed: int = 0, input_alpha: np.ndarray | None = None, device: str | torch.device = "cpu") -> MatteResult:
    """A result as the pipeline leaves it, on ``device``: a photo, a network matte at a lower size (a soft-edged
    ellipse plus noise) and its guide, the photo at that size."""
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    yy, xx = np.mgrid[0:48, 0:64]
    ellipse = np.clip(1.5 - np.hypot((yy - 24) / 16, (xx - 32) / 22), 0, 1) + rng.normal(0, 0.05, (48, 64))
    matte = torch.from_numpy(np.clip(ellipse, 0, 1).astype(np.float32))[None, None]
    guide = ops.resize(ops.to_float_image(image), (48, 64), antialias=True).clamp(0, 1)
    own = None if input_alpha is None else torch.from_numpy(input_alpha).to(device)
    return MatteResult(key=f"synthetic-{seed}", name=None, image=image.to(device), matte=matte.to(device),
                       guide=guide.to(device), input_alpha=own, original_size=(W, H))


def stripes() -> np.ndarray:
    """An upload alpha of one-pixel columns, opaque and clear in turn: any downscale that averages shows 50 %
    grey, one that picks pixels shows 0 or 255."""
    alpha = np.zeros((H, W), np.uint8)
    alpha[:, ::2] = 255
    return alpha


def test_hints_reach_the_stacked_render():
    """alpha_from (the batch's stacked render) applies the hint mask: 0 clears, 255 fills, 128 leaves alone."""
    result = synthetic()
    settings = EdgeSettings(refine=False)
    photo = ops.to_float_image(result.image)
    hints = torch.full((1, 1, H, W), 128, dtype=torch.uint8)
    hints[..., :, :40] = 0       # erase the left third
    hints[..., :10, 100:] = 255  # restore the top right corner, which is background
    plain = render.alpha_from(result.guide, result.matte, photo, settings, 1.0)
    hinted = render.alpha_from(result.guide, result.matte, photo, settings, 1.0, hints)
    assert plain[..., :, :40].max() > 0.5 and plain[..., :10, 100:].min() < 0.5   # the hints have work to do
    assert (hinted[..., :, :40] == 0).all() and (hinted[..., :10, 100:] == 1).all()
    assert torch.equal(hinted[..., 10:, 40:], plain[..., 10:, 40:])


def test_a_preview_keeps_its_soft_matte_and_a_full_render_does_not():
    """The soft matte (after the guided filter) is kept per preview size so the next slider release skips the
    filter; at full size it is too large to keep."""
    result = synthetic()
    settings = EdgeSettings()
    render.soft_alpha_tensors(result, settings)
    assert not [k for k in result._previews if k[0] == "soft"], "a full-size soft matte was kept"
    render.soft_alpha_tensors(result, settings, max_side=64)
    soft_keys = [k for k in result._previews if k[0] == "soft"]
    assert soft_keys == [("soft", ops.fit_size((H, W), 64))]


@pytest.mark.parametrize("max_side", [None, 48])
def test_the_uploads_own_alpha_is_resampled_like_the_photo(max_side, device):
    """At the working size the upload's alpha comes back exactly as given (255 stays 255); at a preview size it is
    shrunk with antialiasing (one-pixel stripes average to half), and the matte is multiplied by it."""
    result = synthetic(input_alpha=stripes(), device=device)
    _, own = render.soft_alpha_tensors(result, EdgeSettings(use_input_alpha=True), max_side=max_side)
    size = render.output_hw(result, max_side)
    assert tuple(own.shape) == size
    if max_side is None:
        assert torch.equal(own.cpu(), torch.from_numpy(stripes()))
    else:
        assert abs(own.float().mean().item() - 127.5) < 3 and int(own.max()) - int(own.min()) < 40
    alpha, _, _ = render.render_tensors(result, EdgeSettings(use_input_alpha=True, refine=False), max_side=max_side)
    alone, _, _ = render.render_tensors(result, EdgeSettings(use_input_alpha=False, refine=False), max_side=max_side)
    product = (alone.float() * own.float() / 255).round()
    assert (alpha.float() - product).abs().max() <= 1


def test_at_the_working_size_nothing_is_resampled(monkeypatch):
    """The upload's alpha and the "before" photo are used as they are at the working size: no resize runs (it
    would cost a full-size pass per render), and the photo is the result's own tensor, not a copy."""
    result = synthetic(input_alpha=stripes())

    def no_resize(*args, **kwargs):
        raise AssertionError("resized at the working size")

    monkeypatch.setattr(render.ops, "resize", no_resize)
    own = render.input_alpha_at(result, (H, W))
    assert torch.equal((own[0, 0] * 255).round().to(torch.uint8), torch.from_numpy(stripes()))
    assert render.photo_u8(result) is result.image


@pytest.mark.parametrize("background", [None, (0, 128, 255), "image"])
def test_the_stacked_render_equals_one_render_per_image(background, device):
    """render_stack_tensors (the batch's GPU path) gives what render_tensors gives image by image, the RGBA
    cutout included unless asked not to, on every device the suite has (every output stays on it)."""
    results = [synthetic(seed, device=device) for seed in range(3)]
    if background == "image":
        background = np.random.default_rng(5).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    settings = EdgeSettings(feather=2.0, erode=-1, decontaminate=True)
    alpha, rgba, composite = render.render_stack_tensors(results, settings, background)
    assert rgba is not None and (composite is None) == (background is None)
    for i, result in enumerate(results):
        one_alpha, one_rgba, one_composite = render.render_tensors(result, settings, background)
        assert torch.equal(alpha[i], one_alpha) and torch.equal(rgba[i], one_rgba)
        if background is not None:
            assert torch.equal(composite[i], one_composite)
    assert render.render_stack_tensors(results, settings, background, want_rgba=False)[1] is None
    assert {t.device.type for t in (alpha, rgba) + (() if composite is None else (composite,))} == {device.type}


@pytest.mark.parametrize("case", ["two sizes", "own alpha"])
def test_the_stacked_render_refuses_what_it_cannot_stack(case):
    """Results of different working sizes, or one with its own alpha (multiplied in per image), are refused with
    a message that says which results it takes."""
    results = [synthetic(0), synthetic(1)]
    if case == "two sizes":
        small = results[1]
        small.image = small.image[:64]
    else:
        results[1].input_alpha = torch.from_numpy(stripes())
    with pytest.raises(ValueError, match="^render_stack_tensors needs results of one working size without an alpha "
                                         "of their own$"):
        render.render_stack_tensors(results, EdgeSettings())


def test_a_preview_photo_is_antialiased_and_kept_for_the_next_render():
    """A preview shrinks the photo with antialiasing (fine stripes become an even grey, not a moire), once per
    preview size: the next render at that size gets the same tensor back."""
    result = synthetic()
    striped = np.zeros((H, W, 3), np.uint8)
    striped[:, ::2] = 255
    result.image = torch.from_numpy(striped)
    size = ops.fit_size((H, W), 48)
    photo = render.photo_at(result, size)
    assert tuple(photo.shape) == (1, 3, *size)
    assert abs(photo.mean().item() - 0.5) < 0.01 and (photo.amax() - photo.amin()).item() < 0.15
    assert render.photo_at(result, size) is photo


def test_a_preview_soft_matte_is_reused_while_the_refinement_is_unchanged():
    """Releasing a threshold, feather or erode slider re-renders only the edges: the soft matte of that preview
    size is the same tensor while refinement settings stay, and a new one when they change."""
    result = synthetic()
    photo = render.photo_at(result, ops.fit_size((H, W), 48))
    first = render.soft_at(result, EdgeSettings(), photo, keep=True)
    assert render.soft_at(result, EdgeSettings(feather=3.0, erode=2), photo, keep=True) is first
    other = render.soft_at(result, EdgeSettings(refine_radius=4), photo, keep=True)
    assert other is not first and not torch.equal(other, first)
    assert render.soft_at(result, EdgeSettings(refine=False), photo, keep=True) is not other


def test_hints_are_sampled_at_pixel_centres():
    """A hint mask drawn at the working size is brought to a render's size by taking, for each output pixel, the
    mask pixel under its centre (labels are not blended): floor((i + 0.5) * in / out)."""
    mask = np.array([[0, 0, 0, 255, 255, 128, 255]], np.uint8).repeat(4, axis=0)
    for width in (3, 10):
        got = render.hints_at(mask, (4, width), torch.device("cpu"))[0, 0].numpy()
        centres = np.floor((np.arange(width) + 0.5) * mask.shape[1] / width).astype(int)
        assert (got == mask[:, centres]).all(), (width, got[0], mask[0, centres])
    assert render.hints_at(None, (4, 3), torch.device("cpu")) is None


def test_a_background_image_must_be_rgb_or_rgba():
    """An (H, W, 3) or (H, W, 4) image is a background (its alpha ignored); anything else is refused, naming the
    shapes it takes."""
    device = torch.device("cpu")
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., 0] = 255
    assert torch.equal(render.background_tensor(rgba, (10, 20), device),
                       render.background_tensor(rgba[..., :3].copy(), (10, 20), device))
    for bad in (np.zeros((10, 20), np.uint8), np.zeros((10, 20, 5), np.uint8), np.zeros((10, 20, 2), np.uint8)):
        with pytest.raises(InvalidParameterError, match=r"^a background image must be \(H, W, 3\) or \(H, W, 4\)$"):
            render.background_tensor(bad, (10, 20), device)


def test_at_the_working_size_the_photo_is_not_kept_twice():
    """Only preview sizes are kept with the result: the working-size photo is the result's own image."""
    result = synthetic()
    render.photo_at(result, (H, W))
    render.render_tensors(result, EdgeSettings())
    assert (H, W) not in result._previews


def test_decontamination_reaches_the_cutout_and_the_composite_alone(device):
    """With decontamination on, the cutout's colours in the soft edge are the estimated foreground's, not the
    photo's; a composite asked for without a cutout gets the same colours (a composite alone still needs them)."""
    result = synthetic(device=device)
    on, off = EdgeSettings(decontaminate=True), EdgeSettings(decontaminate=False)
    alpha, rgba_on, _ = render.render_tensors(result, on)
    _, rgba_off, _ = render.render_tensors(result, off)
    soft = (alpha > 10) & (alpha < 245)
    assert soft.sum() > 50
    seen = alpha > 0
    assert torch.equal(rgba_off[..., :3][seen], result.image[seen]), "without decontamination: the photo's colours"
    assert (~seen).any() and (rgba_off[~seen] == 0).all() and (rgba_on[~seen] == 0).all(), "unseen: no colour"
    changed = (rgba_on[..., :3].int() - result.image.int()).abs().amax(-1)
    assert (changed[soft] > 0).float().mean() > 0.5, "the soft edge's colours were not replaced"
    white = (255, 255, 255)
    _, _, composite_with = render.render_tensors(result, on, background=white)
    _, none, composite_alone = render.render_tensors(result, on, background=white, want_rgba=False)
    assert none is None and torch.equal(composite_alone, composite_with)
    _, _, composite_plain = render.render_tensors(result, off, background=white, want_rgba=False)
    assert not torch.equal(composite_alone, composite_plain)


def test_a_feather_under_one_pixel_still_softens():
    """Feather is a Gaussian sigma in pixels: 0.5 already softens a hard edge (only 0 leaves it alone)."""
    result = synthetic()
    hard = EdgeSettings(threshold=0.5, refine=False)
    base = render.render_tensors(result, hard)[0]
    assert torch.equal(render.render_tensors(result, hard.with_(feather=0.0))[0], base)
    softened = render.render_tensors(result, hard.with_(feather=0.5))[0]
    assert ((softened > 0) & (softened < 255)).sum() > ((base > 0) & (base < 255)).sum()


def test_a_hint_mask_reaches_a_render_on_the_results_device(device):
    """The brushes' mask (numpy, at the working size) is applied to a preview on the result's device."""
    result = synthetic(device=device)
    hints = np.full((H, W), 128, np.uint8)
    hints[:, : W // 2] = 0
    alpha, _, _ = render.render_tensors(result, EdgeSettings(), max_side=64, hints=hints)
    assert alpha.device.type == device.type and int(alpha[:, : alpha.shape[1] // 2 - 1].max()) == 0


def test_a_files_hidden_pixels_carry_no_colour_and_a_previews_keep_the_photos(device):
    """Full-resolution renders (what is written to files) clear the colour under alpha 0, in both render paths;
    a preview keeps the photo's there, so that the page's JPEG of the edge colour does not ring against black."""
    result = synthetic(device=device)
    plain = EdgeSettings(decontaminate=False)
    alpha, rgba, _ = render.render_tensors(result, plain)
    clear = alpha == 0
    assert clear.any() and (~clear).any()
    assert (rgba[clear] == 0).all() and torch.equal(rgba[..., :3][~clear], result.image[~clear])
    stacked_alpha, stacked, _ = render.render_stack_tensors([result, synthetic(1, device=device)], plain)
    assert torch.equal(stacked_alpha[0], alpha) and torch.equal(stacked[0], rgba)
    preview_alpha, preview, _ = render.render_tensors(result, plain, max_side=W)   # the working size, as a preview
    assert torch.equal(preview_alpha, alpha) and torch.equal(preview[..., :3], result.image)
