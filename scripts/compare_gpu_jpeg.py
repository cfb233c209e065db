"""Is a JPEG decoded on the GPU (nvJPEG, through torchvision) the same picture our CPU decoder gives? Issue 17
wants JPEG decode on the GPU only where the outputs stay identical: this prints, per photo, the largest and mean
difference per channel between torchvision's CUDA decode and matting.decode (OpenCV, EXIF orientation applied),
and the batched decode's time against the CPU's.

    python scripts/compare_gpu_jpeg.py --photos DIR [--count 10] [--megapixels 1.0]

Needs torchvision with nvJPEG (the PyPI wheel for the machine's torch carries it) and a CUDA GPU."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matting.bench.batch import make_images  # noqa: E402
from matting.decode import decode_image  # noqa: E402


def main() -> None:
    from torchvision.io import decode_jpeg

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("../shared/evaldata/photos"))
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--megapixels", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_images(Path(tmp), args.count, args.megapixels, args.photos)
        blobs = [p.read_bytes() for p in sorted(Path(tmp).glob("*.jpg"))]
    as_tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    cpu = [decode_image(b).rgb for b in blobs]
    gpu = [t.permute(1, 2, 0).cpu().numpy() for t in decode_jpeg(as_tensors, device="cuda")]
    print("| photo | size | max difference (R, G, B) | mean difference |")
    print("| ---: | --- | --- | ---: |")
    for i, (a, b) in enumerate(zip(cpu, gpu)):
        if a.shape != b.shape:
            print(f"| {i} | {a.shape} against {b.shape} | (shapes differ) | |")
            continue
        diff = np.abs(a.astype(int) - b.astype(int))
        print(f"| {i} | {a.shape[1]} x {a.shape[0]} | {tuple(int(diff[..., c].max()) for c in range(3))} | "
              f"{diff.mean():.3f} |")

    def gpu_batch():
        out = decode_jpeg(as_tensors, device="cuda")
        torch.cuda.synchronize()
        return out

    def cpu_all():
        return [decode_image(b) for b in blobs]

    for name, fn in (("GPU, one batched call", gpu_batch), ("CPU, one thread", cpu_all)):
        fn()
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        print(f"{name}: {statistics.median(times) / len(blobs) * 1000:.2f} ms per image (median of {args.repeat})")


if __name__ == "__main__":
    main()
