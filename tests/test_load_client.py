"""The load generator's page-like client (scripts/page_client.py) against the running app: the figures in
docs/RELIABILITY.md are only as good as this client's reading of the app's answers."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from PIL import Image

from matting.settings import EdgeSettings
from tests.app_server import EXAMPLES, running_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from page_client import EventFailed, PageSession  # noqa: E402

D = EdgeSettings()
UI = [D.threshold, 2.0, D.erode, D.refine, D.refine_radius, D.use_input_alpha, D.decontaminate, "transparent",
      "#ffffff"]


@pytest.fixture(scope="module")
def session():
    app = running_app()
    page = PageSession(app.url, timeout=60)
    yield page
    page.close()


def test_upload_then_download_as_the_page_does(session):
    marks = {}
    value = session.call("/upload", session.upload(EXAMPLES / "coffee.png"), *UI, marks=marks)[0]
    # where the event waited, as the load test splits it: joined, then started, then completed
    assert marks["joined"] <= marks["process_starts"] <= marks["process_completed"]
    assert value["w"] == 600 and value["h"] == 400 and value["photo"].startswith("data:image/jpeg;base64,")
    assert value["exact"]["settings"]["feather"] == 2.0
    update = session.call("/download_rgba", None, *UI, False, "0")[0]
    png = Image.open(io.BytesIO(session.fetch(update["value"])))
    assert png.mode == "RGBA" and png.size == (600, 400)


def test_the_api_event_and_its_files(session):
    outputs = session.call("/matte", session.upload(EXAMPLES / "coffee.png"), 0.0, 0.0, 0, True, True, None)
    files = [o for o in outputs if isinstance(o, dict) and "path" in o]
    assert len(files) == 2
    assert {Image.open(io.BytesIO(session.fetch(f))).mode for f in files} == {"RGBA", "L"}


def test_a_failing_event_and_a_wrong_call_say_what_went_wrong():
    fresh = PageSession(running_app().url, timeout=60)   # a session that has no image yet
    try:
        with pytest.raises(EventFailed, match="Upload an image first|先上传"):
            fresh.call("/download_rgba", None, *UI, False, "0")
        with pytest.raises(TypeError, match="takes 7 inputs, got 6"):
            fresh.call("/matte", None, 0.0, 0.0, 0, True, True)
    finally:
        fresh.close()
