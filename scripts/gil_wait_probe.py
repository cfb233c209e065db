"""How long a batch's inference thread waits for the interpreter lock (GIL): before each network batch it times
``time.sleep(0)``, which gives the lock up and takes it back, so the time is the wait to get it back (about two
switch intervals with two busy Python threads beside it). Runs the batch bench (matting.bench --batch) with the
arguments given; only this process's engine is probed (with --engines N the helper engines are other processes,
alike). Issue 17: on the H200 each engine's inference thread is the busiest thread (upload + infer about 90 %)
while its own CPU time is well under that, so it waits for something: the GPU, or this lock.

    python scripts/gil_wait_probe.py --batch --device cuda --count 2000 --engines 3 --photos <photos>
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matting.batch as batch  # noqa: E402
from matting.bench.pipeline import main as bench_main  # noqa: E402

waits: list[float] = []


def probed(infer):
    def _infer(run, jobs):
        start = time.perf_counter()
        time.sleep(0)
        waits.append(time.perf_counter() - start)
        return infer(run, jobs)
    return _infer


def summary(seconds: list[float]) -> str:
    if not seconds:
        return "GIL probe: no network batch ran in this process"
    ordered, n = sorted(seconds), len(seconds)
    return (f"GIL probe: {n} network batches in this process; the lock back after sleep(0): median "
            f"{ordered[n // 2] * 1e3:.3f} ms, p90 {ordered[int(n * 0.9)] * 1e3:.3f} ms, max {ordered[-1] * 1e3:.3f} ms, "
            f"in all {sum(ordered):.2f} s; switch interval {sys.getswitchinterval() * 1e3:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    original = batch._Run._infer
    batch._Run._infer = probed(original)
    try:
        code = bench_main(sys.argv[1:] if argv is None else argv)
    finally:
        batch._Run._infer = original
    print(summary(waits))
    return code


if __name__ == "__main__":
    sys.exit(main())
