"""The start of a batch run, where its whole-run rate loses to its steady one (issue 17): on the H200, 2000 1 MP
crops took 3.80 s (526.6 images/s) at a steady 604.6 images/s, the first image out after 0.53 s: the start is the
whole gap. For runs on warm engines (models loaded, graphs captured, encoder helpers started, as the bench has
them) this prints, from the moment run_batch is called: when each stage first started and first finished (every
engine's stages: the helpers report theirs), when the first results came, how many were done at each step, and
then the planning alone (discovery and the outputs' plan, what comes before any stage), timed by part.

    python scripts/batch_start.py /tmp/crops --device cuda [--engines 4] [--workers 4] [--runs 3]
    python scripts/batch_start.py /tmp/crops --device cpu --runs 5 --first-only   # the first read alone
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matting.batch import run_batch, warm_up  # noqa: E402
from matting.batch_engines import batch_engines, default_engines  # noqa: E402
from matting.batch_timeline import Timeline  # noqa: E402


def one_run(images: Path, pipe, executor, workers: int | None, first_only: bool = False) -> tuple:
    timeline, finished, cancel = Timeline(), [], threading.Event()

    def on_result(*_):
        finished.append(time.perf_counter())
        if first_only:
            cancel.set()

    with tempfile.TemporaryDirectory() as out:
        called = time.perf_counter()
        summary = run_batch([images], Path(out) / "out", pipeline=pipe, executor=executor, workers=workers,
                            timeline=timeline, on_result=on_result, cancel=cancel)
    return summary, timeline, [t - called for t in finished], called


def first_read(timeline: Timeline, finished: list[float], called: float) -> str:
    reads = [start for stage, start, _ in timeline.spans if stage == "read"]
    return (f"first read {(min(reads) - called) * 1e3:.1f} ms" if reads else "nothing read") + (
        f", first result {finished[0] * 1e3:.1f} ms" if finished else "")


def planning_alone(images: Path, pipe) -> str:
    """What run_batch does before any engine starts, timed by part on a fresh output folder: listing the inputs,
    then planning their outputs (names, what exists, the record): batch_plan.py's timing, with this run's recipe."""
    from batch_plan import timed_plan   # a sibling script: its folder is on the path when this one runs

    from matting.batch_manifest import recipe_of
    from matting.settings import EdgeSettings

    with tempfile.TemporaryDirectory() as out:
        listed_ms, planned_ms, jobs = timed_plan(images, Path(out) / "out",
                                                 recipe_of(pipe, EdgeSettings(), None, "jpg", None))
    return f"planning alone: {len(jobs)} jobs; discover {listed_ms:.1f} ms, plan {planned_ms:.1f} ms"


def report(summary, timeline: Timeline, finished: list[float], called: float, step_s: float) -> None:
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) if len(finished) > 1 else 0.0
    print(f"{summary.done} done in {summary.seconds:.3f} s = {summary.images_per_second:.1f} images/s; steady "
          f"{steady:.1f}; first results at " + ", ".join(f"{t * 1e3:.0f}" for t in finished[:5]) + " ms; "
          f"the last at {finished[-1] * 1e3:.0f} ms" if finished else "nothing finished")
    first: dict[str, list[float]] = {}
    for stage, start, end in timeline.spans:
        held = first.setdefault(stage, [start, end, 0])
        held[0], held[1] = min(held[0], start), min(held[1], end)
        held[2] += 1
    print("| stage | first start ms | first end ms | spans |\n| --- | ---: | ---: | ---: |")
    for stage, (start, end, count) in sorted(first.items(), key=lambda kv: kv[1][0]):
        print(f"| {stage} | {(start - called) * 1e3:.1f} | {(end - called) * 1e3:.1f} | {count} |")
    steps = [step_s * i for i in range(1, int(round(1.0 / step_s)) + 1)]
    print("done by: " + ", ".join(f"{t * 1e3:.0f} ms {sum(f <= t for f in finished)}" for t in steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, help="a folder of images (the bench's --images folder)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--engines", type=int, default=None, help="default: the command line's")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--step-ms", type=float, default=100.0, help="the done-by counts' step, up to 1 s")
    parser.add_argument("--first-only", action="store_true",
                        help="cancel each run at its first result and print only when the first image was read")
    args = parser.parse_args()
    engines = args.engines or default_engines(args.device)
    with batch_engines({"device": args.device}, engines, None, wait=True, workers=args.workers) as (pipe, executor):
        warm_up(pipe)
        print(f"{engines} engines on {pipe.device}; {len(list(args.images.iterdir()))} files in {args.images}")
        for run in range(1, args.runs + 1):
            summary, timeline, finished, called = one_run(args.images, pipe, executor, args.workers, args.first_only)
            if args.first_only:
                print(f"run {run}: {first_read(timeline, finished, called)}")
                continue
            print(f"\nrun {run}:")
            report(summary, timeline, finished, called, step_s=args.step_ms / 1e3)
            print(planning_alone(args.images, pipe))


if __name__ == "__main__":
    main()
