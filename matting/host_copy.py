"""Tensors between the host and the GPU without waiting for the GPU where it can be avoided.

    pending = start_download(alpha, rgba, None)   # queued on this thread's stream: returns at once
    ...                                            # e.g. let the next thread have its turn on the GPU
    alpha_np, rgba_np, _ = pending.arrays()        # waits for the kernels and the copies, asleep, without the GIL

Downloads go to page-locked host memory: in a batch run on an H100 the plain (pageable) downloads of the renders
took 38 % of the GPU's busy time, 1.7 ms per 1 MP image; a pinned copy runs at the link's speed and does not
block the calling thread. Pinned blocks come from torch's caching host allocator, which reuses them by size and
keeps them (page-locked) for the process: about the largest renders in flight at once. An array a caller keeps
keeps its block. ``upload`` is the other way: a host array on the device without a sync of the stream.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)


def mark(device: torch.device) -> torch.cuda.Event | None:
    """An event recorded now on this thread's stream of ``device`` (None off CUDA): for the GPU time between two
    marks (``elapsed_time``), and for waits that sleep rather than spin (``blocking``)."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event(enable_timing=True, blocking=True)
    event.record(torch.cuda.current_stream(device))
    return event


class PendingDownload:
    """Copies started by start_download; ``arrays()`` waits for them (once) and gives the numpy arrays."""

    def __init__(self, hosts: list[torch.Tensor | None], done: torch.cuda.Event | None):
        self._hosts, self.done = hosts, done
        self._waited = done is None

    def arrays(self) -> list[np.ndarray | None]:
        if not self._waited:
            self.done.synchronize()   # this download's work only: other threads' later kernels are not waited for
            self._waited = True
        return [None if host is None else host.numpy() for host in self._hosts]


def start_download(*tensors: torch.Tensor | None) -> PendingDownload:
    """Start copying ``tensors`` (None where there is none) to the host. CPU tensors need no copy. Where no
    page-locked memory can be had, plain copies (which wait for the GPU)."""
    first = next((t for t in tensors if t is not None), None)
    if first is None or first.device.type != "cuda":
        return PendingDownload([None if t is None else t.detach() for t in tensors], None)
    try:
        hosts = [None if t is None else torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    except RuntimeError as exc:   # cudaHostAlloc refused: page-locked memory is limited by the system
        log.warning("no page-locked memory for a download (%s); copying without it", exc)
        return PendingDownload([None if t is None else t.cpu() for t in tensors], None)
    for host, t in zip(hosts, tensors):
        if t is not None:
            host.copy_(t, non_blocking=True)
    return PendingDownload(hosts, mark(first.device))


def download_pinned(*tensors: torch.Tensor | None) -> list[np.ndarray | None]:
    """The copies and the wait in one call, for a batch's render threads: each on a stream of its own, where
    waiting for the whole stream is waiting for its own work (a spin, as measured in the batch benchmarks)."""
    pending = start_download(*tensors)
    if pending.done is not None:   # on a GPU; arrays() then finds its event already reached
        first = next(t for t in tensors if t is not None)
        torch.cuda.current_stream(first.device).synchronize()
    return pending.arrays()


def upload(host: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host array or tensor on ``device``. To a GPU through page-locked memory, so that the copy does not make
    the calling thread wait for every kernel queued on its stream (a plain copy from pageable memory does)."""
    tensor = torch.as_tensor(host)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    try:
        pinned = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    except RuntimeError as exc:   # cudaHostAlloc refused: page-locked memory is limited by the system
        log.warning("no page-locked memory for an upload (%s); copying without it", exc)
        return tensor.to(device)
    copy_on_host(pinned, tensor)
    return pinned.to(device, non_blocking=True)


def copy_on_host(target: torch.Tensor, source: torch.Tensor) -> None:
    """``target[...] = source`` for CPU tensors of one shape, copied by numpy in the calling thread. Torch's own
    copy (``pin_memory``, ``copy_``) splits a photo-sized copy over an OpenMP team of one thread per core, whose
    threads then spin waiting for more work: on a GPU batch host, whose cores are all busy decoding and encoding,
    that spinning is taken from them (H200, two engines, 2000 1 MP photos, alternating: 450.4 and 438.6 images/s
    with this copy against 420.8 and 382.3 with pin_memory; session 24)."""
    try:
        np.copyto(target.numpy(), source.detach().numpy())
    except (TypeError, RuntimeError):   # a dtype numpy has not (bfloat16), or a tensor numpy cannot view
        target.copy_(source)
