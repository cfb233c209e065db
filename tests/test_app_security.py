"""The web app's file boundaries, against the app launched in this process (tests/app_server.py).

Gradio serves files through ``/gradio_api/file=<path>`` (and the older ``/file=`` form): only its upload/cache
folder and ``allowed_paths`` (assets/examples) may be read. A client that names a server path instead of
uploading a file must get an error, never the file. The launch limits themselves (queue size, file size, ...)
are checked in tests/test_app_api.py::test_limits_and_privacy_settings; here: allowed_paths and the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.app_server import EXAMPLES, ROOT, client

pytestmark = pytest.mark.slow

SECRET_MARK = "root:"     # the first line of /etc/passwd


@pytest.fixture(scope="module")
def http(app):
    with httpx.Client(base_url=app.url.rstrip("/"), timeout=20, follow_redirects=False) as session:
        yield session


def _refused(response: httpx.Response) -> bool:
    return response.status_code in (400, 403, 404, 405) and SECRET_MARK not in response.text


FORBIDDEN = [
    "/gradio_api/file=/etc/passwd",
    "/file=/etc/passwd",
    "/gradio_api/file=assets/../../etc/passwd",
    "/gradio_api/file=assets/examples/../../../../etc/passwd",
    "/gradio_api/file=" + quote(str(EXAMPLES / ".." / ".." / ".." / "etc" / "passwd"), safe=""),
    "/gradio_api/file=%2Fetc%2Fpasswd",
    "/gradio_api/file=..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/gradio_api/file/etc/passwd",
    "/gradio_api/file=" + str(ROOT / "app.py"),             # the app's own source is not served either
    "/gradio_api/file=" + str(ROOT / "tests" / "bad_inputs.py"),
]


@pytest.mark.parametrize("route", FORBIDDEN)
def test_file_route_refuses_paths_outside_the_allowed_folders(http, route):
    response = http.get(route)
    assert _refused(response), (route, response.status_code, response.text[:200])


def test_file_route_refuses_traversal_out_of_the_upload_folder(app, http):
    """From inside Gradio's own upload folder (where the previews live), '..' must not climb out."""
    root = Path(app.store.root)
    for route in (f"/gradio_api/file={root}/../../../../etc/passwd",
                  f"/gradio_api/file={root}/%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd"):
        response = http.get(route)
        assert _refused(response), (route, response.status_code, response.text[:200])


