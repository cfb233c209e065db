"""One helper engine of ``--engines`` (batch_engines.py), in its own process: ``python -m matting.batch_engine_helper
<read fd> <write fd>``, started by the parent's engine pool.

It builds and warms its Pipeline (and its encoder helpers) from the parent's options, says "ready", then for each
run it is sent runs batch.py's stages on the images the parent hands it in chunks, asking for the next chunk before
it runs out, and answers each image's BatchResult as it finishes (a zip output's members as bytes; a folder
output's files its encoders write themselves). A run ends when the parent sends an empty chunk, or a cancel.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import batch_runtime as rt
from .batch import _Job, _Run, failure_reason
from .batch_engines import chunk_size, keep_run_encoders
from .batch_inputs import read_source
from .batch_timeline import Timeline


class _FolderTargets:
    """A helper's stand-in for a folder output: the files the parent named (and made the folders of)."""

    def __init__(self):
        self.targets: dict[str, str] = {}

    def prepared(self, name: PurePosixPath) -> Path:
        return Path(self.targets[str(name)])

    def shown(self, name: PurePosixPath) -> Path:
        return Path(self.targets[str(name)])


class _ZipMembers:
    """A helper's stand-in for a zip output: members kept as bytes, sent back with their image's result."""

    def __init__(self):
        self.members: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def write(self, name: PurePosixPath, data: bytes) -> PurePosixPath:
        with self._lock:
            self.members[str(name)] = data
        return name

    def shown(self, name: PurePosixPath) -> Path:
        return Path(str(name))

    def take(self, names) -> list[bytes]:
        with self._lock:
            return [self.members.pop(str(name)) for name in names]


@dataclass(frozen=True)
class _SourceItem:
    """What the stages need of a helper's input: its name, and its bytes from where the parent said they are
    (batch_inputs.source_of; an archive stays open in this process for later runs, as in Ray's workers)."""

    name: str
    source: dict

    def read_bytes(self) -> bytes:
        return read_source(self.source)


class _Incoming:
    """A helper's jobs for one run, as its feeder takes them: the chunks the parent sends, the next asked for when
    fewer than a chunk's half are left, the run's end when the parent sends an empty one. len() is how many it has
    handed out (batch._Run's contract)."""

    def __init__(self, run_id: int, chunks: queue.SimpleQueue, send, sink, low: int):
        self.run_id, self.chunks, self.send, self.sink, self.low = run_id, chunks, send, sink, low
        self.by_order: dict[int, _Job] = {}
        self.count = 0

    def __iter__(self):
        buffer: deque[_Job] = deque()
        asked, ended = True, False   # the parent sends the first chunk unasked
        while True:
            if not buffer and not ended:
                self._take(self.chunks.get(), buffer)   # nothing left to start: wait for the parent
                asked = False
                if not buffer:
                    ended = True
            while not ended:   # whatever else has arrived, without waiting
                try:
                    chunk = self.chunks.get_nowait()
                except queue.Empty:
                    break
                asked = False
                ended = not self._take(chunk, buffer)
            if not buffer:
                return
            if len(buffer) < self.low and not asked and not ended:
                self.send(("more", self.run_id))
                asked = True
            self.count += 1
            yield buffer.popleft()

    def __len__(self) -> int:
        return self.count

    def _take(self, described: list[dict] | None, buffer: deque) -> bool:
        for d in described or []:
            names = {kind: PurePosixPath(name) for kind, name in d["names"].items()}
            job = _Job(_SourceItem(d["name"], d["source"]), names, d["order"], notices=list(d["notices"]),
                       stamp=d["stamp"])
            if d["targets"] is not None:
                self.sink.targets.update(d["targets"])
            self.by_order[job.order] = job
            buffer.append(job)
        return bool(described)


def _serve(read_fd: int, write_fd: int) -> None:
    """The helper's loop: build and warm the Pipeline, then run its share of each run it is sent until told to
    stop."""
    from multiprocessing.connection import Connection

    recv, send_conn = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    send_lock = threading.Lock()

    def send(message) -> None:   # the feeder thread asks for more while the main thread reports results
        with send_lock:
            send_conn.send(message)

    orders: queue.SimpleQueue = queue.SimpleQueue()
    chunks: dict[int, queue.SimpleQueue] = {}
    cancels: dict[int, threading.Event] = {}

    def listen() -> None:   # chunks and cancels must reach a run while this process's main thread is busy with it
        while True:
            try:
                message = recv.recv()
            except (EOFError, OSError):
                message = None
            if message is None:
                for waiting in chunks.values():
                    waiting.put(None)   # a run waiting for its next chunk ends
                orders.put(None)
                return
            if message[0] == "cancel":
                cancels.setdefault(message[1], threading.Event()).set()
            elif message[0] == "jobs":
                chunks.setdefault(message[1], queue.SimpleQueue()).put(message[2])
            else:
                orders.put(message)

    _, options, batch_size, workers = recv.recv()
    try:
        from .pipeline import Pipeline
        from .process import configure_process

        configure_process()
        keep_run_encoders(options.get("device"), workers)
        pipe = Pipeline(**options)
        rt.warm_up(pipe, batch_size)
    except BaseException as exc:  # noqa: BLE001 - said to the parent
        send(("failed", failure_reason(exc)[0]))
        return
    send(("ready", pipe.summary()))
    threading.Thread(target=listen, daemon=True).start()
    while (order := orders.get()) is not None:
        _, run_id, spec = order
        _run_share(pipe, send, run_id, spec, chunks.setdefault(run_id, queue.SimpleQueue()),
                   cancels.setdefault(run_id, threading.Event()))
        chunks.pop(run_id, None)
        cancels.pop(run_id, None)


def _run_share(pipe, send, run_id: int, spec: dict, chunks: queue.SimpleQueue, cancel: threading.Event) -> None:
    sink = _FolderTargets() if spec["folder"] else _ZipMembers()
    jobs = _Incoming(run_id, chunks, send, sink, low=max(2, chunk_size(spec["batch_size"]) // 2))
    timeline = Timeline() if spec["timeline"] else None
    run = _Run(pipe, sink, jobs, spec["settings"], spec["kinds"], spec["background"], spec["batch_size"],
               spec["workers"], cancel, spec["crop"], None, timeline=timeline)
    for result in run.results():
        encoded = None
        # what a finished job held goes with it (a run of 100,000 images kept 1.8 KB each here until its end)
        names = jobs.by_order.pop(result.order).names.values()
        if isinstance(sink, _ZipMembers) and result.status == "done":
            encoded = sink.take(names)
        elif isinstance(sink, _FolderTargets):
            for name in names:
                sink.targets.pop(str(name), None)
        send(("result", run_id, result, encoded))
    send(("end", run_id, run.busy(), run.threads(), timeline.spans if timeline is not None else []))


if __name__ == "__main__":
    try:
        _serve(*map(int, sys.argv[1:3]))
    except (KeyboardInterrupt, BrokenPipeError):
        pass
