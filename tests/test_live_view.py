"""The live view's server function: the slider releases run on threads of their own (demo/live_view.py)."""

from __future__ import annotations

import threading
import time

import anyio

from demo.live_view import release_function


class Renders:
    """A stand-in for Handlers.exact_render that notes how many run at once."""

    def __init__(self, seconds: float = 0.0):
        self.seconds, self.running, self.most = seconds, 0, 0
        self.lock = threading.Lock()

    def exact_render(self, data, request=None):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        return {"echo": data, "request": request}


def test_a_release_is_answered_while_gradios_shared_threads_are_all_taken():
    release = release_function(Renders(), threads=2)

    async def main():
        shared = anyio.to_thread.current_default_thread_limiter()
        shared.total_tokens = 1
        gate = threading.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, gate.wait)   # the one shared thread, busy
            await anyio.sleep(0.05)
            try:
                with anyio.fail_after(5):
                    return await release({"image_id": "a"}, "the request")
            finally:
                gate.set()

    assert anyio.run(main) == {"echo": {"image_id": "a"}, "request": "the request"}


def test_releases_beyond_their_threads_wait_without_a_thread():
    renders = Renders(seconds=0.1)
    release = release_function(renders, threads=2)

    async def main():
        async with anyio.create_task_group() as group:
            for k in range(6):
                group.start_soon(release, {"k": k})

    start = time.perf_counter()
    anyio.run(main)
    assert renders.most == 2 and time.perf_counter() - start >= 0.3   # three rounds of two
