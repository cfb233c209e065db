"""Several batch engines at once on one machine (issue 17's question: does a second engine process beside the
first add images/s, or is the limit shared?). Runs PROCESSES copies of `python -m matting.bench --batch` together,
each with its own images, pipeline and helpers, and sums them over the span their runs share.

    python scripts/batch_processes.py --processes 2 --device cuda --count 2000 --photos PHOTOS [--workers W]

First one engine alone, then PROCESSES at once, in one call so both see the same host. Prints a table."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_together(processes: int, bench_args: list[str], folder: Path) -> list[dict]:
    """Start ``processes`` benches at once; their figures (matting.bench.batch's JSON "ours")."""
    paths = [folder / f"bench_{processes}_{i}.json" for i in range(processes)]
    running = [subprocess.Popen([sys.executable, "-m", "matting.bench", "--batch", *bench_args, "--json", str(path)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for path in paths]
    for process in running:
        _, errors = process.communicate()
        if process.returncode:
            raise SystemExit(f"a bench failed (exit {process.returncode}):\n{errors[-2000:]}")
    return [json.loads(path.read_text())["ours"] for path in paths]


def combined(rows: list[dict]) -> dict:
    """Images per second of all engines over the span from the first run's start to the last run's end, and how
    much of that span every run was going at once (a run that started late makes the sum look better than it is)."""
    start, end = min(r["wall_start"] for r in rows), max(r["wall_end"] for r in rows)
    shared = max(0.0, min(r["wall_end"] for r in rows) - max(r["wall_start"] for r in rows))
    return {"images": sum(r["done"] for r in rows), "span_s": end - start,
            "images_per_second": sum(r["done"] for r in rows) / (end - start), "overlap": shared / (end - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--photos", default=None)
    parser.add_argument("--workers", type=int, default=None, help="each engine's --workers (default its own)")
    args = parser.parse_args()
    bench = ["--device", args.device, "--count", str(args.count)]
    bench += ["--photos", args.photos] if args.photos else []
    bench += ["--workers", str(args.workers)] if args.workers else []
    print("| engines at once | images | span s | images/s, all together | each engine's images/s | all running at "
          "once |")
    print("| ---: | ---: | ---: | ---: | --- | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for processes in (1, args.processes):
            rows = run_together(processes, bench, Path(tmp))
            total = combined(rows)
            each = ", ".join(f"{r['images_per_second']:.1f}" for r in rows)
            print(f"| {processes} | {total['images']} | {total['span_s']:.1f} | **{total['images_per_second']:.1f}** "
                  f"| {each} | {total['overlap']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
