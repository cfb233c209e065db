"""Touch-up hints (matting/hints.py): brush strokes drawn into a mask, and the render obeying it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matting.errors import InvalidParameterError
from matting.hints import ERASE, KEEP_MODEL, RESTORE, hint_mask_from_image, rasterize_strokes
from matting.pipeline import Pipeline
from matting.settings import EdgeSettings

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(device="cpu", warm_up=False)


def test_a_stroke_is_a_thick_round_capped_line_scaled_to_the_mask():
    mask = rasterize_strokes([{"mode": "erase", "radius": 5, "points": [[20, 30], [60, 30]]}], (100, 200), 2.0)
    assert mask.shape == (100, 200) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {ERASE, KEEP_MODEL}
    rows, cols = np.nonzero(mask == ERASE)
    assert rows.min() >= 60 - 11 and rows.max() <= 60 + 11 and rows.max() - rows.min() >= 18   # 2 * 5 * 2 thick
    assert cols.min() >= 40 - 11 and cols.max() <= 120 + 11 and cols.min() <= 32 and cols.max() >= 128  # caps
    assert mask[60, 80] == ERASE and mask[20, 80] == KEEP_MODEL


def test_later_strokes_paint_over_earlier_ones_and_a_click_is_a_disc():
    strokes = [{"mode": "erase", "radius": 10, "points": [[0, 50], [100, 50]]},
               {"mode": "restore", "radius": 4, "points": [[50, 50]]}]
    mask = rasterize_strokes(strokes, (100, 100), 1.0)
    assert mask[50, 50] == RESTORE and mask[50, 20] == ERASE and mask[50, 56] == ERASE
    assert rasterize_strokes([], (10, 10), 1.0) is None


@pytest.mark.parametrize("strokes", [
    [{"mode": "paint", "radius": 3, "points": [[1, 1]]}],
    [{"mode": "erase", "radius": 0, "points": [[1, 1]]}],
    [{"mode": "erase", "radius": 3, "points": []}],
    [{"mode": "erase", "radius": 3, "points": [["a", 1]]}],
    [{"mode": "erase", "radius": 3, "points": [[float("nan"), 1]]}],
    ["erase"],
    "erase",
    [{"mode": "erase", "radius": 3, "points": [[1, 1]] * 20001}],
])
def test_bad_strokes_get_a_clear_error(strokes):
    with pytest.raises(InvalidParameterError):
        rasterize_strokes(strokes, (10, 10), 1.0)


def test_a_client_mask_is_resized_as_labels():
    small = np.array([[0, 128], [255, 128]], np.uint8)
    mask = hint_mask_from_image(np.stack([small] * 3, -1), (4, 6))
    assert mask.shape == (4, 6) and set(np.unique(mask)) == {0, 128, 255}
    assert mask[0, 0] == 0 and mask[3, 0] == 255 and mask[0, 5] == 128


def _hint_boxes(shape):
    """An erase box on the subject (the cup's middle) and a restore box in the background (the top-left)."""
    hints = np.full(shape, KEEP_MODEL, np.uint8)
    h, w = shape
    hints[h // 2 - 40:h // 2 + 40, w // 2 - 40:w // 2 + 40] = ERASE
    hints[10:90, 10:90] = RESTORE
    return hints


@pytest.mark.parametrize("settings", [EdgeSettings(), EdgeSettings(threshold=0.5, erode=8, feather=4),
                                      EdgeSettings(erode=-6, feather=12)])
def test_the_render_obeys_the_hints_after_erode_and_before_feather(pipe, settings):
    result = pipe.matte(EXAMPLES / "coffee.png")
    plain = pipe.render(result, settings).alpha
    h, w = plain.shape
    assert plain[h // 2, w // 2] > 200 and plain[50, 50] < 50, "the cup is the subject, the corner is not"
    hints = _hint_boxes((h, w))
    alpha = pipe.render(result, settings, hints=hints).alpha
    rim = int(np.ceil(3 * settings.feather)) + 1            # the feather's reach
    inner = slice(h // 2 - 40 + rim, h // 2 + 40 - rim), slice(w // 2 - 40 + rim, w // 2 + 40 - rim)
    assert (alpha[inner] == 0).all(), "erased, whatever threshold and dilation do"
    assert (alpha[10 + rim:90 - rim, 10 + rim:90 - rim] == 255).all(), "restored"
    far = np.ones_like(plain, bool)
    far[h // 2 - 40 - rim:h // 2 + 40 + rim, w // 2 - 40 - rim:w // 2 + 40 + rim] = False
    far[:90 + rim, :90 + rim] = False
    # the model's matte elsewhere (a large feather is blurred on a coarser grid: a level of rounding may move)
    assert np.abs(alpha[far].astype(int) - plain[far]).max() <= (1 if settings.feather >= 8 else 0)
    if settings.feather:
        edge = alpha[h // 2, w // 2 - 40 - rim:w // 2 - 40 + rim]
        assert ((edge > 5) & (edge < 250)).any(), "the feather softens the stroke's edge"


def test_hints_at_another_size_are_scaled_to_the_render(pipe):
    result = pipe.matte(EXAMPLES / "coffee.png")
    h, w = result.image.shape[:2]
    hints = _hint_boxes((h, w))
    full = pipe.render(result, EdgeSettings(), hints=hints).alpha
    preview = pipe.render(result, EdgeSettings(), hints=hints, preview=300).alpha
    ph, pw = preview.shape
    assert preview[ph // 2, pw // 2] == 0 and full[h // 2, w // 2] == 0
    assert preview[int(50 * ph / h), int(50 * pw / w)] == 255
