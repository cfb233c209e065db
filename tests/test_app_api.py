"""The web app through gradio_client, against the app launched in this process on a free port.

Covers the named endpoints (/matte, /batch), the UI's own events (/upload; the live view's exact_render: a slider
change re-renders without running the network), errors that must come back as our one-line message while the
server keeps serving, the run-time language, and the command line's helpers.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from matting.settings import EdgeSettings
from tests.app_server import EXAMPLES, client, data_url_image, exact_render, read_image, write_jpeg
from tests.bad_inputs import bomb_png, image_cases

pytestmark = pytest.mark.slow

UI_DEFAULTS = dict(threshold=0.0, feather=0.0, erode=0, refine=True,
                   refine_radius=EdgeSettings().refine_radius, use_input_alpha=True,
                   decontaminate=EdgeSettings().decontaminate, bg_mode="transparent", bg_color="#ffffff")


def ui_args(**changes):
    """The controls' values in the order the undocumented UI endpoints take them (after the image)."""
    values = {**UI_DEFAULTS, **changes}
    return [values[k] for k in UI_DEFAULTS]


def ui_controls(**changes):
    """The same values by name, as the event functions take them (demo/controls.py)."""
    return dict(zip(UI_DEFAULTS, ui_args(**changes)))


@pytest.fixture(scope="module")
def api(app):
    return client(app)


def test_api_lists_only_the_named_endpoints(api):
    info = api.view_api(return_format="dict", print_info=False)
    assert set(info["named_endpoints"]) == {"/matte", "/batch"}
    params = [p["parameter_name"] for p in info["named_endpoints"]["/matte"]["parameters"]]
    assert params[0] == "image"


def test_matte_returns_full_resolution_upright_rgba(app, api, tmp_path):
    from gradio_client import handle_file

    # 900 x 600 stored, EXIF orientation 6: upright it is 600 x 900.
    source = write_jpeg(tmp_path / "rotated photo.jpg", 900, 600, exif_orientation=6)
    cutout, alpha, report = api.predict(handle_file(str(source)), api_name="/matte")
    image = read_image(cutout)
    assert image.mode == "RGBA" and image.size == (600, 900)
    assert read_image(alpha).size == (600, 900)
    assert report["size"] == [600, 900] and report["original_size"] == [600, 900]
    assert not report["was_reduced"] and report["network_ran"]
    matte = np.asarray(image)[..., 3]
    assert matte.min() < 30 and matte.max() > 225, "the disc should be foreground, the corners background"
    assert Path(cutout).name == "rotated_photo_cutout.png"


def test_matte_settings_change_the_alpha(api):
    from gradio_client import handle_file

    example = str(EXAMPLES / "chelsea.png")
    soft = np.asarray(read_image(api.predict(handle_file(example), api_name="/matte")[1]))
    hard = np.asarray(read_image(api.predict(handle_file(example), 0.5, 0, 0, True, api_name="/matte")[1]))
    assert soft.shape == hard.shape == (300, 451)
    assert set(np.unique(hard)) <= {0, 255} and len(np.unique(soft)) > 2


