"""The web app in a real browser: Debian's Chromium, headless, driven by Playwright's sync API.

Upload a photo, wait for the cutout, move a slider and see the output change while the network does not run
again, download a full-resolution file, run a batch with a bad file among good ones and download the zip.
Screenshots of both tabs go to docs/screenshots/ (the README shows them). Every request the page makes must stay
on this machine.

Skipped, with the reason, only where Chromium or Playwright is missing; CI (.ci/run) installs both.
"""

from __future__ import annotations

import base64
import os
import shutil
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from tests.app_server import EXAMPLES, ROOT, read_image, write_jpeg

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("MATTING_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage"]
# Screenshots land in test-results/ (ignored by git) so a test run leaves the checkout clean; refresh the README's
# with MATTING_SCREENSHOTS=docs/screenshots python -m pytest tests/test_app_browser.py
SCREENSHOTS = Path(os.environ.get("MATTING_SCREENSHOTS") or ROOT / "test-results" / "screenshots")
TIMEOUT_MS = 60_000

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

if sync_playwright is None:
    pytest.skip("playwright is not installed (pip install pytest-playwright; CI installs it)",
                allow_module_level=True)
if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium; CI installs it)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def app_browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def app_page(app_browser, app):
    context = app_browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US", accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []

    def watch(request):
        host = urlparse(request.url).hostname
        if request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            return
        outside.append(request.url)

    page.on("request", watch)
    page.goto(app.url)
    page.wait_for_selector("#input-image input[type=file]", state="attached")
    yield page
    context.close()
    assert not outside, f"the page made requests off this machine: {outside[:5]}"


def image_src(page, elem_id: str) -> str | None:
    locator = page.locator(f"#{elem_id} img").first
    return locator.get_attribute("src") if locator.count() else None


def upload(page, path) -> None:
    """Drop a photo and wait until the live view draws it."""
    old = page.evaluate("window.mattingLive && window.mattingLive.image ? window.mattingLive.image.id : null")
    page.locator("#input-image input[type=file]").set_input_files(str(path))
    page.wait_for_function("(old) => window.mattingLive && window.mattingLive.image && "
                           "window.mattingLive.image.id !== old && window.mattingLive.draws.length > 0", arg=old)


def last_draw(page) -> dict:
    return page.evaluate("(() => { const d = window.mattingLive.draws.at(-1); "
                         "return {exact: d.exact, mode: d.mode, ...d.settings}; })()")


def wait_for_exact(page, **settings) -> None:
    """Until the page shows the server's exact render for these settings."""
    page.wait_for_function(
        "(want) => { const d = window.mattingLive.draws.at(-1); return d && d.exact && "
        "Object.entries(want).every(([k, v]) => d.settings[k] === v); }", arg=settings)


def canvas_pixels(page, script: str, *args) -> np.ndarray:
    """An ImageData the page makes (``script`` returns one), as an (H, W, 4) uint8 array."""
    encoded = page.evaluate(
        "([script, args]) => { const im = eval(script)(...args); let text = ''; const d = im.data;"
        " for (let i = 0; i < d.length; i += 32768) text += String.fromCharCode(...d.subarray(i, i + 32768));"
        " return [im.width, im.height, btoa(text)]; }", [script, list(args)])
    width, height, data = encoded
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)


