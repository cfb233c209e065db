"""Runs the network: precision (with the weights' float32 layers), memory layout, inference mode, warm-up and
CUDA graphs.

On the GPU U^2-Net-P is launch-bound (about 400 small kernels, 6.7 ms eager at batch 1 on an H100); replaying a
captured CUDA graph cuts that to about 2 ms. Graphs are captured per batch size, for powers of two, at load
time for batch 1 and on first use for the others; batches are padded up to the next captured size.
A capture that fails leaves eager execution in place: slower, never wrong.
"""

from __future__ import annotations

import logging
import threading

import torch
from torch import nn

from .models.precision import Float32Chains, islands, with_precision
from .models.registry import ModelSpec

log = logging.getLogger(__name__)
GRAPH_BATCH_SIZES = (1, 2, 4, 8, 16, 32)


class ModelRunner:
    def __init__(self, model: nn.Module, spec: ModelSpec, device: torch.device, dtype: torch.dtype,
                 use_cuda_graphs: bool | None = None, float32_chains: Float32Chains = ()):
        """``float32_chains``: layers kept in fp32 when ``dtype`` is reduced (the weights' WeightsInfo)."""
        self.spec = spec
        self.device = device
        self.dtype = dtype
        model = model.to(device=device, memory_format=torch.channels_last)
        self.model = with_precision(model, dtype, float32_chains).eval()
        self.float32_layers = islands(self.model)  # kept in fp32 inside a reduced-precision network
        self.use_cuda_graphs = device.type == "cuda" if use_cuda_graphs is None else use_cuda_graphs
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()  # a captured graph owns static buffers: one replay at a time
        # ... on the GPU too: callers on other streams (a batch run's inference thread beside the app's uploads)
        # wait for the previous replay's outputs to be copied out before writing the inputs again
        self._done: torch.cuda.Event | None = None
        self.calls = 0                 # how many batches went through the network (tests count re-runs)

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.spec.input_hw

    def warm_up(self, max_batch: int = 1) -> None:
        """Run once at load so the first user does not pay for kernel selection and graph capture (the graphs of
        every batch size up to ``max_batch``)."""
        h, w = self.input_hw
        x = torch.zeros(1, 3, h, w, device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            self._eager(x)
            if self.use_cuda_graphs:
                for batch in GRAPH_BATCH_SIZES:
                    if batch == 1 or batch <= max_batch:
                        self._graph_for(batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def capture_graphs(self, sizes) -> list[int]:
        """Capture the graphs of ``sizes`` not held yet and say which those were; held ones are left alone (not
        replayed: four engines replaying every size at each batch run's start kept the H200 busy for the first
        100 ms or so of each run, before any image; session 29)."""
        new = [size for size in sizes if size not in self._graphs]
        if new:
            with self._lock, torch.inference_mode():
                for size in new:
                    self._graph_for(size)
        return new

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Network input (B, 3, H, W), already normalised -> matte logits' sigmoid (B, 1, H, W), float32."""
        x = x.to(device=self.device, dtype=self.dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            self.calls += 1
            if self.use_cuda_graphs and tuple(x.shape[-2:]) == tuple(self.input_hw) and len(x):
                logits = self._run_graphed(x)
            else:
                logits = self._eager(x)
            return torch.sigmoid(logits.float())

    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _run_graphed(self, x: torch.Tensor) -> torch.Tensor:
        batch = len(x)
        bucket = next((b for b in GRAPH_BATCH_SIZES if b >= batch), None)
        if bucket is None:  # larger than the biggest graph: split
            return torch.cat([self._run_graphed(part) for part in x.split(GRAPH_BATCH_SIZES[-1])])
        with self._lock:
            entry = self._graph_for(bucket)
            if entry is None:
                return self._eager(x)
            graph, static_in, static_out = entry
            stream = torch.cuda.current_stream(self.device)
            if self._done is not None:
                stream.wait_event(self._done)
            try:
                static_in[:batch].copy_(x)
                if batch < bucket:
                    static_in[batch:].zero_()
                graph.replay()
                return static_out[:batch].clone()
            finally:   # even when the clone fails, the next replay must wait for this one
                self._done = torch.cuda.Event()
                self._done.record(stream)

    def _graph_for(self, batch: int):
        if batch in self._graphs:
            return self._graphs[batch]
        h, w = self.input_hw
        try:
            static_in = torch.zeros(batch, 3, h, w, device=self.device, dtype=self.dtype).contiguous(
                memory_format=torch.channels_last)
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):  # warm-up iterations off the default stream, as capture requires
                for _ in range(2):
                    self.model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_in)
            self._graphs[batch] = (graph, static_in, static_out)
        except Exception as exc:  # noqa: BLE001 - any capture failure means: stay eager
            log.warning("CUDA graph capture for batch %d failed (%s); running eagerly", batch, exc)
            self._graphs[batch] = None
        return self._graphs[batch]
