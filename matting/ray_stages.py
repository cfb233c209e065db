"""The batch's stages on Ray (matting.ray_batch builds the pipeline from them); Ray is imported only inside the
functions that run on it (ready_worker, decode_matte_encode).

Each image has its ``meta``: a dict that says where the image comes from, where its outputs go and what happened
to it so far (notices, the seconds per stage, the failure that stopped it); its pixels travel beside it as arrays.
A step never raises for one image: a failure is written into its meta and the later steps pass it on, so the
driver reports it like the local engine does (batch.BatchResult). Ray Data's rows hold metas pickled: one per
input row, a list of finished (meta, encoded outputs) per output row.

    decode_matte_encode (one CPU task per batch): read_decode each image -> MatteActor.matte (warm actors: two
    per GPU, or CPU actors) -> encode_write each image
"""

from __future__ import annotations

import importlib
import itertools
import os
import pickle
import random
import time
from pathlib import Path

import numpy as np

from .batch_encode import encode_outputs
from .batch_inputs import read_source
from .batch_outputs import write_atomic
from .crop import crop_box, cut_to
from .decode import DecodedImage, decode_image

EMPTY_RGB = np.zeros((0, 0, 3), np.uint8)
EMPTY_GREY = np.zeros((0, 0), np.uint8)
EMPTY_RGBA = np.zeros((0, 0, 4), np.uint8)


def pack(value) -> bytes:
    """A meta, or a task's group of finished (meta, encoded outputs), as the bytes a Ray Data row holds."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data):
    return pickle.loads(bytes(data))


def failed(meta: dict, exc: BaseException) -> dict:
    from .batch import failure_reason   # the local engine's wording and codes, exactly

    meta["error"], meta["code"] = failure_reason(exc)
    return meta


def timed(meta: dict, stage: str, started: float) -> float:
    now = time.perf_counter()
    meta["seconds"][stage] = meta["seconds"].get(stage, 0.0) + now - started
    stamp(meta, stage)
    return now


def stamp(meta: dict, stage: str, at: float | None = None) -> None:
    """When ``stage`` ended for this image (``at``, or now), on the wall clock every process of a machine shares:
    where the first image of a run waited (scripts/ray_runs_in_one_engine.py)."""
    meta.setdefault("ended", {})[stage] = time.time() if at is None else at


def ready_worker(hold_s: float = 0.5) -> int:
    """Run in a fresh Ray worker before the first run: what its tasks import (Ray Data's block code, pyarrow,
    the codecs) loaded now. Held a moment so that the tasks started together land on as many different
    workers."""
    importlib.import_module("ray.data")   # its block and pyarrow code, which every Ray Data task runs

    time.sleep(hold_s)
    return os.getpid()


def keep_row(row: dict) -> dict:
    """The map of the one-row dataset that starts Ray Data's own actors with the engine (MattePool.facts)."""
    return row


