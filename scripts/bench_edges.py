"""Re-render cost of each edge configuration on an 8 MP photo: screen preview (<= 1024 px) and full resolution.

    python scripts/bench_edges.py                          # auto device; ../shared/evaldata/photos/Issue_177.jpg
    python scripts/bench_edges.py --device cuda --repeat 21 --json edges_gpu.json
    python scripts/bench_edges.py --synthetic              # a generated 3264 x 2448 photo (no evaluation data)

The network runs once; each figure is the median of --repeat calls of Pipeline.render (alpha, RGBA cutout and
download to host memory, no encoding), CUDA synchronised. Budgets (docs/QUALITY.md): a preview re-render of an
8 MP photo within 150 ms on the 2-core development CPU, a full-resolution render within 30 ms on an H100.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matting.process import configure_process  # noqa: E402
from matting.pipeline import Pipeline  # noqa: E402
from matting.settings import EdgeSettings  # noqa: E402

PHOTO = ROOT.parent / "shared" / "evaldata" / "photos" / "Issue_177.jpg"   # 3264 x 2448 camera JPEG

CONFIGS = {
    "plain network (--raw)": EdgeSettings.raw(),
    "guided filter r4 eps1e-3 (before)": EdgeSettings(refine_radius=4, refine_eps=1e-3, decontaminate=False),
    "guided filter r8 eps1e-4": EdgeSettings(decontaminate=False),
    "default (r8 eps1e-4 + decontaminate)": EdgeSettings(),
}


def synthetic_photo(width: int = 3264, height: int = 2448) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    disc = (np.hypot(yy - height / 2, xx - width / 2) < height / 3)[..., None]
    sky = np.stack([80 + 100 * yy / height, 120 + 60 * xx / width, np.full_like(xx, 200)], axis=2)
    image = np.where(disc, np.array([200.0, 150.0, 90.0]), sky) + rng.normal(0, 6, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def median_ms(fn, repeat: int) -> float:
    fn()  # first call: allocations, cached preview photo
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--synthetic", action="store_true", help="use a generated photo")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    configure_process()
    pipe = Pipeline(device=args.device)
    source = PHOTO if PHOTO.is_file() and not args.synthetic else synthetic_photo()
    result = pipe.matte(source, name="photo")
    print(f"{pipe.summary()}; photo {result.size[0]} x {result.size[1]}"
          f"{' (synthetic)' if not isinstance(source, Path) else ''}", file=sys.stderr)
    rows = {}
    for name, settings in CONFIGS.items():
        preview = median_ms(lambda: pipe.render(result, settings, preview=True), args.repeat)
        full = median_ms(lambda: pipe.render(result, settings), max(3, args.repeat // 3))
        rows[name] = {"preview_ms": preview, "full_ms": full}
        print(f"{name:<40} preview {preview:8.1f} ms   full {full:8.1f} ms", flush=True)
    # Decontamination alone with half the pixels soft: more than any photo measured (27-35 % at full size), so
    # the figure bounds what the photo's own matte costs.
    from matting import ops
    from matting.foreground import decontaminate

    photo = ops.to_float_image(result.image)
    alpha = torch.rand(1, 1, *photo.shape[-2:], generator=torch.Generator().manual_seed(0)).to(photo.device)
    alpha = torch.where(alpha < 0.5, alpha * 2, torch.ones_like(alpha))
    preview_hw = ops.fit_size(tuple(photo.shape[-2:]), 1024)
    small_photo, small_alpha = ops.resize(photo, preview_hw), ops.resize(alpha, preview_hw)

    def timed(fn):
        def run():
            fn()
            if photo.device.type == "cuda":
                torch.cuda.synchronize(photo.device)
        return run

    preview = median_ms(timed(lambda: decontaminate(small_photo, small_alpha)), args.repeat)
    full = median_ms(timed(lambda: decontaminate(photo, alpha)), max(3, args.repeat // 3))
    rows["decontaminate() alone, 50 % soft pixels"] = {"preview_ms": preview, "full_ms": full}
    print(f"{'decontaminate() alone, 50 % soft pixels':<40} preview {preview:8.1f} ms   full {full:8.1f} ms")
    if args.json:
        args.json.write_text(json.dumps({"device": pipe.info(), "size": result.size, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
