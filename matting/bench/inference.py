"""The network alone: eager vs CUDA graphs, fp32 vs fp16/bf16 (with and without the embedded weights' float32 layers),
int8 through OpenVINO on the CPU, onnxruntime fp32 on the original ONNX as the yardstick, batch 1 vs large
batches.

    python -m matting.bench.inference [--device cuda] [--repeat 50]
    python -m matting.bench.inference --device cpu --onnx u2netp.onnx     # with onnxruntime side by side

Prints ms per call and per image (medians), each variant's speed against onnxruntime's when it ran, and each
variant's difference from fp32 on the example photos. On the CPU every variant runs with torch's thread count
(--threads). To see an AMX machine as one without AMX, run with ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI: PyTorch's
oneDNN reads it, and so does the oneDNN inside OpenVINO's CPU plugin (docs/BENCHMARKS.md says what was checked).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from ..assets import assets_dir
from ..decode import decode_image
from ..device import cpu_has_amx, describe, resolve_device
from ..models import create_model, get_spec
from ..preprocess import network_input
from ..process import configure_process
from ..runner import ModelRunner

EXAMPLES = assets_dir() / "examples"


def example_photos() -> list[Path]:
    return sorted(p for p in EXAMPLES.iterdir() if p.suffix != ".md")


def network_inputs(photos: list[Path], spec, device: torch.device) -> list[torch.Tensor]:
    """Each photo's normalised fp32 network input (1, 3, h, w) on ``device``, as the pipeline makes it."""
    return [network_input([torch.from_numpy(decode_image(p).rgb)], spec, torch.float32)[1].to(device)
            for p in photos]


def time_call(fn, x, repeat: int, device: torch.device) -> float:
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def cpu_extra_runners(spec, args) -> dict:
    """The CPU's other runtimes, each called like a ModelRunner: onnxruntime fp32 on the original ONNX (the
    yardstick of issue 14) and our int8 network through OpenVINO, where they are installed."""
    import numpy as np

    runners = {}
    threads = torch.get_num_threads()
    if args.onnx:
        try:
            import onnxruntime as ort
        except ImportError:
            print("(onnxruntime not installed: no yardstick row)")
        else:
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name

            def onnxruntime_fp32(x: torch.Tensor) -> torch.Tensor:   # the file's first output is the sigmoid
                return torch.from_numpy(session.run(None, {name: np.ascontiguousarray(x.numpy())})[0])
            onnxruntime_fp32.dtype = torch.float32
            runners["onnxruntime fp32, original ONNX"] = onnxruntime_fp32
    embedded = spec.embedded
    if embedded is not None and embedded.int8_network is not None and embedded.int8_network.is_file():
        from ..openvino_runner import OpenVINORunner, openvino_available

        if openvino_available():
            runners["int8, OpenVINO"] = OpenVINORunner(embedded.int8_network, spec,
                                                       float32_chains=embedded.float32_chains or ())
    return runners


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matting.bench.inference", description=__doc__)
    parser.add_argument("--device", default=None)
    parser.add_argument("--model", default="u2netp")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--bf16", action="store_true", help="time bf16 on the CPU even without AMX (slow there)")
    parser.add_argument("--onnx", default=os.environ.get("MATTING_U2NETP_ONNX"),
                        help="the original u2netp.onnx, timed with onnxruntime fp32 beside ours (default "
                             "$MATTING_U2NETP_ONNX; scripts/build_u2netp_weights.py --onnx-out writes it)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for every variant")
    args = parser.parse_args(argv)
    configure_process()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    spec = get_spec(args.model)
    print(f"{args.model} on {describe(device)}, torch {torch.__version__}")
    measured = (spec.embedded.float32_chains if spec.embedded else None) or ()   # the embedded weights' fp32 layers
    every_layer = ()  # no layer kept in fp32
    variants = [("fp32 eager", torch.float32, False, measured)]
    if device.type == "cuda":
        variants += [("fp16 eager channels_last", torch.float16, False, measured),
                     ("fp16 CUDA graph", torch.float16, True, measured),
                     ("fp16 CUDA graph, every layer fp16", torch.float16, True, every_layer),
                     ("bf16 CUDA graph", torch.bfloat16, True, measured)]
    elif cpu_has_amx() or args.bf16:  # without AMX, bf16 convolutions are slower than fp32 (many times on AVX2)
        variants += [("bf16", torch.bfloat16, False, measured),
                     ("bf16, every layer bf16", torch.bfloat16, False, every_layer)]
    print("| variant | batch | ms per call | ms per image |")
    print("| --- | ---: | ---: | ---: |")
    runners = {}
    timed: dict[str, float] = {}
    if device.type == "cpu":
        for label, runner in cpu_extra_runners(spec, args).items():
            runners[label] = runner
            timed[label] = time_call(runner, torch.randn(1, 3, *spec.input_hw), args.repeat, device)
            print(f"| {label} | 1 | {timed[label]:.2f} | {timed[label]:.3f} |")
    for label, dtype, graphs, chains in variants:
        runner = ModelRunner(create_model(args.model), spec, device, dtype, use_cuda_graphs=graphs,
                             float32_chains=chains)
        runner.warm_up()
        runners[label] = runner
        batches = [int(b) for b in args.batches.split(",")] if device.type == "cuda" else [1]
        for batch in batches:
            x = torch.randn(batch, 3, *spec.input_hw, device=device, dtype=dtype)
            ms = time_call(runner, x, max(5, args.repeat // max(1, batch // 4)), device)
            print(f"| {label} | {batch} | {ms:.2f} | {ms / batch:.3f} |")
            if batch == 1:
                timed[label] = ms
    yardstick = next((ms for label, ms in timed.items() if label.startswith("onnxruntime")), None)
    if yardstick:
        print("\nSpeed against onnxruntime fp32 on the original ONNX (batch 1, same run, same threads):")
        for label, ms in timed.items():
            print(f"- {label}: {yardstick / ms:.2f}x")
    photos = example_photos()
    inputs = network_inputs(photos, spec, device)
    reference = [runners["fp32 eager"](x) for x in inputs]
    print(f"\n|variant - fp32| on the {len(photos)} example photos, matte in [0, 1]: mean, and the largest")
    for label, runner in runners.items():
        diffs = [(runner(x.to(runner.dtype)).float() - r).abs() for x, r in zip(inputs, reference)]
        mean = statistics.mean(d.mean().item() for d in diffs)
        print(f"{label}: mean {mean:.5f}, max {max(d.max().item() for d in diffs):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
