"""The app's GPU work on Ray Serve replicas (`python app.py --ray [ADDRESS] --replicas N`).

One Gradio front (Gradio's queue and sessions live in one process: two fronts would split a user's session), and
N model replicas behind a Serve deployment, called through its DeploymentHandle:

    front (app.py, CPU)                                       replica (GPU, or CPU without one), N of them
    decode, reduce, network input      -- network(x) -->      the network; calls that arrive together share
                                                              one run (serve.batch)
    full-resolution render asked for   -- render(...) -->     the render, for the downloads and /matte
    screen-sized previews, the cache of mattes, sessions, encoding: here

``ServedPipeline`` is the front's Pipeline: everything runs as in a local CPU pipeline except the network (its
runner is the replicas) and full-resolution renders. A replica's engine error reaches the user as the same
MattingError a local run raises; a replica that dies is replaced by Serve, and a call meanwhile waits for the
replacement or fails with a clear error, while the front keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import contextmanager

import numpy as np
import ray
import torch
from ray import serve

from .errors import InferenceError, MattingError
from .pipeline import Pipeline
from .ray_runtime import cluster_cpus, cluster_gpus, ray_session

DEPLOYMENT = "matting-replica"
BATCH_WAIT_S = 0.002   # a replica waits this long for other fronts' calls to share a network batch
MAX_BATCH = 16
COALESCE_FRONT_MS = 2.0   # the front gathers concurrent uploads into one call to a replica


class MattingReplica:
    """One copy of the engine on its GPU (or the CPU): the network for the front's prepared inputs, and
    full-resolution renders of the results the front holds."""

    def __init__(self, options: dict):
        from .process import configure_process

        configure_process()
        self.pipe = Pipeline(**options, coalesce_ms=-1)
        self._turn = threading.Lock()   # one network call at a time on this replica's runner (CUDA graphs)

    def facts(self) -> dict:
        return {"info": self.pipe.info(), "summary": self.pipe.summary(), "precision": self.pipe.precision}

    async def network(self, x: np.ndarray) -> np.ndarray:
        return await self._network_batched(x)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _network_batched(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """Calls that arrive together (several fronts, or one front's coalesced uploads) share one network run."""
        sizes = [len(x) for x in xs]
        out = await asyncio.to_thread(self._run, np.concatenate(xs))
        return list(np.split(out, np.cumsum(sizes)[:-1]))

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self._turn:
            tensor = torch.from_numpy(x).to(self.pipe.device, self.pipe.dtype)
            return self.pipe.runner(tensor).float().cpu().numpy()

    def render(self, result, settings, background, want_rgba: bool, hints):
        """A full-resolution render of the front's result (CPU tensors), here on this replica's device."""
        return self.pipe.render(result.to(self.pipe.device), settings, background=background, preview=False,
                                want_rgba=want_rgba, hints=hints)


class ReplicaRunner:
    """The front's runner: the network on the replicas. The inputs it gets are the local pipeline's fp32 network
    input; a replica converts them to its own precision."""

    use_cuda_graphs = False
    float32_layers: tuple = ()

    def __init__(self, handle, input_hw: tuple[int, int]):
        self.handle, self.input_hw = handle, input_hw
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = call_replica(self.handle.network, x.float().contiguous().numpy())
        return torch.from_numpy(out)

    def warm_up(self, batch_size: int = 1) -> None:
        h, w = self.input_hw
        self(torch.zeros(1, 3, h, w))


def call_replica(method, *args):
    """A replica's answer, or the engine's own error as a local run raises it."""
    try:
        return method.remote(*args).result()
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, MattingError):
            raise exc.cause from None
        raise InferenceError(f"the model replica failed: {_one_line(exc.cause or exc)}") from None
    except ray.exceptions.RayError as exc:   # the replica died, or none is up yet: Serve starts another
        raise InferenceError(f"no model replica answered ({type(exc).__name__}); try again in a moment") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


class ServedPipeline(Pipeline):
    """The front's pipeline: a CPU Pipeline whose network and full-resolution renders run on the replicas."""

    def __init__(self, handle, replicas: int, **options):
        self.handle, self.replicas = handle, replicas
        self.remote = call_replica(handle.facts)
        options = {**options, "device": "cpu", "precision": "fp32"}
        super().__init__(**options, warm_up=False, coalesce_ms=COALESCE_FRONT_MS)

    def _make_runner(self, precision, device, use_cuda_graphs, weights):
        return ReplicaRunner(self.handle, self.spec.input_hw)

    @property
    def precision(self) -> str:
        return self.remote["precision"]

    def info(self) -> dict[str, str]:
        info = dict(self.remote["info"])
        info["replicas"] = str(self.replicas)
        return info

    def summary(self) -> str:
        return f"{self.remote['summary']} on {self.replicas} Ray Serve replica{'s' if self.replicas > 1 else ''}"

    def release(self) -> None:
        """Let go of the replicas' handle while Ray still runs (ray_runtime.ray_session says why): the last call,
        once the front has stopped (served_pipeline makes it)."""
        self.handle = self.runner.handle = None

    def render(self, result, settings=None, *, background=None, preview=False, want_rgba=True, hints=None):
        if preview:   # screen-sized: here, beside the sessions (the replicas keep the full-size work)
            return super().render(result, settings, background=background, preview=preview, want_rgba=want_rgba,
                                  hints=hints)
        return call_replica(self.handle.render, result.to("cpu"), settings, background, want_rgba, hints)


def replica_plan(session, replicas: int, device: str | None) -> dict:
    """Each replica's Ray resources: one GPU each where the cluster has enough, else a share of the CPUs."""
    gpus, cpus = cluster_gpus(session), max(1, cluster_cpus(session))
    wanted = (device or "auto").split(":")[0]
    if wanted == "cuda" and gpus < replicas:
        raise MattingError(f"--replicas {replicas} on cuda: the Ray cluster has {gpus} GPU(s)")
    if wanted != "cpu" and gpus >= replicas:
        return {"device": "cuda", "ray_actor_options": {"num_gpus": 1, "num_cpus": 1}}
    return {"device": "cpu", "ray_actor_options": {"num_cpus": min(4.0, cpus / (2 * replicas))}}


@contextmanager
def served_pipeline(address: str | None, replicas: int, options: dict):
    """Ray started or joined, the replicas deployed, and the front's pipeline; all torn down after the block."""
    if replicas < 1:
        raise MattingError(f"--replicas must be at least 1, got {replicas}")
    with ray_session(address) as session:
        plan = replica_plan(session, replicas, options.get("device"))
        # The front calls the handle: no HTTP proxy, no extra port. Serve's INFO lines stay in Ray's log files.
        serve.start(proxy_location="Disabled", logging_config={"log_level": "WARNING"})
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        deployment = serve.deployment(
            MattingReplica, name=DEPLOYMENT, num_replicas=replicas,
            ray_actor_options=plan["ray_actor_options"], max_ongoing_requests=64)
        served = None
        try:
            handle = serve.run(deployment.bind({**options, "device": plan["device"]}), name="matting",
                               route_prefix=None)
            served = ServedPipeline(handle, replicas, **_front_options(options))
            yield served
        finally:
            if served is not None:
                served.release()
            handle = served = None   # the replicas let go of while Ray runs (ray_runtime.ray_session says why)
            serve.shutdown()


def _front_options(options: dict) -> dict:
    return {key: value for key, value in options.items() if key in ("model", "weights", "max_side")}
