"""Reduced precision: the float32 islands, and which precision "auto" picks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from matting import device as device_module
from matting.decode import decode_image
from matting.device import cpu_has_amx, resolve_dtype
from matting.models.precision import islands, with_precision
from matting.models.registry import create_model, get_spec
from matting.pipeline import Pipeline
from matting.preprocess import network_input
from matting.settings import EdgeSettings

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
CHAIN = get_spec("u2netp").embedded.float32_chains


def test_islands_keep_the_float32_weights_and_hand_back_the_networks_precision():
    reference = create_model("u2netp")
    model = with_precision(create_model("u2netp"), torch.bfloat16, CHAIN)
    assert islands(model) == ["stage2d.rebnconv2d", "stage2d.rebnconv1d"]
    first, last = (model.get_submodule(name) for name in CHAIN[0])
    # The originals, bit for bit: not float32 values that went through bf16 on the way.
    for island, name in ((first, CHAIN[0][0]), (last, CHAIN[0][1])):
        weight = island.inner.conv_s1.weight
        assert weight.dtype == torch.float32
        assert torch.equal(weight, reference.get_submodule(name).conv_s1.weight)
    assert model.stage2d.rebnconvin.conv_s1.weight.dtype == torch.bfloat16  # the rest is converted
    # Inside the chain values stay float32; its end hands bf16 back to the block around it.
    x = torch.randn(1, 32, 8, 8, dtype=torch.bfloat16)
    assert first(x).dtype == torch.float32 and last(x).dtype == torch.bfloat16
    assert model(torch.randn(1, 3, 64, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_float32_and_an_empty_chain_list_convert_everything():
    assert islands(with_precision(create_model("u2netp", weights=False), torch.float32, CHAIN)) == []
    plain = with_precision(create_model("u2netp", weights=False), torch.bfloat16, ())
    assert islands(plain) == [] and all(p.dtype == torch.bfloat16 for p in plain.parameters())


def _raw_alpha(pipe: Pipeline, name: str) -> np.ndarray:
    return pipe.render(pipe.matte(EXAMPLES / name), EdgeSettings.raw()).alpha.astype(int)


@pytest.mark.parametrize("name", ["chelsea.png", "astronaut.png"])
def test_bf16_with_islands_gives_the_float32_matte_and_without_them_does_not(name):
    """Measured on these photos: with the islands, mean 0.1-0.6 levels off fp32 and no pixel off by 25 (0.1)
    or more; all in bf16, 2.4-6 levels on average and 2.5-8 % of the pixels off by more than 25."""
    exact = _raw_alpha(Pipeline(device="cpu", precision="fp32", warm_up=False), name)
    fast = Pipeline(device="cpu", precision="bf16", warm_up=False, cache_bytes=0)
    assert islands(fast.runner.model)
    diff = np.abs(_raw_alpha(fast, name) - exact)
    assert diff.mean() < 1.0 and (diff > 25).mean() == 0

    fast.runner.model = with_precision(create_model("u2netp").to(memory_format=torch.channels_last),
                                       torch.bfloat16, ()).eval()
    diff = np.abs(_raw_alpha(fast, name) - exact)
    assert diff.mean() > 2.0 and (diff > 25).mean() > 0.01


def test_auto_picks_bf16_only_on_an_amx_cpu_and_for_a_measured_model(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv(device_module.PRECISION_ENV, raising=False)
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: True)
    assert resolve_dtype(cpu, bf16_checked=True) == torch.bfloat16
    assert resolve_dtype(cpu, bf16_checked=False) == torch.float32  # e.g. u2net: sensitivity never measured
    assert resolve_dtype(cpu, "fp32", bf16_checked=True) == torch.float32
    assert resolve_dtype(cuda, bf16_checked=True) == torch.float16
    monkeypatch.setenv(device_module.PRECISION_ENV, "fp32")
    assert resolve_dtype(cpu, bf16_checked=True) == torch.float32
    monkeypatch.delenv(device_module.PRECISION_ENV)
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)
    assert resolve_dtype(cpu, bf16_checked=True) == torch.float32
    assert get_spec("u2netp").embedded.float32_chains is not None and get_spec("u2net").embedded is None


def test_amx_is_read_from_the_cpu_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(torch._C._cpu, "_init_amx", lambda: True, raising=False)  # as if the kernel grants tiles
    amx, avx = tmp_path / "amx", tmp_path / "avx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n\n")
    avx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\n")
    assert cpu_has_amx(str(amx)) is torch.backends.mkldnn.is_available()
    assert cpu_has_amx(str(avx)) is False
    assert cpu_has_amx(str(tmp_path / "missing")) is False  # not Linux: auto stays fp32


def test_amx_the_kernel_does_not_grant_counts_as_none(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: avx512f amx_bf16 amx_tile\n")
    monkeypatch.setattr(torch._C._cpu, "_init_amx", lambda: False, raising=False)
    assert cpu_has_amx(str(cpuinfo)) is False


def test_the_gpu_fallback_runs_the_cpu_in_a_precision_it_has(monkeypatch):
    """A CUDA pipeline that falls back to the CPU keeps fp32 if asked for it; fp16 or bf16 become the CPU's
    automatic choice (fp16 does not run there, bf16 is slow without AMX, int8 needs VNNI)."""
    from matting.openvino_runner import openvino_available

    pipe = Pipeline(device="cpu", precision="fp32", warm_up=False)
    assert pipe._cpu().dtype == torch.float32 and pipe._cpu() is not pipe.runner
    monkeypatch.setattr(device_module, "cpu_has_vnni", lambda: False)
    for reduced in ("fp16", "bf16"):
        for amx, expected in ((False, torch.float32), (True, torch.bfloat16)):
            monkeypatch.setattr(pipe, "_precision", reduced)
            monkeypatch.setattr(device_module, "cpu_has_amx", lambda amx=amx: amx)
            pipe._cpu_runner = None
            assert pipe._cpu().dtype == expected
    if openvino_available():   # a VNNI CPU without AMX: the int8 network
        monkeypatch.setattr(device_module, "cpu_has_vnni", lambda: True)
        monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)
        pipe._cpu_runner = None
        assert type(pipe._cpu()).__name__ == "OpenVINORunner"


def test_auto_bf16_needs_the_weights_the_layers_were_measured_on(tmp_path, monkeypatch, other_weights):
    monkeypatch.delenv(device_module.PRECISION_ENV, raising=False)
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: True)
    monkeypatch.setattr(device_module, "cpu_has_vnni", lambda: False)   # int8's own rule: tests/test_int8.py
    embedded = get_spec("u2netp").default_weights
    assert Pipeline(device="cpu", warm_up=False).precision == "bf16"
    relative = Path(os.path.relpath(embedded))  # the same file by another name
    assert Pipeline(device="cpu", weights=relative, warm_up=False).precision == "bf16"
    copy = tmp_path / "copy.safetensors"   # the same weights in another file: what was measured holds
    copy.write_bytes(embedded.read_bytes())
    assert Pipeline(device="cpu", weights=copy, warm_up=False).precision == "bf16"
    assert Pipeline(device="cpu", weights=other_weights, warm_up=False).precision == "fp32"
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    assert Pipeline(device="cpu", warm_up=False).precision == "fp32"  # bf16 without oneDNN is slow


def test_an_isa_cap_below_amx_counts_as_none(tmp_path, monkeypatch):
    monkeypatch.setattr(torch._C._cpu, "_init_amx", lambda: True, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: avx512f avx512_bf16 amx_bf16 amx_tile\n")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert cpu_has_amx(str(cpuinfo)) is False
    cpu_has_amx.cache_clear()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert cpu_has_amx(str(cpuinfo)) is torch.backends.mkldnn.is_available()
    cpu_has_amx.cache_clear()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_the_fp32_layers_are_true_fp32():
    """cuDNN's TF32 (on by default) would round the kept layers' inputs like fp16 does. Measured on the H100, mean
    |fp16 - fp32| of the network's matte: astronaut 0.00008 with the pair in true fp32, 0.00069 with TF32;
    chelsea 0.00069 against 0.0025. The process owner switches it off (configure_process: app.py, the CLI,
    get_pipeline), so a pipeline built after that gets true fp32 layers."""
    from matting.process import configure_process

    torch.backends.cudnn.allow_tf32 = True
    configure_process()
    assert torch.backends.cudnn.allow_tf32 is False
    pipe = Pipeline(device="cuda", warm_up=False)
    assert pipe.precision == "fp16" and islands(pipe.runner.model)
    exact = Pipeline(device="cpu", precision="fp32", warm_up=False)
    for name, bound in (("astronaut.png", 0.0003), ("chelsea.png", 0.0015)):
        # The same network input for both: the GPU's own resize would add its own (larger) differences.
        x = network_input([torch.from_numpy(decode_image(EXAMPLES / name).rgb)], pipe.spec, torch.float32)[1]
        assert (exact.runner(x) - pipe.runner(x.cuda()).cpu()).abs().mean().item() < bound


def test_the_embedded_weights_entry_names_the_committed_file():
    """The registry finds the embedded weights by content: its recorded digest is the committed file's (a rebuilt
    file with another digest would silently lose its fp32 layers and its int8 network)."""
    from matting.models.registry import known_weights
    from matting.models.weights import file_md5

    spec = get_spec("u2netp")
    assert file_md5(spec.default_weights) == spec.embedded.md5
    assert known_weights(spec, spec.embedded.md5) is spec.embedded and known_weights(spec, "0" * 32) is None
