"""Time the hot-path ops of matting.ops on an 8-megapixel (2448 x 3264) alpha.

Prints one table: median milliseconds of 7 runs per op, for the CPU (torch's default thread
count) and, when available, CUDA in float32 and float16. ``--alternatives`` adds the
implementations that were measured and rejected (torch pooling / conv / cumsum versions), on
the CPU only, so the choices in ops.py can be re-checked on other hardware.

    python scripts/bench_ops.py [--alternatives] [--reps 7] [--devices cpu cuda]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from matting import ops  # noqa: E402
from matting.ops.filters import _gaussian_exact as gaussian_exact  # noqa: E402  (the alternative it measures)

H, W = 2448, 3264
LR = 320


def make_alpha(h: int, w: int, device, dtype) -> torch.Tensor:
    """A matte-like alpha: a disk with a soft ramp and some noise, so no op hits a trivial case."""
    yy = torch.linspace(-1, 1, h, device=device).view(-1, 1)
    xx = torch.linspace(-1, 1, w, device=device).view(1, -1)
    a = ((yy**2 + xx**2) < 0.5).float()
    a = a + 0.05 * torch.rand(h, w, device=device, generator=None)
    return a.clamp(0, 1).view(1, 1, h, w).to(dtype)


def timer(fn, device: torch.device, reps: int) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()  # warm-up: allocator, kernels, lazy init
    sync()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


# Rejected alternatives, kept here only to show the measurement behind each choice.
def alt_box_avg_pool(x, r):
    k = 2 * r + 1
    y = F.avg_pool2d(x, (1, k), 1, (0, r), count_include_pad=False)
    return F.avg_pool2d(y, (k, 1), 1, (r, 0), count_include_pad=False)


def alt_box_cumsum(x, r, dtype=torch.float64):
    h, w = x.shape[-2:]
    y = x.to(dtype)
    for dim, n in ((-1, w), (-2, h)):
        s = F.pad(y.cumsum(dim), (1, 0, 0, 0) if dim == -1 else (0, 0, 1, 0))
        s = F.pad(s, (r, r, 0, 0) if dim == -1 else (0, 0, r, r), mode="replicate")
        y = s.narrow(dim, 2 * r + 1, n) - s.narrow(dim, 0, n)
        i = torch.arange(n, device=x.device)
        cnt = ((i + r).clamp(max=n - 1) - (i - r).clamp(min=0) + 1).to(dtype)
        y = y / (cnt if dim == -1 else cnt.view(-1, 1))
    return y.to(x.dtype)


def alt_dilate_max_pool(x, r):
    k = 2 * r + 1
    return F.max_pool2d(F.max_pool2d(x, (1, k), 1, (0, r)), (k, 1), 1, (r, 0))


def alt_gauss_conv2d(x, sigma):
    r = math.ceil(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def cases(device: torch.device, dtype: torch.dtype, alternatives: bool):
    alpha = make_alpha(H, W, device, dtype)
    rgb = torch.rand(1, 3, H, W, device=device).to(dtype)
    gray = rgb.mean(1, keepdim=True)
    rgb_lr = ops.resize(rgb, (LR, LR))
    gray_lr = ops.resize(gray, (LR, LR))
    matte_lr = ops.resize(alpha, (LR, LR))
    rows = [
        ("feather sigma=2", lambda: ops.feather(alpha, 2.0)),
        ("feather sigma=8", lambda: ops.feather(alpha, 8.0)),
        ("feather sigma=32", lambda: ops.feather(alpha, 32.0)),
        ("erode_dilate r=3", lambda: ops.erode_dilate(alpha, 3)),
        ("erode_dilate r=15", lambda: ops.erode_dilate(alpha, 15)),
        ("erode_dilate r=-15", lambda: ops.erode_dilate(alpha, -15)),
        ("box_filter r=4", lambda: ops.box_filter(alpha, 4)),
        ("box_filter r=32", lambda: ops.box_filter(alpha, 32)),
        ("guided_filter r=8 gray", lambda: ops.guided_filter(gray, alpha, 8, 1e-3)),
        ("guided_filter r=8 colour", lambda: ops.guided_filter(rgb, alpha, 8, 1e-3)),
        ("fast_guided 320->8MP gray", lambda: ops.fast_guided_filter(gray_lr, matte_lr, gray, 4, 1e-3)),
        ("fast_guided 320->8MP colour", lambda: ops.fast_guided_filter(rgb_lr, matte_lr, rgb, 4, 1e-3)),
        ("composite colour bg", lambda: ops.composite(rgb, alpha, (1.0, 1.0, 1.0))),
        ("composite RGBA", lambda: ops.composite(rgb, alpha)),
        ("threshold 0.5", lambda: ops.threshold(alpha, 0.5)),
        ("resize 8MP->320 antialias", lambda: ops.resize(rgb, (LR, LR))),
        ("to_uint8_hwc rgb", lambda: ops.to_uint8_hwc(rgb)),
    ]
    if alternatives and device.type == "cpu" and dtype == torch.float32:
        rows += [
            ("(alt) gaussian conv2d sigma=2", lambda: alt_gauss_conv2d(alpha, 2.0)),
            ("(alt) gaussian conv2d sigma=8", lambda: alt_gauss_conv2d(alpha, 8.0)),
            ("(alt) exact gaussian sigma=8", lambda: gaussian_exact(alpha, 8.0)),
            ("(alt) exact gaussian sigma=32", lambda: gaussian_exact(alpha, 32.0)),
            ("(alt) square max_pool2d r=3", lambda: alt_dilate_max_pool(alpha, 3)),
            ("(alt) square max_pool2d r=15", lambda: alt_dilate_max_pool(alpha, 15)),
            ("(alt) box avg_pool2d r=4", lambda: alt_box_avg_pool(alpha, 4)),
            ("(alt) box avg_pool2d r=32", lambda: alt_box_avg_pool(alpha, 32)),
            ("(alt) box cumsum f32 r=4", lambda: alt_box_cumsum(alpha, 4, torch.float32)),
            ("(alt) box cumsum f64 r=4", lambda: alt_box_cumsum(alpha, 4)),
            ("(alt) box cumsum f64 r=32", lambda: alt_box_cumsum(alpha, 32)),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu, plus cuda if available")
    parser.add_argument("--alternatives", action="store_true", help="also time the rejected CPU implementations")
    args = parser.parse_args()

    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    columns = []
    for dev in devices:
        dtypes = [torch.float32, torch.float16] if dev == "cuda" else [torch.float32]
        for dt in dtypes:
            columns.append((torch.device(dev), dt))

    results: dict[str, dict[int, float]] = {}
    order: list[str] = []
    for col, (device, dtype) in enumerate(columns):
        for name, fn in cases(device, dtype, args.alternatives):
            with torch.inference_mode():
                ms = timer(fn, device, args.reps)
            if name not in results:
                results[name] = {}
                order.append(name)
            results[name][col] = ms
            print(f"  {device.type} {str(dtype)[6:]:8s} {name:32s} {ms:9.1f} ms", file=sys.stderr, flush=True)

    cpu_info = f"{torch.get_num_threads()} threads"
    gpu_info = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"
    print(f"\nmatting.ops, {H}x{W} alpha (8 MP), median of {args.reps} runs, ms; torch {torch.__version__}, "
          f"CPU {cpu_info}, GPU: {gpu_info}\n")
    heads = [f"{d.type} {str(t)[6:]}" for d, t in columns]
    print(f"| {'op':32s} | " + " | ".join(f"{h:>13s}" for h in heads) + " |")
    print(f"|{'-' * 34}|" + "|".join("-" * 15 for _ in heads) + "|")
    for name in order:
        cells = [f"{results[name][c]:13.1f}" if c in results[name] else f"{'':13s}" for c in range(len(columns))]
        print(f"| {name:32s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
