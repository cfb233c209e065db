"""How a batch uses the machine: defaults per device, and the process-wide settings a run adjusts while it lasts.

Measured choices (2-core dev CPU; H100 host with 16 cores, 1 MP JPEG in, RGBA PNG out):
- CPU: one single-threaded forward per core beats one forward over both cores (164 vs 202 ms per image), and
  render threads must not start full OpenMP teams on top (oversubscribed teams spin: half the throughput). So a
  CPU batch sets torch to one intra-op thread and runs one inference thread per core, batch size 1 (larger
  batches gain nothing on the CPU: 203, 205, 207 ms per image at 1, 2, 4).
- GPU: one inference thread (graph replays, batch size 16), two render threads, four decode threads and four
  encoder processes when fpng is there; every extra thread only competes for the GIL that the render threads
  need. Each engine thread has its own CUDA stream, so a stage's sync waits for its own work only.
Process-wide settings (torch threads, the GIL switch interval) are ref-counted: overlapping batches in a server
restore them once, when the last one ends.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager

import numpy as np

from .batch_encode import uses_processes
from .env_numbers import decimal_number, whole_number
from .settings import EdgeSettings


def is_gpu(device) -> bool:
    return getattr(device, "type", str(device)) == "cuda"


# Inference threads (each its own CUDA stream) per engine process on a GPU: 1 unless set. Fewer processes with
# more streams lost on the H200 (two processes of 2 streams 373-387 images/s against four of 1, 498-509; session 28):
# one process's threads share one interpreter lock. Kept for such measurements.
GPU_INFER_THREADS_ENV = "MATTING_GPU_INFER_THREADS"
PNG_ENCODER_ENV = "MATTING_PNG_ENCODER"   # "device": PNG outputs encoded on the GPU (matting.png_device); "cpu"


def png_on_device(device, kinds, crop) -> tuple[str, ...]:
    """The output kinds a GPU batch encodes as PNG where they were rendered (matting.png_device): only the
    compressed bytes come down, and no CPU core spends 10-13 ms per megapixel in fpng. The cutout and the matte
    (always PNG; a composite is mostly JPEG); not with --crop (the box is cut from the downloaded matte first), not
    on the CPU (fpng is the faster CPU encoder)."""
    if not is_gpu(device) or crop is not None or os.environ.get(PNG_ENCODER_ENV, "cpu") != "device":
        return ()
    return tuple(k for k in kinds if k in ("cutout", "alpha"))


def default_batch_size(device) -> int:
    return 16 if is_gpu(device) else 1


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 2


def default_workers(device=None, engines: int = 1) -> int:
    """Threads per pool. CPU: one per core. GPU with fpng: 4, which decode (5 ms per 1 MP JPEG) and encode (in
    processes, 13 ms) far more than 100 images/s; more threads only fight for the GIL that the render thread
    needs (H100 host, 1 MP: 102 images/s with 4 workers, 86 with 8, 86 with 16). With ``engines`` engine
    processes on one GPU host (batch_engines.py) each takes at most its share of the cores: four engines on 16
    cores take 4 each (H200, 8 MP: 79.6 and 85.0 images/s against 55.9 and 52.3 with 3 each, session 27), eight
    would take 2."""
    if is_gpu(device):  # without fpng, OpenCV encodes in these threads (GIL released, 10x slower): many
        wanted = 4 if uses_processes(device) else 16
        return max(2, min(cpu_cores() // max(1, engines), wanted))
    return max(2, min(cpu_cores(), 32))


def inference_threads(device) -> int:
    if is_gpu(device):   # one stream of graph replays per engine process (GPU_INFER_THREADS_ENV)
        return whole_number(GPU_INFER_THREADS_ENV, 1, minimum=1)
    return min(CPU_INFER_THREADS or cpu_cores(), cpu_cores())


def render_threads(device) -> int:
    """Render threads of a GPU batch: GPU_RENDER_THREADS for each inference thread (its mattes come in turn)."""
    return GPU_RENDER_THREADS * inference_threads(device)


# On the CPU, one single-threaded forward per core beats one forward spread over all cores (measured on 2 cores:
# 164 vs 202 ms per image), and torch ops in the render threads must not each start a full OpenMP team on top:
# oversubscribed OpenMP teams spin and halve the throughput. So during a CPU batch torch runs one intra-op thread
# per calling thread, and parallelism comes from our threads.
CPU_TORCH_THREADS = 1
CPU_INFER_THREADS = None  # None: one per core
GPU_RENDER_THREADS = 2    # H100 host, 4 workers: 2 threads 97 and 86 images/s vs 1 thread 86 and 83; 3 are worse


class SharedSetting:
    """A process-wide setting changed while at least one batch needs it and restored when the last one ends,
    so overlapping batches (two web users, say) neither fight over it nor leave it changed."""

    def __init__(self, read, write):
        self._read, self._write = read, write
        self._lock = threading.Lock()
        self._users = 0
        self._saved = None

    @contextmanager
    def held(self, value):
        with self._lock:
            if self._users == 0:
                self._saved = self._read()
                self._write(value)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._write(self._saved)


def _torch_threads_setting() -> SharedSetting:
    import torch

    return SharedSetting(torch.get_num_threads, torch.set_num_threads)


_TORCH_THREADS = _torch_threads_setting()


# On a GPU the render thread dispatches hundreds of small kernels per image, taking the GIL back after each; when
# a decode thread is running Python meanwhile, the default 5 ms switch interval is what it may wait each time.
GIL_SWITCH_ENV = "MATTING_GIL_SWITCH_S"   # seconds; 0 leaves Python's own interval


def gpu_switch_interval() -> float:
    return decimal_number(GIL_SWITCH_ENV, 0.0005)


_SWITCH_INTERVAL = SharedSetting(sys.getswitchinterval, sys.setswitchinterval)


@contextmanager
def gil_switch(device):
    """A shorter GIL switch interval for the length of a GPU batch (ref-counted, restored afterwards)."""
    interval = gpu_switch_interval() if is_gpu(device) else 0
    if interval <= 0:
        yield
        return
    with _SWITCH_INTERVAL.held(interval):
        yield


@contextmanager
def torch_threads(device):
    """Set torch's intra-op threads for a CPU batch; ref-counted, so overlapping batches restore it once."""
    if is_gpu(device) or not CPU_TORCH_THREADS:
        yield
        return
    with _TORCH_THREADS.held(CPU_TORCH_THREADS):
        yield


