"""The batch engine: many images through one pipeline, every stage busy at once, memory bounded.

    summary = run_batch(["photos/", "more.zip"], "out/", kinds=("cutout", "alpha"))

Stages, each overlapping the others:

    feeder -slot-> decode pool -queue-> inference thread(s) --> render ----------> encode pool --> caller's thread
    (1 thread)     read + decode        upload, stack up to     GPU: 2 threads    encode, write    on_result,
                   (W threads)          batch_size images,      CPU: in the       (W threads; on   counts
                                        one network call        inference thread  a GPU with fpng
                                                                                  P processes, a
                                                                                  thread each)

- Decoding (OpenCV releases the GIL) and encoding run in pools of ``workers`` threads (encoding: one per helper
  process where there are more); the network runs in its own thread(s), so the next batch decodes while this
  one is inferred and the last one encoded.
- GPU batching: the network's input is always the model's size (320 x 320), so any images stack, whatever their
  own sizes; the inference thread takes what is ready, up to ``batch_size``, and never waits for a full batch.
  All CUDA work happens in the inference and render threads, each on its own stream (batch_runtime.py).
- Bounded memory: the feeder takes a slot before it starts an image and the caller's thread gives it back when
  the image is finished; at most ``max_in_flight`` images are anywhere in the pipeline. Nothing holds the set.
- Errors belong to their image: a bad file, a zip bomb or a failed write becomes a "failed" result with a
  one-line reason, and the batch goes on.
- Cancel: once the event is set no stage starts new work on any image; what is already written stays valid
  (atomic writes) and run_batch returns after the threads have stopped, with ``cancelled=True``.

Inputs: batch_inputs.py. Output names, resume and sinks: batch_outputs.py. Encoding: batch_encode.py. Defaults
per device and their measurements: batch_runtime.py.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from . import batch_runtime as rt
from .batch_encode import give_back, make_encoder, take_kept_encoder
from .batch_inputs import Discovery, InputItem, discover
from .batch_manifest import Manifest, input_stamp, recipe_of
from .batch_outputs import (COMPOSITE_FORMATS, KINDS, OutputError, allocate_names, inputs_in_folder, open_sink,
                            refuse_output_that_is_an_input, write_atomic)
from .batch_timeline import Timeline
from .crop import CropMargin, crop_box, cut_to
from .decode import decode_image
from .decode_device import PendingJpeg, decode_pending, jpeg_on_device, pending_jpeg
from .errors import InvalidParameterError, MattingError
from .notices import Notice
from .settings import EdgeSettings, parse_color

log = logging.getLogger(__name__)

__all__ = ["BatchResult", "BatchSummary", "OutputError", "run_batch", "warm_up", "default_batch_size",
           "default_workers"]
warm_up = rt.warm_up
default_batch_size = rt.default_batch_size
default_workers = rt.default_workers

STAGES = ("read", "decode", "upload", "infer", "render", "encode", "write")
WHITE = (255, 255, 255)


@dataclass
class BatchResult:
    name: str                        # input's display name (relative path inside a folder or zip, else file name)
    status: str                      # "done" | "skipped" | "failed"
    error: str | None                # one-line, user-readable, when failed
    size: tuple[int, int] | None     # (width, height) of the output
    ms: float                        # wall time attributed to this image (sum of its stages)
    outputs: list[Path]              # files written (inside the output folder; for a zip output, the member names)
    notices: list[Notice]            # e.g. "Large image: ... was reduced ..."
    order: int = 0                   # the input's place among all inputs found (BatchSummary.results follow it)
    error_code: str | None = None    # the kind of failure, stable for translation: a MattingError's code, or
                                     # input_error, write_error, out_of_memory, unexpected


@dataclass
class BatchSummary:
    results: list[BatchResult]
    done: int
    skipped: int
    failed: int
    seconds: float
    images_per_second: float         # images processed (done) per second of wall time
    stage_busy: dict[str, float]     # seconds busy per stage, summed over the stage's threads
    cancelled: bool
    total: int = 0                   # items found, including those a cancel left untouched
    stage_threads: dict[str, int] = field(default_factory=dict)  # threads serving each stage
    stage_groups: list[tuple[str, ...]] = field(default_factory=list)  # stages served by the same threads
    repeats: int = 0                 # images named again by a later input, done once (batch_inputs.py)

    def utilisation(self) -> dict[str, float]:
        """Busy fraction of each stage's threads over the run."""
        wall = max(self.seconds, 1e-9)
        return {stage: busy / (wall * self.stage_threads.get(stage, 1)) for stage, busy in self.stage_busy.items()}

    def limiting_stage(self) -> str | None:
        """The stage whose threads are busiest, counted alone (see busiest_threads for threads shared by stages)."""
        usage = self.utilisation()
        return max(usage, key=usage.get) if usage else None

    def thread_utilisation(self) -> dict[str, float]:
        """Busy fraction of each set of threads, its stages added up ("upload + infer": on a GPU one inference
        thread uploads and runs the network, and each stage alone looked half as busy as that thread was)."""
        wall = max(self.seconds, 1e-9)
        groups = self.stage_groups or [(stage,) for stage in self.stage_busy]
        shares = {}
        for group in groups:
            busy = sum(self.stage_busy.get(stage, 0.0) for stage in group)
            if busy > 0:
                threads = max(self.stage_threads.get(stage, 1) for stage in group)   # the same for each
                shares[" + ".join(group)] = busy / (wall * threads)
        return shares

    def busiest_threads(self) -> str | None:
        """The set of threads that limits the run: the busiest one, named by its stages."""
        usage = self.thread_utilisation()
        return max(usage, key=usage.get) if usage else None


