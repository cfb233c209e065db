"""Measure the web app as a user meets it: cold start to the first result, and the live re-render latency.

    python scripts/measure_app.py                         # 8 MP source: the evaluation photo when present,
                                                          # else a synthetic 3264 x 2448 JPEG
    python scripts/measure_app.py --image my_8mp.jpg --renders 20 --json out.json

What it does:
1. starts ``python app.py --port <free port>`` as a fresh process (clock starts just before the process is
   spawned), waits for the page to answer, then sends the photo to /matte with gradio_client: "cold start" is
   process start to that first full-resolution result in hand (server ready + first request);
2. in the same server, one client session uploads the photo through the UI's own /upload event (network runs
   once; the answer is the live view's screen-sized payload), then lets go of a slider ``--renders`` times
   (the live view's exact_render, as the page sends it), alternating the feather value so every call really
   re-renders; the median and p90 round trip are reported, plus the server's own time from the timing line;
3. checks through the API report that the network ran exactly once for the session (re-renders use the cache);
4. with Chromium and Playwright at hand (``--browser``, on by default when both exist): the same in a real
   browser, from a click on the feather slider's track to the page's own redraw, and to the server's exact
   render drawn in the page.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVAL_PHOTO = Path("/work/shared/evaldata/photos/Issue_177.jpg")   # 3264 x 2448; never copied into the repo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def synthetic_8mp(folder: Path) -> Path:
    import numpy as np
    from PIL import Image

    h, w = 2448, 3264
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    image = np.stack([xx * 200 // w, yy * 200 // h, np.full_like(xx, 80)], -1) + rng.integers(0, 40, (h, w, 1))
    disc = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h * 0.35) ** 2
    image = np.where(disc[..., None], np.array([230, 190, 70]), image).clip(0, 255).astype(np.uint8)
    path = folder / "synthetic_8mp.jpg"
    Image.fromarray(image).save(path, quality=92)
    return path


def wait_for(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _browser_available(chromium: str) -> bool:
    try:
        import playwright.sync_api  # noqa: F401 - only: is it installed
    except ImportError:
        return False
    return Path(chromium).exists()


def measure_in_browser(url: str, source: Path, renders: int, chromium: str) -> dict:
    """Upload in headless Chromium, then time a click on the feather slider's track -> the page's own redraw,
    and -> the server's exact render drawn in the page (demo/live_view.js keeps a log of its draws)."""
    from playwright.sync_api import sync_playwright

    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--no-first-run", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(url)
        t0 = time.perf_counter()
        page.locator("#input-image input[type=file]").set_input_files(str(source))
        page.wait_for_function("window.mattingLive && window.mattingLive.image && window.mattingLive.draws.length")
        upload_s = time.perf_counter() - t0
        box = page.locator("#feather input[type=range]").bounding_box()
        live, exact = [], []
        for i in range(renders):
            x = box["x"] + box["width"] * (0.1 if i % 2 == 0 else 0.2)
            start = page.evaluate("performance.now()")
            page.mouse.click(x, box["y"] + box["height"] / 2)
            value = float(page.locator("#feather input[type=number]").input_value())
            page.wait_for_function("(v) => { const d = window.mattingLive.draws.at(-1);"
                                   " return d.exact && d.settings.feather === v; }", arg=value)
            draws = page.evaluate(f"window.mattingLive.draws.filter(d => d.t0 >= {start})"
                                  ".map(d => [d.t1, d.exact])")
            live.append(next(t1 for t1, is_exact in draws if not is_exact) - start)
            exact.append(next(t1 for t1, is_exact in draws if is_exact) - start)
            page.wait_for_timeout(100)
        browser.close()
    return {"upload_to_first_picture_s": round(upload_s, 2),
            "click_to_page_redraw_median_ms": round(statistics.median(live), 1),
            "click_to_exact_render_median_ms": round(statistics.median(exact), 1),
            "click_to_exact_render_p90_ms": round(percentile(exact, 0.9), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=None, help="source photo (default: an 8 MP photo)")
    parser.add_argument("--renders", type=int, default=20, help="slider changes to time (default 20)")
    parser.add_argument("--device", default="cpu", help="--device for app.py (default cpu)")
    parser.add_argument("--decontaminate", action=argparse.BooleanOptionalAction, default=None,
                        help="colour decontamination in the timed re-renders (default: the engine's default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--browser", action=argparse.BooleanOptionalAction, default=None,
                        help="also time slider moves in headless Chromium (default: when available)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    args = parser.parse_args(argv)

    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from gradio_client import Client, handle_file

    sys.path.insert(0, str(ROOT))
    from matting.settings import EdgeSettings

    work = Path(tempfile.mkdtemp(prefix="measure-app-"))
    source = args.image or (EVAL_PHOTO if EVAL_PHOTO.exists() else synthetic_8mp(work))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(work / "gradio"), "PYTHONUNBUFFERED": "1"}
    log = open(work / "app.log", "w")
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--device", args.device],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(url, process)
        ready_s = time.perf_counter() - start
        api = Client(url, analytics_enabled=False, verbose=False)
        cutout, _, report = api.predict(handle_file(str(source)), api_name="/matte")
        first_result_s = time.perf_counter() - start
        size = tuple(report["size"])

        # Slider releases: one browser-like session, then the live view's exact_render as the page calls it.
        import httpx

        session = Client(url, analytics_enabled=False, verbose=False)
        live_id = next(c["id"] for c in session.config["components"]
                       if c.get("props", {}).get("elem_id") == "live-view")
        edges = EdgeSettings()
        decontaminate = edges.decontaminate if args.decontaminate is None else args.decontaminate
        defaults = dict(threshold=0.0, feather=0.0, erode=0, refine=True, refine_radius=edges.refine_radius,
                        use_input_alpha=True, decontaminate=decontaminate)
        t0 = time.perf_counter()
        upload = session.predict(handle_file(str(source)), *defaults.values(), "transparent", "#ffffff",
                                 api_name="/upload")
        upload_s = time.perf_counter() - t0
        round_trips, handler_ms = [], []
        with httpx.Client(timeout=60) as http:
            for i in range(args.renders):
                data = {**defaults, "feather": 2.0 if i % 2 == 0 else 4.0, "image_id": upload["id"],
                        "soft_key": upload["soft_key"]}
                body = {"data": data, "component_id": live_id, "fn_name": "exact_render",
                        "session_hash": session.session_hash}
                t0 = time.perf_counter()
                reply = http.post(f"{url}gradio_api/component_server/", json=body).json()
                round_trips.append((time.perf_counter() - t0) * 1000)
                match = re.search(r"total (\d+) ms", reply.get("line", ""))
                handler_ms.append(float(match.group(1)) if match else float("nan"))
        figures = {"upload_s": round(upload_s, 3), "release_median_ms": round(statistics.median(round_trips), 1),
                   "release_p90_ms": round(percentile(round_trips, 0.9), 1),
                   "server_handler_median_ms": round(statistics.median(handler_ms), 1),
                   "upload_line": upload["line"], "last_release_line": reply.get("line")}
        # The API report of the same photo again: the matte is cached, the network did not run.
        _, _, again = api.predict(handle_file(str(source)), api_name="/matte")
        use_browser = args.browser if args.browser is not None else _browser_available(args.chromium)
        browser = measure_in_browser(url, source, args.renders, args.chromium) if use_browser else None
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()

    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "source": {"path": source.name, "size": list(size)},
        "cold_start": {"server_ready_s": round(ready_s, 2), "first_result_s": round(first_result_s, 2),
                       "first_request_timings_ms": report["timings_ms"], "model": report["model"]},
        "rerender": figures,
        "browser": browser,
        "renders": args.renders,
        "decontaminate": decontaminate,
        "network_ran_again_for_same_photo": again["network_ran"],
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
