"""Preview renders from several threads at once: do they add up? (The web app renders each slider release in
the thread that received it.) Prints renders/s and the median latency per thread count, for the engine's render
alone and with the app's encoding of the result.

    python scripts/bench_render_threads.py --device cuda [--photo PATH] [--seconds 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from matting.process import configure_process  # noqa: E402
from matting.encode import encode_jpeg, encode_png  # noqa: E402
from matting.pipeline import Pipeline  # noqa: E402
from matting.settings import EdgeSettings  # noqa: E402


def work(pipe, result, encode: bool, settings: EdgeSettings) -> None:
    rendered = pipe.render(result, settings, preview=True, want_rgba=settings.decontaminate)
    if encode:   # as demo/handlers.py encodes an exact preview for the page
        encode_png(rendered.alpha)
        if settings.decontaminate:
            encode_jpeg(rendered.rgba[..., :3], quality=90, full_chroma=True)


def run(pipe, result, threads: int, seconds: float, encode: bool) -> tuple[float, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def loop(k: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            settings = EdgeSettings(feather=float((k + n) % 7))
            start = time.perf_counter()
            work(pipe, result, encode, settings)
            with lock:
                latencies.append(time.perf_counter() - start)
            n += 1

    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(latencies) / (time.perf_counter() - start), 1000 * statistics.median(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--photo", type=Path, default=ROOT / "assets" / "examples" / "astronaut.png")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    configure_process()
    pipe = Pipeline(device=args.device)
    result = pipe.matte(args.photo)
    work(pipe, result, True, EdgeSettings())   # warm up
    print(f"{args.photo.name}, working size {result.size}, preview {pipe.photo_hw(result)[::-1]}, {pipe.summary()}")
    print("| threads | render only: renders/s | median ms | render + encode: renders/s | median ms |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for threads in (1, 2, 4, 8, 16):
        plain = run(pipe, result, threads, args.seconds, False)
        full = run(pipe, result, threads, args.seconds, True)
        print(f"| {threads} | {plain[0]:.0f} | {plain[1]:.1f} | {full[0]:.0f} | {full[1]:.1f} |")


if __name__ == "__main__":
    main()
