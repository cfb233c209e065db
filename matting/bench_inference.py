"""The network alone: eager vs CUDA graphs, fp32 vs fp16, batch 1 vs large batches.

    python -m matting.bench_inference [--device cuda] [--repeat 50]

Prints ms per call and per image (medians) and the fp16-vs-fp32 output difference on a real photo.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from .device import describe, resolve_device
from .models import create_model, get_spec
from .runner import ModelRunner
from .preprocess import network_input
from .decode import decode_image

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.png"


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
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    spec = get_spec(args.model)
    print(f"{args.model} on {describe(device)}, torch {torch.__version__}")
    variants = [("fp32 eager", torch.float32, False)]
    if device.type == "cuda":
        variants += [("fp16 eager channels_last", torch.float16, False), ("fp16 CUDA graph", torch.float16, True),
                     ("bf16 CUDA graph", torch.bfloat16, True)]
    print("| variant | batch | ms per call | ms per image |")
    print("| --- | ---: | ---: | ---: |")
    runners = {}
    for label, dtype, graphs in variants:
        runner = ModelRunner(create_model(args.model), spec, device, dtype, use_cuda_graphs=graphs)
        runner.warm_up()
        runners[label] = runner
        batches = [int(b) for b in args.batches.split(",")] if device.type == "cuda" else [1]
        for batch in batches:
            x = torch.randn(batch, 3, *spec.input_size, device=device, dtype=dtype)
            ms = time_call(runner, x, max(5, args.repeat // max(1, batch // 4)), device)
            print(f"| {label} | {batch} | {ms:.2f} | {ms / batch:.3f} |")
    image = torch.from_numpy(decode_image(EXAMPLE).rgb)
    _, x = network_input([image], spec, torch.float32)
    reference = runners["fp32 eager"](x.to(device))
    for label, runner in runners.items():
        diff = (runner(x.to(device, runner.dtype)) - reference).abs().max().item()
        print(f"max |{label} - fp32| on {EXAMPLE.name}: {diff:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
