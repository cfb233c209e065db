"""The web app in a real browser: Debian's Chromium, headless, driven by Playwright's sync API.

Upload a photo, wait for the cutout, move a slider and see the output change while the network does not run
again, download a full-resolution file, run a batch with a bad file among good ones and download the zip.
Screenshots of both tabs go to docs/screenshots/ (the README shows them). Every request the page makes must stay
on this machine.

Skipped, with the reason, only where Chromium or Playwright is missing; CI (.ci/run) installs both.
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.app_server import EXAMPLES, ROOT, read_image, running_app, write_jpeg

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
def app():
    return running_app()


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


def wait_for_new_src(page, elem_id: str, old: str | None, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        src = image_src(page, elem_id)
        if src and src != old:
            return src
        page.wait_for_timeout(100)
    raise AssertionError(f"#{elem_id} never showed a new image (still {old!r})")


def test_single_image(app_page, app, tmp_path):
    page = app_page
    # An upload starts the matting: the result shows without any click.
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLES / "astronaut.png"))
    cutout = wait_for_new_src(page, "cutout", None)
    expect(page.locator("#timings")).to_contain_text("512 × 512")
    assert image_src(page, "alpha") and image_src(page, "before-after")
    calls = app.network_calls

    # A slider moved with the keyboard: the previews change, the network does not run again.
    feather = page.locator("#feather input[type=range]")
    feather.focus()
    for _ in range(6):
        feather.press("ArrowRight")
    new_cutout = wait_for_new_src(page, "cutout", cutout)
    expect(page.locator("#timings")).to_contain_text("network not run")
    assert page.locator("#feather input[type=number]").input_value() == "3"

    # A background image: the composite changes, still from the cached matte.
    page.locator("#bg-mode label").filter(has_text="Image").click()
    composite = image_src(page, "composite")
    page.locator("#bg-image input[type=file]").set_input_files(str(EXAMPLES / "rocket.jpg"))
    wait_for_new_src(page, "composite", composite)
    assert app.network_calls == calls, "a control change must re-render from the cached matte"
    assert new_cutout != cutout

    # One click, one full-resolution file.
    with page.expect_download() as download:
        page.locator("#download-rgba").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    image = read_image(saved)
    assert saved.name == "astronaut_cutout.png" and image.mode == "RGBA" and image.size == (512, 512)
    assert app.network_calls == calls

    page.wait_for_timeout(500)   # let the last preview finish loading before the picture is taken
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


def test_batch(app_page, app, tmp_path):
    page = app_page
    good = [EXAMPLES / "chelsea.png", EXAMPLES / "coffee.png"]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes((EXAMPLES / "rocket.jpg").read_bytes()[:900])
    page.get_by_role("tab", name="Batch").click()
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


def test_example_is_one_click_away(app_page, app):
    page = app_page
    page.locator("#examples img").nth(1).click()     # chelsea.png, 451 x 300
    wait_for_new_src(page, "cutout", None)
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


def test_forced_language(app_browser, app):
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
    finally:
        context.close()
        chinese.close()
