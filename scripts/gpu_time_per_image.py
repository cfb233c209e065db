"""The device time one image costs the batch engine's own calls (prepare, the network in stacks, render_many at full
resolution with the RGBA), and so the most images per second the device can give whatever the CPU does: the GPU's
own bound for issue 17 (session 25, H200: 1.349 ms at 1 MP, 4.381 ms at 8 MP).

On CUDA it sums the kernels' and copies' time under torch.profiler (copies may overlap kernels on the copy
engines, so the bound is a low one; the copies are listed apart). Elsewhere only the wall time of one thread.

    python scripts/gpu_time_per_image.py --device cuda --megapixels 8 --count 24 --stack 8 --photos <photos>
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from matting.batch_runtime import warm_up  # noqa: E402
from matting.bench.batch import PHOTOS, make_images  # noqa: E402
from matting.decode import decode_image  # noqa: E402
from matting.pipeline import Pipeline  # noqa: E402
from matting.settings import EdgeSettings  # noqa: E402

COPIES = "Memcpy"   # host-to-device, device-to-host and device-to-device copies, as the profiler names them


def one_pass(pipe: Pipeline, decoded: list, stack: int, settings: EdgeSettings) -> None:
    for i in range(0, len(decoded), stack):
        results = [pipe.prepare(image, use_cache=False) for image in decoded[i:i + stack]]
        pipe.infer(results)
        pipe.render_many(results, settings, want_rgba=True)
    if pipe.device.type == "cuda":
        torch.cuda.synchronize(pipe.device)


def device_ms(pipe: Pipeline, decoded: list, stack: int, settings: EdgeSettings) -> tuple[float, float]:
    """(all kernels and copies, the copies alone) in ms for one pass, from torch.profiler's CUDA activity."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        one_pass(pipe, decoded, stack, settings)
    events = prof.key_averages()
    total = sum(e.self_device_time_total for e in events) / 1000
    copies = sum(e.self_device_time_total for e in events if e.key.startswith(COPIES)) / 1000
    return total, copies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--megapixels", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=64, help="images per pass")
    parser.add_argument("--stack", type=int, default=16, help="images per network batch and render")
    parser.add_argument("--photos", type=Path, default=PHOTOS,
                        help="photos to crop (synthetic pictures where there are none)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "crops"
        make_images(folder, args.count, args.megapixels, args.photos)
        decoded = [decode_image(path.read_bytes()) for path in sorted(folder.glob("*.jpg"))]
    pipe = Pipeline(device=args.device)
    warm_up(pipe, args.stack)
    settings = EdgeSettings()
    one_pass(pipe, decoded, args.stack, settings)   # every kernel loaded, every graph captured
    start = time.perf_counter()
    one_pass(pipe, decoded, args.stack, settings)
    wall = (time.perf_counter() - start) * 1000 / args.count
    print(f"{args.megapixels:g} MP on {pipe.device}, one thread, {args.count} images in stacks of {args.stack}: "
          f"{wall:.2f} ms of wall per image")
    if pipe.device.type == "cuda":
        total, copies = (ms / args.count for ms in device_ms(pipe, decoded, args.stack, settings))
        print(f"device time per image: {total:.3f} ms, of it copies {copies:.3f} ms -> at most "
              f"{1000 / total:.0f} images/s on this device ({1000 / (total - copies):.0f} with the copies hidden)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