def test_single_image(app_page, app, tmp_path):
    page = app_page
    # An upload starts the matting: the result shows without any click.
    upload(page, EXAMPLES / "astronaut.png")
    expect(page.locator("#timings")).to_contain_text("512 × 512")
    assert last_draw(page)["exact"], "the first picture is the server's exact render"
    calls = app.network_calls

    # A slider moved with the keyboard: the page redraws at once, then shows the server's exact render.
    feather = page.locator("#feather input[type=range]")
    feather.focus()
    for _ in range(6):
        feather.press("ArrowRight")
    assert page.locator("#feather input[type=number]").input_value() == "3"
    wait_for_exact(page, feather=3)
    expect(page.locator("#timings")).to_contain_text("network not run")

    # A background image: composited in the page, still from the cached matte.
    page.locator("#bg-mode label").filter(has_text="Image").click()
    page.locator("#bg-image input[type=file]").set_input_files(str(EXAMPLES / "rocket.jpg"))
    page.wait_for_function("window.mattingLive.bg !== null")
    page.wait_for_function("window.mattingLive.draws.at(-1).settings.bg_mode === 'image'")
    corner = canvas_pixels(page, "() => window.mattingLive.canvas.getContext('2d').getImageData(0, 0, 8, 8)")
    assert (corner[..., 3] == 255).all(), "on a background image the picture is opaque"
    assert app.network_calls == calls, "a control change must re-render from the cached matte"

    # The views: the matte is grey, the before/after split shows the photo on its left.
    page.locator("#live-view button[data-mode=matte]").click()
    page.wait_for_function("window.mattingLive.draws.at(-1).mode === 'matte'")
    page.locator("#live-view button[data-mode=compare]").click()
    page.wait_for_function("window.mattingLive.draws.at(-1).mode === 'compare'")
    page.locator("#live-view button[data-mode=result]").click()

    # One click, one full-resolution file.
    with page.expect_download() as download:
        page.locator("#download-rgba").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    image = read_image(saved)
    assert saved.name == "astronaut_cutout.png" and image.mode == "RGBA" and image.size == (512, 512)
    assert app.network_calls == calls

    page.wait_for_timeout(300)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "single.png"), full_page=True)

    # A large photo: a toast says it was reduced, from what size to what size, and why.
    wide = write_jpeg(tmp_path / "wide.jpg", 5000, 400, seed=2)
    page.locator("#input-image input[type=file]").set_input_files(str(wide))
    toast = page.get_by_test_id("toast-body").filter(has_text="5000 × 400")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("4096 × 328")
    expect(page.locator("#timings")).to_contain_text("5000 × 400 → 4096 × 328")
    assert app.network_calls == calls + 1


@pytest.mark.parametrize("photo", ["astronaut", "large"])
def test_a_drag_is_drawn_in_the_page(app_page, app, tmp_path, photo):
    """A 30-step mouse drag of Feather: the picture changes on most steps, no request reaches the server until
    the mouse is let go, then exactly one (the exact render), and the page's redraws are quick. The 512 x 512
    astronaut is redrawn at full size; a 1600 x 1200 photo (a 1024 x 768 preview) in half-size drafts."""
    page = app_page
    path = EXAMPLES / "astronaut.png" if photo == "astronaut" else write_jpeg(tmp_path / "large.jpg", 1600, 1200)
    upload(page, path)
    calls = app.network_calls
    page.evaluate("""() => {
        window.__inputs = [];
        const range = document.querySelector('#feather input[type=range]');
        range.addEventListener('input', (e) => window.__inputs.push([e.timeStamp, Number(range.value)]), true);
    }""")
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if not request.url.startswith("data:") else None)
    box = page.locator("#feather input[type=range]").bounding_box()
    y, x0 = box["y"] + box["height"] / 2, box["x"] + 6
    page.mouse.move(x0, y)
    page.mouse.down()
    draws_before = page.evaluate("window.mattingLive.draws.length")
    for step in range(1, 31):   # about a human drag: a step every few tens of ms, across most of the track
        page.mouse.move(x0 + step * (box["width"] - 12) * 0.9 / 30, y)
        page.wait_for_timeout(25)
    page.wait_for_timeout(100)
    during_drag = list(sent)
    drawn_in_drag = page.evaluate("window.mattingLive.draws.length") - draws_before
    page.mouse.up()
    value = float(page.locator("#feather input[type=number]").input_value())
    wait_for_exact(page, feather=value)
    page.wait_for_timeout(500)

    inputs = page.evaluate("window.__inputs")
    draws = page.evaluate(f"window.mattingLive.draws.slice({draws_before})"
                          ".map(d => [d.t1, d.settings.feather, d.exact, d.draft])")
    live = [d for d in draws if not d[2]]
    assert all(d[3] == (photo == "large") for d in draws[:drawn_in_drag]), "drafts exactly where the preview is large"
    assert draws[-1][2] and not draws[-1][3], "after the release: the exact render, full size"
    assert len({d[1] for d in live}) >= 20, f"the picture changed on only {len({d[1] for d in live})} of 30 steps"
    assert len(during_drag) <= 1, f"requests during the drag: {during_drag}"
    posts = [url for url in sent[len(during_drag):] if "component_server" in url]
    assert len(posts) == 1, f"after the release: {sent[len(during_drag):]}"
    # From each input event to the first redraw that shows its value.
    latencies = []
    for stamp, feather in inputs:
        done = [t1 for t1, drawn, _, _ in draws if drawn == feather and t1 >= stamp]
        if done:
            latencies.append(done[0] - stamp)
    assert len(latencies) >= 20
    median = float(np.median(latencies))
    print(f"{photo}: input event -> redrawn preview: median {median:.1f} ms over {len(latencies)} events, "
          f"max {max(latencies):.1f} ms")
    assert median <= 33, f"median {median:.1f} ms from an input event to the redrawn preview"
    assert app.network_calls == calls, "redraws and the exact render never run the network"


