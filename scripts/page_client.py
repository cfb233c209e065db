"""A load-test client that talks to a Gradio app the way its page does, for scripts/load_test.py.

gradio_client opens a new HTTP client (and TLS context) for every upload, every queue join and every event
stream: on the H200 host a no-op event costs it 87 ms (docs/RELIABILITY.md), and one client process tops out
near 18 requests/s. A browser keeps its connections open. This client does what the page does, over one
keep-alive ``httpx.Client`` per visitor:

1. ``POST {api}/upload`` (multipart ``files``) for an image input; the answer is the server-side path;
2. ``POST {api}/queue/join`` with the event's inputs (``None`` for ``gr.State`` inputs, which the server holds
   per session) and the session hash; 503 means the queue is full;
3. ``GET {api}/queue/data?session_hash=...``: the session's event stream, read until this event's
   ``process_completed`` and the server's ``close_stream`` that follows once the session has nothing pending;
4. files in the outputs are fetched from their URL when asked (a user clicking a download link).

Only for our own load tests on 127.0.0.1; it covers the messages our app sends, not all of Gradio's protocol.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

API = "gradio_api"


class QueueFull(RuntimeError):
    """The server answered 503: its queue is full (an acceptable answer under overload)."""


class EventFailed(RuntimeError):
    """The event ran and raised (gr.Error or another exception): the server's message."""


class PageSession:
    """One visitor: a session hash, a keep-alive connection pool, the app's config."""

    def __init__(self, url: str, *, timeout: float = 60.0, config: dict | None = None):
        self.url = url.rstrip("/") + "/"
        self.http = httpx.Client(timeout=timeout)
        self.session_hash = uuid.uuid4().hex[:11]
        self.config = config if config is not None else self.http.get(self.url + "config").json()
        self._components = {c["id"]: c for c in self.config["components"]}
        self._events = {d["api_name"]: d for d in self.config["dependencies"] if d.get("api_name")}

    def close(self) -> None:
        self.http.close()

    def component_id(self, elem_id: str) -> int:
        return next(c["id"] for c in self.config["components"] if c.get("props", {}).get("elem_id") == elem_id)

    def upload(self, path: str | Path, timeout: float | None = None) -> dict:
        """The file as the page's image input sends it: uploaded once, then passed by its server path."""
        path = Path(path)
        with path.open("rb") as handle:
            reply = self.http.post(f"{self.url}{API}/upload", files={"files": (path.name, handle)},
                                   timeout=timeout)
        reply.raise_for_status()
        return {"path": reply.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def call(self, api_name: str, *inputs: Any, timeout: float | None = None, marks: dict | None = None) -> list:
        """Run a queued event with the visible inputs (states are filled in); returns its visible outputs.
        ``marks``, when given, gets the time.perf_counter() of "joined", and of "process_starts" and
        "process_completed" as the event stream said them (where a load test's event waited)."""
        event = self._events[api_name.lstrip("/")]
        event_id = self.join(api_name, *inputs, timeout=timeout)
        if marks is not None:
            marks["joined"] = time.perf_counter()
        result = self.wait(event_id, timeout, marks)
        outputs = result["output"]["data"]
        return [value for component, value in zip(event["outputs"], outputs) if not self._is_state(component)]

    def join(self, api_name: str, *inputs: Any, timeout: float | None = None) -> str:
        """Put the event in the server's queue and return its id, without waiting for it (QueueFull: refused)."""
        event = self._events[api_name.lstrip("/")]
        visible = [c for c in event["inputs"] if not self._is_state(c)]
        if len(inputs) != len(visible):
            raise TypeError(f"/{event['api_name']} takes {len(visible)} inputs, got {len(inputs)}")
        given = iter(inputs)
        data = [None if self._is_state(c) else next(given) for c in event["inputs"]]
        body = {"data": data, "fn_index": event["id"], "session_hash": self.session_hash, "event_data": None,
                "trigger_id": None}
        joined = self.http.post(f"{self.url}{API}/queue/join", json=body, timeout=timeout)
        if joined.status_code == 503:
            raise QueueFull("Queue is full")
        joined.raise_for_status()
        return joined.json()["event_id"]

    def fetch(self, file_data: dict, timeout: float | None = None) -> bytes:
        """A file output's bytes, from its URL, as a browser's download link gets them."""
        url = file_data.get("url") or f"{self.url}{API}/file={file_data['path']}"
        reply = self.http.get(url, timeout=timeout)
        reply.raise_for_status()
        return reply.content

    def _is_state(self, component_id: int) -> bool:
        return self._components.get(component_id, {}).get("type") == "state"

    def wait(self, event_id: str, timeout: float | None = None, marks: dict | None = None) -> dict:
        """The completed message of a joined event, read from the session's event stream (EventFailed if it
        failed or the stream ended first)."""
        completed = None
        with self.http.stream("GET", f"{self.url}{API}/queue/data", params={"session_hash": self.session_hash},
                              timeout=timeout) as stream:
            stream.raise_for_status()
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                kind = message.get("msg")
                if marks is not None and message.get("event_id") == event_id:
                    marks.setdefault(kind, time.perf_counter())
                if kind == "close_stream":
                    break
                if kind == "process_completed" and message.get("event_id") == event_id:
                    completed = message
        if completed is None:
            raise EventFailed(f"the event stream ended before event {event_id} completed")
        if not completed.get("success", False):
            output = completed.get("output") or {}
            raise EventFailed(str(output.get("error") or output.get("title") or "the event failed"))
        return completed