def test_file_route_serves_the_allowed_examples(http):
    """The control: the allowed folder is served, so the refusals above are not a broken route."""
    response = http.get(f"/gradio_api/file={EXAMPLES / 'coffee.png'}")
    assert response.status_code == 200 and response.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_matte_with_a_server_path_upload_gets_our_error(app):
    """handle_file('/etc/passwd') uploads the client's file: the server sees plain text and says so in one
    line; the text never comes back."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        client(app).predict(handle_file("/etc/passwd"), api_name="/matte")
    message = str(caught.value)
    assert message.startswith("Could not process this image:") and "passwd" in message
    assert SECRET_MARK not in message and "\n" not in message.strip()


def _call_matte_raw(http, file_data: dict) -> str:
    """/matte through Gradio's plain HTTP API with a hand-made FileData (no upload): the event stream's text."""
    body = {"data": [file_data, 0, 0, 0, True, True]}
    started = http.post("/gradio_api/call/matte", json=body)
    if started.status_code != 200:
        return f"HTTP {started.status_code}: {started.text}"
    event_id = started.json()["event_id"]
    with http.stream("GET", f"/gradio_api/call/matte/{event_id}") as stream:
        return "".join(stream.iter_text())


@pytest.mark.parametrize("path", ["/etc/passwd", str(ROOT / "app.py"), "assets/../../etc/passwd"])
def test_matte_refuses_a_server_path_that_was_not_uploaded(app, http, path):
    """A client that names a server file instead of uploading it gets an error event, not the file's content
    (nor a cutout of it)."""
    stream = _call_matte_raw(http, {"path": path, "meta": {"_type": "gradio.FileData"}})
    assert "event: error" in stream or stream.startswith("HTTP 4"), stream[:300]
    assert SECRET_MARK not in stream and "event: complete" not in stream
    assert "import" not in stream   # nothing of app.py either


def test_launch_settings_limit_the_served_folders(app):
    """allowed_paths is exactly assets/examples; nothing is blocked-listed open; the server is loopback."""
    from demo.ui import EXAMPLES_DIR, MAX_FILE_SIZE, QUEUE_MAX_SIZE, launch_options

    options = launch_options(app.demo)
    assert [Path(p).resolve() for p in options["allowed_paths"]] == [EXAMPLES_DIR.resolve()]
    assert options["max_file_size"] == MAX_FILE_SIZE and "share" not in options and "auth" not in options
    demo = app.demo
    assert [Path(p).resolve() for p in demo.allowed_paths] == [EXAMPLES_DIR.resolve()]
    assert demo.max_file_size is not None and 0 < demo.max_file_size <= 100 * 1024 * 1024
    assert 0 < demo._queue.max_size == QUEUE_MAX_SIZE <= 256
    assert demo.share is False and demo.server_name == "127.0.0.1"
    assert not getattr(demo, "blocked_paths", None) or ROOT not in [Path(p) for p in demo.blocked_paths]


@pytest.mark.parametrize("route", ["/monitoring", "/monitoring/summary"])
def test_gradios_traffic_monitoring_is_not_served(app, http, route):
    """Gradio serves a summary of every function's traffic and timings at /monitoring/summary unless told not to
    (both routes answer 200 with its default)."""
    response = http.get(route)
    assert _refused(response) and "process_time" not in response.text, (route, response.status_code)


def test_uploads_above_max_file_size_are_refused(app, http, monkeypatch):
    """The upload route enforces max_file_size at request time: with the limit lowered to 1000 bytes for this
    test (sending 100 MB would be slow), a 2000-byte file is refused and a 500-byte one accepted."""
    assert app.demo.max_file_size >= 1024 * 1024
    monkeypatch.setattr(app.demo, "max_file_size", 1000)
    big = http.post("/gradio_api/upload", files={"files": ("big.png", b"x" * 2000, "image/png")})
    assert big.status_code in (400, 413), (big.status_code, big.text[:200])
    small = http.post("/gradio_api/upload", files={"files": ("small.png", b"x" * 500, "image/png")})
    assert small.status_code == 200 and isinstance(json.loads(small.text), list)


def _component_call(app, http, fn_name: str, data) -> httpx.Response:
    body = {"data": data, "component_id": app.demo.live_view._id, "fn_name": fn_name, "session_hash": "probe"}
    return http.post("/gradio_api/component_server/", json=body)


@pytest.mark.parametrize("fn_name", ["postprocess", "preprocess", "__init__", "get_config", "js_on_load"])
def test_the_live_view_serves_only_its_exact_render(app, http, fn_name):
    """The live view is the app's one route outside the queue (POST component_server): only the function it
    declares answers; the component's other methods are not callable from outside."""
    response = _component_call(app, http, fn_name, "/etc/passwd")
    assert response.status_code == 404 and SECRET_MARK not in response.text


@pytest.mark.parametrize("data", [{"image_id": "/etc/passwd"}, {"image_id": "../../etc/passwd", "feather": 2},
                                  "/etc/passwd", None, [1, 2, 3], {"image_id": {"path": "/etc/passwd"}}])
def test_exact_render_finds_images_only_by_their_handle(app, http, data):
    """An exact render reaches an image only by the random handle the page got with it; anything else is
    answered "stale" or an error, never with a file or another session's picture."""
    response = _component_call(app, http, "exact_render", data)
    assert response.status_code == 200, response.text[:200]
    reply = response.json()
    assert reply == {"stale": True} or set(reply) == {"error"}, reply
    assert SECRET_MARK not in response.text


def test_live_previews_write_no_files(app, tmp_path):
    """The page's previews travel inline: an upload and slider releases leave no file in the app's folder."""
    from gradio_client import handle_file

    from tests.app_server import exact_render, write_jpeg

    before = app.store.bytes_used
    source = write_jpeg(tmp_path / "inline.jpg", 640, 480, seed=4)
    value = client(app).predict(handle_file(str(source)), 0.0, 0.0, 0, True, 8, True, True, "transparent",
                                "#ffffff", api_name="/upload")
    for feather in (1.0, 5.0):
        assert "exact" in exact_render(app, value["id"], threshold=0.0, feather=feather, erode=0, refine=True,
                                       refine_radius=8, use_input_alpha=True, decontaminate=True)
    assert app.store.bytes_used == before