@pytest.mark.parametrize("settings", [
    dict(threshold=0.0, feather=6.0, erode=-3, refine=True, bg_mode="color", bg_color="#20c040"),
    dict(threshold=0.5, feather=2.0, erode=4, refine=True, bg_mode="transparent"),
    dict(threshold=0.0, feather=14.0, erode=9, refine=False, bg_mode="color", bg_color="#ffffff"),
    dict(threshold=0.3, feather=0.0, erode=-12, refine=False, bg_mode="color", bg_color="#000000"),
], ids=["soft-feather", "threshold-dilate", "refine-off-wide-feather", "refine-off-erode"])
def test_the_page_draws_what_the_server_renders(app_page, app, settings):
    """The page's own redraw of given settings (decontamination off) against the engine's preview render."""
    from matting.settings import EdgeSettings, parse_color

    page = app_page
    upload(page, EXAMPLES / "astronaut.png")
    full = {"refine_radius": 8, "use_input_alpha": True, "decontaminate": False, "bg_color": "#ffffff", **settings}
    page.evaluate("(s) => window.mattingLive.release(s)", full)   # the matte the page redraws from follows refine
    wait_for_exact(page, refine=full["refine"], feather=full["feather"])
    ours = canvas_pixels(page, "(s) => window.mattingLive.liveImage(s)", full)

    engine = EdgeSettings(threshold=full["threshold"], feather=full["feather"], erode=full["erode"],
                          refine=full["refine"], decontaminate=False)
    background = parse_color(full["bg_color"]) if full["bg_mode"] == "color" else None
    result = app.pipe.matte(str(EXAMPLES / "astronaut.png"))
    theirs = app.pipe.render(result, engine, background=background, preview=True)
    if background is None:
        got, want = ours[..., 3].astype(float), theirs.alpha.astype(float)
    else:
        got, want = ours[..., :3].astype(float), theirs.composite.astype(float)
    assert got.shape == want.shape
    error = np.abs(got - want).mean(axis=(0, 1))
    print(f"page vs engine, {settings}: mean |difference| per channel {np.round(error, 3)} levels")
    assert np.all(error <= 2.0), f"mean difference per channel {error} levels"
    assert (np.abs(got - want) > 32).mean() < 0.01


def test_batch(app_page, app, tmp_path):
    page = app_page
    good = [EXAMPLES / "chelsea.png", EXAMPLES / "coffee.png"]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes((EXAMPLES / "rocket.jpg").read_bytes()[:900])
    page.get_by_role("tab", name="Batch").click()
    expect(page.locator("#batch-cancel")).to_be_disabled()   # nothing to cancel yet
    page.locator("#batch-run").click()   # no files: an error, and Cancel goes back (it stayed red and enabled)
    expect(page.locator(".toast-body").filter(has_text="Add some images")).to_be_visible()
    expect(page.locator("#batch-cancel")).to_be_disabled()
    page.locator("#batch-files input[type=file]").set_input_files([str(good[0]), str(bad), str(good[1])])
    expect(page.locator("#batch-files")).to_contain_text("broken")
    page.locator("#batch-kinds label").filter(has_text="Alpha mattes").click()
    page.locator("#batch-run").click()

    link = page.locator("#batch-zip a").first
    expect(link).to_be_visible()
    table = page.locator("#batch-table")
    expect(table).to_contain_text("broken.jpg")
    expect(table).to_contain_text("failed")
    expect(page.locator("#batch-status")).to_contain_text("2 done, 1 failed")
    expect(page.locator("#batch-cancel")).to_be_disabled()   # and nothing once it is over
    expect(page.locator("#batch-gallery img")).to_have_count(2)

    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "batch.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        names = set(archive.namelist())
    assert {"chelsea.png", "chelsea_alpha.png", "coffee.png", "coffee_alpha.png"} <= names
    assert not any(name.startswith("broken") for name in names)

    page.wait_for_timeout(500)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "batch.png"), full_page=True)


