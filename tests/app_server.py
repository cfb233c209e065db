"""The web app, started once in this test process on a free port; the API and browser tests share it.

In-process, so tests can read the pipeline's network counter (``pipe.runner.calls``) to prove that a slider
move re-renders without running the network again.
"""

from __future__ import annotations

import atexit
import io
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"


@dataclass
class RunningApp:
    demo: object
    url: str
    pipe: object
    store: object

    @property
    def network_calls(self) -> int:
        return self.pipe.runner.calls


_APP: RunningApp | None = None
_LOCK = threading.Lock()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def running_app() -> RunningApp:
    """Build and launch the app once (its own CPU pipeline, not the process-wide one); closed at exit."""
    global _APP
    with _LOCK:
        if _APP is None:
            from demo import build_demo, launch_options
            from demo.files import OutputStore
            from matting.pipeline import Pipeline

            pipe = Pipeline(device="cpu")
            store = OutputStore()
            demo = build_demo(pipe, lang="auto", store=store)
            port = free_port()
            demo.launch(**launch_options(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                         quiet=True))
            _APP = RunningApp(demo=demo, url=f"http://127.0.0.1:{port}/", pipe=pipe, store=store)
            atexit.register(_close)
        return _APP


def _close() -> None:
    if _APP is not None:
        try:
            _APP.demo.close()
        finally:
            _APP.store.close()


def client(app: RunningApp, **kwargs):
    from gradio_client import Client

    return Client(app.url, analytics_enabled=False, verbose=False, **kwargs)


def exact_render(app: RunningApp, image_id: str, **settings) -> dict:
    """What the page asks when a slider is let go: the live view's exact_render server function, over HTTP as the
    browser sends it (POST /gradio_api/component_server, outside the queue)."""
    import httpx

    body = {"data": {"image_id": image_id, **settings}, "component_id": app.demo.live_view._id,
            "fn_name": "exact_render", "session_hash": "tests"}
    reply = httpx.post(f"{app.url}gradio_api/component_server/", json=body, timeout=60)
    reply.raise_for_status()
    return reply.json()


def data_url_image(url: str) -> Image.Image:
    """A data: URL from the live view's payload -> a loaded PIL image."""
    import base64

    header, _, data = url.partition(",")
    assert header.startswith("data:image/") and header.endswith(";base64"), header[:40]
    return read_image(io.BytesIO(base64.b64decode(data)))


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A synthetic photo: a bright disc (the subject) on a textured, darker background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 120 // max(1, width - 1), yy * 120 // max(1, height - 1),
                           np.full_like(xx, 60)], -1)
    background = background + rng.integers(0, 30, (height, width, 1))
    disc = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (min(width, height) * 0.3) ** 2
    image = np.where(disc[..., None], np.array([235, 200, 60]), background)
    return image.clip(0, 255).astype(np.uint8)


def write_jpeg(path: Path, width: int, height: int, seed: int = 0, exif_orientation: int | None = None) -> Path:
    image = Image.fromarray(photo(width, height, seed))
    params = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        params["exif"] = exif.tobytes()
    image.save(path, "JPEG", quality=90, **params)
    return path


def read_image(source) -> Image.Image:
    """A path or a binary file object -> a loaded PIL image (the file is closed before returning)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            source = io.BytesIO(handle.read())
    image = Image.open(source)
    image.load()
    return image