def test_slider_change_rerenders_without_the_network(app, tmp_path):
    from gradio_client import handle_file

    session = client(app)   # one client = one browser session: its state holds the cached matte
    source = write_jpeg(tmp_path / "slider.jpg", 1600, 1200, seed=3)
    before = app.network_calls
    value = session.predict(handle_file(str(source)), *ui_args(), api_name="/upload")
    assert app.network_calls == before + 1
    assert (value["w"], value["h"]) == (1024, 768), "the page gets a screen-sized preview"
    assert data_url_image(value["photo"]).size == (1024, 768)
    assert data_url_image(value["soft"]).size == (1024, 768) and value["scale"] == 768 / 1200
    assert "1600 × 1200" in value["line"] and "network" in value["line"]

    after_upload = app.network_calls
    alphas = [np.asarray(data_url_image(value["exact"]["alpha"]))]
    for feather in (4.0, 12.0):
        reply = exact_render(app, value["id"], **{**UI_DEFAULTS, "feather": feather}, soft_key=value["soft_key"])
        assert reply["exact"]["settings"]["feather"] == feather and "soft" not in reply
        alphas.append(np.asarray(data_url_image(reply["exact"]["alpha"])))
        assert "network not run" in reply["line"]
    assert app.network_calls == after_upload, "a re-render must not run the network"
    assert not np.array_equal(alphas[0], alphas[1]) and not np.array_equal(alphas[1], alphas[2])
    assert all(a.shape == (768, 1024) for a in alphas)

    # A new refinement radius changes the matte the page redraws from: the reply carries the new one.
    reply = exact_render(app, value["id"], **{**UI_DEFAULTS, "refine_radius": 3}, soft_key=value["soft_key"])
    assert reply["soft_key"] == "refine|3" and data_url_image(reply["soft"]).size == (1024, 768)

    # The timing line follows the page's language, as the queue's events do.
    import httpx

    body = {"data": {**UI_DEFAULTS, "image_id": value["id"], "feather": 6.0}, "fn_name": "exact_render",
            "component_id": app.demo.live_view._id, "session_hash": "zh"}
    chinese = httpx.post(f"{app.url}gradio_api/component_server/", json=body, timeout=60,
                         headers={"Accept-Language": "zh-CN,zh;q=0.9"}).json()
    assert "网络未运行" in chinese["line"], chinese["line"]

    # Bad settings and unknown images are answered, not raised, and the server keeps serving.
    assert "error" in exact_render(app, value["id"], **{**UI_DEFAULTS, "feather": -3})
    assert exact_render(app, "no-such-image", **UI_DEFAULTS) == {"stale": True}