def test_replacing_the_photo_is_matted_and_shown_once(app_page, app, tmp_path):
    """Gradio's image input reports a replaced photo twice; the second report must not redo the work (it used to
    draw everything again and say "network: cached" about a photo the network had just run on)."""
    page = app_page
    joins: list[str] = []
    page.on("request", lambda request: joins.append(request.url) if "queue/join" in request.url else None)
    upload(page, EXAMPLES / "coffee.png")
    page.wait_for_timeout(800)
    before, draws = len(joins), page.evaluate("window.mattingLive.draws.length")
    fresh = write_jpeg(tmp_path / "never_seen.jpg", 420, 300, seed=991)
    upload(page, fresh)
    page.wait_for_timeout(1500)   # the second report comes right after the first
    assert len(joins) - before >= 1
    expect(page.locator("#timings")).to_contain_text("420 × 300")
    line = page.locator("#timings").inner_text()
    assert "cached" not in line, line
    loads = page.evaluate(f"window.mattingLive.draws.slice({draws}).filter(d => d.exact).length")
    assert loads == 1, f"the new photo was drawn {loads} times from the server"


@pytest.mark.parametrize("key", ["Enter", "Tab"])
def test_a_typed_hex_colour_redraws_the_background(app_page, app, key):
    """Typing a hex code in the colour picker and pressing Enter or Tab recolours the background (it used to
    change the swatch only)."""
    page = app_page
    upload(page, EXAMPLES / "coffee.png")
    page.locator("#bg-mode label").filter(has_text="Colour").click()
    page.locator("#bg-color button.dialog-button").click()
    field = page.locator("#bg-color input[type=text]")
    field.fill("#00ff00")
    field.press(key)
    page.wait_for_function("(() => { const d = window.mattingLive.draws.at(-1);"
                           " return d.settings.bg_mode === 'color' && d.settings.bg_color === '#00ff00'; })()")
    corner = canvas_pixels(page, "() => window.mattingLive.canvas.getContext('2d').getImageData(0, 0, 6, 6)")
    assert (corner[..., 1] > 200).all() and (corner[..., 0] < 60).all(), corner[0, 0]


def test_example_is_one_click_away(app_page, app):
    page = app_page
    page.locator("#examples img").nth(1).click()     # chelsea.png, 451 x 300
    page.wait_for_function("window.mattingLive && window.mattingLive.image && window.mattingLive.image.w === 451")
    expect(page.locator("#timings")).to_contain_text("451 × 300")


def test_chinese_interface(app_browser, app):
    """With a Chinese browser locale the labels come in Chinese."""
    context = app_browser.new_context(locale="zh-CN", viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    expect(page.locator("#title")).to_contain_text("图像抠图")
    expect(page.get_by_role("tab", name="批量处理")).to_be_visible()
    expect(page.locator("#model-info")).to_contain_text("模型")
    context.close()


def test_forced_language(app_browser, app, tmp_path):
    """--lang zh: Chinese labels and run-time text even for an English browser."""
    from demo import build_demo, launch_options
    from tests.app_server import free_port

    chinese = build_demo(app.pipe, lang="zh", store=app.store)
    port = free_port()
    chinese.launch(**launch_options(chinese, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                    quiet=True))
    context = app_browser.new_context(locale="en-US", viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator("#title")).to_contain_text("图像抠图")
        expect(page.locator("#model-info")).to_contain_text("模型")
        page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLES / "coffee.png"))
        expect(page.locator("#timings")).to_contain_text("毫秒")
        # Toasts speak Chinese too, their titles included.
        wide = write_jpeg(tmp_path / "wide.jpg", 5000, 400, seed=3)
        page.locator("#input-image input[type=file]").set_input_files(str(wide))
        toast = page.get_by_test_id("toast-body").filter(has_text="5000 × 400")
        expect(toast).to_be_visible()
        expect(toast.locator(".toast-title")).to_have_text("提示")
    finally:
        context.close()
        chinese.close()


