"""What the colour under a cutout's fully transparent pixels costs its PNG: real cutouts (the engine's default
edges, on the CPU) of 1 MP (or --megapixels) crops of camera photos, encoded by fpng with the photo's colour kept
there (before session 24) and with (0, 0, 0, 0) there (the render's output since): CPU time per encode (median of
20) and size.

    python scripts/bench_clear_pixels.py [--photos DIR] [--count 6] [--megapixels 1]

Prints a markdown table."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matting.bench.batch import PHOTOS, _crop, landscape_size  # noqa: E402
from matting.encode import encode_png  # noqa: E402
from matting.pipeline import Pipeline  # noqa: E402


def encode_ms(rgba: np.ndarray, repeats: int = 20) -> tuple[float, int]:
    """(median CPU ms of one PNG encode, its size in bytes)."""
    data, times = encode_png(rgba), []
    for _ in range(repeats):
        start = time.process_time()
        encode_png(rgba)
        times.append(1000 * (time.process_time() - start))
    return statistics.median(times), len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--megapixels", type=float, default=1.0, help="crop size, as the batch bench's (default 1)")
    args = parser.parse_args()
    pipe = Pipeline(device="cpu")
    print("| photo | transparent | photo's colour kept: ms, MB | (0, 0, 0, 0): ms, MB |\n| --- | ---: | --- | --- |")
    for i, path in enumerate(sorted(args.photos.glob("*.jpg"))[:args.count]):
        photo = np.ascontiguousarray(cv2.imread(str(path))[..., ::-1])
        crop = _crop(photo, landscape_size(args.megapixels), np.random.default_rng(i))   # the batch bench's size
        result = pipe.matte(crop)
        rendered = pipe.render(result)
        clear = rendered.alpha == 0
        kept = rendered.rgba.copy()
        kept[..., :3][clear] = pipe.photo(result, preview=False)[clear]    # the colour the render used to leave
        (ms_kept, size_kept), (ms_zero, size_zero) = encode_ms(kept), encode_ms(rendered.rgba)
        print(f"| {path.name} | {clear.mean():.0%} | {ms_kept:.2f}, {size_kept / 1e6:.2f} | "
              f"{ms_zero:.2f}, {size_zero / 1e6:.2f} |")


if __name__ == "__main__":
    main()
