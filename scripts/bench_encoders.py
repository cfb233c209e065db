"""How fast the batch's encoders turn rendered 1 MP cutouts into PNG files: in the calling thread, in helper
processes fed through shared memory (the default), and in helper processes fed through their pipe (where there is
no memfd). Each round encodes the same images with each encoder, in turn, from as many threads as helpers.

    python scripts/bench_encoders.py [--count 64] [--processes 1 2] [--rounds 3] [--photos DIR]

Prints a markdown table: images/s and the caller's wait per image (median of the rounds)."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matting import batch_encode  # noqa: E402
from matting.bench.batch import make_images  # noqa: E402


def cutouts(count: int, photos: Path) -> list[np.ndarray]:
    """1 MP RGBA cutouts: photo crops with a soft-edged ellipse as their matte."""
    with tempfile.TemporaryDirectory() as tmp:
        make_images(Path(tmp), count, 1.0, photos)
        images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(Path(tmp).glob("*.jpg"))]
    out = []
    for rgb in images:
        h, w = rgb.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        alpha = np.clip((1.2 - np.hypot((yy - h / 2) / (h / 3), (xx - w / 2) / (w / 3))) * 5, 0, 1)
        out.append(np.dstack([rgb, (alpha * 255).astype(np.uint8)]))
    return out


def timed(encoder, images: list[np.ndarray], threads: int, folder: Path) -> tuple[float, float]:
    waits: list[float] = []

    def one(i: int) -> None:
        t = time.perf_counter()
        encoder([("cutout", "png")], None, images[i], None, [folder / f"{i}.png"])
        waits.append(time.perf_counter() - t)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(len(images))))
    return len(images) / (time.perf_counter() - start), statistics.median(waits) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", type=Path, default=Path("../shared/evaldata/photos"))
    args = parser.parse_args()
    images = cutouts(args.count, args.photos)
    print(f"{len(images)} RGBA cutouts of {images[0].shape[1]} x {images[0].shape[0]}, PNG "
          f"({'fpng' if _has_fpng() else 'OpenCV'}); "
          f"median of {args.rounds} rounds\n")
    print("| encoder | helpers / threads | images/s | caller's wait per image ms |")
    print("| --- | ---: | ---: | ---: |")
    for processes in args.processes:
        encoders = {"in the calling thread": lambda: batch_encode.ThreadEncoder(),
                    "helper processes, shared memory": lambda: batch_encode.ProcessEncoder(processes),
                    "helper processes, pipe": lambda: _pipe_encoder(processes)}
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in encoders}
        made = {name: make() for name, make in encoders.items()}
        try:
            for name, encoder in made.items():   # a first call each: the helpers' imports are not timed
                with tempfile.TemporaryDirectory() as tmp:
                    timed(encoder, images[:processes], processes, Path(tmp))
            for _ in range(args.rounds):
                for name, encoder in made.items():
                    with tempfile.TemporaryDirectory() as tmp:
                        figures[name].append(timed(encoder, images, processes, Path(tmp)))
        finally:
            for encoder in made.values():
                encoder.close()
        for name, runs in figures.items():
            rate = statistics.median(r for r, _ in runs)
            wait = statistics.median(w for _, w in runs)
            print(f"| {name} | {processes} | {rate:.1f} | {wait:.2f} |")


def _pipe_encoder(processes: int) -> batch_encode.ProcessEncoder:
    """Helpers started without shared memory: their parent sends the pixels through the pipe."""
    with mock.patch.object(batch_encode.SharedPixels, "create", classmethod(lambda cls: None)):
        return batch_encode.ProcessEncoder(processes)


def _has_fpng() -> bool:
    from matting import encode

    return encode._fpng is not None


if __name__ == "__main__":
    main()
