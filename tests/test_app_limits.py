"""The app's limits, as the docs state them and through the flags that set them: `python app.py --queue-size N
--max-file-size S` really refuses the N+1st waiting event and a file over S (issue 19: not constants compared
with themselves)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from tests.app_server import EXAMPLES, free_port

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from page_client import PageSession, QueueFull  # noqa: E402

APP_DOC = (ROOT / "docs" / "APP.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_documented_limits_are_the_ones_in_the_code():
    from demo.handlers import MAX_BATCH_FILES
    from demo.ui import MAX_FILE_SIZE, QUEUE_MAX_SIZE, UPLOAD_FOLDER_MAX_BYTES

    assert re.search(r"\| `--max-file-size` \| \| `(\w+)` \|", APP_DOC).group(1) == MAX_FILE_SIZE
    assert int(re.search(r"\| `--queue-size` \| \| (\d+) \|", APP_DOC).group(1)) == QUEUE_MAX_SIZE
    assert int(re.search(r"at most (\d+) files each", APP_DOC).group(1)) == MAX_BATCH_FILES
    assert int(re.search(r"`MATTING_UPLOAD_FOLDER_MB` \| bytes .*?\(default (\d+)\)", README).group(1)) \
        == UPLOAD_FOLDER_MAX_BYTES >> 20


@pytest.fixture(scope="module")
def small_app(tmp_path_factory):
    """`python app.py` with a queue of 2 and a 40 KB upload cap, as a user would start it."""
    port = free_port()
    log = tmp_path_factory.mktemp("limits") / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu",
                                   "--queue-size", "2", "--max-file-size", "40kb"], cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "Ready in" not in log.read_text(errors="replace"):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_max_file_size_flag_refuses_a_larger_upload(small_app, tmp_path):
    session = PageSession(small_app, timeout=60)
    try:
        small, large = tmp_path / "small.jpg", tmp_path / "large.png"
        small.write_bytes((EXAMPLES / "rocket.jpg").read_bytes()[:30_000])   # under 40 KB (need not decode)
        large.write_bytes((EXAMPLES / "coffee.png").read_bytes())             # about 450 KB
        assert session.upload(small)["path"]
        reply = session.http.post(f"{small_app}gradio_api/upload", files={"files": ("large.png", large.read_bytes())})
        assert reply.status_code == 413, reply.text[:200]
    finally:
        session.close()


def test_queue_size_flag_refuses_events_beyond_it(small_app, tmp_path):
    """Eight /matte events joined at once from eight visitors: on a CPU one runs at a time, at most two may wait,
    so most joins must be refused (503), and the accepted ones still complete."""
    sessions = [PageSession(small_app, timeout=60) for _ in range(8)]
    try:
        small = tmp_path / "rocket_small.jpg"
        Image.open(EXAMPLES / "rocket.jpg").resize((320, 213)).save(small, quality=90)   # under the 40 KB cap
        photo = sessions[0].upload(small)
        # The eight join together (a barrier, then one thread each): joined one after another, the first events
        # could finish on a fast machine before the last joins arrive, and fewer would be refused.
        start = threading.Barrier(len(sessions))

        def join(session):
            start.wait(timeout=30)
            try:
                return session, session.join("/matte", photo, 0.0, 0.0, 0, True, True, None)
            except QueueFull:
                return None

        with ThreadPoolExecutor(len(sessions)) as pool:
            joins = list(pool.map(join, sessions))
        accepted = [j for j in joins if j is not None]
        refused = len(joins) - len(accepted)
        assert refused >= 4 and 1 <= len(accepted) <= 4, (refused, len(accepted))
        for session, event_id in accepted:
            assert session.wait(event_id, 60)["success"]
    finally:
        for session in sessions:
            session.close()
