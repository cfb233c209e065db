"""The int8 CPU path (OpenVINO, assets/models/u2netp_int8.onnx): when auto picks it, how close it stays to fp32,
that the committed network is what the build script makes, and clear refusals when it cannot run."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from matting import device as device_module
from matting import pipeline as pipeline_module
from matting.device import resolve_precision
from matting.errors import ModelLoadError
from matting.models.registry import get_spec
from matting.pipeline import Pipeline
from matting.settings import EdgeSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="OpenVINO is not installed (requirements.txt installs it)")


def test_auto_picks_int8_on_a_vnni_cpu_when_it_is_ready(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv(device_module.PRECISION_ENV, raising=False)
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(device_module, "cpu_has_vnni", lambda: True)
    assert resolve_precision(cpu, bf16_checked=True, int8_ready=True) == "int8"
    assert resolve_precision(cpu, bf16_checked=True, int8_ready=False) == "fp32"   # no OpenVINO, other weights
    assert resolve_precision(cpu, "fp32", int8_ready=True) == "fp32"
    assert resolve_precision(cuda, int8_ready=True) == "fp16"
    monkeypatch.setattr(device_module, "cpu_has_vnni", lambda: False)
    assert resolve_precision(cpu, int8_ready=True) == "fp32"                       # AVX2 only: not measured
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: True)
    monkeypatch.setattr(device_module, "cpu_has_vnni", lambda: True)
    assert resolve_precision(cpu, bf16_checked=True, int8_ready=True) == "int8"    # AMX too: int8 was faster
    assert resolve_precision(cpu, bf16_checked=True, int8_ready=False) == "bf16"   # bf16 where int8 cannot run
    with pytest.raises(ValueError, match="int8 is for the CPU"):
        resolve_precision(cuda, "int8")


def test_vnni_is_read_from_the_cpu_flags(tmp_path):
    zen4, avx2 = tmp_path / "zen4", tmp_path / "avx2"
    zen4.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n\n")
    avx2.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\n")
    assert device_module.cpu_has_vnni(str(zen4)) and not device_module.cpu_has_vnni(str(avx2))
    assert not device_module.cpu_has_vnni(str(tmp_path / "absent"))


def _raw_alphas(pipe: Pipeline) -> list[np.ndarray]:
    return [pipe.render(pipe.matte(p), EdgeSettings.raw()).alpha.astype(int)
            for p in sorted(EXAMPLES.iterdir()) if p.suffix == ".png"]


@needs_openvino
def test_int8_stays_within_its_measured_distance_of_fp32():
    """Measured on the four example photos (raw network matte, 0-255): about 1 level off fp32 on average and
    under 1.5 % of the pixels off by more than 25 (0.1); on the public matting set SAD and Grad within 0.3 % of
    fp32 (docs/QUALITY.md). A rebuilt or re-tuned int8 network that drifts further fails here."""
    fast = Pipeline(device="cpu", precision="int8", warm_up=False, cache_bytes=0)
    exact = Pipeline(device="cpu", precision="fp32", warm_up=False, cache_bytes=0)
    assert fast.precision == "int8" and fast.runtime.startswith("OpenVINO") and exact.runtime.startswith("PyTorch")
    assert fast.info()["float32_layers"] == "stage2d.rebnconv2d, stage2d.rebnconv1d"
    diffs = [np.abs(a - b) for a, b in zip(_raw_alphas(fast), _raw_alphas(exact))]
    mean, far = np.mean([d.mean() for d in diffs]), np.mean([(d > 25).mean() for d in diffs])
    assert mean < 2.0 and far < 0.02, (mean, far)
    assert mean > 0   # it really is another network: int8 arithmetic, not fp32 under another name


@needs_openvino
def test_the_explicit_fp32_stays_pytorch_and_exact():
    pipe = Pipeline(device="cpu", precision="fp32", warm_up=False)
    assert pipe.precision == "fp32" and isinstance(pipe.runner, pipeline_module.ModelRunner)


def test_int8_is_refused_with_the_reason_and_auto_falls_back(tmp_path, monkeypatch, other_weights):
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(device_module, "cpu_has_vnni", lambda: True)
    monkeypatch.setattr(pipeline_module, "openvino_available", lambda: False)
    with pytest.raises(ModelLoadError, match="OpenVINO is not installed"):
        Pipeline(device="cpu", precision="int8", warm_up=False)
    assert Pipeline(device="cpu", warm_up=False).precision == "fp32"
    monkeypatch.undo()
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(device_module, "cpu_has_vnni", lambda: True)
    with pytest.raises(ModelLoadError, match="other weights are in use"):
        Pipeline(device="cpu", weights=other_weights, precision="int8", warm_up=False)
    assert Pipeline(device="cpu", weights=other_weights, warm_up=False).precision == "fp32"
    if pipeline_module.openvino_available():   # the embedded file under another name is still the embedded weights
        copy = tmp_path / "copy.safetensors"
        shutil.copy(get_spec("u2netp").default_weights, copy)
        assert Pipeline(device="cpu", weights=copy, warm_up=False).precision == "int8"


@needs_openvino
def test_the_committed_int8_network_is_what_the_build_script_makes(tmp_path):
    """scripts/build_u2netp_int8.py from the embedded weights and example photos, run again: the same network
    (same outputs on the example photos; byte-identical with the same onnx/onnxruntime/torch versions)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime.quantization")
    import sys

    from matting.bench.inference import example_photos, network_inputs
    from matting.openvino_runner import OpenVINORunner

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_u2netp_int8
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    spec = get_spec("u2netp")
    rebuilt = build_u2netp_int8.build(tmp_path / "u2netp_int8.onnx")
    committed_runner, rebuilt_runner = OpenVINORunner(spec.embedded.int8_network, spec), OpenVINORunner(rebuilt, spec)
    for x in network_inputs(example_photos(), spec, torch.device("cpu")):
        assert torch.allclose(committed_runner(x), rebuilt_runner(x), atol=1e-4)


@needs_openvino
def test_a_damaged_int8_file_is_a_clear_load_error(tmp_path):
    from matting.openvino_runner import OpenVINORunner

    spec = get_spec("u2netp")
    broken = tmp_path / "u2netp_int8.onnx"
    broken.write_bytes(spec.embedded.int8_network.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="u2netp_int8.onnx: OpenVINO could not load it"):
        OpenVINORunner(broken, spec)
    with pytest.raises(ModelLoadError, match="the int8 network is missing"):
        OpenVINORunner(tmp_path / "absent.onnx", spec)


@needs_openvino
def test_the_compiled_network_is_kept_between_runs_and_is_optional(tmp_path, monkeypatch):
    """Compiling the int8 network takes about a second; OpenVINO's blob in the cache folder makes the next start
    load it in a fifth of that. A cache folder that cannot be made costs only that time."""
    from matting.openvino_runner import CACHE_ENV, OpenVINORunner, compiled_cache_dir

    spec = get_spec("u2netp")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    first = OpenVINORunner(spec.embedded.int8_network, spec)
    assert list((tmp_path / "cache" / "openvino").glob("*.blob"))
    x = torch.zeros(1, 3, *spec.input_hw)
    assert torch.equal(OpenVINORunner(spec.embedded.int8_network, spec)(x), first(x))   # from the blob: the same network
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocked))
    assert compiled_cache_dir() is None
    assert torch.equal(OpenVINORunner(spec.embedded.int8_network, spec)(x), first(x))