def test_brushes_erase_and_restore_into_the_downloads(app_page, app, tmp_path):
    """Erase a stroke across the subject, restore one over the background: the full-resolution download has
    alpha 0 and 255 under them, still after the feather and threshold move; Undo takes the last stroke back; and
    /matte with the same hint mask gives the same alpha."""
    from gradio_client import handle_file
    from PIL import Image

    from tests.app_server import client

    page = app_page
    upload(page, EXAMPLES / "coffee.png")            # 600 x 400: the cup in the middle, table and wall around
    image_id = page.evaluate("window.mattingLive.image.id")
    box = page.locator("#live-view canvas").bounding_box()

    def drag(tool: str, points: list[tuple[float, float]]) -> None:
        page.locator(f"#live-view [data-tool={tool}]").click()
        screen = [(box["x"] + x * box["width"] / 600, box["y"] + y * box["height"] / 400) for x, y in points]
        page.mouse.move(*screen[0])
        page.mouse.down()
        for point in screen[1:]:
            page.mouse.move(*point, steps=8)
        page.mouse.up()

    def download() -> np.ndarray:
        with page.expect_download() as saved:
            page.locator("#download-rgba").click()
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.png"
        saved.value.save_as(path)
        return np.asarray(read_image(path))[..., 3]

    plain = app.pipe.render(app.pipe.matte(str(EXAMPLES / "coffee.png"))).alpha
    assert plain[200, 300] > 200 and plain[40, 60] < 60, "the cup is the subject, the top-left is not"
    page.locator("#live-view .live-size input").fill("50")   # screen pixels across
    drag("erase", [(240, 200), (360, 200)])
    drag("restore", [(40, 60), (120, 60)])
    page.locator("#live-view [data-tool=restore]").click()    # put the brush down
    wait_for_exact(page)
    page.wait_for_function("window.mattingLive.draws.at(-1).exact && window.mattingLive.strokesId === 2")
    radius = page.evaluate("window.mattingLive.strokes[0].radius")
    inside = int(radius) - 2
    assert 20 <= inside <= 50, radius

    def check(alpha: np.ndarray, margin: int = 0) -> None:
        r = inside - margin
        assert r >= 1
        assert (alpha[200 - r:200 + r, 240 + margin:360 - margin] == 0).all(), "erased under the stroke"
        assert (alpha[60 - r:60 + r, 40 + margin:120 - margin] == 255).all(), "restored under the stroke"

    first = download()
    check(first)
    assert (first[300:, :] == plain[300:, :]).all(), "the model's matte away from the strokes"

    # Feather 3 px and threshold 0.03 by keyboard: the strokes hold, away from the feathered rim.
    for control, presses in (("feather", 6), ("threshold", 3)):
        slider = page.locator(f"#{control} input[type=range]")
        slider.focus()
        for _ in range(presses):
            slider.press("ArrowRight")
    page.wait_for_function("(() => { const d = window.mattingLive.draws.at(-1); return d.exact && "
                           "d.settings.feather === 3 && d.settings.threshold === 0.03; })()")
    later = download()
    check(later, margin=10)

    # /matte with the hint mask the strokes made gives the same alpha.
    hints = app.demo.handlers._live[image_id].hints
    hint_path = tmp_path / "hint.png"
    Image.fromarray(hints).save(hint_path)
    _, api_alpha, _ = client(app).predict(handle_file(str(EXAMPLES / "coffee.png")), 0.03, 3.0, 0, True, True,
                                          handle_file(str(hint_path)), api_name="/matte")
    difference = np.abs(np.asarray(read_image(api_alpha)).astype(int) - later)
    print(f"/matte with the strokes' mask against the UI's download: max |alpha difference| {difference.max()}")
    assert difference.max() <= 1, difference.max()

    # Undo: the restore stroke is gone, the erase stroke stays.
    page.locator("#live-view [data-action=undo]").click()
    page.wait_for_function("window.mattingLive.draws.at(-1).exact && window.mattingLive.strokesId === 3")
    undone = download()
    assert (undone[200 - inside + 10:200 + inside - 10, 250:350] == 0).all()
    assert (undone[60 - inside:60 + inside, 40:120] < 255).any(), "the restore stroke was undone"


