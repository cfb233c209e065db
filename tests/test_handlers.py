"""demo/handlers.py called directly (no server, no browser), so mutation testing can fork per mutant: the event
functions on a real CPU pipeline and output store, with small images, a fake request (session, language) and a
recording progress; the toasts are recorded by replacing gr.Info and gr.Warning."""

from __future__ import annotations

import io
import os
import threading
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import matting.pipeline
from demo.controls import BG_COLOR, BG_IMAGE
from demo.files import OutputStore
import demo.handlers
from demo.handlers import Handlers
from demo.i18n import Texts
from matting.crop import CROP_MIN_ALPHA, CropMargin
from matting.errors import InvalidParameterError
from matting.settings import EdgeSettings
from tests.app_server import data_url_image, read_image, write_jpeg

SKIP = gr.skip()


class Request:
    """What the handlers read of a gr.Request: the session and the Accept-Language header."""

    def __init__(self, session: str = "visitor", language: str = "en-US,en;q=0.9"):
        self.session_hash = session
        self.headers = {"accept-language": language}


class Progress:
    def __init__(self):
        self.calls = []

    def __call__(self, value, desc=None):
        self.calls.append((value, desc))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = OutputStore(tmp_path_factory.mktemp("store"))
    yield store
    store.close()


@pytest.fixture(scope="module")
def handlers(pipe, store):
    return Handlers(pipe, store)


@pytest.fixture(autouse=True)
def no_batch_left_running():
    """mutmut runs these tests once, then forks a process per mutant: a batch thread still holding a lock then would
    leave the child waiting on it for ever."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("batch-"):
            thread.join(timeout=60)
            assert not thread.is_alive(), thread.name


@pytest.fixture
def toasts(monkeypatch):
    """(kind, message, keyword arguments) of every gr.Info and gr.Warning."""
    shown = []
    monkeypatch.setattr(gr, "Info", lambda message, **kw: shown.append(("info", message, kw)))
    monkeypatch.setattr(gr, "Warning", lambda message, **kw: shown.append(("warning", message, kw)))
    return shown


def jpeg(tmp_path, name, width=96, height=64, seed=0) -> str:
    return str(write_jpeg(tmp_path / name, width, height, seed=seed))


def image_of(url_or_path) -> np.ndarray:
    if str(url_or_path).startswith("data:"):
        return np.asarray(data_url_image(url_or_path))
    return np.asarray(read_image(url_or_path))


def jpeg_quality_of(url) -> tuple[dict, int]:
    """(quantisation tables, chroma subsampling: 0 is 4:4:4) of a JPEG data URL."""
    import base64

    from PIL import JpegImagePlugin

    image = Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2])))
    return image.quantization, JpegImagePlugin.get_sampling(image)


def libjpeg_tables(quality: int) -> dict:
    """Pillow's (libjpeg's) quantisation tables at ``quality``: what any encoder writes at that quality."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).quantization


def network_calls(handlers) -> int:
    return handlers.pipe.runner.calls


# ---------------------------------------------------------------------- upload and live view
def test_an_upload_runs_the_network_once_and_hands_the_page_its_live_view(handlers, tmp_path):
    path = jpeg(tmp_path, "My photo (1).jpg", 96, 64, seed=101)
    before, progress = network_calls(handlers), Progress()
    current, value = handlers.on_image(path, None, Request(), progress)
    assert network_calls(handlers) == before + 1
    assert (value["w"], value["h"], value["scale"]) == (96, 64, 1.0) and value["id"] == current.image_id
    assert image_of(value["photo"]).shape == (64, 96, 3)
    assert image_of(value["soft"]).shape == (64, 96) and value["soft_key"] == "refine|8"
    assert image_of(value["exact"]["alpha"]).shape == (64, 96)
    assert value["own"] is None and value["bg"] is None   # a JPEG has no alpha; transparent background
    # the names and values live_view.js reads
    assert value["settings"] == value["exact"]["settings"] == {
        "threshold": 0.0, "feather": 0.0, "erode": 0, "refine": True, "refine_radius": 8, "use_input_alpha": True,
        "decontaminate": True}
    assert value["line"].startswith("96 × 64 px · decode ") and " network " in value["line"]
    assert "cached" not in value["line"] and value["line"].endswith(" ms")
    assert [desc for _, desc in progress.calls] == ["Decoding the image and running the network", "Rendering edges"]
    assert [v for v, _ in progress.calls] == [0.05, 0.75]
    assert current.stem == "My_photo_1" and current.session == "visitor" and current.source == path
    assert handlers._live[current.image_id] is current   # exact renders find it

    # the same photo again (another upload, another name): served from the cache, a new handle
    copy = tmp_path / "again.jpg"
    copy.write_bytes(Path(path).read_bytes())
    again, value2 = handlers.on_image(str(copy), None, Request(), Progress())
    assert network_calls(handlers) == before + 1
    assert "network: cached, not run again" in value2["line"] and again.stem == "again"
    assert value2["id"] != value["id"] and again.image_id in handlers._live
    # Gradio reports a replaced photo twice: the second report of the shown file changes nothing
    assert handlers.on_image(str(copy), again, Request(), Progress()) == (SKIP, SKIP)


def test_no_upload_gives_no_state_and_no_view(handlers):
    assert handlers.on_image(None) == (None, None)
    assert handlers.on_image("") == (None, None)


def test_an_unreadable_upload_warns_and_gives_no_state(handlers, tmp_path, toasts):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 50)
    assert handlers.on_image(str(text), None, Request(), Progress()) == (None, None)
    [(kind, message, kw)] = toasts
    assert kind == "warning" and message.startswith("Could not process this image: notes.txt")
    assert kw == {"duration": 15, "title": "Warning"}


def test_a_refused_upload_keeps_the_photo_shown_before(handlers, shown, tmp_path, toasts):
    """A wrong file dropped over a photo being worked on cleared the result (and its brush strokes); now the
    warning says why and the photo, its state and the page's view stay as they were."""
    current, _ = shown
    text = tmp_path / "notes.jpg"
    text.write_text("hello\n" * 50)
    assert handlers.on_image(str(text), current, Request(), Progress()) == (SKIP, SKIP)
    [(kind, message, _)] = [toast for toast in toasts if toast[0] == "warning"]
    assert message.startswith("Could not process this image: notes.jpg")
    assert handlers.downloader("rgba")(current, str(text), request=Request(), progress=Progress())["visible"]


def test_gradios_second_report_of_a_refused_upload_is_not_warned_again(handlers, tmp_path, toasts, monkeypatch):
    """Gradio reports an upload twice (the upload, then its stored value): a refused photo showed its warning twice
    (and was decoded twice), as did a refused background image. The same file tried again later, or in another
    session, is handled again."""
    import demo.repeats

    text = tmp_path / "notes.jpg"
    text.write_text("hello\n" * 50)
    assert handlers.on_image(str(text), None, Request(), Progress()) == (None, None)
    assert handlers.on_image(str(text), None, Request(), Progress()) == (SKIP, SKIP)
    assert handlers.on_image(str(text), None, Request("other"), Progress()) == (None, None)
    assert handlers.on_background_image(str(text), Request()) is None
    assert handlers.on_background_image(str(text), Request()) == SKIP
    assert [kind for kind, _, _ in toasts] == ["warning"] * 3
    later = demo.repeats.time.monotonic() + demo.repeats.REPEAT_WINDOW_S
    monkeypatch.setattr(demo.repeats.time, "monotonic", lambda: later)
    assert handlers.on_image(str(text), None, Request(), Progress()) == (None, None)
    assert len(toasts) == 4
    background = jpeg(tmp_path, "wall.jpg", seed=3)   # a good one: decoded once, the second report kept as is
    assert handlers.on_background_image(background, Request()).shape == (64, 96, 3)
    assert handlers.on_background_image(background, Request()) == SKIP


def test_the_upload_uses_the_controls_it_is_given(handlers, tmp_path, toasts):
    path = jpeg(tmp_path, "hard.jpg", seed=102)
    _, value = handlers.on_image(path, None, Request(), Progress(), threshold=0.5, refine=False,
                                 decontaminate=False, bg_mode=BG_COLOR, bg_color="#00ff00")
    assert value["settings"]["threshold"] == 0.5 and value["soft_key"] == "plain"
    assert set(np.unique(image_of(value["exact"]["alpha"]))) <= {0, 255}
    assert value["exact"]["colour"] is None and value["bg"] is None   # the page paints colours itself
    assert handlers.on_image(jpeg(tmp_path, "bad.jpg", seed=103), None, Request(), Progress(), feather=-1) \
        == (None, None)
    assert "feather" in toasts[0][1]


