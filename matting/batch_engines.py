"""Several batch engines on one machine (``python -m matting ... --engines N``): this process's own and N - 1
helper processes, each holding its own Pipeline on the same device and running batch.py's stages on the images
it takes from the run's queue.

    with batch_engines(options, engines=2) as (pipeline, executor):
        summary = run_batch(inputs, out, pipeline=pipeline, executor=executor, ...)

Why processes: one engine's threads (decoding, the network, the render's kernel launches, the hand-off to the
encoders) share one GIL, and on a 16-core GPU host that, not the GPU, is where one engine stops: on the H200 one
engine made 259 images/s, two at once 393 together (scripts/batch_processes.py, session 21; docs/BENCHMARKS.md).

This process plans as for one engine (names, resume, the record of outputs: batch.py). Its own engine takes
images from the run's queue one at a time as it has room; a helper takes them in chunks (asking for the next
before it runs out), as plain descriptions: where to read, where to write. Each image's BatchResult comes back as
it finishes; a folder output is written by the helpers' own encoders, a zip output's members come back as bytes
and are written here. A helper that dies mid-run loses nothing: the images it had not answered go back to the
queue. Helpers load their model in the background and join a run when ready (``wait=True`` waits for them first,
as a benchmark does), so a batch of a few images is not held up by them; they stay warm between runs, as the
Pipeline does, until ``close`` (the end of the ``with``). What runs in a helper process: batch_engine_helper.py.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from . import batch_runtime as rt
from .batch import BatchResult, _Job, _Run, failure_reason, stage_groups
from .batch_encode import drop_kept_encoder, keep_encoders
from .batch_inputs import source_of
from .errors import MattingError
from .helper_process import start_helper

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0   # wait=True: a helper's imports, model load and CUDA-graph capture
STOP_WAIT_S = 60.0        # after a cancel, how long a helper may take to finish the images it has started
# A helper in a run that says nothing for this long is taken for stuck: it is stopped and its images go back to the
# queue (a 1 MP image takes milliseconds on a GPU and under a second on a CPU core; the largest a few).
SILENT_S = 120.0
_LOCAL = -1               # the sender of this process's own results in the pool's queue


def chunk_size(batch_size: int) -> int:
    """Images a helper is handed at a time: two network batches, and never fewer than 4."""
    return max(4, 2 * batch_size)


def next_chunk(batch_size: int, left: int, engines: int) -> int:
    """A helper's next chunk: chunk_size, but never more than a share of the images left (guided self-scheduling),
    so that the engines end together. With whole chunks a run of 50 on four engines went 32 to one helper and 18
    to the next, and at 8 MP a chunk of 32 is about 2 s of one engine's work (some 16 images/s each) that the
    others could not share at the run's end."""
    return max(1, min(chunk_size(batch_size), -(-left // (2 * engines))))


# Engine processes on a CUDA GPU by the host's CPU cores (the most cores first): each engine needs cores for its
# decoders and encoders. H200 host, 16 cores, 2000 1 MP photos, alternating in one call (session 25): three engines
# 465.2, 468.0, 440.1, 440.2 images/s against two's 401.0, 418.9, 423.6, 391.7. Before the cleared pixels and the
# numpy upload (session 22) a third engine gained at most 2 %: the cores were then all busy. Each engine's
# inference thread is the busiest (upload + infer 82-87 %) with the cores 70 % busy, and a fourth engine gained:
# 1 MP, four of 3 decoders and encoders against three of 4, 8 of 9 alternating pairs; 8 MP, four of 4 (the
# default, default_workers) 79.6, 85.0 against three's 68.4, 70.8 (session 27, docs/BENCHMARKS.md).
GPU_ENGINES_BY_CORES = ((16, 4), (12, 2))


def default_engines(device) -> int:
    """The engine processes a batch gets when --engines is not given: on a CUDA GPU four with 16 or more CPU
    cores, two with 12 to 15 (GPU_ENGINES_BY_CORES); one elsewhere (on a CPU one engine already uses every core,
    and a small host has no cores for a second engine's decoders and encoders)."""
    from .batch_runtime import cpu_cores
    from .device import resolve_device

    try:
        chosen = resolve_device(device)
    except MattingError:
        return 1   # the Pipeline says what is wrong with the device
    if chosen.type != "cuda":
        return 1
    return next((engines for cores, engines in GPU_ENGINES_BY_CORES if cpu_cores() >= cores), 1)


@contextmanager
def batch_engines(options: dict, engines: int = 1, batch_size: int | None = None, wait: bool = False,
                  workers: int | None = None):
    """(pipeline, executor) for run_batch: this process's Pipeline made from ``options`` (engine_flags), and with
    ``engines`` > 1 an executor spreading every run over it and ``engines - 1`` helper processes (None with one
    engine: run_batch's own stages). ``wait``: return only once every helper is ready (a helper that cannot
    start then fails here, saying why); otherwise they join the runs as they become ready. Every engine starts
    the encoder helpers of runs with ``workers`` (batch_encode.keep_encoders) beside its model's load."""
    from .pipeline import Pipeline

    if engines < 1:
        raise MattingError(f"--engines must be at least 1, got {engines}")
    workers = workers or engine_workers(options.get("device"), engines)
    pool = EnginePool(options, engines - 1, batch_size, workers) if engines > 1 else None   # they load while we do
    kept = None
    try:
        kept = keep_run_encoders(options.get("device"), workers)
        pipeline = Pipeline(**options)
        if pool is None:
            yield pipeline, None
            return
        if wait:
            pool.wait_ready()

        def executor(pipe, sink, jobs, settings, kinds, background, batch_size, run_workers, cancel, crop=None,
                     record=None, timeline=None):
            return EnginesRun(pool, pipe, sink, jobs, settings, kinds, background, batch_size,
                              run_workers or workers, cancel, crop, record, timeline)

        executor.pool = pool   # for whoever wants to wait for the helpers later (pool.wait_ready)
        yield pipeline, executor
    finally:
        if pool is not None:
            pool.close()
        drop_kept_encoder(kept)


def engine_workers(device, engines: int) -> int | None:
    """Decoders and encoders per engine when ``engines`` share the host (batch_runtime.default_workers); None with
    one engine or a device that cannot be had: each run's own default."""
    from .device import resolve_device

    if engines < 2:
        return None
    try:
        return rt.default_workers(resolve_device(device), engines)
    except MattingError:
        return None   # the Pipeline says what is wrong with the device


def keep_run_encoders(device, workers: int | None):
    """Every engine's encoder helpers, started beside its model's load (batch_encode.keep_encoders)."""
    from .device import resolve_device

    try:
        device = resolve_device(device)
    except MattingError:
        return None   # the Pipeline says what is wrong with it
    return keep_encoders(device, workers or rt.default_workers(device))


class _Helper:
    """One helper engine process, the thread that reads what it says into the pool's queue, and its state:
    "starting", "ready" or "gone"."""

    def __init__(self, index: int, options: dict, batch_size: int | None, workers: int | None,
                 inbox: queue.SimpleQueue):
        self.index, self.inbox = index, inbox
        self.process, self._send, self._recv = start_helper("matting.batch_engine_helper")
        self._lock = threading.Lock()
        self.state = "starting"
        self.send(("start", options, batch_size, workers))
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
        if self.state == "starting":
            self.process.kill()   # still loading: nothing of ours to finish
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
    """The helper engines: ``count`` processes, each building a Pipeline from ``options`` and warming it. Their
    messages all arrive in ``inbox`` as (helper index, message)."""

    def __init__(self, options: dict, count: int, batch_size: int | None, workers: int | None = None):
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.helpers: list[_Helper] = []
        self.runs = 0
        try:
            for index in range(count):
                self.helpers.append(_Helper(index, options, batch_size, workers, self.inbox))
        except BaseException:
            self.close()
            raise

    def note(self, sender: int, message) -> bool:
        """Take in a message about a helper's state; True when it was one (else it belongs to a run)."""
        if sender == _LOCAL or message[0] not in ("ready", "failed", "died"):
            return False
        helper = self.helpers[sender]
        if message[0] == "ready":
            helper.state = "ready"
        else:
            if helper.state != "gone":
                log.warning("a batch engine process %s: %s", "cannot start" if message[0] == "failed" else
                            "stopped", message[1] if message[0] == "failed" else f"exit status {message[1]}")
            helper.state = "gone"
        return True

    def catch_up(self) -> None:
        """Take in what the helpers said between runs (ready, gone); an earlier run's leftovers are dropped."""
        while True:
            try:
                sender, message = self.inbox.get_nowait()
            except queue.Empty:
                return
            self.note(sender, message)

    def wait_ready(self) -> None:
        """Until every helper has its Pipeline warm; a helper that cannot start fails the engine, saying why."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while any(helper.state == "starting" for helper in self.helpers):
            try:
                sender, message = self.inbox.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise MattingError(f"the batch engine processes did not start within {START_TIMEOUT_S:.0f} s") \
                    from None
            if message[0] == "failed":
                raise MattingError(f"a batch engine process cannot start: {message[1]}")
            if message[0] == "died":
                raise MattingError(f"a batch engine process stopped while starting (exit status {message[1]})")
            self.note(sender, message)

    def close(self) -> None:
        for helper in self.helpers:
            helper.close(wait_s=10)
        self.helpers = []


class _Taken:
    """This process's engine's jobs: taken from the run's queue one at a time as its feeder has room; len() is how
    many it has taken (batch._Run's contract)."""

    def __init__(self, run: "EnginesRun"):
        self.run, self.count = run, 0

    def __iter__(self):
        while (job := self.run.take(1)):
            self.count += 1
            yield job[0]

    def __len__(self) -> int:
        return self.count


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
        self.stop = threading.Event()   # our own engine's cancel: the user's, or the caller's abort
        self._queue: deque[_Job] = deque(jobs)   # not yet taken by any engine
        self._queue_lock = threading.Lock()
        self._busy: dict[str, float] = {}
        self._threads: dict[str, int] = {}
        self._checked = 0.0   # when _stop_silent_helpers last looked
        self._real_folders: dict[str, str] = {}   # the inputs' folders, looked up once (source_of)
        self.cancelled = False

    def take(self, count: int) -> list[_Job]:
        if self.stop.is_set():
            return []
        with self._queue_lock:
            return [self._queue.popleft() for _ in range(min(count, len(self._queue)))]

    def _chunk(self) -> int:
        return next_chunk(self.batch_size, len(self._queue), 1 + len(self.pool.helpers))

    def _give_back(self, jobs) -> None:
        with self._queue_lock:
            self._queue.extendleft(sorted(jobs, key=lambda job: job.order, reverse=True))

    # ------------------------------------------------------------ caller's thread
    def results(self) -> Iterator[BatchResult]:
        self.pool.runs += 1
        self.run_id = self.pool.runs
        self.pool.catch_up()
        self.by_order = {job.order: job for job in self.jobs}
        self.handed: dict[int, dict[int, _Job]] = {}   # helper index -> its jobs not answered yet
        self.running: set[int] = set()                 # helpers with a share of this run, not ended
        self.heard: dict[int, float] = {}              # helper index -> when it last said something
        for helper in self.pool.helpers:
            if helper.state == "ready":
                self._start(helper)
        local = self._local_run(_Taken(self))
        pump = threading.Thread(target=self._pump, args=(local,), name="matting-engine-local", daemon=True)
        pump.start()
        received, local_running = 0, True
        try:
            while local_running or self.running:
                try:
                    sender, message = self.pool.inbox.get(timeout=0.1)
                except queue.Empty:
                    self._pass_on_cancel()
                    self._stop_silent_helpers()
                    continue
                if sender == _LOCAL:
                    if message[1] != self.run_id:
                        continue   # an earlier run's, stopped early
                    if message[0] == "end":
                        local_running = False
                        self._add(local.busy(), local.threads())
                    elif message[0] == "error":
                        raise message[2]
                    else:
                        received += 1
                        yield message[2]
                else:
                    result = self._helper_says(sender, message)
                    if result is not None:
                        received += 1
                        yield result
                self._pass_on_cancel()
                self._stop_silent_helpers()
            left = self.take(len(self.jobs))   # given back by a helper that died after this engine had finished
            if left:
                rerun = self._local_run(left)
                for result in rerun.results():
                    received += 1
                    yield result
                self._add(rerun.busy(), {})
        except BaseException:
            self.stop.set()   # a callback raised or the caller was interrupted: everyone stops, below
            raise
        finally:
            if self.stop.is_set():
                for index in self.running:
                    self.pool.helpers[index].send(("cancel", self.run_id))
            pump.join()
            self._wait_for_helpers()
            self.cancelled = self.user_cancel.is_set() or received < len(self.jobs)

    def busy(self) -> dict[str, float]:
        return {stage: seconds for stage, seconds in self._busy.items() if seconds > 0}

    def threads(self) -> dict[str, int]:
        return dict(self._threads)

    def groups(self) -> list[tuple[str, ...]]:
        return stage_groups(rt.is_gpu(self.pipe.device))

    # ------------------------------------------------------------ this process's engine
    def _local_run(self, jobs) -> _Run:
        return _Run(self.pipe, self.sink, jobs, self.settings, self.kinds, self.background, self.batch_size,
                    self.workers, self.stop, self.crop, self.record, timeline=self.timeline)

    def _pump(self, run: _Run) -> None:
        """This process's engine, from a thread: its results join the helpers' in the pool's queue."""
        try:
            for result in run.results():
                self.pool.inbox.put((_LOCAL, ("result", self.run_id, result)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.pool.inbox.put((_LOCAL, ("error", self.run_id, exc)))
        self.pool.inbox.put((_LOCAL, ("end", self.run_id)))

    def _pass_on_cancel(self) -> None:
        if self.user_cancel.is_set() and not self.stop.is_set():
            self.stop.set()
            for index in self.running:
                self.pool.helpers[index].send(("cancel", self.run_id))

    def _add(self, busy: dict, threads: dict) -> None:
        for stage, seconds in busy.items():
            self._busy[stage] = self._busy.get(stage, 0.0) + seconds
        for stage, count in threads.items():
            self._threads[stage] = self._threads.get(stage, 0) + count

    # ------------------------------------------------------------ the helpers
    def _start(self, helper: _Helper) -> None:
        """A ready helper joins this run with its first chunk, if any image is left."""
        jobs = self.take(self._chunk())
        if not jobs:
            return
        spec = {"settings": self.settings, "kinds": self.kinds, "background": self.background,
                "batch_size": self.batch_size, "workers": self.workers, "crop": self.crop,
                "folder": hasattr(self.sink, "prepared"), "timeline": self.timeline is not None}
        helper.send(("run", self.run_id, spec))
        self.running.add(helper.index)
        self.heard[helper.index] = time.monotonic()
        self.handed[helper.index] = {}
        self._hand(helper, jobs)

    def _hand(self, helper: _Helper, jobs: list[_Job]) -> None:
        """Jobs to a helper (none: it has had the last)."""
        self.handed[helper.index].update((job.order, job) for job in jobs)
        helper.send(("jobs", self.run_id, [self._describe(job) for job in jobs]))

    def _stop_silent_helpers(self) -> None:
        """A helper in the run that has said nothing for SILENT_S is stopped; its reader then reports it gone, and
        its images go back to the queue (without this, a run would wait for it for ever)."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return   # once a second is enough, however busy the others keep the queue
        self._checked = now
        for index in list(self.running):
            if now - self.heard.get(index, now) > SILENT_S:
                log.warning("a batch engine process said nothing for %.0f s: stopping it", SILENT_S)
                self.heard[index] = float("inf")   # once
                self.pool.helpers[index].process.kill()

    def _helper_says(self, sender: int, message) -> BatchResult | None:
        """A helper's message during the run; the BatchResult to report when it was one."""
        kind = message[0]
        if sender in self.running and self.heard.get(sender) != float("inf"):
            self.heard[sender] = time.monotonic()
        if self.pool.note(sender, message):
            if kind == "ready" and not self.stop.is_set():
                self._start(self.pool.helpers[sender])
            elif kind in ("died", "failed") and sender in self.running:
                self.running.discard(sender)
                left = self.handed.pop(sender, {})
                self._give_back(left.values())   # this engine or another helper takes them
            return None
        if len(message) < 2 or message[1] != self.run_id:
            return None   # an earlier run's, stopped early
        if kind == "more":
            self._hand(self.pool.helpers[sender], self.take(self._chunk()))
        elif kind == "result":
            result = message[2]
            self.handed.get(sender, {}).pop(result.order, None)
            return self._finish(self.by_order[result.order], result, message[3])
        elif kind == "end":
            self.running.discard(sender)
            left = self.handed.pop(sender, {})
            if left and not self.stop.is_set():
                self._give_back(left.values())
            self._add(message[2], message[3])
            if self.timeline is not None:
                # perf_counter is the machine's monotonic clock (Linux, macOS, Windows): the helper's times are ours
                for span in message[4]:
                    self.timeline.add(*span)
        return None

    def _wait_for_helpers(self) -> None:
        """Until every helper with a share of this run has ended it, so none writes after run_batch returns; a
        helper that does not end within STOP_WAIT_S is stopped for good (later runs go without it)."""
        deadline = time.monotonic() + STOP_WAIT_S
        while self.running and time.monotonic() < deadline:
            try:
                sender, message = self.pool.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if sender == _LOCAL:
                continue
            if self.pool.note(sender, message):
                if message[0] in ("died", "failed"):
                    self.running.discard(sender)
            elif message[0] == "more" and message[1] == self.run_id:
                self._hand(self.pool.helpers[sender], [])
            elif message[0] == "end" and message[1] == self.run_id:
                self.running.discard(sender)
        for index in self.running:
            helper = self.pool.helpers[index]
            helper.state = "gone"
            helper.process.kill()

    def _describe(self, job: _Job) -> dict:
        """What a helper needs to run ``job``: where it reads and writes. A folder output's files are named here
        (the helper's encoders write them); a zip output's members come back as bytes."""
        folder = hasattr(self.sink, "prepared")
        return {"order": job.order, "name": job.item.name, "source": source_of(job.item, self._real_folders),
                "names": {kind: str(name) for kind, name in job.names.items()},
                "targets": {str(name): str(self.sink.prepared(name)) for name in job.names.values()}
                if folder else None,
                "notices": list(job.notices), "stamp": job.stamp}

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
