"""Which device and precision the engine runs on: argument, then MATTING_DEVICE, then CUDA when usable."""

from __future__ import annotations

import os

import torch

from .errors import InvalidParameterError

DEVICE_ENV = "MATTING_DEVICE"


def resolve_device(requested: str | torch.device | None = None) -> torch.device:
    """``requested`` or $MATTING_DEVICE ("auto", "cpu", "cuda", "cuda:1"); "auto" picks CUDA when it works."""
    choice = str(requested) if requested is not None else os.environ.get(DEVICE_ENV, "auto")
    choice = choice.strip().lower() or "auto"
    if choice == "auto":
        return torch.device("cuda") if cuda_usable() else torch.device("cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise InvalidParameterError(f"unknown device {choice!r}: use auto, cpu or cuda[:N]") from None
    if device.type == "cuda":
        if not cuda_usable():
            raise InvalidParameterError("device 'cuda' requested but no usable CUDA GPU was found; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidParameterError(f"device {choice!r} does not exist: {torch.cuda.device_count()} GPU(s) found")
    elif device.type != "cpu":
        raise InvalidParameterError(f"device type {device.type!r} is not supported: use cpu or cuda")
    return device


def cuda_usable() -> bool:
    """True when a CUDA device exists and a tiny kernel actually runs (drivers can be present but broken)."""
    if not torch.cuda.is_available():
        return False
    try:
        torch.zeros(1, device="cuda").add_(1)
        return True
    except RuntimeError:
        return False


PRECISION_ENV = "MATTING_PRECISION"
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    """``requested`` or $MATTING_PRECISION ("auto", "fp32", "fp16", "bf16").

    auto: fp16 on CUDA. On an H100, fp16 with CUDA graphs runs U^2-Net-P in 2.3 ms against 5.5 ms for true
    fp32; its matte differs from the CPU's fp32 by 0.001-0.004 on average and 0.03-0.045 at the 99th percentile,
    the same order as TF32 (PyTorch's default for fp32 convolutions on CUDA).
    auto on the CPU: fp32. bf16 on a CPU with AMX tiles runs U^2-Net-P 2.5 times faster, but U^2-Net-P is
    sensitive to bf16 rounding of its activations (matte 0.011 off on average, SAD +2.5 % on the public matting
    set, even with every convolution kept in fp32), so it is opt-in. fp16 on the CPU is refused: without AMX-FP16
    it is slower than fp32. docs/BENCHMARKS.md, "CPU precision".
    """
    choice = (requested or os.environ.get(PRECISION_ENV, "auto")).strip().lower() or "auto"
    if choice == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if choice not in _DTYPES:
        raise InvalidParameterError(f"unknown precision {choice!r}: use auto, fp32, fp16 or bf16")
    if device.type == "cpu" and choice == "fp16":
        raise InvalidParameterError("precision fp16 is for CUDA; on the CPU use fp32 or bf16")
    return _DTYPES[choice]


def precision_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _DTYPES.items()}[dtype]


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
