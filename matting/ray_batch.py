"""The batch on a Ray cluster (`python -m matting INPUT... -o OUT --ray [ADDRESS]`): Ray Data runs the stages,
this process plans and reports exactly as the local engine does.

    with ray_batch_engine("local", engine_options) as (engine, executor):
        summary = run_batch(inputs, out, pipeline=engine, executor=executor, ...)

run_batch finds the inputs, names the outputs, reads the record of earlier runs and skips what is done (all in
this process, batch.py); the executor below sends the remaining jobs through

    read + decode (CPU tasks) -> upload, network, render (an actor pool holding the Pipeline: two actors per GPU
    with num_gpus=0.5, or CPU actors) -> encode + write (CPU tasks)

(matting.ray_stages) and turns each finished row back into the BatchResult the local engine would give, writing
the record of outputs (and the members of a zip output) here as rows arrive. Failures are Ray's to repair: a task
whose worker dies is retried, an actor that dies is restarted and its batch retried (Ray Data's defaults), so no
retry loop of ours.

Inputs and outputs must be where the workers see them: on one machine, anywhere; on a cluster, a shared file
system at the same path on every node, or object-store URLs for the inputs (docs/SCALE.md).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .batch import STAGES, BatchResult, failure_reason
from .errors import MattingError
from .ray_runtime import cluster_cpus, cluster_gpus, ray_session
from .ray_stages import MatteActor, encode_write, pack, read_decode, unpack

ROWS_PER_BLOCK = 16  # a block is one decode or encode task's work: small enough to spread, big enough to amortise
# Calls an actor takes at once: its network and render run one batch at a time, while Ray Data gathers the next
# batches' rows and ships the last one's arrays beside it (one at a time, the actor sat idle half the time).
ACTOR_CALLS = int(os.environ.get("MATTING_RAY_ACTOR_CALLS", 4))
# Actors sharing one GPU: an actor's process also converts and copies every batch's pixels in and out of Ray's
# object store, so one alone leaves the GPU waiting (H200, 1 MP, measured while the CPU tasks were still capped at
# 4 per stage: 150 images/s steady with one, 170 with two, 150 with three; docs/SCALE.md).
ACTORS_PER_GPU = int(os.environ.get("MATTING_RAY_ACTORS_PER_GPU", 2))


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
            return cls("cuda", gpus * ACTORS_PER_GPU, 1 / ACTORS_PER_GPU, 1, cpus)
        # CPU actors: at most half the cores, so the decode and encode tasks always have cores to run on.
        actors = max(1, cpus // 16)
        return cls("cpu", actors, 0, max(1, cpus // (2 * actors)), cpus)

    @property
    def actor_resources(self) -> dict:
        return {"num_gpus": self.gpus_per_actor, "num_cpus": self.cpus_per_actor}

    @property
    def task_cpus(self) -> int:
        return max(1, self.cpus - self.actors * self.cpus_per_actor)


class RayEngine:
    """This process's stand-in for the Pipeline the actors hold: what the record of outputs, the batch's
    defaults and the summary line need, as one actor-like task reported it."""

    def __init__(self, facts: dict, plan: ClusterPlan):
        import torch

        self.plan = plan
        self.device = torch.device(plan.device)
        self._weights_id, self.precision, self.max_side = facts["weights_id"], facts["precision"], facts["max_side"]
        self.max_pixels = facts["max_pixels"]
        self._summary = facts["summary"]

    def summary(self) -> str:
        copies = f"{self.plan.actors} actor{'s' if self.plan.actors > 1 else ''}"
        return f"{self._summary}; on Ray, {copies}"


def _engine_facts(options: dict) -> dict:
    """Runs where an actor would: the facts of the Pipeline that ``options`` make there (it also checks the
    options: a bad model or weights file fails here, before any image)."""
    from .pipeline import Pipeline

    pipe = Pipeline(**options, warm_up=False)
    return {"weights_id": pipe._weights_id, "precision": pipe.precision, "max_side": pipe.max_side,
            "max_pixels": pipe.max_pixels, "summary": pipe.summary()}


@contextmanager
def ray_batch_engine(address: str | None, options: dict):
    """(engine, executor) for run_batch, with Ray started or joined for the length of the block."""
    with ray_session(address) as ray:
        plan = ClusterPlan.of(ray, options.get("device"))
        actor_options = dict(options, device=plan.device)
        try:
            facts = ray.get(ray.remote(_engine_facts).options(**plan.actor_resources, max_retries=0)
                            .remote(actor_options))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, MattingError) else None
            raise (cause or MattingError(f"the engine cannot start on Ray: {exc.cause or exc}")) from None
        engine = RayEngine(facts, plan)

        def executor(pipeline, sink, jobs, settings, kinds, background, batch_size, workers, cancel, crop=None,
                     record=None, timeline=None):   # no timeline: the stages run on other processes' clocks
            return RayRun(ray, actor_options, engine, sink, jobs, settings, kinds, background, batch_size, workers,
                          cancel, crop, record)

        yield engine, executor


class RayRun:
    """One batch in flight on Ray: the same interface as batch._Run (results, busy, threads, cancelled)."""

    def __init__(self, ray, options: dict, engine: RayEngine, sink, jobs, settings, kinds, background,
                 batch_size: int, workers: int | None, cancel: threading.Event, crop=None, record=None):
        self.ray, self.options, self.engine, self.sink = ray, options, engine, sink
        self.jobs = {job.order: job for job in jobs}
        self.settings, self.kinds, self.background = settings, kinds, background
        self.batch_size, self.workers, self.cancel, self.crop = batch_size, workers, cancel, crop
        self.manifest, self.recipe = record if record else (None, "")
        self._busy = dict.fromkeys(STAGES, 0.0)
        self.cancelled = False

    def results(self) -> Iterator[BatchResult]:
        received = 0
        try:
            for row in self._dataset().iter_rows():
                yield self._finish(unpack(row["meta"]), unpack(row["data"]))
                received += 1
                if self.cancel.is_set():
                    break
        finally:
            self.cancelled = self.cancel.is_set() or received < len(self.jobs)

    def busy(self) -> dict[str, float]:
        return {stage: seconds for stage, seconds in self._busy.items() if seconds > 0}

    def threads(self) -> dict[str, int]:
        tasks, actors = self.engine.plan.task_cpus, self.engine.plan.actors
        return {"read": tasks, "decode": tasks, "upload": actors, "infer": actors, "render": actors,
                "encode": tasks, "write": tasks}

    def _dataset(self):
        from ray.data import ActorPoolStrategy

        rows = [{"meta": pack(self._meta(job))} for job in self.jobs.values()]
        plan = self.engine.plan
        cpu_tasks = {"num_cpus": 1}
        if self.workers:   # --workers caps the CPU tasks running at once, each stage (default: Ray's choice)
            from ray.data import TaskPoolStrategy

            cpu_tasks["compute"] = TaskPoolStrategy(size=self.workers)
        return (self.ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / ROWS_PER_BLOCK)))
                .map(read_decode, fn_kwargs={"max_pixels": self.engine.max_pixels}, **cpu_tasks)
                .map_batches(MatteActor, batch_size=self.batch_size, batch_format="numpy",
                             fn_constructor_kwargs={"options": self.options, "settings": self.settings,
                                                    "kinds": self.kinds, "background": self.background,
                                                    "batch_size": self.batch_size},
                             compute=ActorPoolStrategy(size=plan.actors, max_tasks_in_flight_per_actor=ACTOR_CALLS,
                                                       max_concurrent_calls_per_actor=ACTOR_CALLS),
                             **plan.actor_resources)
                .map(encode_write, fn_kwargs={"crop": self.crop}, **cpu_tasks))

    def _meta(self, job) -> dict:
        item = job.item
        if item.archive is not None:
            source = {"zip": str(Path(item.archive.path).resolve()), "offset": item.member.header_offset}
        elif item.url is not None:
            source = {"url": item.url}
        else:
            source = {"path": str(Path(item.path).resolve())}
        folder = hasattr(self.sink, "prepared")   # a folder output is written by the encode tasks
        outputs = [(kind, name.suffix.lstrip("."), str(self.sink.prepared(name).resolve()) if folder else "")
                   for kind, name in job.names.items()]
        return {"order": job.order, "name": item.name, "source": source, "outputs": outputs, "notices": [],
                "seconds": {}, "error": None, "code": None}

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
