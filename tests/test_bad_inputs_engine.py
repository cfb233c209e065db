"""Every hostile input through the engine: a specific one-line error or a correct result, and the pipeline
keeps working afterwards."""

from __future__ import annotations

import pytest

from matting.errors import MattingError
from tests.bad_inputs import image_cases

CASES = image_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.filename for c in CASES])
def test_engine_answers_each_bad_input(pipe, case):
    if case.error:
        with pytest.raises(MattingError) as info:
            pipe.matte(case.data, name=case.filename)
        message = str(info.value)
        assert type(info.value).__name__ == case.error, message
        assert "\n" not in message and case.filename in message
        assert case.message_word.lower() in message.lower(), message
    else:
        result = pipe.matte(case.data, name=case.filename)
        rendered = pipe.render(result)
        assert rendered.size == case.size and rendered.rgba.shape == (case.size[1], case.size[0], 4)


def test_pipeline_still_serves_after_every_bad_input(pipe):
    for case in CASES:
        try:
            pipe.matte(case.data, name=case.filename)
        except MattingError:
            pass
    good = next(c for c in CASES if c.filename == "cmyk.jpg")
    assert pipe.render(pipe.matte(good.data)).size == good.size
