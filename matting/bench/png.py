"""PNG encoding of full-resolution cutouts: fpng on CPU cores against matting.png_device on the pipeline's device.

    python -m matting.bench --png --device cuda --photos <photos> [--count 64] [--megapixels 1] [--stack 8]

The cutouts are real: crops of the photos, matted and rendered by the pipeline with the default edges (the RGBA the
batch writes). Per encoder: milliseconds per image (median of the rounds), CPU milliseconds per image (the process's
CPU time: what the encoder takes from the cores that decode and feed the GPU; on a GPU it includes the spin of
PyTorch's waits), file size, a check that every file reads back (Pillow) as exactly its pixels, and the device
encoder's steps one by one.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..png_device import encode_png_stack


def cutouts(pipe, count: int, megapixels: float, photos: Path) -> torch.Tensor:
    """(count, H, W, 4) uint8 cutouts on the pipeline's device, all of one size."""
    from ..settings import EdgeSettings
    from .batch import _crop, _synthetic

    sources = sorted(photos.glob("*.jpg")) if photos.is_dir() else []
    loaded = [np.array(Image.open(p).convert("RGB")) for p in sources[:8]]
    rng = np.random.default_rng(0)
    loaded = loaded or [_synthetic((2400, 1800), rng)[..., ::-1] for _ in range(4)]
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    crops = [_crop(loaded[i % len(loaded)], (w, w * 3 // 4), rng) for i in range(count)]
    results = [pipe.matte(np.ascontiguousarray(c)) for c in crops]
    rendered = pipe.render_many(results, EdgeSettings(), want_rgba=True)
    return torch.as_tensor(np.stack([r.rgba for r in rendered])).to(pipe.device)


def time_fpng(images: np.ndarray, rounds: int) -> dict:
    from ..encode import encode_png

    walls, cpus, sizes = [], [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        sizes = [len(encode_png(image)) for image in images]
        walls.append((time.perf_counter() - wall) / len(images))
        cpus.append((time.process_time() - cpu) / len(images))
    return {"ms": 1000 * statistics.median(walls), "cpu_ms": 1000 * statistics.median(cpus),
            "mb": statistics.mean(sizes) / 1e6}


def time_device(images: torch.Tensor, stack: int, rounds: int) -> dict:
    def encode_all() -> list[bytes]:
        return [png for start in range(0, len(images), stack) for png in encode_png_stack(images[start:start + stack])]

    encode_all()   # the first call loads kernels
    if images.is_cuda:   # the peak of the encoder alone, above what the cutouts themselves hold
        torch.cuda.synchronize(images.device)
        torch.cuda.reset_peak_memory_stats(images.device)
        held = torch.cuda.memory_allocated(images.device)
    walls, cpus, outs = [], [], []
    for _ in range(rounds):
        if images.is_cuda:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        outs = encode_all()     # ends with the bytes on the host: every wait for the GPU is inside
        walls.append((time.perf_counter() - wall) / len(images))
        cpus.append((time.process_time() - cpu) / len(images))
    host = images.cpu().numpy()
    exact = all(np.array_equal(np.array(Image.open(io.BytesIO(png))), pixels) for png, pixels in zip(outs, host))
    peak = (torch.cuda.max_memory_allocated(images.device) - held) / 2**20 if images.is_cuda else None
    return {"ms": 1000 * statistics.median(walls), "cpu_ms": 1000 * statistics.median(cpus),
            "mb": statistics.mean(len(p) for p in outs) / 1e6, "exact": exact, "peak_gpu_mib": peak}


def time_device_stages(images: torch.Tensor, stack: int, rounds: int) -> dict[str, float]:
    """Milliseconds per image of each of png_device's steps on one stack, with a wait for the device after each
    (so the figures add up to more than the pipelined whole): where its time goes, to know what to make cheaper."""
    part = images[:stack]
    steps: dict[str, list[float]] = {}

    def sync():
        if part.is_cuda:
            torch.cuda.synchronize(part.device)

    def timed(name, function, *args):
        sync()
        start = time.perf_counter()
        out = function(*args)
        sync()
        steps.setdefault(name, []).append(1000 * (time.perf_counter() - start) / len(part))
        return out

    for _ in range(rounds + 1):     # the first round loads kernels: dropped below
        encode_png_stack(part, step=timed)
    return {name: statistics.median(values[1:]) for name, values in steps.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matting.bench --png", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--png", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default=None)
    parser.add_argument("--photos", type=Path, default=Path("../shared/evaldata/photos"))
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--megapixels", type=float, default=1.0)
    parser.add_argument("--stack", type=int, default=8, help="images per call on the device")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    from ..pipeline import Pipeline

    pipe = Pipeline(device=args.device)
    images = cutouts(pipe, args.count, args.megapixels, args.photos)
    print(f"{args.count} cutouts of {images.shape[2]} x {images.shape[1]} (RGBA) on {pipe.device}; "
          f"{args.rounds} rounds, medians")
    from .. import encode

    cpu_encoder = "fpng" if encode._fpng is not None else "OpenCV level 1 (fpng not installed)"
    rows = [(f"{cpu_encoder}, one CPU thread", time_fpng(images.cpu().numpy(), args.rounds))]
    for stack in sorted({1, args.stack}):
        rows.append((f"png_device, stacks of {stack}", time_device(images, stack, args.rounds)))
    print("| encoder | ms per image | CPU ms per image | MB per file | exact | peak GPU MiB of the encoder |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for name, r in rows:
        peak = f"{r['peak_gpu_mib']:.0f}" if r.get("peak_gpu_mib") is not None else ""
        exact = {True: "yes", False: "NO", None: ""}[r.get("exact")]
        print(f"| {name} | {r['ms']:.2f} | {r['cpu_ms']:.2f} | {r['mb']:.2f} | {exact} | {peak} |")
    stages = time_device_stages(images, args.stack, args.rounds)
    print(f"\npng_device's steps, stacks of {min(args.stack, args.count)}, each waited for (ms per image):")
    print("| step | ms per image |")
    print("| --- | ---: |")
    for name, ms in stages.items():
        print(f"| {name} | {ms:.3f} |")
    return 0 if all(r.get("exact", True) for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
