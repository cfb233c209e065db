"""The network alone: eager vs CUDA graphs, fp32 vs fp16/bf16 (with and without the spec's float32 layers),
batch 1 vs large batches.

    python -m matting.bench_inference [--device cuda] [--repeat 50]

Prints ms per call and per image (medians) and each variant's difference from fp32 on the example photos.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

from .assets import assets_dir
from .device import cpu_has_amx, describe, resolve_device
from .models import create_model, get_spec
from .runner import ModelRunner
from .preprocess import network_input
from .decode import decode_image

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matting.bench_inference", description=__doc__)
    parser.add_argument("--device", default=None)
    parser.add_argument("--model", default="u2netp")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--bf16", action="store_true", help="time bf16 on the CPU even without AMX (slow there)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    spec = get_spec(args.model)
    print(f"{args.model} on {describe(device)}, torch {torch.__version__}")
    every_layer = dataclasses.replace(spec, float32_chains=())  # no layer kept in fp32
    variants = [("fp32 eager", torch.float32, False, spec)]
    if device.type == "cuda":
        variants += [("fp16 eager channels_last", torch.float16, False, spec),
                     ("fp16 CUDA graph", torch.float16, True, spec),
                     ("fp16 CUDA graph, every layer fp16", torch.float16, True, every_layer),
                     ("bf16 CUDA graph", torch.bfloat16, True, spec)]
    elif cpu_has_amx() or args.bf16:  # without AMX, bf16 convolutions are slower than fp32 (many times on AVX2)
        variants += [("bf16", torch.bfloat16, False, spec),
                     ("bf16, every layer bf16", torch.bfloat16, False, every_layer)]
    print("| variant | batch | ms per call | ms per image |")
    print("| --- | ---: | ---: | ---: |")
    runners = {}
    for label, dtype, graphs, variant_spec in variants:
        runner = ModelRunner(create_model(args.model), variant_spec, device, dtype, use_cuda_graphs=graphs)
        runner.warm_up()
        runners[label] = runner
        batches = [int(b) for b in args.batches.split(",")] if device.type == "cuda" else [1]
        for batch in batches:
            x = torch.randn(batch, 3, *spec.input_size, device=device, dtype=dtype)
            ms = time_call(runner, x, max(5, args.repeat // max(1, batch // 4)), device)
            print(f"| {label} | {batch} | {ms:.2f} | {ms / batch:.3f} |")
    photos = example_photos()
    inputs = network_inputs(photos, spec, device)
    reference = [runners["fp32 eager"](x) for x in inputs]
    print(f"\n|variant - fp32| on the {len(photos)} example photos, matte in [0, 1]: mean, and the largest")
    for label, runner in runners.items():
        diffs = [(runner(x.to(runner.dtype)) - r).abs() for x, r in zip(inputs, reference)]
        mean = statistics.mean(d.mean().item() for d in diffs)
        print(f"{label}: mean {mean:.5f}, max {max(d.max().item() for d in diffs):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