# ------------------------------------------------------------------ read + decode (in a task)
def read_decode(meta: dict, *, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """The image's (rgb, alpha or an empty array); empty arrays when it failed (said in ``meta``)."""
    try:
        t = time.perf_counter()
        data = read_source(meta["source"])
        t = timed(meta, "read", t)
        decoded = decode_image(data, max_pixels=max_pixels)
        timed(meta, "decode", t)
        meta["notices"] += list(decoded.notices)
        meta["format"] = decoded.format
        return decoded.rgb, EMPTY_GREY if decoded.alpha is None else decoded.alpha
    except Exception as exc:  # noqa: BLE001 - one image's failure must never stop the batch
        failed(meta, exc)
        return EMPTY_RGB, EMPTY_GREY


# ------------------------------------------------------------------ matte + render (the warm actors)
def actor_threads(assigned_cpus: float | None) -> int:
    """The network's threads in an actor given these CPUs: the nearest whole number, at least one."""
    return max(1, round(assigned_cpus or 1))


class MatteActor:
    """Holds one Pipeline (on its GPU, or the CPU) and turns decoded rows into rendered arrays: the local
    engine's upload, infer and render stages for one batch of rows. The actors start with the engine, before any
    run (ray_batch.MattePool), as the local engine's Pipeline does; each run's tasks (decode_matte_encode) call
    them with that run's settings (``job``)."""

    def __init__(self, options: dict, batch_size: int):
        import ray
        import torch

        from .pipeline import Pipeline
        from .process import configure_process

        configure_process()
        # The network's threads: one per CPU Ray gave this actor (Ray sets OpenMP's to the floor of a fraction).
        torch.set_num_threads(actor_threads(ray.get_runtime_context().get_assigned_resources().get("CPU")))
        self.pipe, self.error = None, None
        try:
            self.pipe = Pipeline(**options)
            self.warm(batch_size)
        except Exception as exc:  # noqa: BLE001 - told to the driver by facts(), which stops the run with it
            self.error = exc

    def facts(self) -> dict:
        """What the driver's record, defaults and summary need (or the error that stopped the Pipeline)."""
        if self.error is not None:
            return {"error": self.error}
        pipe = self.pipe
        return {"weights_id": pipe._weights_id, "precision": pipe.precision, "max_side": pipe.max_side,
                "max_pixels": pipe.max_pixels, "summary": pipe.summary()}

    def warm(self, batch_size: int) -> None:
        """The graphs of ``batch_size`` captured and the render's kernels loaded, as the local engine's warm_up
        does (before any call: a graph capture must not overlap other calls)."""
        from . import batch_runtime as rt

        rt.warm_up(self.pipe, batch_size)

    def matte(self, metas: list[dict], rgbs: list, alphas: list, job: dict, sent: float = 0.0) -> tuple[list, list]:
        """(metas, and per image its rendered (alpha, rgba, composite), empty arrays for what is not wanted or
        failed). The cutout carries the matte as its 4th channel: the matte travels alone only when no cutout
        does."""
        for meta in metas:   # when the batch left its task, and reached this actor
            stamp(meta, "sent", sent)
            stamp(meta, "arrived")
        results: list = [None] * len(metas)
        for i, meta in enumerate(metas):
            if meta.get("error") is None:
                results[i] = self._prepare(meta, rgbs[i], alphas[i])
        ready = [i for i, result in enumerate(results) if result is not None]
        rendered = self._infer_render(ready, metas, results, job) if ready else {}
        arrays = []
        for i, meta in enumerate(metas):
            out = rendered.get(i)
            if out is None:
                arrays.append((EMPTY_GREY, EMPTY_RGBA, EMPTY_RGB))
                continue
            meta["size"] = out.size
            arrays.append((out.alpha if out.rgba is None else EMPTY_GREY,
                           EMPTY_RGBA if out.rgba is None else out.rgba,
                           EMPTY_RGB if out.composite is None else out.composite))
        return metas, arrays

    def _prepare(self, meta: dict, rgb: np.ndarray, alpha: np.ndarray):
        try:
            t = time.perf_counter()
            decoded = DecodedImage(rgb=np.ascontiguousarray(rgb), alpha=alpha if alpha.size else None,
                                   format=meta.get("format", ""), name=meta["name"])
            result = self.pipe.prepare(decoded, meta["name"], use_cache=False)
            timed(meta, "upload", t)
            meta["notices"] += [n for n in result.notices if n not in meta["notices"]]
            return result
        except Exception as exc:  # noqa: BLE001
            failed(meta, exc)
            return None

    def _infer_render(self, ready: list[int], metas: list[dict], results: list, job: dict) -> dict:
        t = time.perf_counter()
        try:
            self.pipe.infer([results[i] for i in ready])
        except Exception as exc:  # noqa: BLE001 - the batch's images fail, the run goes on
            for i in ready:
                failed(metas[i], exc)
            return {}
        share = (time.perf_counter() - t) / len(ready)
        for i in ready:
            metas[i]["seconds"]["infer"] = share
            stamp(metas[i], "infer")
        want_rgba = "cutout" in job["kinds"]
        background = job["background"] if "composite" in job["kinds"] else None
        t = time.perf_counter()
        try:
            outs = self.pipe.render_many([results[i] for i in ready], job["settings"], background=background,
                                         want_rgba=want_rgba)
        except Exception:  # noqa: BLE001 - find the image at fault: render them one by one
            outs = [self._render_one(results[i], metas[i], job["settings"], background, want_rgba) for i in ready]
        share = (time.perf_counter() - t) / len(ready)
        rendered = {}
        for i, out in zip(ready, outs):
            results[i] = None
            if out is not None:
                metas[i]["seconds"]["render"] = share
                stamp(metas[i], "render")
                rendered[i] = out
        return rendered

    def _render_one(self, result, meta: dict, settings, background, want_rgba: bool):
        try:
            return self.pipe.render(result, settings, background=background, want_rgba=want_rgba)
        except Exception as exc:  # noqa: BLE001
            failed(meta, exc)
            return None


# ------------------------------------------------------------------ encode + write (in a task)
def encode_write(meta: dict, alpha: np.ndarray, rgba: np.ndarray, composite: np.ndarray, *, crop) -> list[bytes]:
    """Encode the outputs; a folder output's files are written here (and nothing returned), a zip's bytes go back
    to the driver (one writer per archive)."""
    if meta.get("error") is not None:
        return []
    try:
        t = time.perf_counter()
        if rgba.size:
            alpha = rgba[..., 3]
        if crop is not None:
            alpha, rgba, composite = cut_to(crop_box(alpha, crop), alpha, rgba, composite)
        formats = [(kind, fmt) for kind, fmt, _ in meta["outputs"]]
        encoded = encode_outputs(formats, alpha, rgba if rgba.size else None, composite if composite.size else None)
        t = timed(meta, "encode", t)
        targets = [target for _, _, target in meta["outputs"]]
        if not all(targets):
            timed(meta, "write", t)
            return encoded
        for target, data in zip(targets, encoded):
            write_atomic(Path(target), data)
        timed(meta, "write", t)
    except Exception as exc:  # noqa: BLE001
        failed(meta, exc)
    return []


# ------------------------------------------------------------------ a batch the whole way (one CPU task)
# Each worker process hands its batches to the actors in turn, from its own random start (no state to share).
_next_actor = itertools.count(random.randrange(1 << 16))


def decode_matte_encode(batch: dict, *, actors: list, job: dict, max_pixels: int, crop, rows_out: int):
    """The whole way of one batch in one CPU task: read and decode its images here, hand them to a warm MatteActor
    for upload, network and render, then encode and write them here. The pixels cross the object store once each
    way (to the actor and back), where three operators with blocks between them moved them four times and left
    the scheduling between them to Ray Data (docs/SCALE.md, session 20).

    Yields one row per group of finished images, ``{"images": pack([(meta, encoded outputs), ...])}``: the first
    image alone, then ``rows_out`` at a time, each group its own block (ray_batch gives this dataset blocks of a
    byte), so the first images reach the driver while the rest still encode, without a block per image."""
    import ray

    metas = [unpack(meta) for meta in batch["meta"]]
    rgbs, alphas = zip(*(read_decode(meta, max_pixels=max_pixels) for meta in metas))
    actor = actors[next(_next_actor) % len(actors)]
    metas, arrays = ray.get(actor.matte.remote(metas, list(rgbs), list(alphas), job, time.time()))
    del rgbs, alphas
    group: list[tuple[dict, list[bytes]]] = []
    for i, (meta, (alpha, rgba, composite)) in enumerate(zip(metas, arrays)):
        group.append((meta, encode_write(meta, alpha, rgba, composite, crop=crop)))
        if i == 0 or len(group) >= rows_out:
            yield {"images": [pack(group)]}
            group = []
    if group:
        yield {"images": [pack(group)]}