def run_batch(inputs, output, *, pipeline=None, settings: EdgeSettings | None = None, kinds=("cutout",),
              background=None, composite_format: str = "jpg", overwrite: bool = False, recursive: bool = False,
              batch_size: int | None = None, workers: int | None = None, cancel: threading.Event | None = None,
              on_result: Callable[[BatchResult, int, int], None] | None = None,
              crop: CropMargin | None = None, executor: Callable[..., "_Run"] | None = None,
              timeline: Timeline | None = None, on_planned: Callable[[int], None] | None = None) -> BatchSummary:
    """Matte every image of ``inputs`` into ``output`` (a folder, or a path ending in .zip); see the module doc.
    ``crop``: trim every output to the subject's box plus this margin (matting.crop).
    ``executor``: what runs the planned jobs, called like ``_Run`` and giving an object with its ``results()``,
    ``busy()``, ``threads()``, ``cancelled`` and, if it can say, ``groups()`` (the stages each set of threads
    serves) (default: this process's stages; matting.ray_batch spreads them over a Ray cluster, with the same
    names, resume and per-image results).
    ``timeline``: records when each stage was busy (matting.batch_timeline; the engine processes' too, not Ray's).
    ``on_planned(total)``: once the inputs are listed and their outputs planned, before any result (a run of
    100,000 photos takes seconds to get there).

    Raises InvalidParameterError for bad arguments and OutputError when the output cannot be used; everything
    that goes wrong with one image is reported in its BatchResult instead.
    """
    kinds, composite_format, background = _check_options(kinds, composite_format, background)
    if batch_size is not None and batch_size < 1:
        raise InvalidParameterError(f"batch size must be at least 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise InvalidParameterError(f"workers must be at least 1, got {workers}")
    if pipeline is None:
        from .pipeline import get_pipeline

        pipeline = get_pipeline()
    start = time.perf_counter()
    refuse_output_that_is_an_input(inputs, output)
    sink = open_sink(output, overwrite)
    found = discover(inputs, recursive=recursive, exclude=Path(output) if sink.folder == Path(output) else None)
    results: list[BatchResult] = []
    run = None
    manifest = Manifest.load(sink, overwrite)
    recipe = recipe_of(pipeline, settings or EdgeSettings(), background, composite_format, crop)
    try:
        jobs, early = _plan(found, sink, kinds, composite_format, overwrite, manifest, recipe)
        total = len(found.items)
        if on_planned:
            on_planned(total)
        for result in early:
            results.append(result)
            if on_result:
                on_result(result, len(results), total)
        if jobs:
            device = pipeline.device
            # ``workers`` as given: None lets each executor choose (threads per pool here, Ray's own task count)
            run = (executor or _Run)(pipeline, sink, jobs, settings or EdgeSettings(), kinds, background,
                                     batch_size or rt.default_batch_size(device), workers,
                                     cancel or threading.Event(), crop, (manifest, recipe), timeline=timeline)
            with closing(run.results()) as stream:
                for result in stream:
                    results.append(result)
                    if on_result:
                        on_result(result, len(results), total)
    finally:
        found.close()
        manifest.close()
        sink.close()
    seconds = time.perf_counter() - start
    counts = {status: sum(r.status == status for r in results) for status in ("done", "skipped", "failed")}
    results.sort(key=lambda r: r.order)   # input order; on_result saw them as they finished
    return BatchSummary(results=results, **counts, seconds=seconds, images_per_second=counts["done"] / seconds,
                        stage_busy=run.busy() if run else {}, cancelled=bool(run and run.cancelled),
                        total=len(found.items), stage_threads=run.threads() if run else {},
                        stage_groups=list(getattr(run, "groups", lambda: [])()) if run else [],
                        repeats=found.repeats)


def _check_options(kinds, composite_format: str, background):
    kinds = tuple(dict.fromkeys([kinds] if isinstance(kinds, str) else kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        got = ", ".join(map(str, kinds)) or "none"
        raise InvalidParameterError(f"output kinds must be some of {', '.join(KINDS)}; got {got}")
    fmt = str(composite_format).lower().lstrip(".").replace("jpeg", "jpg")
    if fmt not in COMPOSITE_FORMATS:
        raise InvalidParameterError(f"composite format must be jpg or png, got {composite_format!r}")
    if background is not None and not isinstance(background, np.ndarray):
        background = parse_color(background)
    if "composite" in kinds and background is None:
        background = WHITE
    return kinds, fmt, background


@dataclass(eq=False)
class _Job:
    item: InputItem
    names: dict[str, PurePosixPath]
    order: int = 0          # the item's place in the inputs
    seconds: dict[str, float] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    payload: object = None  # what the next stage needs: DecodedImage, then MatteResult, then Rendered
    stamp: str = ""         # the input's identity for the record of outputs (batch_manifest.py)
    timeline: Timeline | None = None

    def timed(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - started
        if self.timeline is not None:
            self.timeline.add(stage, started, now)
        return now

    def outcome(self, status: str, error: str | None = None, size=None, outputs=(),
                code: str | None = None) -> BatchResult:
        return BatchResult(self.item.name, status, error, size, sum(self.seconds.values()) * 1000,
                           list(outputs), list(self.notices), self.order, code)


def _plan(found: Discovery, sink, kinds, composite_format: str, overwrite: bool, manifest: Manifest, recipe: str):
    """Split the items into jobs to run and results known at once (input errors, outputs already made the same
    way); outputs that an earlier recipe made and this run will not make again are removed (batch_manifest.py)."""
    usable = [item for item in found.items if item.error is None]
    names = dict(zip(map(id, usable), allocate_names([i.rel for i in usable], kinds, composite_format)))

    @functools.cache
    def guarded() -> set[Path]:   # input files the output folder holds; only an output that exists can be one
        return inputs_in_folder([i.path for i in usable if i.path is not None], sink.folder)

    jobs, early = [], []
    for order, item in enumerate(found.items):
        job = _Job(item, names.get(id(item), {}), order)
        if item.error is not None:
            early.append(job.outcome("failed", item.error, code="input_error"))
            continue
        existing = [name for name in job.names.values() if sink.has(name)]
        clash = sink.overwrites(existing, guarded()) if existing and hasattr(sink, "overwrites") else None
        if clash is not None:
            early.append(job.outcome("failed", f"its output {clash} would overwrite an input file in the output "
                                               f"folder (name another output folder)", code="write_error"))
            continue
        job.stamp = input_stamp(item)
        if not overwrite and len(existing) == len(job.names) and all(
                manifest.made_same(name, item.name, job.stamp, recipe) for name in existing):
            early.append(job.outcome("skipped", outputs=[sink.shown(name) for name in existing]))
            continue
        if existing and not overwrite:
            job.notices.append(REDONE)
        for name in manifest.stale(item.name, recipe, job.names.values()):
            sink.remove(name)
            manifest.forget(name)
            job.notices.append(Notice("removed", name=name))
        jobs.append(job)
    return jobs, early


REDONE = Notice("redone")
_DROPPED = object()   # a job abandoned after a cancel: counted, not reported
_STOP = object()      # tells an inference thread that no more images will come
RENDER_JOBS = 16      # GPU: at most this many images per render call (Pipeline.render_many stacks them)


class _Run:
    """One batch in flight: the threads, the queues and the per-stage clocks."""

    def __init__(self, pipe, sink, jobs: list[_Job], settings: EdgeSettings, kinds, background, batch_size: int,
                 workers: int | None, cancel: threading.Event, crop: CropMargin | None = None, record=None,
                 timeline: Timeline | None = None):
        # a list, or any iterable with a len() of the jobs it has handed out (batch_engines.py: jobs taken from a
        # queue shared with other engines); the feeder goes through it once
        self.pipe, self.sink, self.jobs = pipe, sink, jobs
        self.timeline = timeline
        self.crop = crop
        self.manifest, self.recipe = record if record else (None, "")
        self.settings, self.kinds, self.background = settings, kinds, background
        self.batch_size, self.workers = batch_size, workers or rt.default_workers(pipe.device)
        self.encode_threads = self.workers   # and one per encoder process where there are more (_size_encoding)
        self.streams = rt.inference_threads(pipe.device)
        # On a GPU every CUDA call is made from two threads only (inference, render): many threads issuing small
        # kernels and device-wide syncs mostly wait on each other and on the GIL (measured on an H100: 27 images/s
        # with renders in 16 worker threads). On the CPU the render is real arithmetic and each inference thread
        # renders its own images: one busy thread per core (rendering in the pool instead, 2 cores: 4.35 against
        # 4.50 images/s, median of 3 pairs, 1 MP default edges; the extra busy threads slowed the network).
        self.gpu = rt.is_gpu(pipe.device)
        self.png_kinds = rt.png_on_device(pipe.device, kinds, crop)
        self.jpeg_on_device = jpeg_on_device(pipe.device)   # plain JPEGs left for nvJPEG (decode_device.py)
        self.user_cancel = cancel
        self.abort = threading.Event()  # set when the caller's thread itself fails (callback error, Ctrl-C)
        self._size_in_flight()
        self.to_infer: queue.Queue = queue.Queue()
        self.to_render: queue.SimpleQueue = queue.SimpleQueue()  # GPU: inferred batches for the render threads
        self.finished: queue.SimpleQueue = queue.SimpleQueue()
        self._busy = dict.fromkeys(STAGES, 0.0)
        self._busy_lock = threading.Lock()
        self.cancelled = False

    # ------------------------------------------------------------ caller's thread
    def results(self) -> Iterator[BatchResult]:
        device = self.pipe.device
        with rt.torch_threads(device), rt.gil_switch(device):
            yield from self._results()

    def _results(self) -> Iterator[BatchResult]:
        rt.warm_graphs(self.pipe, self.batch_size, self.settings)
        self.encoder = (take_kept_encoder(self.pipe.device, self.workers)
                        or make_encoder(self.pipe.device, self.workers))
        self._size_encoding(self.encoder.processes)
        decode_pool = ThreadPoolExecutor(self.workers, thread_name_prefix="matting-decode")
        self.render_pool = (ThreadPoolExecutor(rt.render_threads(self.pipe.device), thread_name_prefix="matting-render",
                                               initializer=rt.enter_own_stream, initargs=(self.pipe.device,))
                            if self.gpu else None)
        self.post_pool = ThreadPoolExecutor(self.encode_threads, thread_name_prefix="matting-post")
        threads = [threading.Thread(target=self._feed, args=(decode_pool,), name="matting-feed", daemon=True)]
        threads += [threading.Thread(target=self._infer_loop, name=f"matting-infer-{i}", daemon=True)
                    for i in range(self.streams)]
        for thread in threads:
            thread.start()
        submitted, received = None, 0
        try:
            while submitted is None or received < submitted:
                message = self.finished.get()
                if isinstance(message, int):  # the feeder is done: this many jobs were started
                    submitted = message
                    continue
                received += 1
                self.slots.release()
                if message is not _DROPPED:
                    yield message
        except BaseException:
            self.abort.set()  # a callback raised or the caller was interrupted: stop, then drain below
            raise
        finally:
            self._drain(submitted, received)
            for thread in threads:
                thread.join()
            for pool in (decode_pool, self.render_pool, self.post_pool):
                if pool is not None:
                    pool.shutdown(wait=True)
            give_back(self.encoder)
            self.cancelled = self.stopping() or received < len(self.jobs)

    def _size_in_flight(self) -> None:
        # Enough images in flight to keep every thread busy, few enough that memory stays flat.
        self.max_in_flight = max(4, self.batch_size * (self.streams + 2) + self.workers + self.encode_threads)
        self.slots = threading.Semaphore(self.max_in_flight)

    def _size_encoding(self, processes: int) -> None:
        """Before the feeder starts: a thread per encoder process hands it jobs and waits (without the GIL), so
        with more helpers than workers (MATTING_ENCODE_PROCESSES) the extra ones would otherwise sit idle. The
        helpers that did start count (threads where they could not)."""
        if processes > self.encode_threads:
            self.encode_threads = processes
            self._size_in_flight()

    def _drain(self, submitted, received) -> None:
        """After an abort: wait until every started job has come back, so no thread writes after we return."""
        while submitted is None or received < submitted:
            message = self.finished.get()
            if isinstance(message, int):
                submitted = message
            else:
                received += 1
                self.slots.release()

    def busy(self) -> dict[str, float]:
        with self._busy_lock:
            return {stage: seconds for stage, seconds in self._busy.items() if seconds > 0}

    def threads(self) -> dict[str, int]:
        render = rt.render_threads(self.pipe.device) if self.gpu else self.streams
        return {"read": self.workers, "decode": self.workers, "upload": self.streams, "infer": self.streams,
                "render": render, "encode": self.encode_threads, "write": self.encode_threads}

    def groups(self) -> list[tuple[str, ...]]:
        """The stages each set of threads serves: the decode pool, the inference threads (which on the CPU also
        render), the render threads (GPU), the encode pool."""
        return stage_groups(self.gpu)

    def stopping(self) -> bool:
        return self.user_cancel.is_set() or self.abort.is_set()

    def _drop(self, job: _Job) -> None:
        job.payload = None
        self.finished.put(_DROPPED)

    # ------------------------------------------------------------ feeder
    def _feed(self, pool: ThreadPoolExecutor) -> None:
        futures, started = [], 0
        try:
            for job in self.jobs:
                job.timeline = self.timeline
                while not self.slots.acquire(timeout=0.05):
                    if self.stopping():
                        break
                if self.stopping():
                    break
                futures.append(pool.submit(self._decode, job))
                started += 1
                if len(futures) > 2 * self.max_in_flight:   # held only to wait for the last: a run's worth was
                    futures = [f for f in futures if not f.done()]   # 171 MB at 100,000 images
            wait(futures)
        finally:
            for _ in range(self.streams):
                self.to_infer.put(_STOP)
            self.finished.put(started)

    # ------------------------------------------------------------ decode pool: CPU only
    def _decode(self, job: _Job) -> None:
        if self.stopping():
            return self._drop(job)
        try:
            t = time.perf_counter()
            data = job.item.read_bytes()
            t = job.timed("read", t)
            pending = pending_jpeg(data, self.pipe.max_pixels, job.item.name) if self.jpeg_on_device else None
            job.payload = pending or decode_image(data, max_pixels=self.pipe.max_pixels)
            job.timed("decode", t)
        except BaseException as exc:  # noqa: BLE001 - one image's failure must never stop the batch
            return self._fail(job, exc)
        self.to_infer.put(job)

    # ------------------------------------------------------------ inference thread(s)
    def _infer_loop(self) -> None:
        with rt.own_stream(self.pipe.device):
            while True:
                batch, stop = self._next_batch()
                if batch:
                    self._infer(batch)
                if stop:
                    return

    def _next_batch(self) -> tuple[list[_Job], bool]:
        """Block for one image, then take whatever else is ready, up to batch_size: never wait for a full batch."""
        first = self.to_infer.get()
        if first is _STOP:
            return [], True
        batch = [first]
        while len(batch) < self.batch_size:
            try:
                job = self.to_infer.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            batch.append(job)
        return batch, False

    def _infer(self, batch: list[_Job]) -> None:
        if self.stopping():
            for job in batch:
                self._drop(job)
            return
        self._decode_on_device(batch)
        ready = [job for job in batch if self._upload(job)]
        if not ready:
            return
        start = time.perf_counter()
        try:
            self.pipe.infer([job.payload for job in ready])
        except BaseException as exc:  # noqa: BLE001 - the batch's images fail, the run goes on
            for job in ready:
                self._fail(job, exc)
            return
        rt.sync_own_stream(self.pipe.device)  # the render threads read these mattes from their own streams
        end = time.perf_counter()
        if self.timeline is not None:
            self.timeline.add("infer", start, end)
        share = (end - start) / len(ready)
        for job in ready:
            job.seconds["infer"] = share
        if self.render_pool is not None:  # GPU: render tasks take whole batches, same-size images stacked
            self.to_render.put(ready)
            self.render_pool.submit(self._render_waiting)
        else:  # CPU: here, in this thread (see __init__)
            for job in ready:
                self._render([job])

    def _decode_on_device(self, batch: list[_Job]) -> None:
        """The batch's pending JPEGs decoded in one nvJPEG call, on this thread's stream; its time is counted as
        their upload (it replaces it: the pixels are made where the network needs them). One the GPU does not
        take stays pending, and _upload decodes it on the CPU."""
        pending = [job for job in batch if isinstance(job.payload, PendingJpeg)]
        if not pending:
            return
        start = time.perf_counter()
        try:
            decoded = decode_pending([job.payload for job in pending], self.pipe.device)
        except Exception:  # noqa: BLE001 - e.g. nvJPEG failed to start: the CPU decodes them all
            log.warning("GPU JPEG decoding failed; decoding on the CPU", exc_info=True)
            decoded = [None] * len(pending)
        end = time.perf_counter()
        if self.timeline is not None:
            self.timeline.add("upload", start, end)
        for job, image in zip(pending, decoded):
            job.seconds["upload"] = job.seconds.get("upload", 0.0) + (end - start) / len(pending)
            if image is not None:
                job.payload = image

    def _upload(self, job: _Job) -> bool:
        """Decoded pixels -> a prepared MatteResult on the device (reduced to the working size when too large)."""
        try:
            t = time.perf_counter()
            if isinstance(job.payload, PendingJpeg):  # the GPU did not take it: decoded here, with its own errors
                job.payload = decode_image(job.payload.data, max_pixels=self.pipe.max_pixels)
            job.payload = self.pipe.prepare(job.payload, job.item.name, use_cache=False)
            job.timed("upload", t)
            job.notices += list(job.payload.notices)   # after what planning noted (redone, removed)
            return True
        except BaseException as exc:  # noqa: BLE001
            self._fail(job, exc)
            return False

    # ------------------------------------------------------------ render thread (GPU) or inference thread (CPU)
    def _render(self, jobs: list[_Job]) -> None:
        """MatteResults -> Rendered (numpy), then on to the encode pool. On a GPU a render thread takes a whole
        inferred batch (images of one size go through together, Pipeline.render_many); on the CPU the inference
        thread renders its images one at a time."""
        if self.stopping():
            for job in jobs:
                self._drop(job)
            return
        background = self.background if "composite" in self.kinds else None
        # The RGBA is downloaded even when its colours are the photo's: from page-locked memory that costs less
        # than stacking it on the CPU from the decoded pixels did (H100, 1 MP, --raw: 143-149 against 113 images/s).
        want_rgba = "cutout" in self.kinds
        t = time.perf_counter()
        try:
            outs = self.pipe.render_many([job.payload for job in jobs], self.settings, background=background,
                                         want_rgba=want_rgba, png_kinds=self.png_kinds)
        except BaseException:  # noqa: BLE001 - find the image at fault: render them one by one
            outs = [self._render_one(job, background, want_rgba) for job in jobs]
        end = time.perf_counter()
        if self.timeline is not None:
            self.timeline.add("render", t, end)
        share = (end - t) / len(jobs)
        for job, out in zip(jobs, outs):
            if out is None:
                continue  # _render_one has failed it
            job.payload = out
            job.seconds["render"] = share
            self.post_pool.submit(self._post, job)

    def _render_waiting(self) -> None:
        """GPU render task: every inferred batch waiting, up to RENDER_JOBS images, in one render. When the render
        threads fall behind, batches pile up and are stacked together, which is cheaper per image. One task is
        submitted per batch, so a task that finds nothing left (an earlier one took it) has nothing to do."""
        jobs: list[_Job] = []
        while len(jobs) < RENDER_JOBS:
            try:
                jobs += self.to_render.get_nowait()
            except queue.Empty:
                break
        if jobs:
            self._render(jobs)

    def _render_one(self, job: _Job, background, want_rgba: bool):
        try:
            return self.pipe.render(job.payload, self.settings, background=background, want_rgba=want_rgba)
        except BaseException as exc:  # noqa: BLE001
            self._fail(job, exc)
            return None

    def _post(self, job: _Job) -> None:
        if self.stopping():
            return self._drop(job)
        self._write(job)

    def _write(self, job: _Job) -> None:
        rendered, job.payload = job.payload, None
        outputs = []
        try:
            t = time.perf_counter()
            formats = [(kind, name.suffix.lstrip(".")) for kind, name in job.names.items()]
            # A folder output is written by the encoder itself (in its process, when it has one): no bytes
            # travel back. A zip is written here, by whichever thread holds its lock.
            paths = ([self.sink.prepared(name) for name in job.names.values()]
                     if hasattr(self.sink, "prepared") else None)
            alpha, rgba, composite = rendered.alpha, rendered.rgba, rendered.composite
            if self.crop is not None:
                alpha, rgba, composite = cut_to(crop_box(alpha, self.crop), alpha, rgba, composite)
            encoded = self._encoded(rendered.png, formats, alpha if "alpha" in job.names else None, rgba, composite,
                                    paths)
            t = job.timed("encode", t)
            for name, data in zip(job.names.values(), encoded):
                if paths is None:
                    self.sink.write(name, data)
                outputs.append(self.sink.shown(name))
                if self.manifest is not None:
                    self.manifest.add(name, job.item.name, job.stamp, self.recipe)
            job.timed("write", t)
        except BaseException as exc:  # noqa: BLE001
            return self._fail(job, exc)
        self._account(job)
        self.finished.put(job.outcome("done", size=rendered.size, outputs=outputs))

    def _encoded(self, on_device: dict[str, bytes], formats, alpha, rgba, composite, paths) -> list[bytes]:
        """Each output's bytes, in the order of ``formats``: those the render already encoded on the device
        (written here, when to files), the rest by the encoder (which writes its own files)."""
        kinds = [kind if fmt == "png" else None for kind, fmt in formats]   # device bytes are PNG files
        rest = [i for i, kind in enumerate(kinds) if kind not in on_device]
        out: list[bytes] = [on_device.get(kind, b"") for kind in kinds]
        if rest:
            # the encoder takes one array per kind: those encoded already are left out
            keep = {formats[i][0] for i in rest}
            encoded = self.encoder([formats[i] for i in rest], alpha if "alpha" in keep else None,
                                   rgba if "cutout" in keep else None, composite if "composite" in keep else None,
                                   [paths[i] for i in rest] if paths is not None else None)
            for i, data in zip(rest, encoded):
                out[i] = data
        if paths is not None:
            for i, kind in enumerate(kinds):
                if kind in on_device:
                    write_atomic(paths[i], out[i])
        return out

    def _fail(self, job: _Job, exc: BaseException) -> None:
        job.payload = None
        self._account(job)
        text, code = failure_reason(exc)
        self.finished.put(job.outcome("failed", text, code=code))

    def _account(self, job: _Job) -> None:
        with self._busy_lock:
            for stage, seconds in job.seconds.items():
                self._busy[stage] += seconds


def stage_groups(gpu: bool) -> list[tuple[str, ...]]:
    """What _Run.groups says, for a run on a GPU or not (the engine processes' runs are the same)."""
    if gpu:
        return [("read", "decode"), ("upload", "infer"), ("render",), ("encode", "write")]
    return [("read", "decode"), ("upload", "infer", "render"), ("encode", "write")]


def failure_reason(exc: BaseException) -> tuple[str, str]:
    """(one line for the user, the failure's kind): the engine's own message, or the OS's, or the exception's
    type and text."""
    if isinstance(exc, MattingError):
        text, code = str(exc), exc.code
    elif isinstance(exc, OSError):
        text, code = f"cannot write the output: {exc.strerror or exc}", "write_error"
    elif isinstance(exc, MemoryError):
        text, code = "out of memory while processing this image", "out_of_memory"
    else:
        log.error("unexpected error in the batch engine", exc_info=exc)
        text, code = f"unexpected error: {type(exc).__name__}: {exc}", "unexpected"
    return " ".join(text.split()), code
