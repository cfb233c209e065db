"""demo/controls.py: the page's control values (as the page sends them) to the engine's settings and background."""

from __future__ import annotations

import numpy as np
import pytest

from demo.controls import BACKGROUND_CONTROLS, BG_COLOR, BG_IMAGE, BG_TRANSPARENT, EDGE_CONTROLS, Controls
from matting.errors import InvalidParameterError
from matting.settings import EdgeSettings


def test_the_names_are_the_bundles_fields_in_the_wire_order():
    """ui.py zips these names with its components: they must be Controls' fields, edges first."""
    assert EDGE_CONTROLS == ("threshold", "feather", "erode", "refine", "refine_radius", "use_input_alpha",
                             "decontaminate")
    assert BACKGROUND_CONTROLS == ("bg_mode", "bg_color", "bg_image")
    assert tuple(Controls.__dataclass_fields__) == EDGE_CONTROLS + BACKGROUND_CONTROLS


def test_untouched_controls_are_the_engines_defaults():
    assert Controls().settings() == EdgeSettings() and Controls().background() is None
    assert Controls.of({}).settings() == EdgeSettings()


def test_values_as_the_page_sends_them():
    """Sliders send floats, number boxes text or None, checkboxes bools; erode rounds to whole pixels; other keys
    of the mapping (an exact-render request's image id) are ignored."""
    controls = Controls.of({"threshold": "0.25", "feather": None, "erode": 2.6, "refine": 0, "refine_radius": 7.4,
                            "use_input_alpha": False, "decontaminate": False, "image_id": "abc", "strokes": []})
    assert controls.settings() == EdgeSettings(threshold=0.25, feather=0.0, erode=3, refine=False, refine_radius=7,
                                               use_input_alpha=False, decontaminate=False)
    assert Controls(refine_radius=None).settings().refine_radius == EdgeSettings().refine_radius
    assert Controls(erode=-2.5).settings().erode == -2   # Python rounds halves to even: -2.5 -> -2
    assert Controls(threshold=None, erode=None).settings() == EdgeSettings(threshold=0.0, erode=0)


@pytest.mark.parametrize("values, message", [
    ({"threshold": "abc"}, "threshold must be a number, got 'abc'"),   # it said "could not convert string ..."
    ({"refine_radius": "x"}, "refine_radius must be a number, got 'x'"),
    ({"erode": float("inf")}, "erode must be a finite number, got inf"),   # was an OverflowError traceback
    ({"feather": float("nan")}, "feather must be a finite number, got nan"),
    ({"threshold": 1.5}, "threshold must be between"),
    ({"feather": -1}, "feather must be between"),
    ({"refine_radius": 0}, "refine_radius must be between"),
])
def test_bad_values_raise_naming_the_control(values, message):
    with pytest.raises(InvalidParameterError) as caught:
        Controls.of(values).settings()
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_background_follows_the_mode():
    image = np.zeros((4, 5, 3), np.uint8)
    assert Controls(bg_mode=BG_TRANSPARENT, bg_color="#ff0000", bg_image=image).background() is None
    assert Controls(bg_mode=BG_COLOR, bg_color="#ff8000").background() == (255, 128, 0)
    assert Controls(bg_mode=BG_COLOR, bg_color="").background() is None   # the picker cleared: transparent
    assert Controls(bg_mode=BG_IMAGE, bg_image=image).background() is image
    assert Controls(bg_mode=BG_IMAGE, bg_image=None).background() is None   # no image uploaded yet
    with pytest.raises(InvalidParameterError):
        Controls(bg_mode=BG_COLOR, bg_color="not a colour").background()
