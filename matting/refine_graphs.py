"""The refinement's low-resolution half as captured CUDA graphs (issue 17).

The guided filter's coefficients are computed at the network's size (320 x 320) whatever the photo's: about a
hundred small kernels whose launches, not their arithmetic, are the cost. In a GPU batch run its two render
threads spent 43 % of their time there while the GPU's SMs were 36-43 % busy (H200, py-spy and nvidia-smi over
2000 1 MP images, scripts/profile_batch.sh): the render threads, not the GPU, limited the run. A graph replays
them in one launch.

    graphs = RefineGraphs.capture(device, (320, 320), radius, eps)   # before any thread uses the GPU
    mean_a, mean_b = graphs(guide_lr, src_lr) or eager(...)           # None: not a shape it holds

Graphs are captured for stacks of 1, 2, 4 and 8 images; a stack of 3 runs in the graph of 4 (each image's
coefficients depend on its own pixels only, so the spare rows change nothing). One lock and one event make
replays take turns on the GPU across threads and streams: the graphs share their static buffers' memory pool.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import torch

from .ops.guided import guided_coefficients

log = logging.getLogger(__name__)
STACKS = (1, 2, 4, 8)   # render_many stacks at most 8 images (pipeline.STACK_SIZE)


@dataclass
class _Graph:
    graph: "torch.cuda.CUDAGraph"
    guide: torch.Tensor     # static inputs, (B, C, h, w) float32
    src: torch.Tensor
    mean_a: torch.Tensor    # static outputs, overwritten by every replay
    mean_b: torch.Tensor


class RefineGraphs:
    """Captured coefficient graphs for one device, network size, radius and eps."""

    def __init__(self, device: torch.device, hw: tuple[int, int], channels: int, radius: int, eps: float):
        self.device, self.hw, self.channels, self.radius, self.eps = device, tuple(hw), channels, radius, eps
        self.replays = 0   # how many stacks took their coefficients from a graph (the GPU tests read it)
        self._graphs: dict[int, _Graph] = {}
        self._lock = threading.Lock()
        self._done: torch.cuda.Event | None = None   # the last replay's outputs copied out, on the GPU

    @classmethod
    def capture(cls, device: torch.device, hw: tuple[int, int], radius: int, eps: float, channels: int = 3,
                stacks: tuple[int, ...] = STACKS) -> "RefineGraphs | None":
        """The graphs, or None where they cannot be had (not CUDA, or a capture failed: then the eager path)."""
        device = torch.device(device)
        if device.type != "cuda":
            return None
        if device.index is None:   # "cuda" is the current GPU; tensors on it say cuda:N, and fits() compares
            device = torch.device("cuda", torch.cuda.current_device())
        graphs = cls(device, hw, channels, radius, eps)
        try:
            pool = torch.cuda.graph_pool_handle()
            for size in stacks:
                graphs._graphs[size] = graphs._capture(size, pool)
        except RuntimeError as exc:
            log.warning("CUDA graphs of the refinement could not be captured (%s); rendering eagerly", exc)
            return None
        graphs._done = torch.cuda.Event()
        return graphs

    def _capture(self, size: int, pool) -> _Graph:
        h, w = self.hw
        guide = torch.zeros(size, self.channels, h, w, device=self.device)
        src = torch.zeros(size, 1, h, w, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):   # kernels chosen and loaded before the capture
            guided_coefficients(guide, src, self.radius, self.eps)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: another thread's CUDA calls meanwhile (a web app serving while a batch starts) are theirs,
        # on their own streams, and do not break this capture.
        with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            mean_a, mean_b = guided_coefficients(guide, src, self.radius, self.eps)
        return _Graph(graph, guide, src, mean_a, mean_b)

    def fits(self, guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> bool:
        return (radius == self.radius and eps == self.eps and guide.device == self.device
                and guide.dtype == torch.float32 and src.dtype == torch.float32
                and tuple(guide.shape[1:]) == (self.channels, *self.hw) and tuple(src.shape[1:]) == (1, *self.hw)
                and 0 < guide.shape[0] <= max(self._graphs) and src.shape[0] == guide.shape[0])

    def __call__(self, guide: torch.Tensor, src: torch.Tensor, radius: int,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(mean_a, mean_b) as guided_coefficients gives them, from a replay; None when no graph fits."""
        if not self.fits(guide, src, radius, eps):
            return None
        n = guide.shape[0]
        entry = self._graphs[min(size for size in self._graphs if size >= n)]
        stream = torch.cuda.current_stream(self.device)
        with self._lock:
            stream.wait_event(self._done)   # the previous replay (any thread, any stream) is done with the pool
            entry.guide[:n].copy_(guide)
            entry.src[:n].copy_(src)
            entry.graph.replay()
            mean_a, mean_b = entry.mean_a[:n].clone(), entry.mean_b[:n].clone()
            self._done.record(stream)
            self.replays += 1
        return mean_a, mean_b
