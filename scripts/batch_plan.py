"""What a batch run does before its first image, by the number of photos: listing them (discovery: a folder, and
the same photos named one by one as a shell expands `photos/*.jpg`, with the check that none is the output folder,
which exists), planning their outputs (names, what exists, the record of outputs) for a fresh output folder, a
rerun of the same recipe (every photo skipped) and a rerun with other edges (every photo redone, the earlier
outputs found in the record), and the rows a run on Ray describes its photos by (ray_batch, made before its first
image). No image is read or made: the files are empty stand-ins with image names, and each output a rerun finds
is an empty file. Prints a table of medians in ms.

    python scripts/batch_plan.py --counts 2000 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matting.batch import _plan  # noqa: E402
from matting.batch_inputs import discover  # noqa: E402
from matting.batch_manifest import Manifest, input_stamp  # noqa: E402
from matting.batch_outputs import open_sink, refuse_output_that_is_an_input  # noqa: E402
from matting.ray_batch import RayRun  # noqa: E402 (Ray itself is not imported)
from matting.ray_stages import pack  # noqa: E402


def clock() -> float:
    """perf_counter after a garbage collection: each timing starts from the same heap (one column's garbage weighed
    on the next)."""
    gc.collect()
    return time.perf_counter()


def timed_plan(photos: Path, out: Path, recipe: str) -> tuple[float, float, list]:
    """(discovery ms, planning ms, the jobs) of one run's start into ``out``."""
    sink = open_sink(out)
    started = clock()
    found = discover([photos], exclude=out)
    listed = time.perf_counter()
    manifest = Manifest.load(sink, False)
    jobs, early = _plan(found, sink, ("cutout",), "jpg", False, manifest, recipe)
    planned = time.perf_counter()
    found.close(), manifest.close(), sink.close()
    return (listed - started) * 1e3, (planned - listed) * 1e3, jobs


def timed_named(photos: Path, out: Path) -> float:
    """ms to check and list the photos of ``photos`` named one by one, as run_batch does before planning."""
    names = sorted(str(path) for path in photos.iterdir())
    started = clock()
    refuse_output_that_is_an_input(names, out)
    found = discover(names, exclude=out)
    assert len(found.items) == len(names) and not any(item.error for item in found.items)
    return (time.perf_counter() - started) * 1e3


def timed_ray_rows(out: Path, jobs) -> float:
    """ms to make the rows a Ray run hands its tasks for ``jobs`` (RayRun._dataset's first step)."""
    sink = open_sink(out)
    run = RayRun(None, None, sink, jobs, None, ("cutout",), None, 16, None, threading.Event())
    started = clock()
    rows = [{"meta": pack(run._meta(job))} for job in run.jobs.values()]
    assert len(rows) == len(jobs)
    return (time.perf_counter() - started) * 1e3


def record_outputs(out: Path, jobs, recipe: str) -> None:
    """As a finished run leaves it: every output an (empty) file, each in the record."""
    sink = open_sink(out)
    manifest = Manifest.load(sink, False)
    for job in jobs:
        for name in job.names.values():
            sink.prepared(name).write_bytes(b"")
            manifest.add(name, job.item.name, input_stamp(job.item), recipe)
    manifest.close(), sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| photos | discover: a folder | discover: named one by one | plan: fresh folder "
          "| plan: rerun, same edges | plan: rerun, other edges | Ray's rows |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for count in args.counts:
        with tempfile.TemporaryDirectory() as scratch:
            photos = Path(scratch) / "photos"
            photos.mkdir()
            for i in range(count):
                (photos / f"p{i:06d}.jpg").write_bytes(b"")
            listing, named, fresh, same, other, rows = [], [], [], [], [], []
            for round_ in range(args.repeat):
                out = Path(scratch) / f"out{round_}"
                listed_ms, planned_ms, jobs = timed_plan(photos, out, "first")
                listing.append(listed_ms)
                fresh.append(planned_ms)
                rows.append(timed_ray_rows(out, jobs))
                record_outputs(out, jobs, "first")
                same.append(timed_plan(photos, out, "first")[1])
                other.append(timed_plan(photos, out, "second")[1])
                named.append(timed_named(photos, out))
        print(f"| {count} | " + " | ".join(f"{statistics.median(times):.1f}"
                                           for times in (listing, named, fresh, same, other, rows)) + " |")


if __name__ == "__main__":
    main()