def test_a_reduced_upload_says_so_and_the_page_gets_a_screen_sized_copy(pipe, store, tmp_path, toasts, monkeypatch):
    monkeypatch.setattr(matting.pipeline, "PREVIEW_SIDE", 40)
    small = Handlers(matting.pipeline.Pipeline(device="cpu", max_side=64), store)
    current, value = small.on_image(jpeg(tmp_path, "wide.jpg", 128, 64, seed=104), None, Request(), Progress())
    assert current.result.size == (64, 32)
    assert (value["w"], value["h"], value["scale"]) == (40, 20, 20 / 32)
    assert image_of(value["photo"]).shape == (20, 40, 3) and image_of(value["soft"]).shape == (20, 40)
    assert value["line"].startswith("128 × 64 → 64 × 32 px")
    [(kind, message, kw)] = toasts
    assert kind == "info" and "128 × 64 was reduced to 64 × 32" in message and "--max-side" in message
    assert kw == {"duration": 8, "title": "Note"}


def test_other_notices_stay_longer_and_follow_the_language(handlers, tmp_path, toasts):
    deep = tmp_path / "deep.png"
    Image.fromarray((np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)).save(deep)
    handlers.on_image(str(deep), None, Request(language="zh-CN"), Progress())
    [(kind, message, kw)] = toasts
    assert kind == "info" and message == "16 位图像已转换为 8 位" and kw == {"duration": 10, "title": "提示"}


# ---------------------------------------------------------------------- exact renders
@pytest.fixture
def shown(handlers, tmp_path):
    """An uploaded photo as the page holds it: (state, live view payload)."""
    return handlers.on_image(jpeg(tmp_path, "shown.jpg", 96, 64, seed=105), None, Request(), Progress())


def user_error(caught, message: str, title: str = "Error") -> None:
    """A gr.Error that is the user's message, with its title and without a traceback in the log."""
    assert caught.value.message.startswith(message), caught.value.message
    assert caught.value.title == title and caught.value.print_exception is False


def ask(handlers, value, request=None, **changes):
    data = {**value["settings"], "image_id": value["id"], "soft_key": value["soft_key"], **changes}
    return handlers.exact_render(data, request)


def test_an_exact_render_follows_the_settings_without_the_network(handlers, shown):
    current, value = shown
    before = network_calls(handlers)
    reply = ask(handlers, value, feather=4.0)
    assert network_calls(handlers) == before
    assert reply["exact"]["settings"]["feather"] == 4.0 and "soft" not in reply and "soft_key" not in reply
    alpha = image_of(reply["exact"]["alpha"])
    assert alpha.shape == (64, 96) and not np.array_equal(alpha, image_of(value["exact"]["alpha"]))
    assert reply["line"].startswith("96 × 64 px · re-rendered from the cached matte (network not run)")
    assert image_of(reply["exact"]["colour"]).shape == (64, 96, 3)   # decontaminated colour for the soft edge
    assert ask(handlers, value, decontaminate=False)["exact"]["colour"] is None
    assert reply["exact"]["strokes_id"] == 0   # no strokes sent

    # a new radius changes the matte the page redraws from: the reply carries it
    reply = ask(handlers, value, refine_radius=3)
    assert reply["soft_key"] == "refine|3" and image_of(reply["soft"]).shape == (64, 96)
    assert not np.array_equal(image_of(reply["soft"]), image_of(value["soft"]))
    reply = ask(handlers, value, refine=False)
    assert reply["soft_key"] == "plain" and reply["soft"] != value["soft"]


def test_an_exact_render_answers_bad_requests_instead_of_raising(handlers, shown):
    _, value = shown
    assert handlers.exact_render(["not", "a", "dict"]) == {"error": "Invalid setting: expected an object of settings"}
    assert handlers.exact_render({"image_id": "no-such-image"}) == {"stale": True}
    assert handlers.exact_render({}) == {"stale": True}
    assert ask(handlers, value, feather=-3)["error"].startswith("Invalid setting: ")
    assert "feather" in ask(handlers, value, feather=-3)["error"]
    assert ask(handlers, value, threshold="abc")["error"].startswith("Invalid setting: ")
    assert ask(handlers, value, strokes="a line")["error"].startswith("Invalid setting: ")


def test_the_timing_line_follows_the_requests_language(handlers, shown):
    _, value = shown
    assert "网络未运行" in ask(handlers, value, Request(language="zh-CN,zh;q=0.9"), feather=2.0)["line"]
    assert "network not run" in ask(handlers, value, Request(language="en-GB"), feather=2.0)["line"]
    forced = Handlers(handlers.pipe, handlers.store, lang="zh")
    assert forced.exact_render("?", Request(language="en"))["error"].startswith("设置无效：")
    assert forced.empty_table(Request(language="en"))["headers"][0] == "文件"


def test_brush_strokes_reach_the_exact_render_and_are_echoed(handlers, shown):
    current, value = shown
    whole = [{"mode": "erase", "radius": 200, "points": [[48, 32]]}]
    reply = ask(handlers, value, strokes=whole, strokes_id=7)
    assert reply["exact"]["strokes_id"] == 7 and current.strokes_id == 7
    assert image_of(reply["exact"]["alpha"]).max() == 0 and current.strokes_hash
    hints = current.hints
    ask(handlers, value, strokes=whole, strokes_id=7)
    assert current.hints is hints   # the same strokes: not drawn again
    keep = [{"mode": "restore", "radius": 200, "points": [[48, 32]]}]
    assert image_of(ask(handlers, value, strokes=keep, strokes_id="8")["exact"]["alpha"]).min() == 255
    assert current.strokes_id == 8
    # no strokes again: the model's matte
    assert np.array_equal(image_of(ask(handlers, value, strokes=[], strokes_id=9)["exact"]["alpha"]),
                          image_of(value["exact"]["alpha"]))


def test_strokes_are_scaled_from_the_preview_to_the_working_size(pipe, store, tmp_path, monkeypatch):
    monkeypatch.setattr(matting.pipeline, "PREVIEW_SIDE", 48)
    small = Handlers(pipe, store)
    current, value = small.on_image(jpeg(tmp_path, "big.jpg", 96, 64, seed=106), None, Request(), Progress())
    assert value["scale"] == 0.5 and image_of(value["exact"]["alpha"]).shape == (32, 48)
    assert image_of(value["soft"]).shape == (32, 48)
    # a dot in the preview's top-left quarter erases the same quarter of the full image
    ask(small, value, strokes=[{"mode": "erase", "radius": 6, "points": [[12, 8]]}], strokes_id=1)
    assert current.hints.shape == (64, 96)
    erased = np.argwhere(current.hints == 0)
    assert erased.size and abs(erased[:, 1].mean() - 24) < 2 and abs(erased[:, 0].mean() - 16) < 2
    assert erased[:, 1].max() - erased[:, 1].min() > 16   # radius 6 at scale 2: 24 px across


# ---------------------------------------------------------------------- refresh and background image
def test_a_background_image_is_decoded_once_and_shown_in_the_refresh(handlers, shown, tmp_path, toasts):
    current, value = shown
    assert handlers.on_background_image(None, Request()) is None
    background = handlers.on_background_image(jpeg(tmp_path, "sky.jpg", 40, 30, seed=107), Request())
    assert background.shape == (30, 40, 3) and background.dtype == np.uint8
    again, refreshed = handlers.on_live_refresh(current, None, Request(), bg_mode=BG_IMAGE, bg_image=background,
                                                feather=2.0)
    assert again is current and refreshed["id"] == value["id"]
    assert image_of(refreshed["bg"]).shape == (64, 96, 3) and refreshed["settings"]["feather"] == 2.0
    assert "re-rendered from the cached matte" in refreshed["line"]
    assert refreshed["photo"] == value["photo"]   # made once per image

    text = tmp_path / "sky.txt"
    text.write_text("not a picture")
    assert handlers.on_background_image(str(text), Request(language="zh")) is None
    assert toasts[0][0] == "warning" and toasts[0][1].startswith("无法使用这张背景图片：")
    assert toasts[0][2] == {"title": "警告"}


