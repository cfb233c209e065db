"""The batch on a Ray cluster (`python -m matting INPUT... -o OUT --ray [ADDRESS]`): Ray Data runs the stages,
this process plans and reports exactly as the local engine does.

    with ray_batch_engine("local", engine_options) as (engine, executor):
        summary = run_batch(inputs, out, pipeline=engine, executor=executor, ...)

run_batch finds the inputs, names the outputs, reads the record of earlier runs and skips what is done (all in
this process, batch.py); the executor below sends the remaining jobs through one Ray Data operator whose CPU
tasks each take a batch the whole way (matting.ray_stages.decode_matte_encode):

    read + decode (in the task) -> upload, network, render (warm actors holding the Pipeline: two actors per GPU
    with num_gpus=0.5, or CPU actors) -> encode + write (in the task)

and turns each finished row back into the BatchResult the local engine would give, writing the record of outputs
(and the members of a zip output) here as rows arrive. The actors start with the engine, before any run, as the
local Pipeline does: a run pays no model load or CUDA-graph capture, and every run of one engine uses the same
actors. Failures are Ray's to repair: a task whose worker dies is retried (Ray Data), an actor that dies is
restarted and its call retried (max_restarts, max_task_retries), so no retry loop of ours.

Inputs and outputs must be where the workers see them: on one machine, anywhere; on a cluster, a shared file
system at the same path on every node, or object-store URLs for the inputs (docs/SCALE.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from . import batch_runtime as rt
from .batch import STAGES, BatchResult, failure_reason
from .batch_inputs import in_real_folder, source_of
from .env_numbers import whole_number
from .errors import MattingError
from .ray_runtime import cluster_cpus, cluster_gpus, ray_session
from .ray_stages import MatteActor, decode_matte_encode, keep_row, pack, ready_worker, unpack


# Calls an actor takes at once: its network and render run one batch at a time, while the next batches' arrays
# arrive and the last one's leave beside it (one at a time, the actor sat idle half the time).
def actor_calls() -> int:
    return whole_number("MATTING_RAY_ACTOR_CALLS", 4, minimum=1)


# Actors sharing one GPU: an actor's process also converts and copies every batch's pixels in and out of Ray's
# object store, so one alone leaves the GPU waiting (H200, 1 MP, measured with the three operators of sessions 14-19
# while their CPU tasks were still capped at 4 per stage: 150 images/s steady with one, 170 with two, 150 with
# three; docs/SCALE.md).
def actors_per_gpu() -> int:
    return whole_number("MATTING_RAY_ACTORS_PER_GPU", 2, minimum=1)


# A task hands its finished images to the driver in groups of this many (the first alone), each group its own
# block: the first images come out while the rest still encode, without a block per image (which costs the
# driver a few ms each).
ROWS_OUT = 8


@dataclass(frozen=True)
class ClusterPlan:
    """Where the network runs: ``actors`` copies of the Pipeline, each with these resources."""

    device: str          # the actors' device: "cuda" (each sees its own GPU as cuda) or "cpu"
    actors: int
    gpus_per_actor: float
    cpus_per_actor: int
    cpus: int            # the cluster's CPUs

    @classmethod
    def of(cls, ray, device: str | None) -> "ClusterPlan":
        gpus, cpus = cluster_gpus(ray), max(1, cluster_cpus(ray))
        wanted = (device or "auto").split(":")[0]
        if wanted == "cuda" and not gpus:
            raise MattingError("--device cuda: the Ray cluster has no GPU")
        if wanted not in ("auto", "cuda", "cpu"):
            raise MattingError(f"--device {device}: on Ray the device is auto, cuda or cpu")
        if gpus and wanted != "cpu":
            per_gpu = actors_per_gpu()
            return cls("cuda", gpus * per_gpu, 1 / per_gpu, 1, cpus)
        # CPU actors: at most half the cores, so the tasks (decoding, encoding) always have cores to run on.
        actors = max(1, cpus // 16)
        return cls("cpu", actors, 0, max(1, cpus // (2 * actors)), cpus)

    @property
    def actor_resources(self) -> dict:
        return {"num_gpus": self.gpus_per_actor, "num_cpus": self.cpus_per_actor}

    @property
    def task_cpus(self) -> int:
        return max(1, self.cpus - self.actors * self.cpus_per_actor)

    def tasks(self, workers: int | None) -> int:
        """Tasks running at once, each taking a batch from its read to its write: ``workers`` (--workers), or one
        per CPU the actors leave."""
        return workers or self.task_cpus


class MattePool:
    """The warm actors: ``plan.actors`` MatteActors, each holding a Pipeline made from ``options`` with the CUDA
    graphs of ``batch_size`` captured, restarted by Ray if one dies. ``facts`` waits until all are ready and says
    what their Pipeline is (a bad model or weights file fails here, before any image)."""

    def __init__(self, ray, plan: ClusterPlan, options: dict, batch_size: int):
        self.ray, self.batch_size = ray, batch_size
        remote = ray.remote(MatteActor).options(**plan.actor_resources, max_concurrency=actor_calls(),
                                                max_restarts=-1, max_task_retries=-1)
        self.actors = [remote.remote(options, batch_size) for _ in range(plan.actors)]
        # Meanwhile, ready the worker processes the tasks will run in (Ray Data imported): the first image of a
        # fresh engine came out after 8.3 s instead of 9.9 s (H200, one run each; the next run of an engine:
        # 2.7 s; docs/SCALE.md).
        self._workers = [ray.remote(ready_worker).options(num_cpus=1).remote() for _ in range(plan.task_cpus)]

    def facts(self) -> dict:
        from ray.data import TaskPoolStrategy

        # While the actors start: Ray Data's own actors (its statistics and autoscaling coordinator), which the
        # first dataset on a Ray starts and its run then waits for. Started here, a fresh engine's first run took
        # 1.96 s to its first image instead of 3.9 s, as its next runs do (2-core AMD EPYC; docs/SCALE.md).
        self.ray.data.from_items([{"ready": 0}]).map(keep_row, num_cpus=0,
                                                     compute=TaskPoolStrategy(size=1)).take_all()
        try:
            self.ray.get(self._workers)
            facts = self.ray.get([actor.facts.remote() for actor in self.actors])
        except self.ray.exceptions.RayError as exc:
            raise MattingError(f"the engine cannot start on Ray: {exc}") from None
        error = next((f["error"] for f in facts if "error" in f), None)
        if error is not None:
            raise error if isinstance(error, MattingError) else MattingError(
                f"the engine cannot start on Ray: {error}")
        return facts[0]

    def warm(self, batch_size: int) -> None:
        """Capture the graphs of a larger batch, between runs (never while calls are in flight)."""
        if batch_size > self.batch_size:
            self.ray.get([actor.warm.remote(batch_size) for actor in self.actors])
            self.batch_size = batch_size

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)   # their GPU share back now, even on a Ray that outlives this engine
        # and their handles let go while Ray runs (ray_runtime.ray_session says why)
        self.actors, self._workers = [], []


class RayEngine:
    """This process's stand-in for the Pipeline the actors hold: what the record of outputs, the batch's
    defaults and the summary line need, as the actors reported it."""

    def __init__(self, facts: dict, plan: ClusterPlan, pool: MattePool):
        import torch

        self.plan, self.pool = plan, pool
        self.device = torch.device(plan.device)
        self._weights_id, self.precision, self.max_side = facts["weights_id"], facts["precision"], facts["max_side"]
        self.max_pixels = facts["max_pixels"]
        self._summary = facts["summary"]

    def summary(self) -> str:
        copies = f"{self.plan.actors} actor{'s' if self.plan.actors > 1 else ''}"
        return f"{self._summary}; on Ray, {copies}"


@contextmanager
def ray_batch_engine(address: str | None, options: dict, batch_size: int | None = None):
    """(engine, executor) for run_batch, with Ray started or joined and the actors warm for the length of the
    block; ``batch_size`` is the runs' (default: the device's), whose CUDA graphs the actors capture at start."""
    import torch

    with ray_session(address) as ray:
        plan = ClusterPlan.of(ray, options.get("device"))
        pool = MattePool(ray, plan, dict(options, device=plan.device),
                         batch_size or rt.default_batch_size(torch.device(plan.device)))
        try:
            engine = RayEngine(pool.facts(), plan, pool)

            def executor(pipeline, sink, jobs, settings, kinds, background, batch_size, workers, cancel, crop=None,
                         record=None, timeline=None):   # no timeline: the stages run on other processes' clocks
                return RayRun(ray, engine, sink, jobs, settings, kinds, background, batch_size, workers, cancel,
                              crop, record)

            yield engine, executor
        finally:
            pool.close()


class RayRun:
    """One batch in flight on Ray: the same interface as batch._Run (results, busy, threads, cancelled)."""

    def __init__(self, ray, engine: RayEngine, sink, jobs, settings, kinds, background,
                 batch_size: int, workers: int | None, cancel: threading.Event, crop=None, record=None):
        self.ray, self.engine, self.sink = ray, engine, sink
        self.jobs = {job.order: job for job in jobs}
        self.settings, self.kinds, self.background = settings, kinds, background
        self.batch_size, self.workers, self.cancel, self.crop = batch_size, workers, cancel, crop
        self.manifest, self.recipe = record if record else (None, "")
        self._busy = dict.fromkeys(STAGES, 0.0)
        self._folders: dict[str, str] = {}   # folders' real paths, looked up once a run (_meta)
        self.cancelled = False

    def results(self) -> Iterator[BatchResult]:
        received = 0
        started = time.time()
        self.first_ended: dict[str, float] = {}   # when each stage ended for the first image out, from the start
        self.dataset = self._dataset()   # kept: its stats() say where a run's time went
        try:
            for meta, encoded in self._finished():
                if not received:
                    self.first_ended = {stage: at - started for stage, at in meta.get("ended", {}).items()}
                    self.first_ended["driver"] = time.time() - started
                yield self._finish(meta, encoded)
                received += 1
                if self.cancel.is_set():
                    break
        finally:
            self.cancelled = self.cancel.is_set() or received < len(self.jobs)

    def _finished(self) -> Iterator[tuple[dict, list[bytes]]]:
        """(meta, encoded outputs for a zip, else nothing) of each finished image, as their blocks arrive. Not
        ``iter_rows()``: it prefetches a block ahead, so each block reached us only once the next one was done (the
        first image waited for the second block)."""
        for block in self.dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
            for group in block["images"]:   # a task's groups of finished images
                yield from unpack(group)

    def busy(self) -> dict[str, float]:
        return {stage: seconds for stage, seconds in self._busy.items() if seconds > 0}

    def threads(self) -> dict[str, int]:
        tasks = self.engine.plan.tasks(self.workers)   # every task reads, decodes, encodes and writes
        actors = self.engine.plan.actors
        return {"read": tasks, "decode": tasks, "upload": actors, "infer": actors, "render": actors,
                "encode": tasks, "write": tasks}

    def groups(self) -> list[tuple[str, ...]]:
        return [("read", "decode", "encode", "write"), ("upload", "infer", "render")]

    def _dataset(self):
        """One operator: each task takes a batch of rows from its read to its write
        (ray_stages.decode_matte_encode). Three operators with blocks between them (decode, a hand-over to the
        actors, encode) moved every image's pixels through the object store four times instead of two and left
        the pace between them to Ray Data's scheduling: 73 % of the local engine's images/s against a median of
        98 % over five runs on the H200, with twice the memory (docs/SCALE.md, session 20)."""
        from ray.data import DataContext, TaskPoolStrategy

        rows = [{"meta": pack(self._meta(job))} for job in self.jobs.values()]
        pool = self.engine.pool
        pool.warm(self.batch_size)
        job = {"settings": self.settings, "kinds": self.kinds, "background": self.background}
        context = DataContext.get_current()
        # Blocks of a byte: every group a task yields becomes a block of its own at once (Ray Data would otherwise
        # gather a task's small rows into one block and hand them on only when the task ends).
        default_bytes, context.target_max_block_size = context.target_max_block_size, 1
        try:   # a dataset keeps the context it was made under
            blocks = max(1, math.ceil(len(rows) / self.batch_size))
            return (self.ray.data.from_items(rows, override_num_blocks=blocks)
                    .map_batches(decode_matte_encode, batch_size=self.batch_size, batch_format="numpy", num_cpus=1,
                                 fn_kwargs={"actors": pool.actors, "job": job, "max_pixels": self.engine.max_pixels,
                                            "crop": self.crop, "rows_out": ROWS_OUT},
                                 compute=TaskPoolStrategy(size=self.engine.plan.tasks(self.workers))))
        finally:
            context.target_max_block_size = default_bytes

    def _meta(self, job) -> dict:
        folder = hasattr(self.sink, "prepared")   # a folder output is written by the tasks
        # Absolute paths (a worker's working folder is not ours) with each folder looked up once: resolving every
        # file was about 12 system calls a name, 35-73 us a photo here before any image (3.5-7 s at 100,000).
        # An output keeps its own name: one that is a link is replaced, as the local engine replaces it, not
        # written through to the file it points to.
        outputs = [(kind, name.suffix.lstrip("."), in_real_folder(self.sink.prepared(name), self._folders)
                    if folder else "") for kind, name in job.names.items()]
        return {"order": job.order, "name": job.item.name, "source": source_of(job.item, self._folders),
                "outputs": outputs,
                "notices": [], "seconds": {}, "error": None, "code": None}

    def _finish(self, meta: dict, encoded: list[bytes]) -> BatchResult:
        """A finished row as the local engine reports it: outputs recorded, a zip's members written here."""
        job = self.jobs[meta["order"]]
        job.seconds.update(meta["seconds"])
        job.notices += meta["notices"]
        for stage, seconds in job.seconds.items():
            self._busy[stage] += seconds
        if meta["error"] is not None:
            return job.outcome("failed", meta["error"], code=meta["code"])
        outputs = []
        try:
            for index, name in enumerate(job.names.values()):
                if encoded:
                    self.sink.write(name, encoded[index])
                outputs.append(self.sink.shown(name))
                if self.manifest is not None:
                    self.manifest.add(name, job.item.name, job.stamp, self.recipe)
        except Exception as exc:  # noqa: BLE001 - this image's output failed; the batch goes on
            text, code = failure_reason(exc)
            return job.outcome("failed", text, code=code)
        return job.outcome("done", size=tuple(meta["size"]), outputs=outputs)