def test_strokes_survive_a_lost_session_into_the_download_and_the_page(app_page, app, tmp_path):
    """The server drops a session's state after an idle hour or past its session limit: the download then came
    without the page's strokes, and the next slider move wiped them from the page (found in a browser review).
    Now the download first has the photo rebuilt and the strokes sent again, and the page keeps them."""
    import gc

    page = app_page
    upload(page, EXAMPLES / "coffee.png")
    image_id = page.evaluate("window.mattingLive.image.id")
    box = page.locator("#live-view canvas").bounding_box()
    page.locator("#live-view .live-size input").fill("50")
    page.locator("#live-view [data-tool=erase]").click()
    page.mouse.move(box["x"] + 0.4 * box["width"], box["y"] + 0.5 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.6 * box["width"], box["y"] + 0.5 * box["height"], steps=8)
    page.mouse.up()
    page.locator("#live-view [data-tool=erase]").click()   # put the brush down
    page.wait_for_function("window.mattingLive.draws.at(-1).exact && window.mattingLive.strokesId === 1")

    holder = app.demo.state_holder   # as when the server evicts this visitor's state
    with holder.lock:
        holder.session_data.clear()
        holder.time_last_used.clear()
    gc.collect()
    assert image_id not in app.demo.handlers._live

    with page.expect_download() as saved:
        page.locator("#download-alpha").click()
    saved.value.save_as(tmp_path / "alpha.png")
    alpha = np.asarray(read_image(tmp_path / "alpha.png").convert("L"))
    assert (alpha[195:205, 260:340] == 0).all(), "the erase stroke is in the download"
    assert page.evaluate("window.mattingLive.strokes.length") == 1
    assert page.evaluate("window.mattingLive.image.id") != image_id   # rebuilt on the server

    slider = page.locator("#feather input[type=range]")
    slider.focus()
    slider.press("ArrowRight")
    page.wait_for_function("(() => { const d = window.mattingLive.draws.at(-1); return d.exact && "
                           "d.settings.feather === 0.5; })()")
    assert page.evaluate("window.mattingLive.strokes.length") == 1, "the strokes stay in the page"


def test_a_wrong_file_dropped_over_a_photo_warns_once_and_keeps_the_photo(app_page, app, tmp_path):
    """It cleared the result (its strokes too) and showed its warning twice (Gradio reports an upload twice)."""
    page = app_page
    upload(page, EXAMPLES / "coffee.png")
    image_id = page.evaluate("window.mattingLive.image.id")
    wrong = tmp_path / "notes.jpg"
    wrong.write_text("not a photo\n" * 20)
    page.locator("#input-image input[type=file]").set_input_files(str(wrong))
    toast = page.locator(".toast-body").filter(has_text="notes.jpg")
    expect(toast.first).to_be_visible()
    page.wait_for_timeout(1500)   # the second report has come and gone by now
    titles = page.locator(".toast-title").all_inner_texts()   # Gradio counts a repeated toast: "Warning (2)"
    assert toast.count() == 1 and not any("(2)" in title for title in titles), titles
    assert page.evaluate("window.mattingLive.image && window.mattingLive.image.id") == image_id


def _portrait_with_orientation_6(path: Path, camera_frame: tuple[int, int] | None) -> Path:
    """120 x 240 stored pixels tagged "turn a quarter" (6); ``camera_frame``: the Exif IFD's frame size."""
    image = Image.fromarray(np.tile(np.linspace(0, 255, 120, dtype=np.uint8), (240, 1)).repeat(3).reshape(240, 120, 3))
    exif = Image.Exif()
    exif[0x0112] = 6
    if camera_frame:
        exif.get_ifd(0x8769).update({0xA002: camera_frame[0], 0xA003: camera_frame[1]})
    image.save(path, exif=exif.tobytes(), quality=90)
    return path


def test_the_input_box_shows_the_photo_the_way_the_engine_reads_it(app_page, app, tmp_path):
    """A photo an editor already turned, its quarter-turn tag left behind (the camera's frame is landscape, the
    pixels portrait): the engine keeps it upright and so must the input box, though the browser would turn it.
    A plainly tagged photo stays turned by its tag, in both."""
    page = app_page

    def input_box() -> tuple[float, float]:
        page.wait_for_timeout(200)   # the style is set once the input's <img> has loaded
        box = page.locator("#input-image img").first.bounding_box()
        return box["width"], box["height"]

    upload(page, _portrait_with_orientation_6(tmp_path / "turned.jpg", (240, 120)))
    assert page.evaluate("[window.mattingLive.image.w, window.mattingLive.image.h]") == [120, 240]
    width, height = input_box()
    assert height > width * 1.5 and page.evaluate("window.mattingLive.inputTurned")
    upload(page, _portrait_with_orientation_6(tmp_path / "tagged.jpg", None))
    assert page.evaluate("[window.mattingLive.image.w, window.mattingLive.image.h]") == [240, 120]
    width, height = input_box()
    assert width > height and not page.evaluate("window.mattingLive.inputTurned")   # the box caps the width