def _zip_names(path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        return sorted(archive.namelist())


def test_batch_with_a_corrupt_file(app, api, tmp_path):
    from gradio_client import handle_file

    good = [write_jpeg(tmp_path / f"good{i}.jpg", 320 + 40 * i, 240, seed=i) for i in range(3)]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(good[0].read_bytes()[:700])   # a JPEG cut short
    files = [handle_file(str(p)) for p in (good[0], bad, good[1], good[2])]
    archive, report = api.predict(files, True, api_name="/batch")
    names = _zip_names(archive)
    for i in range(3):
        assert f"good{i}.png" in names and f"good{i}_alpha.png" in names
    assert not any(n.startswith("broken") for n in names)
    by_name = {r["name"]: r for r in report["results"]}
    assert by_name["broken.jpg"]["status"] == "failed" and by_name["broken.jpg"]["error"]
    assert [by_name[f"good{i}.jpg"]["status"] for i in range(3)] == ["done"] * 3
    assert report["done"] == 3 and report["failed"] == 1
    with zipfile.ZipFile(archive) as zipped:
        cutout = read_image(io.BytesIO(zipped.read("good1.png")))
    assert cutout.mode == "RGBA" and cutout.size == (360, 240)


def test_batch_takes_a_zip(api, tmp_path):
    from gradio_client import handle_file

    bundle = tmp_path / "photos.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(EXAMPLES / "coffee.png", "cups/coffee.png")
        archive.writestr("cups/notes.txt", "not an image")
    archive_out, report = api.predict([handle_file(str(bundle))], api_name="/batch")
    assert "cups/coffee.png" in _zip_names(archive_out)
    assert report["done"] == 1


@pytest.mark.parametrize("case", image_cases(), ids=lambda c: c.filename)
def test_matte_hostile_inputs(app, api, tmp_path, case):
    """Each bad file gives our one-line message (not a Gradio crash); each odd-but-valid one its upright size."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = tmp_path / case.filename
    path.write_bytes(case.data)
    if case.error:
        with pytest.raises(AppError) as caught:
            api.predict(handle_file(str(path)), api_name="/matte")
        message = str(caught.value)
        assert message.startswith("Could not process this image:")
        assert case.message_word.lower() in message.lower()
        assert "\n" not in message.strip()
    else:
        cutout, _, report = api.predict(handle_file(str(path)), api_name="/matte")
        assert read_image(cutout).size == case.size
        assert tuple(report["size"]) == case.size


def test_bomb_header_is_refused_and_the_server_keeps_serving(app, api, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(50000, 50000))
    calls = app.network_calls
    with pytest.raises(AppError, match="50000"):
        api.predict(handle_file(str(bomb)), api_name="/matte")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 50)
    with pytest.raises(AppError, match="text"):
        api.predict(handle_file(str(text)), api_name="/matte")
    assert app.network_calls == calls
    cutout, _, _ = api.predict(handle_file(str(EXAMPLES / "rocket.jpg")), api_name="/matte")
    assert read_image(cutout).size == (640, 427)


def test_errors_follow_the_visitors_language(app, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 50)
    chinese = client(app, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    with pytest.raises(AppError, match="无法处理这张图片：不是支持的图片格式") as refused:
        chinese.predict(handle_file(str(text)), api_name="/matte")
    assert "notes.txt" in str(refused.value) and "plain text" in str(refused.value)  # the specifics stay
    english = client(app, headers={"Accept-Language": "en-US,en;q=0.9"})
    with pytest.raises(AppError, match="Could not process this image: notes.txt: not an image"):
        english.predict(handle_file(str(text)), api_name="/matte")


def test_upload_of_a_large_image_reports_the_reduction(app, tmp_path):
    """The UI toast: from what size to what size, and why (seen by a client as a log message)."""
    from gradio_client import handle_file

    session = client(app)
    source = write_jpeg(tmp_path / "wide.jpg", 5000, 400, seed=5)
    job = session.submit(handle_file(str(source)), *ui_args(), api_name="/upload")
    value = job.result(timeout=120)
    assert "5000 × 400 → 4096 × 328" in value["line"]
    updates = job.communicator.updates   # every status update of the job, log messages (toasts) included
    logs = []
    while not updates.empty():
        update = updates.get_nowait()
        if getattr(update, "log", None):
            logs.append(update.log)
    toast = [text for text, level in logs if "5000 × 400" in text]
    assert toast and "4096 × 328" in toast[0] and "--max-side" in toast[0]


def test_limits_and_privacy_settings(app):
    from demo.ui import MAX_FILE_SIZE, QUEUE_MAX_SIZE

    demo = app.demo
    assert demo._queue.max_size == QUEUE_MAX_SIZE
    # Gradio's queue summarises its events for a monitoring page this app turns off: not after every event (its
    # default), unless whoever runs it set the variables (then theirs; Gradio spells the attribute so)
    from demo.ui import ANALYTICS_EVENTS, ANALYTICS_EVERY

    every = int(os.environ.get("GRADIO_ANALYTICS_CACHE_FREQUENCY", ANALYTICS_EVERY))
    events = int(os.environ.get("GRADIO_ANALYTICS_MAX_EVENTS", ANALYTICS_EVENTS))
    assert demo._queue.ANAYLTICS_CACHE_FREQUENCY == every and demo._queue.ANALYTICS_MAX_EVENTS == events
    assert ANALYTICS_EVERY >= 100 and ANALYTICS_EVENTS < 10_000
    assert demo.max_file_size is not None and demo.max_file_size > 0
    assert MAX_FILE_SIZE
    assert demo.delete_cache is not None
    assert demo.analytics_enabled is False
    theme_css = demo.theme._get_theme_css()
    assert "googleapis" not in theme_css and not demo.theme._stylesheets
    limits = {fn.api_name: fn.concurrency_limit for fn in demo.fns.values() if fn.api_name}
    assert limits["matte"] >= 1 and limits["batch"] == 1 and limits["refresh"] >= 1
    from gradio.utils import get_upload_folder

    cap = demo.upload_cap   # the upload folder's byte cap runs, sparing the app's own bounded folder
    assert cap._thread is not None and cap._thread.is_alive() and cap.max_bytes > 0
    assert cap.folder == Path(get_upload_folder()).resolve() and cap.keep == app.store.root.resolve()


def test_i18n_tables_are_complete():
    from demo.i18n import check_complete, language_from_header, translations

    check_complete()
    assert language_from_header("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert language_from_header("en-US,en;q=0.9,zh;q=0.8") == "en"
    assert language_from_header("fr-FR,fr;q=0.9") == "en"
    assert language_from_header(None) == "en"
    forced = translations("zh")
    assert forced["en"]["title"] == "图像抠图" and forced["fr"]["title"] == "图像抠图"


def test_engine_notices_follow_the_visitors_language():
    """What the engine says about real inputs (16-bit, CMYK, animated GIF) and a GPU fallback, in Chinese."""
    from demo.i18n import Texts
    from matting.decode import decode_image
    from matting.notices import TEMPLATES, Notice
    from matting.pipeline import GPU_OUT_OF_MEMORY

    cases = {case.filename: case for case in image_cases()}
    notices = [n for name in ("gray16.png", "cmyk.jpg", "animated.gif")
               for n in decode_image(cases[name].data, name=name).notices] + [GPU_OUT_OF_MEMORY]
    assert len(notices) == 4
    zh, en = Texts("zh"), Texts("en")
    for notice in notices:
        assert en.notice(notice) == notice
        translated = zh.notice(notice)
        assert translated != notice and any("\u4e00" <= ch <= "\u9fff" for ch in translated), notice
    assert zh.notice(Notice("animated", label="GIF")) == "动图（GIF）：只使用第一帧"
    assert zh.notice(Notice("removed", name="a_alpha.png")).startswith("已删除 a_alpha.png")
    reduced = Notice("reduced", w0=8000, h0=6000, w1=4096, h1=3072, limit=4096)
    assert "8000 × 6000" in zh.notice(reduced) and "4096 像素" in zh.notice(reduced)
    assert "8000 × 6000" in en.notice(reduced) and "4096 px" in en.notice(reduced)
    params = {"label": "WebP", "name": "x.png", "w0": 2, "h0": 2, "w1": 1, "h1": 1, "limit": 1, "detail": "x"}
    for code in TEMPLATES:  # a notice added to the engine without Chinese words fails here
        notice = Notice(code, **{key: params[key] for key in re.findall(r"{(\w+)}", TEMPLATES[code])})
        assert any("\u4e00" <= ch <= "\u9fff" for ch in zh.notice(notice)), notice
    assert zh.notice("a notice nobody translated") == "a notice nobody translated"


def test_every_engine_error_kind_has_chinese_words():
    from demo.i18n import Texts
    from matting import errors

    kinds = [c for c in vars(errors).values()
             if isinstance(c, type) and issubclass(c, errors.MattingError) and c is not errors.MattingError]
    assert len(kinds) >= 8
    for kind in kinds:
        exc = kind("detail 42", source="a.png")
        said = Texts("zh").error(exc)
        assert said.endswith("（a.png: detail 42）") and any("\u4e00" <= ch <= "\u9fff" for ch in said), kind
        assert Texts("en").error(exc) == "a.png: detail 42"


def test_command_line_helpers(monkeypatch):
    import app as app_module

    assert app_module.parse_auth("alice:se:cret") == ("alice", "se:cret")
    assert app_module.parse_auth(None) is None
    with pytest.raises(ValueError):
        app_module.parse_auth("alice")
    assert "ANYONE" in app_module.share_warning(True, None)
    assert app_module.share_warning(True, ("a", "b")) is None
    assert app_module.share_warning(False, None) is None
    monkeypatch.setenv("MATTING_LANG", "zh")
    args = app_module.build_parser().parse_args(["--port", "8000", "--max-side", "2048"])
    assert (args.host, args.port, args.lang, args.max_side) == ("127.0.0.1", 8000, "zh", 2048)


def test_expected_user_errors_log_no_traceback(app, capfd):
    """"Upload an image first." is an answer, not a fault: the client gets it, the server log gets no traceback."""
    from gradio_client.exceptions import AppError

    capfd.readouterr()
    with pytest.raises(AppError, match="Upload an image first"):
        client(app).predict(None, *ui_args(), False, "0", api_name="/download_rgba")
    err = capfd.readouterr().err
    assert "Upload an image first" not in err, err[-2000:]   # a logged traceback would end with the message


def test_a_taken_port_is_one_line_with_what_to_do(capsys):
    """python app.py on a port that something listens on: exit 2 before the model loads, one line naming the
    port and the two ways to choose another; no traceback."""
    import socket

    import app as app_module

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert app_module.main(["--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "Loading the model" not in err
    assert f"port {port}" in err and "--port" in err and "MATTING_PORT" in err
    assert app_module.port_problem("127.0.0.1", port) is None   # free again


@pytest.mark.parametrize("args, words", [
    (["--port", "99999"], "argument --port: a port is 1 to 65535, got 99999"),   # was an OverflowError traceback
    (["--max-file-size", "12zz"], "argument --max-file-size: not a size: '12zz'"),   # a ValueError, after loading
    (["--queue-size", "0"], "argument --queue-size: must be at least 1, got 0"),   # silently the default 64
    (["--replicas", "0"], "argument --replicas: must be at least 1, got 0"),
])
def test_a_bad_flag_is_a_usage_line_before_anything_loads(args, words, capsys):
    import app as app_module

    with pytest.raises(SystemExit) as exit_:
        app_module.main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and words in err and "Traceback" not in err and "Loading" not in err


def test_a_bad_port_in_the_environment_is_named_like_the_flag(monkeypatch, capsys):
    from demo.launch import build_parser

    monkeypatch.setenv("MATTING_PORT", "http")
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
    assert "argument --port: not a port number: 'http'" in capsys.readouterr().err
    monkeypatch.setenv("MATTING_PORT", "8080")
    assert build_parser().parse_args([]).port == 8080
    from demo.launch import file_size

    assert [file_size(text) for text in ("100mb", "40 KB", "7b", "2GB")] == ["100mb", "40kb", "7b", "2gb"]


def test_batch_cancel_stops_promptly(app, tmp_path):
    """Cancel from the UI: the batch stops after the images in flight and the zip holds what finished."""
    from types import SimpleNamespace

    handlers = app.demo.handlers
    files = [str(write_jpeg(tmp_path / f"c{i:02d}.jpg", 240, 180, seed=i)) for i in range(40)]
    request = SimpleNamespace(session_hash="cancel-test", headers={"accept-language": "en"})
    run = handlers.on_batch(files, ["cutout"], request=request, progress=lambda *args, **kwargs: None,
                            **ui_controls())
    next(run)                      # the first image has finished
    assert handlers.on_cancel(request).startswith("Stopping")
    *_, (table, _, archive, status) = list(run)
    assert status.startswith("Cancelled")
    finished = [row for row in table["data"] if row[3] == "done"]
    assert 1 <= len(finished) < len(files)
    assert archive["visible"] and len(_zip_names(archive["value"])) == len(finished)


def test_lost_session_state_is_rebuilt_from_the_upload(app, tmp_path):
    """A session whose state expired (or a client that never uploaded in it) still re-renders: the displayed
    upload is matted again, from the engine's cache, so the network does not run."""
    from gradio_client import handle_file

    source = write_jpeg(tmp_path / "again.jpg", 700, 500, seed=9)
    client(app).predict(handle_file(str(source)), *ui_args(), api_name="/upload")
    calls = app.network_calls
    fresh = client(app)
    value = fresh.predict(handle_file(str(source)), *ui_args(feather=3.0), api_name="/refresh")
    assert data_url_image(value["exact"]["alpha"]).size == (700, 500) and "network not run" in value["line"]
    assert app.network_calls == calls


def test_auth_is_required_when_set(app):
    """--auth USER:PASS: the same app behind a login (launched here on its own port)."""
    from gradio_client import Client, handle_file

    from demo import build_demo, launch_options
    from tests.app_server import free_port

    guarded = build_demo(app.pipe, store=app.store)
    port = free_port()
    guarded.launch(**launch_options(guarded, server_name="127.0.0.1", server_port=port, auth=("alice", "s3cret"),
                                    prevent_thread_lock=True, quiet=True))
    url = f"http://127.0.0.1:{port}/"
    try:
        from gradio_client.exceptions import AuthenticationError

        # The server answered and asked for a login (a refused connection would be another error).
        with pytest.raises(AuthenticationError, match="Please login"):
            Client(url, analytics_enabled=False, verbose=False)
        with pytest.raises(ValueError, match="Could not login"):
            Client(url, auth=("alice", "wrong"), analytics_enabled=False, verbose=False)
        logged_in = Client(url, auth=("alice", "s3cret"), analytics_enabled=False, verbose=False)
        cutout, _, _ = logged_in.predict(handle_file(str(EXAMPLES / "coffee.png")), api_name="/matte")
        assert read_image(cutout).size == (600, 400)
        # The live view's exact renders go outside the queue: the same login guards them.
        import httpx

        body = {"data": {"image_id": "x"}, "component_id": guarded.live_view._id, "fn_name": "exact_render",
                "session_hash": "s"}
        refused = httpx.post(f"{url}gradio_api/component_server/", json=body, timeout=20)
        assert refused.status_code in (401, 403), refused.status_code
    finally:
        guarded.close()


@pytest.mark.parametrize("doc", ["docs/APP.md", "README.md"])
def test_the_documented_client_snippet_works(app, tmp_path, monkeypatch, doc):
    """The gradio_client snippets of docs/APP.md and the README run as written against a live app."""
    from tests.app_server import ROOT

    text = (ROOT / doc).read_text(encoding="utf-8")
    marker = "<!-- client-snippet -->" if doc == "docs/APP.md" else "### From another program (gradio_client)"
    snippet = text.split(marker)[1].split("```python")[1].split("```")[0]
    snippet = snippet.replace("http://127.0.0.1:7860/", app.url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo.jpg").write_bytes((EXAMPLES / "rocket.jpg").read_bytes())
    (tmp_path / "more").mkdir()
    for name in ("chelsea.png", "coffee.png"):
        (tmp_path / "more" / name).write_bytes((EXAMPLES / name).read_bytes())
    exec(compile(snippet, doc, "exec"), {"__name__": "snippet"})
    assert read_image(tmp_path / "photo_cutout.png").size == (640, 427)
    touched = np.asarray(read_image(tmp_path / "photo_touched_alpha.png"))
    assert (touched[:100, :100] == 0).all() and touched[100:].any(), "the hint mask erased the corner only"
    assert sorted(_zip_names(tmp_path / "cutouts.zip")) == ["chelsea.png", "coffee.png"]


def test_output_store_stays_bounded(tmp_path):
    from demo.files import OutputStore, safe_stem

    store = OutputStore(tmp_path / "store", max_bytes=10_000, keep_per_slot=2)
    pixels = np.zeros((20, 20, 4), np.uint8)
    paths = [store.write_image("s1", "cutout", pixels, "png", "My photo (1).JPG") for _ in range(4)]
    assert [Path(p).exists() for p in paths] == [False, False, True, True]   # newest two of the slot
    assert Path(paths[-1]).name == "My_photo_1.png" and len(set(paths)) == 4
    big = [store.write_bytes(f"other{i}", "cutout", b"x" * 4000, f"f{i}.bin") for i in range(4)]
    assert store.bytes_used <= 10_000 and Path(big[-1]).exists()
    assert not Path(big[0]).exists(), "past the byte budget the oldest files go"
    store.drop_session("s1")
    assert not any(Path(p).exists() for p in paths)
    store.close()
    assert not (tmp_path / "store").exists()
    assert safe_stem("../../etc/passwd") == "passwd" and safe_stem("") == "image"


def test_downloads_crop_to_the_subject(app):
    """"Crop to the subject" with a margin: the full-resolution download is the uncropped one cut to the
    subject's box plus the margin; a bad margin is a clear error and the session keeps working."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from matting.crop import subject_box

    session = client(app)
    session.predict(handle_file(str(EXAMPLES / "coffee.png")), *ui_args(), api_name="/upload")

    def download(kind: str, crop: bool, margin: str) -> np.ndarray:
        update = session.predict(None, *ui_args(), crop, margin, api_name=f"/download_{kind}")
        return np.asarray(read_image(update["value"]))   # the event shows the file: an update with its path

    full, cut = download("rgba", False, "0"), download("rgba", True, "10")
    left, top, right, bottom = subject_box(full[..., 3])
    left, top, right, bottom = max(0, left - 10), max(0, top - 10), min(600, right + 10), min(400, bottom + 10)
    assert cut.shape == (bottom - top, right - left, 4) and cut.shape != full.shape
    assert np.array_equal(cut, full[top:bottom, left:right])
    with pytest.raises(AppError, match="crop margin"):
        download("rgba", True, "lots")
    alpha = download("alpha", True, "5%")
    assert alpha.shape[0] < 400 or alpha.shape[1] < 600


def test_batch_failure_reasons_in_chinese(app, tmp_path):
    """The Chinese interface names each batch failure's kind in Chinese (from the result's code), then the
    engine's own details."""
    from types import SimpleNamespace

    handlers = app.demo.handlers
    good = str(write_jpeg(tmp_path / "good.jpg", 120, 90, seed=3))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(Path(good).read_bytes()[:300])
    notes = tmp_path / "notes.jpg"
    notes.write_bytes(b"not a picture\n" * 20)
    request = SimpleNamespace(session_hash="zh-batch", headers={"accept-language": "zh-CN,zh;q=0.9"})
    *_, (table, _, _, status) = list(handlers.on_batch([good, str(cut), str(notes)], ["cutout"], request=request,
                                                       progress=lambda *args, **kwargs: None, **ui_controls()))
    rows = {row[0]: row[3] for row in table["data"]}
    assert "图片文件已损坏或不完整" in rows["cut.jpg"] and "JPEG" in rows["cut.jpg"]
    assert "不是支持的图片格式" in rows["notes.jpg"]
    assert [row[0] for row in table["data"]] == ["good.jpg", "cut.jpg", "notes.jpg"]


def test_gradios_threads_cover_every_event_the_limits_let_run_at_once(app):
    """Events, their pre- and post-processing and the uploads' file writes share Gradio's threads: the uploads
    allowed at once on CUDA (32) must not take the threads the rest need."""
    from demo import build_demo, launch_options
    from demo.ui import BATCH_CONCURRENCY, ENCODE_CONCURRENCY, RENDER_CONCURRENCY

    at_once = RENDER_CONCURRENCY + ENCODE_CONCURRENCY + BATCH_CONCURRENCY
    wide = build_demo(app.pipe, store=app.store, network_concurrency=32)
    narrow = build_demo(app.pipe, store=app.store, network_concurrency=1)
    try:
        assert launch_options(wide)["max_threads"] >= 2 * (32 + at_once)
        assert launch_options(narrow)["max_threads"] == 40
    finally:
        for demo in (wide, narrow):   # never launched: only their upload-folder sweepers run
            demo.upload_cap.stop()
