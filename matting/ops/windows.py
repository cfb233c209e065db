"""Sliding-window maxima, minima and sums from whole-image shifted views (the fast core of the filters: see the
package docstring for why not pooling or convolution)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def pad_axis(x: Tensor, before: int, after: int, dim: int, mode: str) -> Tensor:
    """Pad one spatial axis (dim -1 or -2) of a 4-D tensor."""
    if before == 0 and after == 0:
        return x
    if mode == "reflect" and max(before, after) >= x.shape[dim]:
        mode = "replicate"  # torch's reflect needs pad < size
    pad = (before, after, 0, 0) if dim == -1 else (0, 0, before, after)
    if mode == "constant":
        return F.pad(x, pad, mode="constant", value=0.0)
    return F.pad(x, pad, mode=mode)


class Workspace:
    """Scratch buffers of one shape for a chain of shrinking valid-mode passes.

    Each pass writes into the top-left corner of a buffer that holds none of its operands,
    so a chain allocates nothing after its first buffers. Why: on CPU a fresh 32 MB tensor
    costs ~5 ms of page faults here, more than the ~1-2 ms pass that fills it.
    ``first`` must be a tensor this module owns (it gets overwritten).
    """

    def __init__(self, first: Tensor, count: int):
        self.bufs = [first] + [torch.empty_like(first) for _ in range(count - 1)]

    def out(self, shape: torch.Size, *live: Tensor) -> Tensor:
        busy = {t.untyped_storage().data_ptr() for t in live}
        for b in self.bufs:
            if b.untyped_storage().data_ptr() not in busy:
                return b[tuple(slice(0, n) for n in shape)]
        raise AssertionError("workspace has no free buffer")


def doubling_passes(x: Tensor, k: int, step: Callable[[Tensor, int], Tensor]) -> Tensor:
    """Cover a window of length k in ceil(log2 k) passes: double the covered length each pass, then one
    overlapping pass for the remainder (exact for max/min, which involve no rounding)."""
    p = 1
    while 2 * p <= k:
        x = step(x, p)
        p *= 2
    if p < k:
        x = step(x, k - p)
    return x


def sliding_extreme(x: Tensor, k: int, dim: int, op: Callable[..., Tensor], ws: Workspace) -> Tensor:
    """Valid-mode max/min over windows of length k along dim (output shrinks by k - 1).

    Doubles the covered window each pass, then one overlapping pass for the remainder:
    ceil(log2 k) whole-image passes. Exact (max/min involve no rounding).
    """

    def step(t: Tensor, s: int) -> Tensor:
        n = t.shape[dim] - s
        a, b = t.narrow(dim, 0, n), t.narrow(dim, s, n)
        return op(a, b, out=ws.out(a.shape, t))

    return doubling_passes(x, k, step)


def sliding_diagonal(x: Tensor, k: int, op: Callable[..., Tensor], anti: bool, ws: Workspace) -> Tensor:
    """Valid-mode max/min over k pixels along the (anti-)diagonal; both axes shrink by k - 1."""

    def step(t: Tensor, s: int) -> Tensor:
        h, w = t.shape[-2] - s, t.shape[-1] - s
        if anti:  # window runs from (y, x + k - 1) down-left to (y + k - 1, x)
            a, b = t[..., :h, s:], t[..., s:, :w]
        else:
            a, b = t[..., :h, :w], t[..., s:, s:]
        return op(a, b, out=ws.out(a.shape, t))

    return doubling_passes(x, k, step)


def cross_extreme(x: Tensor, op: Callable[..., Tensor], ws: Workspace) -> Tensor:
    """Valid-mode max/min over the 3x3 plus-shaped neighbourhood; both axes shrink by 2."""
    centre = x[..., 1:-1, 1:-1]
    m = op(x[..., 1:-1, :-2], x[..., 1:-1, 2:], out=ws.out(centre.shape, x))
    op(m, x[..., :-2, 1:-1], out=m)
    op(m, x[..., 2:, 1:-1], out=m)
    op(m, centre, out=m)
    return m


def sliding_sum(x: Tensor, k: int, dim: int) -> Tensor:
    """Valid-mode sum over windows of length k along dim, by binary decomposition of k.

    O(log k) whole-image additions of pairwise partial sums, so float32 error stays ~1e-7
    (a float32 cumulative sum over a 3264-pixel row is off by up to 7e-5). ``x`` must be a
    tensor this module owns: it is reused as scratch.
    """
    n_in = x.shape[dim]
    ws = Workspace(x, 3)  # live at once: the running sum, the doubled window, the result
    acc: Tensor | None = None
    acc_len = 0
    cur, p = x, 1  # cur[i] = sum of x[i : i + p]
    while True:
        if k & p:
            if acc is None:
                acc, acc_len = cur, p
            else:
                n = n_in - (acc_len + p) + 1
                a, b = acc.narrow(dim, 0, n), cur.narrow(dim, acc_len, n)
                acc = torch.add(a, b, out=ws.out(a.shape, acc, cur))
                acc_len += p
        if 2 * p > k:
            break
        n = cur.shape[dim] - p
        a, b = cur.narrow(dim, 0, n), cur.narrow(dim, p, n)
        cur = torch.add(a, b, out=ws.out(a.shape, acc, cur) if acc is not None else ws.out(a.shape, cur))
        p *= 2
    assert acc is not None
    return acc


def window_counts(n: int, r: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """How many of the 2r+1 window positions fall inside an axis of length n. Read only: kept for the next call
    of the same size (eight kernel launches each time otherwise, a fifth of a preview render's on a GPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_current_stream_capturing():   # a captured graph must own its tensors: never the cache's
            return _window_counts(n, r, device, dtype)
        # per stream: a tensor made on one stream may not be ready yet on another
        return _kept_window_counts(n, r, device, dtype, torch.cuda.current_stream(device).stream_id)
    return _kept_window_counts(n, r, device, dtype, 0)


def _window_counts(n: int, r: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    i = torch.arange(n, device=device)
    return ((i + r).clamp(max=n - 1) - (i - r).clamp(min=0) + 1).to(dtype)


@functools.lru_cache(maxsize=256)
def _kept_window_counts(n: int, r: int, device: torch.device, dtype: torch.dtype, stream: int) -> Tensor:
    return _window_counts(n, r, device, dtype)
