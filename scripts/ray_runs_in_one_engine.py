"""Several batches through one --ray engine: each run's images/s and when its first image came out, to tell a
fresh engine's first run from the next ones (docs/SCALE.md, issue 13).

    python scripts/ray_runs_in_one_engine.py --device cuda --count 2000 --runs 2 --photos PHOTOS [--stats]

Needs requirements-ray.txt. The images are 1 MP crops of PHOTOS (matting.bench.batch.make_images)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matting.bench.batch import make_images, timed_batch  # noqa: E402
from matting.ray_batch import ray_batch_engine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--photos", type=Path, default=Path("../shared/evaldata/photos"))
    parser.add_argument("--stats", action="store_true", help="print Ray Data's statistics of each run")
    parser.set_defaults(workers=None, edges="default")   # what timed_batch reads: the batch's own defaults
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_images(work / "in", args.count, 1.0, args.photos)
        runs = []
        start = time.perf_counter()
        with ray_batch_engine("local", {"device": args.device}, args.batch_size) as (engine, executor):
            print(f"engine ready after {time.perf_counter() - start:.1f} s ({engine.summary()})", flush=True)

            def keeping(*a, **k):
                runs.append(executor(*a, **k))
                return runs[-1]

            for i in range(args.runs):
                row = timed_batch(work / "in", work / f"out{i}", args, pipeline=engine, executor=keeping)
                print(f"run {i}: {row['done']} images in {row['seconds']:.1f} s = "
                      f"{row['images_per_second']:.0f} images/s; first image after {row['first_image_s']:.2f} s",
                      flush=True)
                ended = ", ".join(f"{stage} {at:.2f}" for stage, at in runs[-1].first_ended.items())
                print(f"  the first image's stages ended, s after the run's dataset was started: {ended}", flush=True)
                if args.stats:
                    # our own seconds per stage (inside the functions) beside Ray Data's per operator (the tasks'
                    # whole time): the difference is Ray Data's conversions and hand-overs
                    busy = ", ".join(f"{stage} {seconds * 1000 / row['done']:.1f}"
                                     for stage, seconds in runs[-1].busy().items())
                    print(f"  ms per image inside our functions: {busy}", flush=True)
                    print(runs[-1].dataset.stats(), flush=True)


if __name__ == "__main__":
    main()