def test_a_lost_state_is_rebuilt_from_the_upload(handlers, shown, toasts):
    current, value = shown
    before = network_calls(handlers)
    rebuilt, refreshed = handlers.on_live_refresh(None, current.source, Request())
    assert network_calls(handlers) == before and rebuilt is not current
    assert rebuilt.source == current.source and refreshed["id"] == rebuilt.image_id != value["id"]
    assert handlers.on_live_refresh(None, None, Request()) == (SKIP, SKIP)
    assert handlers.on_live_refresh(current, None, Request(), feather=-1) == (SKIP, SKIP)
    assert toasts[-1][0] == "warning" and "feather" in toasts[-1][1] and toasts[-1][2] == {"title": "Warning"}
    assert handlers.on_live_refresh(None, "/no/such/file.jpg", Request()) == (None, None)   # gone: view cleared
    assert toasts[-1][1].startswith("This photo is no longer kept on the server")
    unreadable = Path(current.source).with_name("unreadable.jpg")
    unreadable.write_text("not an image")
    assert handlers.on_live_refresh(None, str(unreadable), Request()) == (SKIP, SKIP)
    assert toasts[-1][1].startswith("Could not process this image: unreadable.jpg")


# ---------------------------------------------------------------------- downloads
def test_downloads_are_full_resolution_files_of_each_kind(handlers, tmp_path):
    current, _ = handlers.on_image(jpeg(tmp_path, "Cat photo.jpg", 160, 120, seed=108), None, Request(), Progress())
    rgba = handlers.downloader("rgba")(current, None, False, "0", Request(), Progress())
    assert rgba["visible"] is True and Path(rgba["value"]).name == "Cat_photo_cutout.png"
    cutout = read_image(rgba["value"])
    assert cutout.mode == "RGBA" and cutout.size == (160, 120)
    alpha = read_image(handlers.downloader("alpha")(current, None, request=Request(), progress=Progress())["value"])
    assert alpha.mode == "L" and alpha.size == (160, 120)
    assert np.array_equal(np.asarray(alpha), np.asarray(cutout)[..., 3])
    composite = handlers.downloader("composite")(current, None, request=Request(), progress=Progress(),
                                                 bg_mode=BG_COLOR, bg_color="#0000ff")["value"]
    assert composite.endswith("Cat_photo_composite.jpg")
    pixels = np.asarray(read_image(composite))
    assert read_image(composite).mode == "RGB" and pixels.shape == (120, 160, 3)
    assert pixels[0, 0, 2] > 200 and pixels[0, 0, 0] < 60   # the corner is background: blue
    # a transparent background: the composite is the cutout, as a PNG
    plain = handlers.downloader("composite")(current, None, request=Request(), progress=Progress())["value"]
    assert plain.endswith("Cat_photo_composite.png") and read_image(plain).mode == "RGBA"
    assert handlers.downloader("alpha").__name__ == handlers.downloader("alpha").__qualname__ == "download_alpha"


def test_a_download_asked_twice_reuses_its_file(handlers, shown):
    current, _ = shown
    download, progress = handlers.downloader("alpha"), Progress()
    first = download(current, None, request=Request(), progress=progress)["value"]
    assert progress.calls == [(0.1, "Encoding the full-resolution file")]
    again = download(current, None, request=Request(), progress=progress)
    assert again == {"__type__": "update", "value": first, "visible": True} and len(progress.calls) == 1
    other = download(current, None, request=Request(), progress=progress, feather=3.0)["value"]
    assert other != first and not np.array_equal(image_of(other), image_of(first))
    Path(first).unlink()   # pruned from the store: encoded again
    assert download(current, None, request=Request(), progress=progress)["value"] != first


def test_downloads_crop_to_the_subject_with_the_margin(handlers, tmp_path):
    current, _ = handlers.on_image(jpeg(tmp_path, "crop.jpg", 160, 120, seed=109), None, Request(), Progress())
    download = handlers.downloader("alpha")
    full = image_of(download(current, None, False, "30", request=Request(), progress=Progress())["value"])
    assert full.shape == (120, 160)   # not cropping: the margin is not read
    rows, cols = np.nonzero(full >= CROP_MIN_ALPHA)
    tight = image_of(download(current, None, True, "", request=Request(), progress=Progress())["value"])
    assert tight.shape == (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    wider = image_of(download(current, None, True, "4", request=Request(), progress=Progress())["value"])
    assert wider.shape == (tight.shape[0] + 8, tight.shape[1] + 8)
    rgba = read_image(handlers.downloader("rgba")(current, None, True, "4", request=Request(),
                                                  progress=Progress())["value"])
    assert rgba.size == (wider.shape[1], wider.shape[0]) and rgba.mode == "RGBA"
    composite = read_image(handlers.downloader("composite")(current, None, True, "4", request=Request(),
                                                            progress=Progress(), bg_mode=BG_COLOR,
                                                            bg_color="#ffffff")["value"])
    assert composite.size == rgba.size and composite.mode == "RGB"


def test_a_download_without_an_image_or_with_bad_settings_is_the_users_error(handlers, shown):
    current, _ = shown
    with pytest.raises(gr.Error) as caught:
        handlers.downloader("rgba")(None, None, request=Request(language="zh"), progress=Progress())
    assert caught.value.message == "请先上传图片。" and caught.value.title == "错误"
    assert caught.value.print_exception is False
    with pytest.raises(gr.Error) as caught:
        handlers.downloader("rgba")(current, None, True, "ten", request=Request(), progress=Progress())
    assert caught.value.message.startswith("Invalid setting: crop margin") and caught.value.title == "Error"
    with pytest.raises(gr.Error, match="Invalid setting: .*colour"):
        handlers.downloader("composite")(current, None, request=Request(), progress=Progress(), bg_mode=BG_COLOR,
                                         bg_color="not a colour")
    # the colour is read for composites only
    assert handlers.downloader("alpha")(current, None, request=Request(), progress=Progress(), bg_mode=BG_COLOR,
                                        bg_color="not a colour")["visible"]
    with pytest.raises(gr.Error, match="Invalid setting: "):
        handlers.downloader("alpha")(current, None, request=Request(), progress=Progress(), threshold="x")
    # "Image" chosen with no image (none yet, or it was refused): no composite that is the cutout again
    for language, words in (("en", "Upload a background image first (or choose a colour)."),
                            ("zh", "请先上传背景图片（或选择一种颜色）。")):
        with pytest.raises(gr.Error) as caught:
            handlers.downloader("composite")(current, None, request=Request(language=language), progress=Progress(),
                                             bg_mode=BG_IMAGE, bg_image=None)
        assert caught.value.message == words and caught.value.print_exception is False
    wall = np.full((30, 40, 3), 200, np.uint8)
    made = handlers.downloader("composite")(current, None, request=Request(), progress=Progress(),
                                            bg_mode=BG_IMAGE, bg_image=wall)["value"]
    assert made.endswith(".jpg") and read_image(made).mode == "RGB"


def test_a_download_after_the_state_expired_uses_the_upload(handlers, shown):
    current, _ = shown
    path = handlers.downloader("rgba")(None, current.source, request=Request("other"), progress=Progress())["value"]
    assert read_image(path).size == (96, 64) and "/other/" in path


def test_an_upload_gone_from_the_server_asks_for_it_again_without_showing_a_path(handlers, tmp_path, toasts):
    """State lost and the upload's file cleaned away: the live view is cleared (it kept a picture nothing could be
    done with, and warned again at every slider move) and a download says to upload again ("Upload an image
    first" while a photo showed); no server path in either."""
    path = jpeg(tmp_path, "gone.jpg", seed=12)
    handlers.on_image(path, None, Request(), Progress())
    os.remove(path)
    assert handlers.on_live_refresh(None, path, Request()) == (None, None)
    [(kind, message, _)] = toasts
    assert kind == "warning" and message.startswith("This photo is no longer kept on the server")
    with pytest.raises(gr.Error) as caught:
        handlers.downloader("rgba")(None, path, request=Request(language="zh"), progress=Progress())
    user_error(caught, "服务器上已不再保存这张照片", title="错误")
    assert str(tmp_path) not in message + caught.value.message and len(toasts) == 1


def test_crop_margin_parsing():
    assert Handlers.crop_margin(False, "10") is None and Handlers.crop_margin(None, "oops") is None
    assert Handlers.crop_margin(True, "") == CropMargin(0.0) == Handlers.crop_margin(True, None)
    assert Handlers.crop_margin(True, "  ") == CropMargin(0.0)
    assert Handlers.crop_margin(True, "12") == CropMargin(12.0)
    assert Handlers.crop_margin(True, "5%") == CropMargin(5.0, True)
    with pytest.raises(InvalidParameterError):
        Handlers.crop_margin(True, "abc")


# ---------------------------------------------------------------------- /matte
def test_api_matte_returns_full_resolution_rgba_alpha_and_a_report(handlers, tmp_path):
    path = jpeg(tmp_path, "api photo.jpg", 128, 96, seed=110)
    before = network_calls(handlers)
    cutout, alpha, report = handlers.api_matte(path, request=Request("api"))
    assert network_calls(handlers) == before + 1
    assert Path(cutout).name == "api_photo_cutout.png" and Path(alpha).name == "api_photo_alpha.png"
    assert read_image(cutout).mode == "RGBA" and read_image(cutout).size == (128, 96)
    assert read_image(alpha).mode == "L" and np.array_equal(image_of(alpha), image_of(cutout)[..., 3])
    assert report["name"] == "api photo.jpg" and report["size"] == [128, 96] == report["original_size"]
    assert report["was_reduced"] is False and report["notices"] == [] and report["network_ran"] is True
    assert {"decode", "inference"} <= set(report["timings_ms"]) and report["render_ms"]
    assert report["model"] == handlers.pipe.info()
    result = handlers.pipe.matte(path)
    assert np.array_equal(image_of(cutout), handlers.pipe.render(result, EdgeSettings(), preview=False).rgba)
    for settings in (EdgeSettings(threshold=0.5), EdgeSettings(feather=2.0), EdgeSettings(erode=1),
                     EdgeSettings(refine=False), EdgeSettings(decontaminate=False)):
        again = handlers.api_matte(path, settings.threshold, settings.feather, settings.erode, settings.refine,
                                   settings.decontaminate, request=Request("api"))
        assert again[2]["network_ran"] is False
        expected = handlers.pipe.render(result, settings, preview=False).rgba
        assert np.array_equal(image_of(again[0]), expected), settings


def test_api_matte_hint_masks_erase_and_keep(handlers, tmp_path):
    path = jpeg(tmp_path, "hinted.jpg", 128, 96, seed=111)
    mask = np.full((48, 64), 128, np.uint8)
    mask[:, :32] = 0      # erase the left half
    mask[:24, 32:] = 255  # keep the top right quarter
    hint = tmp_path / "hint.png"
    Image.fromarray(mask).save(hint)
    plain = image_of(handlers.api_matte(path)[1])
    hinted = image_of(handlers.api_matte(path, hint=str(hint))[1])
    assert hinted[:, :64].max() == 0 and hinted[:48, 64:].min() == 255
    assert np.array_equal(hinted[48:, 64:], plain[48:, 64:])   # 128: the model's matte


def test_api_matte_errors_are_the_users_messages(handlers, tmp_path):
    with pytest.raises(gr.Error) as caught:
        handlers.api_matte(None)
    assert caught.value.message == "Upload an image first." and caught.value.title == "Error"
    path = jpeg(tmp_path, "ok.jpg", seed=112)
    with pytest.raises(gr.Error) as caught:
        handlers.api_matte(path, feather=-2)
    assert caught.value.message.startswith("Invalid setting: ") and "feather" in caught.value.message
    assert caught.value.print_exception is False
    with pytest.raises(gr.Error, match="Invalid setting: "):
        handlers.api_matte(path, threshold="high")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 50)
    with pytest.raises(gr.Error) as caught:
        handlers.api_matte(str(text), request=Request(language="zh-CN"))
    assert caught.value.message.startswith("无法处理这张图片：不是支持的图片格式") and caught.value.title == "错误"
    with pytest.raises(gr.Error) as caught:
        handlers.api_matte(path, hint=str(text))
    assert caught.value.message.startswith("Could not use this hint mask: notes.txt")   # not "this image"


