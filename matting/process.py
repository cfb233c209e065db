"""Process-wide settings the engine relies on, set once by whoever owns the process: the app, the CLI, the
benchmarks and evaluation call ``configure_process()`` at start, and ``get_pipeline()`` does for library users.
Building a Pipeline or a ModelRunner changes nothing outside itself."""

from __future__ import annotations

import torch

from .memory import keep_large_buffers_in_heap


def configure_process() -> dict[str, bool]:
    """Set, idempotently:

    - glibc's heap thresholds for image-sized buffers (memory.py: 71 instead of 94 ms for a CPU bf16 network);
    - cuDNN without TF32. TF32 convolutions round fp32 inputs to a 10-bit mantissa: an fp32 network would not be
      fp32, and the layers a reduced-precision network keeps in fp32 (models/precision.py) are kept there because
      they cannot take that rounding. fp16 and bf16 convolutions do not use TF32, so the default path loses nothing.

    Returns what it set, for a startup log or a test."""
    torch.backends.cudnn.allow_tf32 = False
    return {"heap_tuned": keep_large_buffers_in_heap(), "cudnn_tf32": torch.backends.cudnn.allow_tf32}
