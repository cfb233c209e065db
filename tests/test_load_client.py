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


def test_the_load_tests_steady_figures_leave_out_the_requests_of_the_arrivals():
    """load_test.py --ramp: each kind again over the requests that started after the visitors had arrived."""
    import os

    import load_test

    stats = load_test.Stats()
    for started, seconds, handler_ms in ((0.5, 3.0, 2900.0), (1.0, 2.5, 2400.0), (12.0, 0.2, 150.0),
                                         (15.0, 0.3, 250.0)):
        stats.ok("upload", seconds, {"handler": handler_ms}, started)
    steady = load_test.steady_kinds(stats, after=10.0)["upload"]
    assert (steady["ok"], steady["p50_ms"], steady["p95_ms"]) == (2, 200, 300)
    assert (steady["server_p50_ms"], steady["server_p95_ms"]) == (150, 250)
    assert load_test.parts_summary(stats, after=10.0)["upload"]["handler"] == [150.0, 250.0]
    assert load_test.parts_summary(stats)["upload"]["handler"][1] == 2900.0   # all of them
    merged = load_test.Stats()
    merged.merge(stats.as_dict())   # as the client processes' figures come together
    assert merged.latencies("upload", after=10.0) == [0.2, 0.3]
    kinds = load_test.memory_kinds(os.getpid())   # Linux: what the server's RSS is made of
    assert kinds["anon"] > 0 and set(kinds) == {"anon", "file", "shmem", "locked", "pinned"}