def test_download_buttons_look_like_buttons(app_page):
    """Each download button stands out from what is around it (its own fill, not the bar's) and is a finger's
    height: in a gr.Group they had read as plain text in a grey bar."""
    page = app_page
    page.get_by_role("radio", name="Colour").check()   # the composite button shows with a background only
    expect(page.locator("#download-composite")).to_be_visible()
    for elem_id in ("download-rgba", "download-alpha", "download-composite"):
        look = page.evaluate("""(id) => {
          const button = document.getElementById(id);
          const fill = (el) => getComputedStyle(el).backgroundColor;
          const clear = (c) => c === 'transparent' || c === 'rgba(0, 0, 0, 0)';
          let around = button.parentElement;
          while (around && clear(fill(around))) around = around.parentElement;
          return {own: fill(button), around: around ? fill(around) : 'rgb(255, 255, 255)',
                  height: button.getBoundingClientRect().height};
        }""", elem_id)
        assert look["own"] not in ("transparent", "rgba(0, 0, 0, 0)", look["around"]), (elem_id, look)
        assert look["height"] >= 36, (elem_id, look)


def test_on_a_phone_the_preview_stays_in_sight_while_a_slider_moves(app_browser, app):
    """390 x 844: the sliders are a screen below the preview. Scrolled to the Feather slider, the preview floats
    on screen beside it, follows the slider, and goes back to its place when scrolled up."""
    context = app_browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US", is_mobile=True,
                                      has_touch=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(app.url)
        page.wait_for_selector("#input-image input[type=file]", state="attached")
        upload(page, EXAMPLES / "rocket.jpg")
        slider = page.locator("#feather input[type=range]")
        slider.scroll_into_view_if_needed()
        page.wait_for_function("document.querySelector('#live-view .live-frame').classList.contains('live-float')")

        def on_screen(selector: str) -> bool:
            box = page.locator(selector).first.bounding_box()
            return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 844 and box["height"] > 40

        assert on_screen("#live-view canvas.live-canvas") and on_screen("#feather")
        draws = page.evaluate("window.mattingLive.draws.length")
        slider.fill("6")
        page.wait_for_function("(n) => window.mattingLive.draws.length > n", arg=draws)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_function("!document.querySelector('#live-view .live-frame').classList.contains('live-float')")
    finally:
        context.close()


def test_a_white_colour_swatch_is_visible(app_page, app):
    """The background colour picker's swatch has a size and an outline darker than the white it may show."""
    page = app_page
    upload(page, EXAMPLES / "coffee.png")
    page.get_by_role("radio", name="Colour").check()
    page.wait_for_selector("#bg-color button.dialog-button")
    look = page.evaluate("""() => { const b = document.querySelector('#bg-color button.dialog-button');
      const r = b.getBoundingClientRect(); const cs = getComputedStyle(b);
      return {w: r.width, h: r.height, border: parseFloat(cs.borderTopWidth), colour: cs.borderTopColor,
              fill: cs.backgroundColor}; }""")
    assert look["fill"] == "rgb(255, 255, 255)" and look["w"] >= 24 and look["h"] >= 20, look
    outline = [int(v) for v in look["colour"][look["colour"].index("(") + 1:-1].split(",")[:3]]
    assert look["border"] >= 1 and max(outline) <= 200, look   # darker than the white swatch by 55 levels or more


def test_the_batch_tab_shows_what_there_is_in_the_order_given(app_page, app, tmp_path):
    """Four files: all four listed in view; no empty gallery or zip box (they looked like drop zones) before a
    run; Cancel not red while nothing runs; the results table in the order the files were given, not the order
    they finished in; then the gallery and the zip appear."""
    page = app_page
    bad = tmp_path / "broken.jpg"
    bad.write_bytes((EXAMPLES / "rocket.jpg").read_bytes()[:900])
    files = [EXAMPLES / "astronaut.png", bad, EXAMPLES / "chelsea.png", EXAMPLES / "coffee.png"]
    page.get_by_role("tab", name="Batch").click()
    expect(page.locator("#batch-gallery")).to_be_hidden()
    expect(page.locator("#batch-zip")).to_be_hidden()
    red = page.evaluate("(() => { const c = getComputedStyle(document.getElementById('batch-cancel')).backgroundColor;"
                        " const [r, g, b] = c.match(/\\d+/g).map(Number); return r > g + 60 && r > b + 60; })()")
    assert not red
    page.locator("#batch-files input[type=file]").set_input_files([str(f) for f in files])
    rows = page.locator("#batch-files tbody tr")
    expect(rows).to_have_count(len(files))
    box = page.locator("#batch-files").bounding_box()
    for i, path in enumerate(files):
        row = rows.nth(i)
        assert path.stem in row.inner_text()
        inside = row.bounding_box()   # within the box's visible height, not behind its scroll bar
        assert box["y"] <= inside["y"] and inside["y"] + inside["height"] <= box["y"] + box["height"], path.name
    page.locator("#batch-run").click()
    expect(page.locator("#batch-zip a").first).to_be_visible()
    expect(page.locator("#batch-gallery")).to_be_visible()
    expect(page.locator("#batch-table")).to_contain_text("coffee.png")
    text = page.locator("#batch-table").inner_text()
    where = [text.find(f.name) for f in files]
    assert -1 not in where and where == sorted(where), (where, text[:300])


