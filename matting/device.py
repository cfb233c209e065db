"""Which device and precision the engine runs on: argument, then MATTING_DEVICE, then CUDA when usable."""

from __future__ import annotations

import functools
import os

import torch

from .engine_flags import PRECISIONS
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
# The float type the runner takes in: int8 is the arithmetic inside the OpenVINO network, fed float32.
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}


def resolve_precision(device: torch.device, requested: str | None = None, *, bf16_checked: bool = False,
                      int8_ready: bool = False) -> str:
    """``requested`` or $MATTING_PRECISION: "auto", "fp32", "fp16", "bf16" or "int8".

    auto on CUDA: fp16, with the spec's fragile layers in true fp32. On an H100 that runs U^2-Net-P in 2.4 ms
    with CUDA graphs, against 5.5 ms for true fp32; its matte differs from fp32's by 0.0002 on average and at
    most 0.016 on the example photos (every layer in fp16: 0.0014 and 0.15).
    auto on the CPU, fastest first:
    - int8 where the CPU has VNNI (AVX512-VNNI or AVX-VNNI: Intel since Cascade Lake / Alder Lake, AMD since
      Zen 4) and ``int8_ready`` (OpenVINO installed, the embedded weights in use, their int8 network at hand):
      2 cores, against onnxruntime fp32 on the original ONNX, 2.8x on a Zen 4 (69 ms) and 3.7x on a Xeon with
      AMX (64 ms, where PyTorch bf16 took 143), SAD and Grad within 0.3 % of fp32 (openvino_runner.py,
      docs/BENCHMARKS.md).
    - bf16 where the CPU has AMX tiles (and oneDNN is on) and the model's bf16 behaviour was measured
      (``bf16_checked``: its spec names the layers to keep in float32, for the weights in use), when int8 cannot
      run. U^2-Net-P in bf16 on AMX, with its one ill-conditioned pair of layers in float32, ran 2.7 times as fast
      as fp32 (71 against 191 ms on 2 cores) and its matte stays within 0.2-0.4/255 of fp32's on average.
    - fp32 otherwise (AVX2-only CPUs: int8 was not measured there).
    fp16 on the CPU is refused (without AMX-FP16 it is slower than fp32), int8 on CUDA too (it is the CPU path).
    """
    choice = (requested or os.environ.get(PRECISION_ENV, "auto")).strip().lower() or "auto"
    if choice == "auto":
        if device.type == "cuda":
            return "fp16"
        if int8_ready and cpu_has_vnni():
            return "int8"
        return "bf16" if bf16_checked and torch.backends.mkldnn.enabled and cpu_has_amx() else "fp32"
    if choice not in PRECISIONS:
        raise InvalidParameterError(f"unknown precision {choice!r}: use auto, fp32, fp16, bf16 or int8")
    if device.type == "cpu" and choice == "fp16":
        raise InvalidParameterError("precision fp16 is for CUDA; on the CPU use fp32, bf16 or int8")
    if device.type == "cuda" and choice == "int8":
        raise InvalidParameterError("precision int8 is for the CPU; on CUDA use fp16, bf16 or fp32")
    return choice


def resolve_dtype(device: torch.device, requested: str | None = None, *, bf16_checked: bool = False,
                  int8_ready: bool = False) -> torch.dtype:
    """The float type of ``resolve_precision``'s choice (float32 for int8, whose runner takes float32)."""
    return dtype_of(resolve_precision(device, requested, bf16_checked=bf16_checked, int8_ready=int8_ready))


def dtype_of(precision: str) -> torch.dtype:
    return _DTYPES[precision]


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty off Linux)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as handle:
            return next((set(line.partition(":")[2].split()) for line in handle if line.startswith("flags")), set())
    except OSError:
        return set()


@functools.lru_cache(maxsize=4)
def cpu_has_vnni(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU has int8 dot-product instructions (AVX512-VNNI or AVX-VNNI): where int8 pays."""
    return bool({"avx512_vnni", "avx_vnni"} & cpu_flags(cpuinfo))


@functools.lru_cache(maxsize=4)
def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU has AMX bf16 tiles (Intel Xeon 4th generation and later) that this process may use:
    oneDNN runs bf16 convolutions on them. The flags come from /proc/cpuinfo, so False off Linux (auto then stays
    fp32); the kernel must also grant the tile state (Linux 5.16+), which torch asks for where it can."""
    flags = cpu_flags(cpuinfo)
    if not {"amx_tile", "amx_bf16"} <= flags or not torch.backends.mkldnn.is_available():
        return False
    isa_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL")).upper()
    if isa_cap != "ALL" and "AMX" not in isa_cap:  # oneDNN told to stay below AMX
        return False
    request_tiles = getattr(getattr(torch._C, "_cpu", None), "_init_amx", None)  # private: absent in some builds
    return bool(request_tiles()) if request_tiles is not None else True


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