# ---------------------------------------------------------------------- batches
def zip_names(path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return sorted(archive.namelist())


def photos(tmp_path, count, seed=0, width=64, height=48) -> list[str]:
    return [jpeg(tmp_path, f"p{i:02d}.jpg", width, height, seed=seed + i) for i in range(count)]


def test_api_batch_zips_every_image_and_a_corrupt_file_fails_alone(handlers, tmp_path):
    good = photos(tmp_path, 3, seed=200)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(Path(good[0]).read_bytes()[:300])
    archive, report = handlers.api_batch([good[0], str(bad), good[1], good[2]], True, request=Request("b1"))
    assert zip_names(archive) == ["p00.png", "p00_alpha.png", "p01.png", "p01_alpha.png", "p02.png",
                                  "p02_alpha.png"]
    assert (report["done"], report["failed"], report["skipped"], report["cancelled"]) == (3, 1, 0, False)
    by_name = {r["name"]: r for r in report["results"]}
    assert by_name["broken.jpg"]["status"] == "failed" and by_name["broken.jpg"]["error"]
    assert by_name["broken.jpg"]["outputs"] == [] and by_name["broken.jpg"]["size"] is None
    assert by_name["p01.jpg"] == {**by_name["p01.jpg"], "status": "done", "error": None, "size": [64, 48],
                                  "outputs": ["p01.png", "p01_alpha.png"]}
    assert report["seconds"] > 0 and [r["name"] for r in report["results"]][:2] == ["p00.jpg", "broken.jpg"]
    assert len(list((handlers.store.root / "b1").rglob("p0*.png"))) == 6   # adopted by the store, none pruned
    with zipfile.ZipFile(archive) as zipped:
        cutout = Image.open(io.BytesIO(zipped.read("p02.png")))
        assert cutout.mode == "RGBA" and cutout.size == (64, 48)
    assert zip_names(handlers.api_batch(good[:1], request=Request("b1"))[0]) == ["p00.png"]


def test_api_batch_settings_reach_every_image_and_the_session_keeps_its_last_zips(handlers, tmp_path):
    files = photos(tmp_path, 1, seed=210)
    result = handlers.pipe.matte(files[0])
    archives = []
    for settings in (EdgeSettings(), EdgeSettings(threshold=0.5), EdgeSettings(feather=2.0), EdgeSettings(erode=1),
                     EdgeSettings(refine=False), EdgeSettings(decontaminate=False)):
        options = {} if settings == EdgeSettings() else dict(
            threshold=settings.threshold, feather=settings.feather, erode=settings.erode, refine=settings.refine,
            decontaminate=settings.decontaminate)
        archive, _ = handlers.api_batch(files, request=Request("b2"), **options)
        with zipfile.ZipFile(archive) as zipped:
            cutout = np.asarray(Image.open(io.BytesIO(zipped.read("p00.png"))))
        assert np.array_equal(cutout, handlers.pipe.render(result, settings, preview=False).rgba), settings
        archives.append(archive)
    assert {Path(a).name for a in archives} == {"matting-results.zip"}
    assert [Path(a).exists() for a in archives] == [False, False, True, True, True, True]   # 4 per session


def test_api_batch_refusals(handlers, tmp_path):
    with pytest.raises(gr.Error) as caught:
        handlers.api_batch([])
    assert caught.value.message == "Add some images or .zip archives first." and caught.value.title == "Error"
    assert caught.value.print_exception is False
    few = Handlers(handlers.pipe, handlers.store, max_batch_files=2)
    with pytest.raises(gr.Error) as caught:
        few.api_batch(["a.jpg", "b.jpg", "c.jpg"])
    assert caught.value.message == "Too many files: 3 (at most 2 per batch)."
    assert caught.value.title == "Error" and caught.value.print_exception is False
    with pytest.raises(gr.Error, match="Invalid setting: .*feather"):
        handlers.api_batch(photos(tmp_path, 1, seed=220), feather=-1)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 nothing")
    archive, report = handlers.api_batch([str(bad)], request=Request("b3"))
    assert zip_names(archive) == [] and report["failed"] == 1   # an empty zip still comes with the report


def test_batch_files_may_come_as_objects_with_a_name(handlers, tmp_path):
    class Upload:
        def __init__(self, name):
            self.name = name

    archive, report = handlers.api_batch([Upload(p) for p in photos(tmp_path, 2, seed=230)], request=Request("b4"))
    assert zip_names(archive) == ["p00.png", "p01.png"] and report["done"] == 2


def run_ui_batch(handlers, files, kinds=(), request=None, **options):
    """Every (table, gallery, zip, status) the page's batch yields."""
    return list(handlers.on_batch(files, list(kinds), request=request or Request("ui"), progress=Progress(),
                                  **options))


def test_the_pages_batch_shows_a_table_a_gallery_a_zip_and_a_summary(handlers, tmp_path):
    good = photos(tmp_path, 2, seed=240)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    progress = Progress()
    updates = list(handlers.on_batch([good[0], str(bad), good[1]], ["alpha"], request=Request("ui"),
                                     progress=progress))
    table, gallery, archive, status = updates[-1]
    assert table["headers"] == ["File", "Size", "Time (ms)", "Status / error"]
    assert [row[0] for row in table["data"]] == ["p00.jpg", "broken.jpg", "p01.jpg"]
    assert table["data"][0][1] == "64 × 48" and table["data"][0][3] == "done" and table["data"][1][1] == ""
    assert table["data"][1][3].startswith("failed: ") and isinstance(table["data"][0][2], int)
    assert table["data"][0][2] > 0   # milliseconds spent on the image
    assert gallery["visible"] and [name for _, name in gallery["value"]] == ["p00.jpg", "p01.jpg"]
    assert Path(gallery["value"][0][0]).name == "p00.png"
    assert archive["visible"] and zip_names(archive["value"]) == ["p00.png", "p00_alpha.png", "p01.png",
                                                                  "p01_alpha.png"]
    assert status.startswith("2 done, 1 failed, 0 skipped in ") and status.endswith(" images/s).")
    assert progress.calls == [(0, "Image 0 of 3")] + [((i, 3), f"Image {i} of 3") for i in (1, 2, 3)]
    with zipfile.ZipFile(archive["value"]) as zipped:   # not cropped unless asked
        assert Image.open(io.BytesIO(zipped.read("p01.png"))).size == (64, 48)
    # the first image is shown at once; the rows come in the files' order
    first_table, first_gallery, first_zip, first_status = updates[0]
    assert len(first_table["data"]) == 1 and first_zip == {"__type__": "update", "value": None, "visible": False}
    assert first_status == "" and len(updates) >= 2
    # the outputs count against the store's budget
    assert Path(gallery["value"][0][0]) in handlers.store._files


def test_the_pages_batch_composites_only_onto_a_background(handlers, tmp_path):
    files = photos(tmp_path, 1, seed=250)
    assert zip_names(run_ui_batch(handlers, files, ["composite"])[-1][2]["value"]) == ["p00.png"]
    archive = run_ui_batch(handlers, files, ["composite"], bg_mode=BG_COLOR, bg_color="#ff0000")[-1][2]["value"]
    assert zip_names(archive) == ["p00.png", "p00_composite.jpg"]
    with zipfile.ZipFile(archive) as zipped:
        corner = np.asarray(Image.open(io.BytesIO(zipped.read("p00_composite.jpg"))))[0, 0]
    assert corner[0] > 200 and corner[2] < 60


def test_the_pages_batch_crops_and_reports_bad_settings(handlers, tmp_path):
    files = photos(tmp_path, 1, seed=260, width=160, height=120)
    archive = run_ui_batch(handlers, files, crop=True, crop_margin="2")[-1][2]["value"]
    with zipfile.ZipFile(archive) as zipped:
        width, height = Image.open(io.BytesIO(zipped.read("p00.png"))).size
    assert width < 160 and height < 120
    tight = run_ui_batch(handlers, files, crop=True)[-1][2]["value"]   # the margin box left as it was: "0"
    with zipfile.ZipFile(tight) as zipped:
        assert Image.open(io.BytesIO(zipped.read("p00.png"))).size == (width - 4, height - 4)
    with pytest.raises(gr.Error) as caught:
        run_ui_batch(handlers, files, crop=True, crop_margin="wide")
    assert caught.value.message.startswith("Invalid setting: crop margin")
    assert caught.value.title == "Error" and caught.value.print_exception is False
    with pytest.raises(gr.Error, match="Invalid setting: "):
        run_ui_batch(handlers, files, feather=-1)
    with pytest.raises(gr.Error, match="Too many files: 2 \\(at most 1 per batch\\)"):
        run_ui_batch(Handlers(handlers.pipe, handlers.store, max_batch_files=1), files * 2)


def test_a_batch_where_nothing_came_out_says_so(handlers, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    table, gallery, archive, status = run_ui_batch(handlers, [str(bad)], request=Request(language="zh"))[-1]
    assert status == "没有图片处理成功；请查看表格中每个文件的错误。"
    assert table["headers"][0] == "文件" and table["data"][0][3].startswith("失败：")
    assert archive == {"__type__": "update", "value": None, "visible": False}
    assert gallery == {"__type__": "update", "value": [], "visible": False}


def test_the_gallery_is_capped_but_the_zip_holds_every_image(handlers, tmp_path, monkeypatch):
    monkeypatch.setattr("demo.handlers.GALLERY_LIMIT", 2)
    monkeypatch.setattr(demo.handlers, "time", Clock())   # every image is sent at once
    files = photos(tmp_path, 3, seed=270, width=32, height=24)
    updates = run_ui_batch(handlers, files)
    assert [len(gallery["value"]) for _, gallery, _, _ in updates] == [1, 2, 2, 2]
    assert len(updates[-1][1]["value"]) == 2 and len(zip_names(updates[-1][2]["value"])) == 3


def test_cancel_stops_the_pages_batch(handlers, tmp_path):
    files = photos(tmp_path, 40, seed=300, width=32, height=24)
    request = Request("cancelling")
    assert handlers.on_cancel(request) == SKIP   # nothing running
    run = handlers.on_batch(files, [], request=request, progress=Progress())
    next(run)
    [worker] = [thread for thread in threading.enumerate() if thread.name == "batch-cancelli"]
    assert worker.daemon   # never holds up the server's exit
    assert handlers.on_cancel(request) == "Stopping the batch after the images in flight…"
    table, _, archive, status = list(run)[-1]
    done = sum(row[3] == "done" for row in table["data"])
    assert status == f"Cancelled: {done} file(s) finished before the stop; the zip holds those."
    assert 1 <= done < 40 and len(zip_names(archive["value"])) == done
    assert "cancelling" not in handlers._cancels
    worker.join(timeout=30)
    assert not worker.is_alive()


def test_a_new_batch_stops_the_sessions_previous_one(handlers, tmp_path):
    request = Request("twice")
    first = handlers.on_batch(photos(tmp_path, 40, seed=400, width=32, height=24), [], request=request,
                              progress=Progress())
    next(first)
    (tmp_path / "second").mkdir()
    second = run_ui_batch(handlers, photos(tmp_path / "second", 1, seed=450), request=request)
    assert second[-1][3].startswith("1 done")
    assert list(first)[-1][3].startswith("Cancelled: ")


def test_closing_the_page_stops_its_batch_and_drops_its_files(handlers, tmp_path):
    request = Request("leaving")
    run = handlers.on_batch(photos(tmp_path, 40, seed=500, width=32, height=24), [], request=request,
                            progress=Progress())
    next(run)
    folder = handlers.store.root / "leaving"
    assert folder.is_dir()
    handlers.on_unload(request)
    assert not folder.exists() and "leaving" not in handlers._cancels
    _, _, archive, status = list(run)[-1]
    assert status.startswith("Cancelled: ") and archive["value"] is None
    assert not folder.exists()   # no zip of the dropped files brings the folder back
    handlers.on_unload(Request("never-seen"))   # nothing to stop


def test_an_engine_failure_in_a_batch_is_the_users_error(handlers, tmp_path, monkeypatch, caplog):
    import matting.batch

    def broken(*args, **kwargs):
        raise MemoryError("no room")

    monkeypatch.setattr(matting.batch, "run_batch", broken)
    with pytest.raises(gr.Error) as caught:
        handlers.api_batch(photos(tmp_path, 1, seed=600), request=Request("broken"))
    assert caught.value.message == "Could not process this image: no room" and caught.value.title == "Error"
    assert caught.value.print_exception is False
    assert [r.getMessage() for r in caplog.records if r.exc_info] == ["batch failed"]   # with its traceback
    assert "broken" not in handlers._cancels


def test_a_batch_left_early_stops_its_worker(handlers, tmp_path):
    request = Request("abandoned")
    run = handlers.on_batch(photos(tmp_path, 40, seed=700, width=32, height=24), [], request=request,
                            progress=Progress())
    next(run)
    cancel = handlers._cancels["abandoned"]
    run.close()
    assert cancel.is_set() and "abandoned" not in handlers._cancels


# ---------------------------------------------------------------------- page life cycle
def test_a_page_load_gets_the_model_line_and_an_empty_table(handlers):
    line, table = handlers.on_load(Request())
    info = handlers.pipe.info()
    assert line.startswith(f"Model **{info['model']}** · device **{info['device']}** · "
                           f"precision **{info['precision']}** · ")
    assert f"up to {info['max_side']} px · loaded in {info['load_ms']} ms" in line
    assert table == {"headers": ["File", "Size", "Time (ms)", "Status / error"], "data": []}
    assert handlers.on_load(Request(language="zh-CN"))[0].startswith("模型 **")
    assert handlers.empty_table() == table
    assert handlers.empty_table(Request(language="zh"))["headers"] == ["文件", "尺寸", "用时（毫秒）", "状态 / 错误"]


def test_without_a_request_the_session_is_anonymous(handlers, tmp_path):
    current, _ = handlers.on_image(jpeg(tmp_path, "nobody.jpg", seed=120))
    assert current.session == "anonymous"
    cutout, _, _ = handlers.api_matte(current.source)
    assert Path(cutout).parent.parent == handlers.store.root / "anonymous"


def test_a_batch_takes_up_to_500_files_by_default(handlers):
    assert len(handlers._batch_inputs(Texts("en"), ["x.jpg"] * 500)) == 500
    with pytest.raises(gr.Error, match=r"Too many files: 501 \(at most 500 per batch\)\."):
        handlers.api_batch(["x.jpg"] * 501)


def test_the_pages_images_are_jpegs_of_their_quality_with_full_colour(handlers, shown, tmp_path):
    current, value = shown
    background = handlers.on_background_image(jpeg(tmp_path, "bg.jpg", 40, 30, seed=121), Request())
    _, refreshed = handlers.on_live_refresh(current, None, Request(), bg_mode=BG_IMAGE, bg_image=background)
    assert jpeg_quality_of(value["photo"]) == (libjpeg_tables(95), 0)
    assert jpeg_quality_of(value["exact"]["colour"]) == (libjpeg_tables(90), 0)
    assert jpeg_quality_of(refreshed["bg"])[0] == libjpeg_tables(92)


def test_the_photo_and_soft_matte_are_made_once_per_image(handlers, shown, monkeypatch):
    current, value = shown
    made = []
    for name in ("photo", "soft_alpha", "background_preview"):
        original = getattr(handlers.pipe, name)
        monkeypatch.setattr(handlers.pipe, name, lambda *a, _f=original, _n=name, **kw: made.append(_n) or _f(*a, **kw))
    background = np.zeros((30, 40, 3), np.uint8)
    for _ in range(2):
        _, again = handlers.on_live_refresh(current, None, Request(), bg_mode=BG_IMAGE, bg_image=background)
        assert again["photo"] == value["photo"] and again["soft"] == value["soft"]
    assert made == ["background_preview"]   # the photo and soft matte came with the upload
    handlers.on_live_refresh(current, None, Request(), bg_mode=BG_IMAGE, bg_image=background.copy())
    assert made == ["background_preview"] * 2   # another image: another copy
    ask(handlers, value, refine_radius=5)
    assert made[-1] == "soft_alpha" and ("soft", "refine|5") in current.page
    _, again = handlers.on_live_refresh(current, None, Request(), refine_radius=5)
    assert made.count("soft_alpha") == 1 and again["soft_key"] == "refine|5"


def test_downloads_reuse_a_file_per_background(handlers, shown):
    current, _ = shown
    composite = handlers.downloader("composite")

    def ask_for(**background):
        return composite(current, None, request=Request(), progress=Progress(), **background)["value"]

    red = ask_for(bg_mode=BG_COLOR, bg_color="#ff0000")
    assert ask_for(bg_mode=BG_COLOR, bg_color="#ff0000") == red != ask_for(bg_mode=BG_COLOR, bg_color="#00ff00")
    picture = np.full((30, 40, 3), 200, np.uint8)
    first = ask_for(bg_mode=BG_IMAGE, bg_image=picture)
    assert ask_for(bg_mode=BG_IMAGE, bg_image=picture) == first != ask_for(bg_mode=BG_IMAGE, bg_image=picture.copy())
    assert ask_for() == ask_for() != red


class Clock:
    """time.perf_counter for demo.handlers: each reading a second after the last."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 1.0
        return self.now


def numbers(line: str) -> dict:
    """The timing line's figures by the word before them: {"decode": 3, "render": 12, ...}."""
    import re

    return {word: int(value) for word, value in re.findall(r"(\w+) (\d+) ms", line)}


def test_the_timing_lines_figures(handlers, tmp_path, monkeypatch):
    monkeypatch.setattr(demo.handlers, "time", Clock())
    path = jpeg(tmp_path, "timed.jpg", seed=122)
    current, value = handlers.on_image(path, None, Request(), Progress())
    timings = current.result.timings
    figures = numbers(value["line"])
    assert figures["decode"] == round(timings["decode"] + timings.get("hash", 0) + timings.get("upload", 0))
    assert figures["network"] == round(timings["preprocess"] + timings["inference"])
    # readings: upload start, live view start, render start, render end (encode start), encode end, live view
    # end, upload end
    assert figures["total"] == 6000 and figures["render"] == 1000 and figures["encode"] == 3000
    assert value["server_ms"] == 6000   # the same total, as a number for load tests
    reply = ask(handlers, value, feather=1.0)
    # readings: start, slot taken, render start, render end (encode start), encode end, soft start, soft end, end
    assert [numbers(reply["line"])[k] for k in ("render", "encode", "total")] == [1000, 1000, 7000]
    assert reply["server_ms"] == 7000
    parts = reply["server_parts"]   # the render's own waits come from the pipeline's (real) clock
    assert (parts["slot_wait"], parts["encode"], parts["soft"]) == (1000, 1000, 1000)
    assert {"turn_wait", "in_turn", "gpu_wait"} <= set(parts) and all(parts[k] >= 0 for k in parts)
    assert set(numbers(reply["line"])) == {"render", "encode", "total"}
    _, again = handlers.on_image(path, None, Request(), Progress())
    assert numbers(again["line"])["decode"] >= 0 and "cached" in again["line"]
    _, refreshed = handlers.on_live_refresh(current, None, Request())
    assert numbers(refreshed["line"])["total"] == 6000
    assert set(numbers(refreshed["line"])) == {"render", "encode", "total"}


def test_a_zips_folders_are_kept_in_the_results_zip(handlers, tmp_path):
    bundle = tmp_path / "photos.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(jpeg(tmp_path, "a.jpg", seed=130), "cups/a.jpg")
    archive, report = handlers.api_batch([str(bundle)], request=Request("zip"))
    assert zip_names(archive) == ["cups/a.png"] and report["results"][0]["outputs"] == ["cups/a.png"]
    assert report["results"][0]["name"] == "cups/a.jpg"
    ms = report["results"][0]["ms"]
    assert isinstance(ms, float) and ms > 1 and ms == round(ms, 1) and report["seconds"] == round(report["seconds"], 3)


class FrozenClock:
    """Always 0.3 s after the start: the first image is sent, the others wait for the end."""

    def perf_counter(self):
        return 0.3


@pytest.mark.parametrize("clock, updates", [(FrozenClock, 2), (Clock, 4)])
def test_the_table_is_sent_again_at_most_every_few_tenths_of_a_second(handlers, tmp_path, monkeypatch, clock,
                                                                       updates):
    monkeypatch.setattr(demo.handlers, "time", clock())
    sent = list(handlers.on_batch(photos(tmp_path, 3, seed=140, width=32, height=24), ["alpha"],
                                  request=Request("t"), progress=Progress()))
    assert len(sent) == updates and len(sent[-1][0]["data"]) == 3
    assert [len(table["data"]) for table, *_ in sent[:-1]] == list(range(1, updates))
    for table, gallery, archive, status in sent[:-1]:
        assert [row[0] for row in table["data"]] == sorted(row[0] for row in table["data"])
        # the gallery in the order images finished, the table in the files' order
        assert sorted(Path(path).name for path, _ in gallery["value"]) == [row[0][:3] + ".png" for row in table["data"]]
        assert archive == {"__type__": "update", "value": None, "visible": False} and status == ""


def test_a_large_batchs_table_is_sent_less_often_as_it_grows(handlers, tmp_path, monkeypatch):
    """Each send is the whole table: past a few rows it waits a time that grows with the table (here 4 rows a
    second, a second between images), so the bytes sent over a batch grow with its size, not with its square
    (20,000 images at 50 a second sent 1,284 tables, 499 MB)."""
    monkeypatch.setattr(demo.handlers, "time", Clock())
    monkeypatch.setattr(demo.handlers, "BATCH_UI_ROWS_PER_S", 4)
    sent = list(handlers.on_batch(photos(tmp_path, 24, seed=150, width=32, height=24), [], request=Request("big"),
                                  progress=Progress()))
    sizes = [len(table["data"]) for table, *_ in sent]
    assert sizes[-1] == 24 and sizes[:4] == [1, 2, 3, 4]
    assert len(sizes) <= 12 and sizes == sorted(set(sizes)), sizes


def test_brush_strokes_go_into_the_downloads(handlers, shown):
    current, value = shown
    download = handlers.downloader("alpha")
    before = download(current, None, request=Request(), progress=Progress())["value"]
    ask(handlers, value, strokes=[{"mode": "erase", "radius": 200, "points": [[48, 32]]}], strokes_id=1)
    erased = download(current, None, request=Request(), progress=Progress())["value"]
    assert erased != before and image_of(erased).max() == 0
    ask(handlers, value, strokes=[], strokes_id=2)
    assert np.array_equal(image_of(download(current, None, request=Request(), progress=Progress())["value"]),
                          image_of(before))


def test_an_uploads_own_transparency_is_sent_once_beside_the_soft_matte(handlers, tmp_path, monkeypatch):
    pixels = np.zeros((48, 64, 4), np.uint8)
    pixels[..., :3] = np.asarray(read_image(jpeg(tmp_path, "base.jpg", 64, 48, seed=150)))
    pixels[:, 32:, 3] = 255   # the right half is opaque
    path = tmp_path / "half.png"
    Image.fromarray(pixels).save(path)
    current, value = handlers.on_image(str(path), None, Request(), Progress())
    assert np.array_equal(image_of(value["own"]), pixels[..., 3])
    assert image_of(value["exact"]["alpha"])[:, :32].max() == 0   # the upload's transparency is kept
    made = []
    original = handlers.pipe.soft_alpha
    monkeypatch.setattr(handlers.pipe, "soft_alpha", lambda *a, **kw: made.append(1) or original(*a, **kw))
    _, again = handlers.on_live_refresh(current, None, Request())
    assert made == [] and again["own"] == value["own"] and again["soft"] == value["soft"]
    reply = ask(handlers, value, refine_radius=2)
    assert made == [1] and reply["soft_key"] == "refine|2"
    _, again = handlers.on_live_refresh(current, None, Request(), refine_radius=3)   # a new soft matte, the same own
    assert made == [1, 1] and again["own"] == value["own"]


def test_downloads_and_the_api_are_full_resolution_when_the_page_is_not(pipe, store, tmp_path, monkeypatch):
    monkeypatch.setattr(matting.pipeline, "PREVIEW_SIDE", 48)
    small = Handlers(pipe, store)
    current, value = small.on_image(jpeg(tmp_path, "full.jpg", 96, 64, seed=160), None, Request(), Progress())
    assert (value["w"], value["h"]) == (48, 32)
    for kind in ("rgba", "alpha", "composite"):
        path = small.downloader(kind)(current, None, request=Request(), progress=Progress())["value"]
        assert read_image(path).size == (96, 64), kind
    assert read_image(small.api_matte(current.source)[0]).size == (96, 64)


def test_the_store_keeps_a_sessions_last_four_files_of_each_kind(handlers, tmp_path):
    current, _ = handlers.on_image(jpeg(tmp_path, "many.jpg", seed=161), None, Request("four"), Progress())
    download = handlers.downloader("alpha")
    paths = [download(current, None, request=Request("four"), progress=Progress(), feather=f)["value"]
             for f in (1.0, 2.0, 3.0, 4.0, 5.0)]
    assert [Path(p).exists() for p in paths] == [False, True, True, True, True]
    assert all(Path(p).parent.parent == handlers.store.root / "four" for p in paths)
    again = download(current, None, request=Request("four"), progress=Progress(), feather=1.0)["value"]
    assert again not in paths and Path(again).exists()   # encoded again
    outputs = [handlers.api_matte(current.source, feather=f, request=Request("four")) for f in (1.0, 2, 3, 4, 5)]
    for cutout, alpha, _ in outputs:
        assert Path(cutout).parent.parent == Path(alpha).parent.parent == handlers.store.root / "four"
    assert [Path(c).exists() for c, _, _ in outputs] == [Path(a).exists() for _, a, _ in outputs] \
        == [False, True, True, True, True]


def test_users_errors_come_in_the_users_language_without_a_traceback(handlers, shown, tmp_path, monkeypatch):
    current, _ = shown
    chinese = Request("zh", language="zh-CN")
    with pytest.raises(gr.Error) as caught:
        handlers.downloader("alpha")(current, None, request=chinese, progress=Progress(), feather=-1)
    user_error(caught, "设置无效：", "错误")
    with pytest.raises(gr.Error) as caught:
        handlers.api_batch([], request=chinese)
    user_error(caught, "请先添加图片或 .zip 压缩包。", "错误")
    with pytest.raises(gr.Error) as caught:
        Handlers(handlers.pipe, handlers.store, max_batch_files=1).api_batch(["a", "b"], request=chinese)
    user_error(caught, "文件太多：2 个（每批最多 1 个）。", "错误")
    with pytest.raises(gr.Error) as caught:
        handlers.api_batch(["a"], feather=-1, request=chinese)
    user_error(caught, "设置无效：", "错误")
    with pytest.raises(gr.Error) as caught:
        run_ui_batch(handlers, ["a"], request=chinese, feather=-1)
    user_error(caught, "设置无效：", "错误")
    with pytest.raises(gr.Error) as caught:
        handlers.api_matte(None, request=chinese)
    user_error(caught, "请先上传图片。", "错误")
    with pytest.raises(gr.Error) as caught:
        handlers.api_matte(current.source, feather=-1, request=chinese)
    user_error(caught, "设置无效：", "错误")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 50)
    with pytest.raises(gr.Error) as caught:
        handlers.api_matte(str(text))
    user_error(caught, "Could not process this image: notes.txt")
    import matting.batch

    def broken(*args, **kwargs):
        raise MemoryError("no room")

    monkeypatch.setattr(matting.batch, "run_batch", broken)
    with pytest.raises(gr.Error) as caught:
        run_ui_batch(handlers, [current.source], request=chinese)
    user_error(caught, "无法处理这张图片：no room", "错误")


def test_a_refresh_keeps_the_held_state_and_a_rebuilt_one_belongs_to_the_visitor(handlers, shown, toasts):
    current, value = shown
    before = network_calls(handlers)
    same, refreshed = handlers.on_live_refresh(current, current.source, Request())
    assert same is current and refreshed["id"] == value["id"] and network_calls(handlers) == before
    assert "restored" not in refreshed and handlers.exact_render({"image_id": value["id"], "probe": True}) == \
        {"held": True}
    # a rebuilt state says so: the page keeps its strokes and sends them again
    assert handlers.on_live_refresh(None, current.source, Request())[1]["restored"] is True
    assert handlers.exact_render({"image_id": "gone", "probe": True}) == {"stale": True}
    assert refreshed["line"].startswith("96 × 64 px · re-rendered") and "render " in refreshed["line"]
    rebuilt, again = handlers.on_live_refresh(None, current.source, Request("someone", language="zh"))
    assert rebuilt.session == "someone" and again["line"].startswith("96 × 64 像素 · 由缓存的蒙版重新渲染")
    assert handlers.on_live_refresh(None, "/no/such/photo.jpg", Request(language="zh")) == (None, None)
    kind, message, kw = toasts[-1]
    assert message.startswith("服务器上已不再保存这张照片") and kw == {"duration": 15, "title": "警告"}


def test_a_bad_background_image_names_the_file_and_the_reason(handlers, tmp_path, toasts):
    text = tmp_path / "wall.png"
    text.write_text("not a picture at all")
    assert handlers.on_background_image(str(text), Request()) is None
    assert toasts[0][1].startswith("Could not use this background image: wall.png") and "None" not in toasts[0][1]
    assert toasts[0][2] == {"title": "Warning"}


def test_an_upload_shows_an_image_background_at_once(handlers, tmp_path):
    background = np.full((30, 40, 3), (10, 200, 30), np.uint8)
    _, value = handlers.on_image(jpeg(tmp_path, "front.jpg", seed=162), None, Request(), Progress(),
                                 bg_mode=BG_IMAGE, bg_image=background)
    assert image_of(value["bg"]).shape == (64, 96, 3) and abs(int(image_of(value["bg"])[5, 5, 1]) - 200) < 8


def test_a_download_with_crop_and_no_margin_text_crops_tight(handlers, tmp_path):
    current, _ = handlers.on_image(jpeg(tmp_path, "tight.jpg", 160, 120, seed=163), None, Request(), Progress())
    download = handlers.downloader("alpha")
    tight = image_of(download(current, None, True, request=Request(), progress=Progress())["value"])
    assert tight.shape == image_of(download(current, None, True, "0", request=Request(),
                                            progress=Progress())["value"]).shape
    assert tight.shape[0] < 120


def test_batches_run_on_the_apps_pipeline_with_its_settings_in_the_sessions_folder(handlers, tmp_path):
    files = photos(tmp_path, 1, seed=170)
    before = network_calls(handlers)
    table, _, archive, _ = run_ui_batch(handlers, files, request=Request("mine"), threshold=0.5)[-1]
    assert network_calls(handlers) == before + 1   # not a second pipeline of its own
    assert Path(archive["value"]).parent.parent == handlers.store.root / "mine"
    with zipfile.ZipFile(archive["value"]) as zipped:
        alpha = np.asarray(Image.open(io.BytesIO(zipped.read("p00.png"))))[..., 3]
    assert set(np.unique(alpha)) <= {0, 255}
    archive, report = handlers.api_batch(files, request=Request("mine"))
    assert Path(archive).parent.parent == handlers.store.root / "mine"
    assert isinstance(report["seconds"], float) and report["seconds"] == round(report["seconds"], 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 nothing")
    empty, _ = handlers.api_batch([str(bad)], request=Request("mine"))
    assert Path(empty).name == "matting-results.zip" and Path(empty).parent.parent == handlers.store.root / "mine"


def test_the_api_reports_timings_to_a_tenth_of_a_millisecond(handlers, tmp_path):
    _, _, report = handlers.api_matte(jpeg(tmp_path, "tenths.jpg", seed=171))
    values = list(report["timings_ms"].values()) + list(report["render_ms"].values())
    assert all(isinstance(v, float) and v == round(v, 1) for v in values)
    assert len(set(values)) > 2


def test_cancel_answers_in_the_visitors_language(handlers, tmp_path):
    request = Request("annuler", language="zh")
    run = handlers.on_batch(photos(tmp_path, 40, seed=800, width=32, height=24), [], request=request,
                            progress=Progress())
    next(run)
    assert handlers.on_cancel(request) == "正在停止批处理（等待进行中的图片完成）…"
    assert list(run)[-1][3].startswith("已取消：")


def test_a_failed_batch_row_gives_the_kind_in_chinese_and_the_details(handlers, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    table = run_ui_batch(handlers, [str(bad)], request=Request(language="zh"))[-1][0]
    status = table["data"][0][3]
    assert status == "失败：图片文件已损坏或不完整（corrupt or truncated PNG: the file header is damaged or incomplete）"


def test_the_upload_lines_stages_add_up(handlers, tmp_path, monkeypatch):
    matte = handlers.pipe.matte

    def timed(*args, **kwargs):
        result = matte(*args, **kwargs)
        result.timings = {"decode": 10.0, "hash": 20.0, "upload": 40.0, "preprocess": 100.0, "inference": 200.0}
        return result

    monkeypatch.setattr(handlers.pipe, "matte", timed)
    _, value = handlers.on_image(jpeg(tmp_path, "stages.jpg", seed=172), None, Request(), Progress())
    assert (numbers(value["line"])["decode"], numbers(value["line"])["network"]) == (70, 300)


def test_the_encode_figure_is_zero_when_no_time_passes_beyond_the_render(handlers, tmp_path, monkeypatch):
    """The encode figure is the wall time beyond the render, never below 0 ms and not rounded up to 1."""
    monkeypatch.setattr(demo.handlers, "time", FrozenClock())
    _, value = handlers.on_image(jpeg(tmp_path, "frozen.jpg", seed=131), None, Request(), Progress())
    assert (numbers(value["line"])["encode"], numbers(value["line"])["total"]) == (0, 0)


def test_a_batchs_zip_outlives_its_own_outputs_when_the_store_is_full(pipe, tmp_path):
    """Past the byte budget the store drops other files first, but not what the session shows now: its zip. The
    outputs are counted as the session's, so the zip the user is about to download is never the one dropped."""
    store = OutputStore(tmp_path / "store", max_bytes=1)
    try:
        archive, report = Handlers(pipe, store).api_batch(photos(tmp_path, 3, seed=210), request=Request("full"))
        assert report["done"] == 3 and Path(archive).is_file()
        assert zip_names(archive) == ["p00.png", "p01.png", "p02.png"]
    finally:
        store.close()


def test_a_batch_larger_than_the_stores_budget_keeps_what_its_page_shows(pipe, tmp_path):
    """A batch whose outputs pass the store's byte budget: the budget takes the batch's other outputs (they are
    in the zip), never the gallery's images or the zip (before, the batch's first outputs, the gallery's, went
    first and the page showed broken images)."""
    store = OutputStore(tmp_path / "store", max_bytes=1)
    try:
        updates = run_ui_batch(Handlers(pipe, store), photos(tmp_path, 4, seed=250), ["alpha"],
                               request=Request("big"))
        _, gallery, archive, _ = updates[-1]
        shown = [path for path, _ in gallery["value"]]
        assert len(shown) == 4 and all(Path(path).is_file() for path in shown)
        assert zip_names(archive["value"]) == ["p00.png", "p00_alpha.png", "p01.png", "p01_alpha.png", "p02.png",
                                               "p02_alpha.png", "p03.png", "p03_alpha.png"]
        assert not any(Path(path).with_name(Path(path).stem + "_alpha.png").exists() for path in shown[:3])
    finally:
        store.close()


def test_adopting_many_files_counts_each_once_and_keeps_what_is_asked(tmp_path):
    store = OutputStore(tmp_path / "store", max_bytes=250)
    try:
        files = []
        for i in range(5):
            path = store.new_dir("s", f"f{i}") / "x.bin"
            path.write_bytes(b"x" * 100)
            files.append(path)
        store.adopt_all("s", files, keep=[files[0]])
        assert [f.exists() for f in files] == [True, False, False, False, True]   # oldest first, the kept kept
        assert store.bytes_used == 200
        store.adopt_all("s", [files[4]])   # counted again: the same file, not twice its size
        assert store.bytes_used == 200
    finally:
        store.close()


def test_zips_where_nothing_came_out_are_kept_four_at_a_time_like_the_others(handlers, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"0" * 100)
    archives = [handlers.api_batch([str(bad)], request=Request("empty"))[0] for _ in range(5)]
    assert [Path(a).exists() for a in archives] == [False, True, True, True, True]
    assert all(zip_names(a) == [] for a in archives[1:])


def test_a_download_whose_lost_state_cannot_be_rebuilt_warns_then_asks_for_an_image(handlers, tmp_path, toasts):
    bad = tmp_path / "gone.jpg"
    bad.write_text("not an image")
    with pytest.raises(gr.Error) as caught:
        handlers.downloader("rgba")(None, str(bad), request=Request(), progress=Progress())
    user_error(caught, "Upload an image first.")
    [(kind, message, kw)] = toasts
    assert kind == "warning" and message.startswith("Could not process this image:") and "plain text" in message


def test_an_input_that_failed_before_any_stage_reports_zero_milliseconds(handlers, tmp_path):
    missing = str(tmp_path / "missing.jpg")
    _, report = handlers.api_batch([missing, *photos(tmp_path, 1, seed=220)], request=Request("ms"))
    [row] = [r for r in report["results"] if r["name"] == missing]   # named as given: it was never found
    assert (row["status"], row["error"], row["ms"]) == ("failed", "file or folder not found", 0)
    table = list(run_ui_batch(handlers, [missing], request=Request("ms-page")))[-1][0]
    assert [r[2] for r in table["data"] if r[0] == missing] == [0]
