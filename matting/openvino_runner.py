"""The int8 network on the CPU, through OpenVINO: the fast path on CPUs with VNNI.

U^2-Net-P at 320 x 320 on 2 threads, side by side with onnxruntime fp32 on the original ONNX (``python -m
matting.bench.inference --device cpu --onnx u2netp.onnx``, docs/BENCHMARKS.md): 2.8x on an AMD EPYC Zen 4 (69
against 198 ms), 3.7x on a Xeon with AMX (64 against 238 ms; PyTorch bf16 took 143 there). The int8 network is
derived from the embedded weights by scripts/build_u2netp_int8.py (quantized in QDQ form, with the
ill-conditioned pair of layers kept in fp32) and ships as assets/models/u2netp_int8.onnx; OpenVINO reads the ONNX
file directly.

Same interface as runner.ModelRunner: called with the normalised input (B, 3, H, W) float32, returns the matte's
sigmoid (B, 1, H, W) float32.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import torch

from .errors import ModelLoadError
from .models.precision import Float32Chains
from .models.registry import ModelSpec

log = logging.getLogger(__name__)
CACHE_ENV = "MATTING_CACHE_DIR"


def compiled_cache_dir() -> Path | None:
    """Where OpenVINO keeps the compiled network between runs ($MATTING_CACHE_DIR/openvino, else the user's cache
    folder), or None when it cannot be written: compiling the int8 network takes 1.1 s on 2 Zen 4 cores, loading
    the compiled blob 0.2 s. OpenVINO keys the blob by the file, the device and the settings."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                                                     "matting")
    folder = Path(root) / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.info("no cache for the compiled int8 network (%s): it compiles at every start", exc)
        return None
    return folder if os.access(folder, os.W_OK) else None


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


class OpenVINORunner:
    use_cuda_graphs = False
    dtype = torch.float32          # what it takes in; the arithmetic inside is int8 (and fp32 where kept)
    device = torch.device("cpu")

    def __init__(self, onnx_path: Path, spec: ModelSpec, threads: int | None = None,
                 float32_chains: Float32Chains = ()):
        """``float32_chains``: the layers the int8 file keeps in fp32 (reported by ``info``)."""
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelLoadError("precision int8 needs OpenVINO: pip install openvino") from exc
        self.spec = spec
        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: the int8 network is missing (scripts/build_u2netp_int8.py makes it)")
        self.threads = int(threads or torch.get_num_threads())
        core = ov.Core()
        cache = compiled_cache_dir()
        if cache is not None:
            core.set_property({"CACHE_DIR": str(cache)})
        try:
            compiled = core.compile_model(str(self.path), "CPU", {
                "INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32"})   # int8 where quantized; what is not stays fp32, not bf16
        except RuntimeError as exc:
            raise ModelLoadError(f"{self.path.name}: OpenVINO could not load it ({str(exc).splitlines()[0]})") from exc
        shape = tuple(compiled.input(0).get_partial_shape().to_shape())
        if shape[1:] != (3, *spec.input_hw):
            raise ModelLoadError(f"{self.path.name} takes {shape}, not (1, 3, {spec.input_hw[0]}, "
                                 f"{spec.input_hw[1]})")
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()   # one request, one image at a time: its threads already use the cores
        self.float32_layers = [name for chain in float32_chains for name in chain]
        self.calls = 0

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.spec.input_hw

    def warm_up(self, max_batch: int = 1) -> None:
        self(torch.zeros(1, 3, *self.input_hw))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Network input (B, 3, H, W), normalised -> matte logits' sigmoid (B, 1, H, W), float32."""
        images = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        self.calls += 1
        logits = []
        with self._lock:
            for image in images:   # batch 1 is what the file is compiled for; the cores are busy either way
                logits.append(torch.from_numpy(self._request.infer({0: image[None]})[0].copy()))
        return torch.sigmoid(torch.cat(logits)) if logits else torch.empty(0, 1, *x.shape[-2:])