def test_the_downscale_toast_leaves_the_edges_panel_in_view(app_page, app, tmp_path):
    """A photo over the working size gets a toast saying so; it shows at the bottom, not over the Edges panel's
    header at the top right where it sat for seconds."""
    page = app_page
    large = tmp_path / "large.jpg"
    read_image(EXAMPLES / "coffee.png").convert("RGB").resize((4800, 3200)).save(large, quality=80)
    upload(page, large)
    toast = page.locator(".toast-body").first
    expect(toast).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")
    a, b = toast.bounding_box(), page.locator("#edges-title").bounding_box()
    overlap_x = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
    overlap_y = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
    assert overlap_x <= 0 or overlap_y <= 0, (a, b)


def test_no_checkerboard_shows_around_an_opaque_composite(app_page, app):
    """On a colour background the picture is opaque everywhere, and nothing around it draws a checkerboard
    (the checkerboard belongs to transparent pictures only)."""
    page = app_page
    upload(page, EXAMPLES / "coffee.png")
    page.get_by_role("radio", name="Colour").check()
    page.wait_for_function("window.mattingLive.draws.length > 0 && window.mattingLive.settings && "
                           "document.querySelector('#bg-color button.dialog-button') !== null")
    page.wait_for_timeout(300)
    pixels = canvas_pixels(page, "() => { const c = window.mattingLive.canvas; "
                                 "return c.getContext('2d').getImageData(0, 0, c.width, c.height); }")
    assert (pixels[..., 3] == 255).all()
    frame = page.evaluate("getComputedStyle(document.querySelector('#live-view .live-frame')).backgroundImage")
    assert frame == "none"


def test_before_any_upload_the_page_is_one_drop_zone_and_one_placeholder(app_page):
    """No empty result boxes fill the page before a photo is given (there were four large ones): the single
    tab shows the input's drop zone and one placeholder, in sight, that says what will appear there."""
    page = app_page
    expect(page.locator("#live-view .live-placeholder")).to_be_visible()
    expect(page.locator("#live-view .live-placeholder")).not_to_have_text("")
    boxes = page.evaluate("""() => [...document.querySelectorAll('#tab-single img, #tab-single canvas,'
        + ' #tab-single [data-testid=image], #tab-single .image-container, #tab-single .empty')]
        .filter((el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; })
        .filter((el) => !el.closest('#input-image') && !el.closest('#examples'))
        .map((el) => el.tagName + '.' + el.className)""")
    assert boxes == [], boxes
    placeholder = page.locator("#live-view .live-frame").bounding_box()
    assert placeholder["y"] + placeholder["height"] <= 1000, placeholder   # in sight without scrolling


def test_the_composite_download_is_offered_only_with_a_background(app_page, app, tmp_path):
    """On a transparent background a "Composite JPEG" would be the cutout again (it downloaded a PNG identical to
    it): the button shows only once a colour or image is chosen, and then gives an opaque JPEG of that colour."""
    page = app_page
    upload(page, EXAMPLES / "coffee.png")
    composite = page.locator("#download-composite")
    expect(composite).to_be_hidden()
    page.get_by_role("radio", name="Colour").check()
    expect(composite).to_be_visible()
    with page.expect_download() as download:
        composite.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    image = read_image(saved)
    assert saved.suffix == ".jpg" and image.format == "JPEG" and image.mode == "RGB", (saved.name, image.mode)
    with page.expect_download() as download:
        page.locator("#download-alpha").click()
    download.value.save_as(tmp_path / "alpha.png")
    alpha = np.asarray(read_image(tmp_path / "alpha.png").convert("L"))
    outside = np.asarray(image).astype(int)[alpha == 0]
    assert len(outside) > 1000 and np.abs(outside - 255).mean() < 3, "where the matte is clear: the white default"
    page.get_by_role("radio", name="Transparent").check()
    expect(composite).to_be_hidden()
