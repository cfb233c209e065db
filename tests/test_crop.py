"""Crop to the subject (matting/crop.py): the box, the margin, the border, and the CLI's --crop."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from matting.crop import CROP_MIN_ALPHA, CropMargin, crop_box, cut_to, parse_margin, subject_box
from matting.errors import InvalidParameterError


def alpha_with_box(height=200, width=300, box=(50, 40, 120, 150)):
    alpha = np.zeros((height, width), np.uint8)
    left, top, right, bottom = box
    alpha[top:bottom, left:right] = 255
    alpha[0:5, :] = CROP_MIN_ALPHA - 1          # a faint haze along the top: not the subject
    return alpha


def test_the_box_is_what_is_visibly_kept():
    assert subject_box(alpha_with_box()) == (50, 40, 120, 150)
    assert subject_box(np.zeros((10, 10), np.uint8)) is None


@pytest.mark.parametrize("margin, expected", [
    ("10", (40, 30, 130, 160)), ("0", (50, 40, 120, 150)), ("10px", (40, 30, 130, 160)),
    ("10%", (43, 29, 127, 161)),              # 10 % of the box's width (70) and height (110), rounded
    ("100", (0, 0, 220, 200)),                # clipped at the image's border
])
def test_the_margin_grows_the_box_and_stops_at_the_border(margin, expected):
    assert crop_box(alpha_with_box(), parse_margin(margin)) == expected


def test_nothing_visible_keeps_the_whole_image_and_cut_to_cuts_every_array():
    assert crop_box(np.zeros((20, 30), np.uint8), CropMargin(5)) == (0, 0, 30, 20)
    rgba, alpha = np.zeros((200, 300, 4), np.uint8), alpha_with_box()
    cut_rgba, cut_alpha, none = cut_to((40, 30, 130, 160), rgba, alpha, None)
    assert cut_rgba.shape == (130, 90, 4) and cut_alpha.shape == (130, 90) and none is None


@pytest.mark.parametrize("text", ["", "ten", "-5", "5 cm", "1e9", "200000", "2000%"])
def test_bad_margins_say_what_is_expected(text):
    with pytest.raises(InvalidParameterError, match="crop margin"):
        parse_margin(text)


def test_cli_crop_gives_the_subject_box_plus_the_margin(tmp_path):
    """--crop 10: each output is the uncropped one cut to the subject's box grown by 10 px, clipped."""
    from matting.cli import main

    rgba = np.zeros((240, 320, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[60:200, 30:150, 3] = 255                 # the upload's own alpha bounds what the matte can keep
    rgba[60:200, 30:150, :3] = (220, 60, 40)
    source = tmp_path / "subject.png"
    Image.fromarray(rgba).save(source)
    assert main([str(source), "-o", str(tmp_path / "full"), "--alpha", "--no-progress"]) == 0
    assert main([str(source), "-o", str(tmp_path / "cut"), "--alpha", "--crop", "10", "--no-progress"]) == 0
    full_alpha = np.asarray(Image.open(tmp_path / "full" / "subject_alpha.png"))
    box = subject_box(full_alpha)
    assert box is not None and box[0] >= 30 and box[2] <= 150
    left, top, right, bottom = max(0, box[0] - 10), max(0, box[1] - 10), min(320, box[2] + 10), min(240, box[3] + 10)
    cut = np.asarray(Image.open(tmp_path / "cut" / "subject.png"))
    full = np.asarray(Image.open(tmp_path / "full" / "subject.png"))
    assert cut.shape == (bottom - top, right - left, 4)
    assert np.array_equal(cut, full[top:bottom, left:right])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cut" / "subject_alpha.png")),
                          full_alpha[top:bottom, left:right])


def test_cli_crop_without_a_margin_and_a_bad_one(tmp_path, capsys):
    from matting.cli import main

    source = tmp_path / "x.png"
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[20:60, 30:70] = 255
    Image.fromarray(rgba).save(source)
    assert main([str(source), "-o", str(tmp_path / "out"), "--crop", "--no-progress"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "x.png"))
    assert out.shape[0] <= 40 and out.shape[1] <= 40
    assert main([str(source), "-o", str(tmp_path / "bad"), "--crop", "lots"]) == 2
    assert "crop margin" in capsys.readouterr().err
