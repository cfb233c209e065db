"""Several batch engines on one machine (``python -m matting ... --engines N``): this process's own and N - 1
helper processes, each holding its own Pipeline on the same device and running batch.py's stages on its share of
a run's images.

    with batch_engines(options, engines=2) as (pipeline, executor):
        summary = run_batch(inputs, out, pipeline=pipeline, executor=executor, ...)

Why processes: one engine's threads (decoding, the network, the render's kernel launches, the hand-off to the
encoders) share one GIL, and on a 16-core GPU host that, not the GPU, is where one engine stops: on the H200 one
engine made 259 images/s, two at once 393 together (scripts/batch_processes.py, session 21; docs/BENCHMARKS.md).

This process plans as for one engine (names, resume, the record of outputs: batch.py) and runs every N-th job
itself; the helpers get theirs as plain descriptions (where to read, where to write) and answer each image's
BatchResult as it finishes. A folder output is written by the helpers' own encoders; a zip output's members come
back as bytes and are written here. A helper that dies mid-run loses nothing: the images it had not answered are
run here after this process's own share. The helpers start with the engine and stay warm between runs, as the
Pipeline does; ``close`` (the end of the ``with``) stops them.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from . import batch_runtime as rt
from .batch import BatchResult, _Job, _Run, failure_reason
from .batch_inputs import InputItem, ZipInput
from .errors import MattingError
from .helper_process import start_helper

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0   # a helper's imports, model load and CUDA-graph capture (seconds on a GPU host)
STOP_WAIT_S = 60.0        # after a cancel, how long a helper may take to finish the images it has started
_LOCAL = -1               # the sender of this process's own results in the shared queue


@contextmanager
def batch_engines(options: dict, engines: int = 1, batch_size: int | None = None):
    """(pipeline, executor) for run_batch: this process's Pipeline made from ``options`` (engine_flags), and with
    ``engines`` > 1 an executor spreading every run over it and ``engines - 1`` warm helper processes (None with
    one engine: run_batch's own stages)."""
    from .pipeline import Pipeline

    if engines < 1:
        raise MattingError(f"--engines must be at least 1, got {engines}")
    pool = EnginePool(options, engines - 1, batch_size) if engines > 1 else None   # they load while we do
    try:
        pipeline = Pipeline(**options)
        if pool is None:
            yield pipeline, None
            return
        pool.wait_ready(batch_size or rt.default_batch_size(pipeline.device))

        def executor(pipe, sink, jobs, settings, kinds, background, batch_size, workers, cancel, crop=None,
                     record=None, timeline=None):
            return EnginesRun(pool, pipe, sink, jobs, settings, kinds, background, batch_size, workers, cancel,
                              crop, record, timeline)

        yield pipeline, executor
    finally:
        if pool is not None:
            pool.close()


class _Helper:
    """One helper engine process and the thread that reads what it says into the pool's queue."""

    def __init__(self, index: int, options: dict, batch_size: int | None, inbox: queue.SimpleQueue):
        self.index, self.inbox = index, inbox
        self.process, self._send, self._recv = start_helper("matting.batch_engines")
        self._lock = threading.Lock()
        self.alive = True
        self.send(("start", options, batch_size))
        self._reader = threading.Thread(target=self._read, name=f"matting-engine-{index}", daemon=True)
        self._reader.start()

    def send(self, message) -> None:
        with self._lock:
            try:
                self._send.send(message)
            except (OSError, ValueError):   # it has gone; its reader says so
                pass

    def _read(self) -> None:
        while True:
            try:
                message = self._recv.recv()
            except (EOFError, OSError):
                self.process.wait()
                self.inbox.put((self.index, ("died", self.process.returncode)))
                return
            self.inbox.put((self.index, message))

    def close(self, wait_s: float) -> None:
        self.send(None)
        try:
            self.process.wait(timeout=wait_s)
        except Exception:  # noqa: BLE001 - TimeoutExpired: it does not stop by itself
            self.process.kill()
            self.process.wait()
        self._send.close()
        self._reader.join(timeout=5)
        self._recv.close()


class EnginePool:
    """The helper engines: ``count`` processes, each building a Pipeline from ``options`` and warming it."""

    def __init__(self, options: dict, count: int, batch_size: int | None):
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()   # (helper index or _LOCAL, message) from all of them
        self.helpers: list[_Helper] = []
        self.runs = 0
        try:
            for index in range(count):
                self.helpers.append(_Helper(index, options, batch_size, self.inbox))
        except BaseException:
            self.close()
            raise

    def wait_ready(self, batch_size: int) -> None:
        """Until every helper has its Pipeline warm; a helper that cannot start fails the engine, saying why."""
        waiting = {helper.index for helper in self.helpers}
        deadline = time.monotonic() + START_TIMEOUT_S
        while waiting:
            try:
                index, message = self.inbox.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise MattingError(f"the batch engine processes did not start within {START_TIMEOUT_S:.0f} s") \
                    from None
            if message[0] == "ready":
                waiting.discard(index)
            elif message[0] == "failed":
                raise MattingError(f"a batch engine process cannot start: {message[1]}")
            elif message[0] == "died":
                raise MattingError(f"a batch engine process stopped while starting (exit status {message[1]})")

    def live(self) -> list[_Helper]:
        return [helper for helper in self.helpers if helper.alive]

    def close(self) -> None:
        for helper in self.helpers:
            helper.close(wait_s=10)
        self.helpers = []


class EnginesRun:
    """One batch over this process's engine and the pool's: the same interface as batch._Run (results, busy,
    threads, cancelled)."""

    def __init__(self, pool: EnginePool, pipe, sink, jobs: list[_Job], settings, kinds, background, batch_size: int,
                 workers: int | None, cancel: threading.Event, crop=None, record=None, timeline=None):
        self.pool, self.pipe, self.sink, self.jobs = pool, pipe, sink, jobs
        self.settings, self.kinds, self.background, self.crop = settings, kinds, background, crop
        self.batch_size, self.workers, self.user_cancel = batch_size, workers, cancel
        self.manifest, self.recipe = record if record else (None, "")
        self.record, self.timeline = record, timeline
        self.stop = threading.Event()   # our own runs' cancel: the user's, or the caller's abort
        self._busy: dict[str, float] = {}
        self._threads: dict[str, int] = {}
        self.cancelled = False

    # ------------------------------------------------------------ caller's thread
    def results(self) -> Iterator[BatchResult]:
        self.pool.runs += 1
        run_id, helpers = self.pool.runs, self.pool.live()
        shares = [self.jobs[i::len(helpers) + 1] for i in range(len(helpers) + 1)]
        by_order = {job.order: job for job in self.jobs}
        pending = {}   # helper index -> the orders it has not answered yet
        for helper, share in zip(helpers, shares[1:]):
            if share:
                helper.send(("run", run_id, self._describe(share)))
                pending[helper.index] = {job.order for job in share}
        local = self._local_run(shares[0])
        pump = threading.Thread(target=self._pump, args=(local, run_id), name="matting-engine-local", daemon=True)
        pump.start()
        received, orphans, local_running = 0, [], True
        try:
            while local_running or pending:
                try:
                    sender, message = self.pool.inbox.get(timeout=0.1)
                except queue.Empty:
                    self._pass_on_cancel(helpers)
                    continue
                kind = message[0]
                if sender == _LOCAL:
                    if message[1] != run_id:
                        continue   # an earlier run's, stopped early
                    if kind == "end":
                        local_running = False
                        self._add(local.busy(), local.threads())
                    elif kind == "error":
                        raise message[2]
                    else:
                        received += 1
                        yield message[2]
                elif kind == "result" and message[1] == run_id:
                    pending.get(sender, set()).discard(message[2].order)
                    received += 1
                    yield self._finish(by_order[message[2].order], message[2], message[3])
                elif kind == "end" and message[1] == run_id:
                    pending.pop(sender, None)
                    self._add(message[2], message[3])
                elif kind == "died":
                    self.pool.helpers[sender].alive = False
                    left = pending.pop(sender, set())
                    if left:
                        log.warning("a batch engine process stopped (exit status %s); its %d images left run here",
                                    message[1], len(left))
                        orphans += [by_order[order] for order in sorted(left)]
                self._pass_on_cancel(helpers)
            if orphans and not self.stop.is_set():
                rerun = self._local_run(orphans)
                for result in rerun.results():
                    received += 1
                    yield result
                self._add(rerun.busy(), {})
        except BaseException:
            self.stop.set()   # a callback raised or the caller was interrupted: everyone stops, below
            raise
        finally:
            if self.stop.is_set():
                for helper in helpers:
                    helper.send(("cancel", run_id))
            pump.join()
            self._wait_for(pending, run_id)
            self.cancelled = self.user_cancel.is_set() or received < len(self.jobs)

    def busy(self) -> dict[str, float]:
        return {stage: seconds for stage, seconds in self._busy.items() if seconds > 0}

    def threads(self) -> dict[str, int]:
        return dict(self._threads)

    # ------------------------------------------------------------ this process's share
    def _local_run(self, jobs: list[_Job]) -> _Run:
        return _Run(self.pipe, self.sink, jobs, self.settings, self.kinds, self.background, self.batch_size,
                    self.workers, self.stop, self.crop, self.record, timeline=self.timeline)

    def _pump(self, run: _Run, run_id: int) -> None:
        """This process's share, from a thread: its results join the helpers' in the pool's queue."""
        try:
            for result in run.results():
                self.pool.inbox.put((_LOCAL, ("result", run_id, result)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.pool.inbox.put((_LOCAL, ("error", run_id, exc)))
        self.pool.inbox.put((_LOCAL, ("end", run_id)))

    def _pass_on_cancel(self, helpers: list[_Helper]) -> None:
        if self.user_cancel.is_set() and not self.stop.is_set():
            self.stop.set()
            for helper in helpers:
                helper.send(("cancel", self.pool.runs))

    def _add(self, busy: dict, threads: dict) -> None:
        for stage, seconds in busy.items():
            self._busy[stage] = self._busy.get(stage, 0.0) + seconds
        for stage, count in threads.items():
            self._threads[stage] = self._threads.get(stage, 0) + count

    def _wait_for(self, pending: dict, run_id: int) -> None:
        """Until every helper that ran a share has ended it, so none writes after run_batch returns; a helper that
        does not end within STOP_WAIT_S is stopped for good (later runs go without it)."""
        deadline = time.monotonic() + STOP_WAIT_S
        while pending and time.monotonic() < deadline:
            try:
                sender, message = self.pool.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if message[0] == "died" and sender != _LOCAL:
                self.pool.helpers[sender].alive = False
                pending.pop(sender, None)
            elif message[0] == "end" and message[1] == run_id:
                pending.pop(sender, None)
        for index in pending:
            helper = self.pool.helpers[index]
            helper.alive = False
            helper.process.kill()

    # ------------------------------------------------------------ the helpers' shares
    def _describe(self, jobs: list[_Job]) -> dict:
        """What a helper needs to run ``jobs``: where each reads and writes, the run's settings. A folder output's
        files are named here (the helper's encoders write them); a zip output's members come back as bytes."""
        folder = hasattr(self.sink, "prepared")
        described = []
        for job in jobs:
            item = job.item
            source = ({"zip": str(item.archive.path), "member": item.member} if item.archive is not None
                      else {"url": item.url, "url_stamp": item.url_stamp} if item.url is not None
                      else {"path": str(item.path)})
            described.append({"order": job.order, "name": item.name, "rel": str(item.rel), "source": source,
                              "names": {kind: str(name) for kind, name in job.names.items()},
                              "targets": {str(name): str(self.sink.prepared(name)) for name in job.names.values()}
                              if folder else None,
                              "notices": list(job.notices), "stamp": job.stamp})
        return {"jobs": described, "settings": self.settings, "kinds": self.kinds, "background": self.background,
                "batch_size": self.batch_size, "workers": self.workers, "crop": self.crop}

    def _finish(self, job: _Job, result: BatchResult, encoded: list[bytes] | None) -> BatchResult:
        """A helper's result as this process reports it: a zip's members written, the outputs recorded."""
        if result.status != "done":
            return result
        try:
            for index, name in enumerate(job.names.values()):
                if encoded is not None:
                    self.sink.write(name, encoded[index])
                if self.manifest is not None:
                    self.manifest.add(name, job.item.name, job.stamp, self.recipe)
        except Exception as exc:  # noqa: BLE001 - this image's output failed; the batch goes on
            text, code = failure_reason(exc)
            return job.outcome("failed", text, code=code)
        return result


# ------------------------------------------------------------------ inside a helper process
class _FolderTargets:
    """A helper's stand-in for a folder output: the files this process named (their folders made)."""

    def __init__(self, targets: dict[str, str]):
        self.targets = targets

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


def _jobs(described: list[dict], archives: dict[str, ZipInput]) -> list[_Job]:
    jobs = []
    for d in described:
        source = d["source"]
        if "zip" in source:
            archive = archives.get(source["zip"]) or archives.setdefault(source["zip"], ZipInput(Path(source["zip"])))
            item = InputItem(d["name"], PurePosixPath(d["rel"]), archive=archive, member=source["member"])
        elif "url" in source:
            item = InputItem(d["name"], PurePosixPath(d["rel"]), url=source["url"], url_stamp=source["url_stamp"])
        else:
            item = InputItem(d["name"], PurePosixPath(d["rel"]), path=Path(source["path"]))
        names = {kind: PurePosixPath(name) for kind, name in d["names"].items()}
        jobs.append(_Job(item, names, d["order"], notices=list(d["notices"]), stamp=d["stamp"]))
    return jobs


def _serve(read_fd: int, write_fd: int) -> None:
    """The helper's loop: build and warm the Pipeline, then run the shares it is sent until told to stop."""
    from multiprocessing.connection import Connection

    recv, send = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    orders: queue.SimpleQueue = queue.SimpleQueue()
    cancels: dict[int, threading.Event] = {}

    def listen() -> None:   # a cancel must reach the run while this process's main thread is busy with it
        while True:
            try:
                message = recv.recv()
            except (EOFError, OSError):
                message = None
            if message is not None and message[0] == "cancel":
                cancels.setdefault(message[1], threading.Event()).set()
                continue
            orders.put(message)
            if message is None:
                return

    _, options, batch_size = recv.recv()
    try:
        from .pipeline import Pipeline
        from .process import configure_process

        configure_process()
        pipe = Pipeline(**options)
        rt.warm_up(pipe, batch_size)
    except BaseException as exc:  # noqa: BLE001 - said to the parent, which fails the engine with it
        send.send(("failed", failure_reason(exc)[0]))
        return
    send.send(("ready", pipe.summary()))
    threading.Thread(target=listen, daemon=True).start()
    while (order := orders.get()) is not None:
        _, run_id, spec = order
        _run_share(pipe, send, run_id, spec, cancels.setdefault(run_id, threading.Event()))


def _run_share(pipe, send, run_id: int, spec: dict, cancel: threading.Event) -> None:
    archives: dict[str, ZipInput] = {}
    try:
        jobs = _jobs(spec["jobs"], archives)
        sink = _FolderTargets({t: p for d in spec["jobs"] for t, p in d["targets"].items()}) \
            if spec["jobs"] and spec["jobs"][0]["targets"] is not None else _ZipMembers()
        run = _Run(pipe, sink, jobs, spec["settings"], spec["kinds"], spec["background"], spec["batch_size"],
                   spec["workers"], cancel, spec["crop"], None)
        by_order = {job.order: job for job in jobs}
        for result in run.results():
            encoded = None
            if isinstance(sink, _ZipMembers) and result.status == "done":
                encoded = sink.take(by_order[result.order].names.values())
            send.send(("result", run_id, result, encoded))
        send.send(("end", run_id, run.busy(), run.threads()))
    finally:
        for archive in archives.values():
            archive.close()


if __name__ == "__main__":
    try:
        _serve(*map(int, sys.argv[1:3]))
    except (KeyboardInterrupt, BrokenPipeError):   # Ctrl-C reaches the whole group; the parent says what stopped
        pass