@contextmanager
def own_stream(device):
    """Run this thread's CUDA work on a stream of its own, so its syncs (the pipeline's stage timers, downloads)
    wait for its own work only, not for the other threads' batches."""
    if device.type != "cuda":  # the real device, also where tests force the GPU layout on the CPU
        yield
        return
    import torch

    with torch.cuda.stream(torch.cuda.Stream(device)):
        yield


def enter_own_stream(device) -> None:
    """ThreadPoolExecutor initializer: the pool thread keeps a stream of its own for its whole life."""
    if device.type == "cuda":
        import torch

        torch.cuda.set_stream(torch.cuda.Stream(device))


def sync_own_stream(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.current_stream(device).synchronize()


def warm_up(pipe, batch_size: int | None = None, settings: EdgeSettings | None = None) -> None:
    """Get ``pipe`` ready for batches of ``batch_size`` (the device's default when None): on a GPU, capture the
    CUDA graphs of every batch size up to it and render one image, so the render's kernels are loaded (CUDA
    loads each kernel on its first launch). run_batch captures the graphs itself; call this ahead to keep all of
    it out of the first images' time (benchmarks, a server at start-up)."""
    warm_graphs(pipe, batch_size or default_batch_size(pipe.device), settings or EdgeSettings())
    if is_gpu(pipe.device):
        from .decode import DecodedImage

        rng = np.random.default_rng(0)
        image = DecodedImage(rgb=rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8), alpha=None, format="array")
        result = pipe.prepare(image, use_cache=False)
        pipe.infer([result])
        pipe.render(result, settings or EdgeSettings())


def warm_graphs(pipe, batch_size: int, settings: EdgeSettings | None = None) -> None:
    """Capture the CUDA graphs this run will use (the network's, and the refinement's for ``settings``) before
    any worker thread touches the GPU: a capture must not overlap other threads' CUDA calls. Graphs already
    captured are kept as they are, so after the first run this costs nothing on the GPU."""
    runner = getattr(pipe, "runner", None)
    if runner is None or not getattr(runner, "use_cuda_graphs", False):
        return
    if settings is not None and hasattr(pipe, "warm_refine_graphs"):
        pipe.warm_refine_graphs(settings)
    from .runner import GRAPH_BATCH_SIZES

    # every size a run can use: the next power of two covers a partial batch
    sizes = [size for size in GRAPH_BATCH_SIZES if size == 1 or size // 2 < batch_size]
    if runner.capture_graphs(sizes):
        import torch

        torch.cuda.synchronize(runner.device)
