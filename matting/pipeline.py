"""The process-wide matting pipeline: decode, reduce, run the network once, render edges many times.

    pipe = get_pipeline()                       # loaded once, lazily, thread-safe
    result = pipe.matte("photo.jpg")            # decode + network; the matte is cached by content
    preview = pipe.render(result, EdgeSettings(feather=2), preview=True)   # cheap, repeatable
    full = pipe.render(result, EdgeSettings(feather=2))                    # full resolution, on demand

Follows segment-anything's predictor: the expensive step runs once per image and its output is kept;
everything the user tweaks afterwards starts from that output.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

try:  # fast content hash; hashlib's blake2b stands in where the wheel is missing
    import xxhash
except ImportError:  # pragma: no cover - depends on the environment
    xxhash = None

from . import ops
from .cache import ByteLRU
from .coalesce import Coalescer
from .decode import DEFAULT_MAX_PIXELS, DecodedImage, decode_image
from .device import describe, dtype_of, resolve_device, resolve_precision
from .device_turn import DeviceTurn
from .errors import InferenceError, MattingError, ModelLoadError
from .host_copy import download_pinned, mark, start_download
from .models.registry import create_model, get_spec, known_weights
from .models.weights import file_md5
from .notices import Notice
from .openvino_runner import OpenVINORunner, openvino_available
from .png_device import encode_png_stack
from .preprocess import network_input, place_image
from .process import configure_process
from .refine_graphs import RefineGraphs
from .render import (Background, background_tensor, output_hw, photo_u8, render_stack_tensors, render_tensors,
                     soft_alpha_tensors)
from .resolution import Resize, plan_resize, resolve_max_side
from .result import MatteResult, Rendered
from .runner import ModelRunner
from .settings import EdgeSettings

log = logging.getLogger(__name__)
PREVIEW_SIDE = 1024
DEFAULT_CACHE_BYTES = 256 << 20
GPU_OUT_OF_MEMORY = Notice("gpu_out_of_memory")


class StageTimer:
    """Milliseconds per stage; synchronises CUDA at each boundary so GPU work is charged where it ran."""

    def __init__(self, device: torch.device, timings: dict[str, float]):
        self.device = device
        self.timings = timings

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":  # this thread's stream only: other threads' work is not ours to wait for
                torch.cuda.current_stream(self.device).synchronize()
            self.timings[stage] = self.timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000

    def finish(self, share) -> None:
        """Call ``share()`` once the timings are known: at once, since each stage waited for its work."""
        share()


class EventTimer:
    """StageTimer's interface for work queued in a GPU turn: an event at each end of a stage instead of a wait.
    After the turn, ``resolve()`` waits once, for the last, and fills the timings with each stage's own GPU time
    (then runs what ``finish`` was given)."""

    def __init__(self, device: torch.device, timings: dict[str, float]):
        self.device, self.timings = device, timings
        self._spans: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []
        self._then: list = []

    @contextmanager
    def __call__(self, stage: str):
        began = mark(self.device)
        try:
            yield
        finally:
            self._spans.append((stage, began, mark(self.device)))

    def finish(self, share) -> None:
        self._then.append(share)

    def resolve(self) -> None:
        if self._spans:
            self._spans[-1][2].synchronize()
        for stage, began, ended in self._spans:
            self.timings[stage] = self.timings.get(stage, 0.0) + began.elapsed_time(ended)
        for share in self._then:
            share()
        self._spans, self._then = [], []


# Uploads that arrive together share one network batch (coalesce.py): on CUDA the first waits at most this long
# for company; on the CPU a batch costs as much as its images one by one, so there each runs at once.
COALESCE_MS_CUDA = 2.0
COALESCE_BATCH = 16

# render_many stacks up to STACK_SIZE images of one size, and at most STACK_PIXELS pixels in all, so a stack's
# GPU memory stays near that of one 8 MP render
STACK_SIZE = 8
STACK_PIXELS = 8_000_000
REFINE_GRAPHS_ENV = "MATTING_REFINE_GRAPHS"


class Pipeline:
    def __init__(self, model: str = "u2netp", weights: str | Path | None = None, device: str | None = None,
                 precision: str | None = None, max_side: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 warm_up: bool = True, use_cuda_graphs: bool | None = None, coalesce_ms: float | None = None):
        """``coalesce_ms``: how long matte() waits for concurrent callers to share a network batch (default:
        COALESCE_MS_CUDA on CUDA; on the CPU no coalescing); a negative value turns it off."""
        start = time.perf_counter()
        self.device = resolve_device(device)
        self.spec = get_spec(model)
        self.weights = Path(weights) if weights else self.spec.default_weights
        weights_md5 = file_md5(self.weights) if self.weights and self.weights.is_file() else None
        self.known_weights = known_weights(self.spec, weights_md5)   # what was measured on them, if anything
        self._float32_chains = (self.known_weights.float32_chains if self.known_weights else None) or ()
        int8_problem = self._int8_problem() if self.device.type == "cpu" else None   # int8 is a CPU path
        self._precision = resolve_precision(self.device, precision, bf16_checked=self._bf16_checked(),
                                            int8_ready=int8_problem is None)
        self.dtype = dtype_of(self._precision)
        self.max_side = resolve_max_side(max_side)
        self.max_pixels = max_pixels
        if self._precision == "int8" and int8_problem:
            raise ModelLoadError(f"precision int8 is not available: {int8_problem}")
        self.runner = self._make_runner(self._precision, self.device, use_cuda_graphs, weights)
        self._cpu_runner: ModelRunner | OpenVINORunner | None = None
        self._gpu_turn = DeviceTurn()   # see device_turn
        self.refine_graphs: RefineGraphs | None = None   # see warm_refine_graphs
        self._weights_id = f"{self.spec.name}:{weights_md5[:12]}" if weights_md5 else self.spec.name
        self.cache: ByteLRU[torch.Tensor] = ByteLRU(cache_bytes, lambda t: t.numel() * t.element_size())
        if coalesce_ms is None:
            coalesce_ms = COALESCE_MS_CUDA if self.device.type == "cuda" else -1.0
        self._coalescer = (Coalescer(self._infer_in_turn, max_batch=COALESCE_BATCH, max_wait_ms=coalesce_ms,
                                     name="matting-network") if coalesce_ms >= 0 else None)
        if warm_up:   # with coalescing, the batch sizes it makes too; the default edges' refinement graphs
            self.runner.warm_up(COALESCE_BATCH if self._coalescer is not None else 1)
            self.warm_refine_graphs(EdgeSettings())
        self.load_ms = (time.perf_counter() - start) * 1000

    # ---------------------------------------------------------------- reporting
    @property
    def precision(self) -> str:
        return self._precision

    def info(self) -> dict[str, str]:
        return {"model": self.spec.name, "description": self.spec.description, "device": describe(self.device),
                "precision": self.precision, "runtime": self.runtime,
                "float32_layers": ", ".join(self.runner.float32_layers) or "none",
                "weights": self.weights.name if self.weights else "random",
                "max_side": str(self.max_side), "cuda_graphs": str(bool(self.runner.use_cuda_graphs)),
                "load_ms": f"{self.load_ms:.0f}"}

    @property
    def runtime(self) -> str:
        """What runs the network: PyTorch, or OpenVINO for the int8 CPU path."""
        if isinstance(self.runner, OpenVINORunner):
            import openvino

            return f"OpenVINO {openvino.__version__.split('-')[0]}"
        return f"PyTorch {torch.__version__.split('+')[0]}"

    def summary(self) -> str:
        info = self.info()
        kept = len(self.runner.float32_layers)
        line = f"{info['model']} on {info['device']}, {info['precision']}"
        line += f" ({kept} layers in fp32)" if kept else ""
        return line + (f" via {self.runtime}" if isinstance(self.runner, OpenVINORunner) else "")

    # ---------------------------------------------------------------- network
    def matte(self, source, *, name: str | None = None) -> MatteResult:
        """Decode ``source`` and get its network matte (from the cache when the same pixels were seen)."""
        return self.matte_many([source], names=[name])[0]

    def matte_many(self, sources: list, names: list[str | None] | None = None,
                   return_errors: bool = False) -> list[MatteResult | MattingError]:
        """Matte several images with one batched network call (shared with other threads' calls arriving at the
        same time, see COALESCE_MS_CUDA). With ``return_errors`` a bad input yields its MattingError in its place
        instead of raising, so the rest of the batch still comes out."""
        names = names or [None] * len(sources)
        prepared: list[MatteResult | MattingError] = []
        for source, name in zip(sources, names):
            try:
                prepared.append(self._decode(source, name))
            except MattingError as exc:
                if not return_errors:
                    raise
                prepared.append(exc)
        pending = [r for r in prepared if isinstance(r, MatteResult) and r.matte is None]
        if self._coalescer is not None:
            self._coalescer.run(pending)
        else:
            self.infer(pending)
        return prepared

    def prepare(self, decoded: DecodedImage, name: str | None = None, *, use_cache: bool = True) -> MatteResult:
        """What matte() does after decoding, for images decoded elsewhere (the batch engine decodes in worker
        threads): reduce, upload, look up the cache. The matte stays None until infer(). ``use_cache=False``
        skips hashing and the cache: a batch of distinct photos would only evict interactive users' mattes."""
        return self._prepare(decoded, name, {}, use_cache)

    def infer(self, results: list[MatteResult], timer=StageTimer) -> None:
        """Run the network, as one batch, for the prepared results that have no matte yet. ``timer``: how the
        stages on the device are timed (an EventTimer in a GPU turn)."""
        pending = [r for r in results if r.matte is None]
        on_device = [r for r in pending if r.device.type == self.device.type]
        if on_device:
            self._infer(on_device, timer=timer)
        if len(on_device) < len(pending):  # photos the GPU had no memory to take (see _upload)
            self._infer([r for r in pending if r.device.type != self.device.type], on_cpu=True)

    def _infer_in_turn(self, results: list[MatteResult]) -> None:
        """infer() for matte(): the interactive callers' network batches take their turn on the GPU too. In the
        turn the work is only queued; the wait for it (for its timings: the mattes stay on the GPU, where the
        renders after it queue behind it) comes after, so it does not hold up the others' turns."""
        if self.device.type != "cuda":
            self.infer(results)
            return
        timers: list[EventTimer] = []

        def event_timer(device, timings):
            timers.append(EventTimer(device, timings))
            return timers[-1]

        with self._gpu_turn:
            self.infer(results, timer=event_timer)
        for timer in timers:
            timer.resolve()

    def _decode(self, source, name: str | None) -> MatteResult:
        timings: dict[str, float] = {}
        with StageTimer(self.device, timings)("decode"):
            decoded: DecodedImage = decode_image(source, max_pixels=self.max_pixels, name=name)
        return self._prepare(decoded, name, timings, True)

    def _prepare(self, decoded: DecodedImage, name: str | None, timings: dict[str, float],
                 use_cache: bool) -> MatteResult:
        timer = StageTimer(self.device, timings)
        key = ""
        if use_cache:
            with timer("hash"):  # on the decoded host pixels: no download from the GPU needed
                key = self._cache_key(decoded.rgb)
        plan = plan_resize(decoded.size[0], decoded.size[1], self.max_side)
        notices = list(decoded.notices) + ([plan.notice()] if plan.changed else [])
        with timer("upload"):
            image, alpha = self._upload(decoded, plan, notices)
        matte = self.cache.get(key) if key else None
        matte = None if matte is None else matte.to(image.device)  # the photo may have stayed on the CPU
        result = MatteResult(key=key, name=decoded.name or name, image=image, matte=matte, guide=None,
                             input_alpha=None if alpha is None else alpha[..., 0], original_size=plan.original,
                             notices=notices, timings=timings, cached=matte is not None)
        if matte is not None:
            with timer("preprocess"):
                result.guide, _ = network_input([image], self.spec, self.dtype)
        return result

    def _upload(self, decoded: DecodedImage, plan: Resize, notices: list[Notice]):
        """The photo (and its own alpha) on the device at the working size. Out of GPU memory: reduce on the host
        and upload only the working size; still out of memory: keep it on the CPU, where it is then matted and
        rendered (the user is told)."""
        def place(device: torch.device, reduce_on_host: bool):
            return (place_image(decoded.rgb, plan.working, device, reduce_on_host),
                    place_image(decoded.alpha, plan.working, device, reduce_on_host))

        for reduce_on_host in (False, True):
            try:
                return place(self.device, reduce_on_host)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                log.warning("GPU out of memory uploading a %d x %d image; %s", *decoded.size,
                            "keeping it on the CPU" if reduce_on_host else "reducing it on the host first")
        notices.append(GPU_OUT_OF_MEMORY)
        return place(torch.device("cpu"), True)

    def _cache_key(self, pixels: np.ndarray) -> str:
        """Content hash of the decoded pixels plus everything else that shapes the network's output."""
        digest = (xxhash.xxh3_128 if xxhash else hashlib.blake2b)(np.ascontiguousarray(pixels).data)
        digest.update(repr((pixels.shape, self.max_side, self._weights_id, str(self.dtype))).encode())
        return digest.hexdigest()

    def _infer(self, results: list[MatteResult], on_cpu: bool = False, timer=StageTimer) -> None:
        """Run the network on ``results`` (batched), with the out-of-memory fallbacks."""
        timings: dict[str, float] = {}
        timer = (StageTimer if on_cpu else timer)(self.device, timings)
        try:
            if on_cpu:
                with timer("inference"):
                    guide, mattes = self._run_on_cpu(results)
            else:
                with timer("preprocess"):
                    guide, x = network_input([r.image for r in results], self.spec, self.dtype)
                with timer("inference"):
                    mattes = ops.min_max_normalize(self.runner(x))
        except torch.OutOfMemoryError:
            guide, mattes = self._infer_after_oom(results, timings)
        # A result that outlives the batch (cached: the app's, kept by its session too) gets its own copy when the
        # batch had several: a slice would keep the whole batch's storage alive, while the matte cache counts the
        # slice's bytes only (a coalesced batch of 16: 16 times what it counted). A batch run's results go with
        # their batch, so they keep the slices and their batches make no extra copies.
        for i, result in enumerate(results):
            copy = len(results) > 1 and bool(result.key)
            result.guide = guide[i:i + 1].to(result.device, torch.float32, copy=copy)
            result.matte = mattes[i:i + 1].to(result.device, copy=copy)
            if result.key:  # "" when prepared with use_cache=False
                self.cache.put(result.key, result.matte)

        def share() -> None:
            for result in results:
                for stage, ms in timings.items():
                    result.timings[stage] = ms / len(results)
        timer.finish(share)

    def _infer_after_oom(self, results: list[MatteResult], timings: dict[str, float]):
        """GPU out of memory: free the cache and retry one image at a time, then fall back to the CPU."""
        log.warning("GPU out of memory on a batch of %d; retrying one by one", len(results))
        torch.cuda.empty_cache()
        try:
            parts = [network_input([r.image], self.spec, self.dtype) for r in results]
            guide = torch.cat([p[0] for p in parts])
            mattes = torch.cat([ops.min_max_normalize(self.runner(p[1])) for p in parts])
            return guide, mattes
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
        log.warning("GPU still out of memory; running this batch on the CPU")
        guide, mattes = self._run_on_cpu(results)
        for r in results:
            r.notices.append(GPU_OUT_OF_MEMORY)
        return guide, mattes

    def _run_on_cpu(self, results: list[MatteResult]) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            guide, x = network_input([r.image.cpu() for r in results], self.spec, torch.float32)
            return guide, ops.min_max_normalize(self._cpu()(x))
        except RuntimeError as exc:
            raise InferenceError(f"the model could not run, even on the CPU: {exc}") from exc

    def _cpu(self) -> ModelRunner | OpenVINORunner:
        """The runner for images that stayed on the CPU (out of GPU memory, or too large to move)."""
        if self._cpu_runner is None:
            if isinstance(self.runner, OpenVINORunner):   # already the CPU's runner
                self._cpu_runner = self.runner
                return self._cpu_runner
            cpu = torch.device("cpu")
            # fp32 stays exact; a reduced precision becomes the CPU's own choice (bf16 is slow without AMX).
            precision = "fp32" if self.precision == "fp32" else resolve_precision(
                cpu, "auto", bf16_checked=self._bf16_checked(), int8_ready=self._int8_problem() is None)
            self._cpu_runner = self._make_runner(precision, cpu, False, self.weights)
        return self._cpu_runner

    def _make_runner(self, precision: str, device: torch.device, use_cuda_graphs: bool | None,
                     weights) -> ModelRunner | OpenVINORunner:
        """The network in ``precision`` on ``device``: OpenVINO's int8 network, or PyTorch with the weights' fp32
        layers kept (``weights`` as create_model takes them: None is the embedded file, with its own message when
        it is missing)."""
        if precision == "int8":
            return OpenVINORunner(self.known_weights.int8_network, self.spec, float32_chains=self._float32_chains)
        return ModelRunner(create_model(self.spec.name, weights), self.spec, device, dtype_of(precision),
                           use_cuda_graphs, float32_chains=self._float32_chains)

    def _int8_problem(self) -> str | None:
        """Why the int8 CPU path cannot run for these weights here, or None when it can."""
        embedded = self.spec.embedded
        if embedded is None or embedded.int8_network is None:
            return f"no int8 network for {self.spec.name}"
        if self.known_weights is not embedded:
            return "it is derived from the embedded weights, and other weights are in use"
        if not embedded.int8_network.is_file():
            return f"{embedded.int8_network.name} is missing (python scripts/build_u2netp_int8.py makes it)"
        if not openvino_available():
            return "OpenVINO is not installed (pip install openvino)"
        return None

    def _bf16_checked(self) -> bool:
        """Whether bf16 was measured on these weights (their fp32 layers are known; other weights may put large
        activations elsewhere)."""
        return self.known_weights is not None and self.known_weights.float32_chains is not None

    # ---------------------------------------------------------------- rendering
    def render(self, result: MatteResult, settings: EdgeSettings | None = None, *, background: Background = None,
               preview: bool | int = False, want_rgba: bool = True, hints: np.ndarray | None = None) -> Rendered:
        """Edges and outputs from the cached matte: never runs the network.

        ``preview``: False renders at the working resolution; True fits within PREVIEW_SIDE; an int fits within it.
        ``hints``: a touch-up mask (matting.hints: 0 erases, 255 restores), best at the working resolution.
        Renders from many threads take turns on the GPU (see ``device_turn``); a turn ends when the render's
        kernels and copies are queued, and the wait for them comes after it.
        """
        settings = settings or EdgeSettings()
        max_side = preview_side(preview)
        asked = time.perf_counter()
        # the kernels and the copies queued in the turn (a preview before heavier work); the wait comes after it
        with self.device_turn(result, first=max_side is not None):
            start, start_cpu, began = time.perf_counter(), time.thread_time(), mark(result.device)
            try:
                alpha, rgba, composite = render_tensors(result, settings, background, max_side, want_rgba,
                                                        hints, coefficients=self.refine_graphs)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                log.warning("GPU out of memory while rendering; rendering on the CPU")
                alpha, rgba, composite = render_tensors(result.to("cpu"), settings, background, max_side,
                                                        want_rgba, hints)
            rendered, copies = mark(alpha.device), time.perf_counter()
            pending = start_download(alpha, rgba, composite)
            queued, queued_cpu = time.perf_counter(), time.thread_time()
        alpha_np, rgba_np, composite_np = pending.arrays()
        fetched = time.perf_counter()
        if began is not None and rendered is not None and pending.done is not None:
            # this render's own GPU time: the work other threads queued before it is not counted
            timings = {"postprocess": began.elapsed_time(rendered), "download": rendered.elapsed_time(pending.done)}
        else:   # the CPU (or the out-of-memory fallback to it)
            timings = {"postprocess": (queued - start) * 1000, "download": (fetched - queued) * 1000}
        # in_turn_cpu: this thread's own CPU time in the turn; the rest of in_turn it waited (for the GIL, mostly)
        waits = {"turn_wait": (start - asked) * 1000, "in_turn": (queued - start) * 1000,
                 "in_turn_cpu": (queued_cpu - start_cpu) * 1000, "turn_copies": (queued - copies) * 1000,
                 "gpu_wait": (fetched - queued) * 1000}
        return Rendered(alpha=alpha_np, rgba=rgba_np, composite=composite_np,
                        size=(alpha_np.shape[1], alpha_np.shape[0]), is_preview=max_side is not None,
                        timings=timings, notices=list(result.notices), waits=waits)

    def device_turn(self, result: MatteResult, first: bool = False):
        """One thread at a time on the GPU for the interactive calls (render, soft_alpha, photo, ...). Measured on
        an H200 (scripts/bench_render_threads.py, 1024 px previews): one thread renders 220 a second, 4 threads
        at once 134, 16 at once 95: their small kernel launches get in each other's way. Taking turns, a thread
        waits without holding the GIL. ``first``: a page's preview, which goes before the heavier work waiting
        (matting/device_turn.py). The CPU needs no turns."""
        if result.device.type != "cuda":
            return nullcontext()
        return self._gpu_turn.first() if first else self._gpu_turn

    def render_many(self, results: list[MatteResult], settings: EdgeSettings | None = None, *,
                    background: Background = None, want_rgba: bool = True,
                    png_kinds: tuple[str, ...] = ()) -> list[Rendered]:
        """Full-resolution renders of many results, in order. Those of one working size without an alpha of their
        own are stacked and rendered together (STACK_SIZE, STACK_PIXELS) and downloaded into page-locked memory
        (H100, 1 MP photos: 480 images/s in stacks of 8 against 190 one by one). A result with an alpha of its
        own, or a stack the GPU has no memory for, goes through render() one by one.
        ``png_kinds``: outputs ("cutout", "alpha", "composite") a stack encodes as PNG on the device
        (Rendered.png, matting.png_device) instead of downloading their pixels; the alpha always comes down."""
        settings = settings or EdgeSettings()
        stacks: dict[tuple, list[int]] = {}
        for i, result in enumerate(results):
            key = (tuple(result.image.shape), str(result.device)) if result.input_alpha is None else ("own", i)
            stacks.setdefault(key, []).append(i)
        rendered: list[Rendered | None] = [None] * len(results)
        for indices in stacks.values():
            height, width = results[indices[0]].image.shape[:2]
            size = max(1, min(STACK_SIZE, STACK_PIXELS // (height * width)))
            for start in range(0, len(indices), size):
                part = indices[start:start + size]
                own_alpha = results[part[0]].input_alpha is not None
                outs = None if own_alpha else self._render_stack([results[i] for i in part], settings, background,
                                                                  want_rgba, png_kinds)
                if outs is None:
                    outs = [self.render(results[i], settings, background=background, want_rgba=want_rgba)
                            for i in part]
                for i, out in zip(part, outs):
                    rendered[i] = out
        return rendered

    def _render_stack(self, results: list[MatteResult], settings: EdgeSettings, background: Background,
                      want_rgba: bool, png_kinds: tuple[str, ...] = ()) -> list[Rendered] | None:
        """One pass over a stack; None when the GPU runs out of memory (the caller renders them one by one)."""
        timings: dict[str, float] = {}
        timer = StageTimer(results[0].device, timings)
        try:
            with timer("postprocess"):
                alpha, rgba, composite = render_stack_tensors(results, settings, background, want_rgba,
                                                              coefficients=self.refine_graphs)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            log.warning("GPU out of memory while rendering a stack of %d; rendering one by one", len(results))
            return None
        png = self._encode_stack(png_kinds, {"cutout": rgba, "alpha": alpha, "composite": composite}, timer)
        rgba = None if "cutout" in png else rgba
        composite = None if "composite" in png else composite
        with timer("download"):  # one copy each for the whole stack; the images are views into it
            alpha_np, rgba_np, composite_np = download_pinned(alpha, rgba, composite)
        share = {stage: ms / len(results) for stage, ms in timings.items()}
        return [Rendered(alpha=alpha_np[k], rgba=None if rgba_np is None else rgba_np[k],
                         composite=None if composite_np is None else composite_np[k],
                         size=(alpha_np.shape[2], alpha_np.shape[1]), is_preview=False, timings=dict(share),
                         notices=list(result.notices), png={kind: files[k] for kind, files in png.items()})
                for k, result in enumerate(results)]

    @staticmethod
    def _encode_stack(kinds: tuple[str, ...], stacks: dict, timer) -> dict[str, list[bytes]]:
        """PNG files of the stack's images per kind, encoded on the device; none when it has no memory for them
        (their pixels come down and the CPU encodes them, as without png_kinds)."""
        wanted = [kind for kind in kinds if stacks.get(kind) is not None]
        if not wanted:
            return {}
        try:
            with timer("png"):
                return {kind: encode_png_stack(stacks[kind]) for kind in wanted}
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            log.warning("GPU out of memory while encoding PNGs; the CPU encodes them")
            return {}

    def warm_refine_graphs(self, settings: EdgeSettings) -> None:
        """Capture the refinement's coefficient graphs for ``settings`` (matting.refine_graphs), which
        render_many's stacks then replay. Only where the network runs graphs (CUDA), and before other threads use
        the GPU (a batch run calls it with the network's, batch_runtime.warm_graphs); ``MATTING_REFINE_GRAPHS=0``
        leaves them out, to measure with and without side by side."""
        if not (settings.refine and getattr(self.runner, "use_cuda_graphs", False)):
            return
        if os.environ.get(REFINE_GRAPHS_ENV, "1") == "0":
            self.refine_graphs = None
            return
        held = self.refine_graphs
        if held is None or (held.radius, held.eps) != (settings.refine_radius, settings.refine_eps):
            with self._gpu_turn:   # the interactive calls wait meanwhile (device_turn)
                self.refine_graphs = RefineGraphs.capture(self.device, self.spec.input_hw, settings.refine_radius,
                                                          settings.refine_eps)

    def soft_alpha(self, result: MatteResult, settings: EdgeSettings | None = None, *,
                   preview: bool | int = True) -> tuple[np.ndarray, np.ndarray | None]:
        """The matte before threshold, erode and feather, and the upload's own alpha when the settings use it:
        uint8 (H, W) arrays sized like ``render(..., preview=preview)``. A web page redraws the edge settings
        from these while a slider moves. Never runs the network."""
        soft, own = self._fetch(result, lambda: soft_alpha_tensors(result, settings or EdgeSettings(),
                                                                    preview_side(preview),
                                                                    coefficients=self.refine_graphs), preview)
        return soft, own

    def photo_hw(self, result: MatteResult, *, preview: bool | int = True) -> tuple[int, int]:
        """(H, W) of ``render(..., preview=preview)``."""
        return output_hw(result, preview_side(preview))

    def background_preview(self, result: MatteResult, image: np.ndarray, *, preview: bool | int = True) -> np.ndarray:
        """A background image fitted (cover) to a render's size, as the composite uses it: uint8 (H, W, 3)."""
        size_hw = self.photo_hw(result, preview=preview)
        [fitted] = self._fetch(result, lambda: (ops.to_uint8_hwc(background_tensor(image, size_hw, result.device))[0],),
                               preview)
        return fitted

    def photo(self, result: MatteResult, *, preview: bool | int = True) -> np.ndarray:
        """The upright photo as uint8 (H, W, 3), sized like ``render(..., preview=preview)``: the "before" of a
        before/after view. Never runs the network."""
        [photo] = self._fetch(result, lambda: (photo_u8(result, preview_side(preview)),), preview)
        return photo

    def _fetch(self, result: MatteResult, make, preview: bool | int = True) -> list[np.ndarray | None]:
        """``make()``'s tensors as arrays: made in ``result``'s turn on the GPU (a preview's before heavier work),
        waited for after it, so that a thread waiting for the GPU (and then for the GIL back) does not hold up the
        others' turns."""
        with self.device_turn(result, first=preview_side(preview) is not None):
            pending = start_download(*make())
        return pending.arrays()

    def process(self, source, settings: EdgeSettings | None = None, *, background: Background = None,
                name: str | None = None) -> tuple[MatteResult, Rendered]:
        result = self.matte(source, name=name)
        return result, self.render(result, settings, background=background)


def preview_side(preview: bool | int) -> int | None:
    """``preview`` as render sizes mean it: False the working resolution (None), True PREVIEW_SIDE, an int itself."""
    return None if preview is False else (PREVIEW_SIDE if preview is True else int(preview))


_PIPELINE: Pipeline | None = None
_PIPELINE_LOCK = threading.Lock()


def get_pipeline(**kwargs) -> Pipeline:
    """The one process-wide pipeline, created on first call (thread-safe).

    Arguments (model, weights, device, ...) apply to that first creation; later calls with different
    arguments raise, rather than silently handing back a pipeline other than the one asked for.
    """
    global _PIPELINE
    if _PIPELINE is None:
        with _PIPELINE_LOCK:
            if _PIPELINE is None:
                configure_process()   # a library user's process gets what the app's and the CLI's get
                _PIPELINE = Pipeline(**kwargs)
                _PIPELINE._created_with = kwargs
    elif kwargs and kwargs != getattr(_PIPELINE, "_created_with", {}):
        raise MattingError("the pipeline already exists with other settings; call reset_pipeline() first")
    return _PIPELINE


def reset_pipeline() -> None:
    """Drop the shared pipeline (tests, or a settings change in a long-lived process)."""
    global _PIPELINE
    with _PIPELINE_LOCK:
        _PIPELINE = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


