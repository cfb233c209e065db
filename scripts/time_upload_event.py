"""Where a new photo's time goes on the server, without Gradio around it: the upload event's own work.

    python scripts/time_upload_event.py --device cuda --photos DIR [--rounds 3]

Calls the app's upload handler (demo.handlers.Handlers.on_image) directly for every photo in DIR, each round on a
fresh variant (a corner block changed, so the engine's cache does not hide the network), and prints the median of
each stage from the handler's own timing line, plus the JSON size and encoding time of the payload the page
receives. What a client measures beyond the "handler" row is Gradio's and the network's.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class _NoProgress:
    def __call__(self, *args, **kwargs):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--photos", type=Path, default=ROOT / "assets" / "examples")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from demo.files import OutputStore
    from demo.handlers import Handlers
    from matting.pipeline import Pipeline
    from matting.process import configure_process
    from matting.settings import EdgeSettings

    configure_process()
    pipe = Pipeline(device=args.device)
    work = Path(tempfile.mkdtemp(prefix="upload-event-"))
    handlers = Handlers(pipe, OutputStore(work / "store"), lang="en")
    d = EdgeSettings()
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rows: dict[str, list[float]] = {}
    for round_ in range(args.rounds + 1):   # round 0 warms up (CUDA kernels, encoders) and is not counted
        for number, photo in enumerate(photos):
            pixels = np.asarray(Image.open(photo).convert("RGB")).copy()
            pixels[:16, :16] = (round_ * 67 + 30) % 256   # a block: JPEG keeps it, so the cache misses
            variant = work / f"{photo.stem}-{round_}.jpg"
            Image.fromarray(pixels).save(variant, quality=95)
            start = time.perf_counter()
            _, value = handlers.on_image(str(variant), None, None, _NoProgress(), **d.as_dict(),
                                         bg_mode="transparent", bg_color="#ffffff", bg_image=None)
            handler_ms = (time.perf_counter() - start) * 1000
            start = time.perf_counter()
            size = len(json.dumps(value))
            json_ms = (time.perf_counter() - start) * 1000
            if round_ == 0:
                continue
            stages = dict(re.findall(r"(decode|network|render|encode|total) ([\d.]+) ms", value["line"]))
            for name, ms in stages.items():
                rows.setdefault(f"{name} (handler's line)", []).append(float(ms))
            rows.setdefault("handler, wall", []).append(handler_ms)
            rows.setdefault("payload JSON dumps", []).append(json_ms)
            rows.setdefault("payload KB", []).append(size / 1024)
    print(f"\n{len(photos)} photos x {args.rounds} rounds on {pipe.device}\n")
    print("| stage | median | p90 |\n| --- | ---: | ---: |")
    for name, values in rows.items():
        values.sort()
        print(f"| {name} | {statistics.median(values):.1f} | {values[int(0.9 * (len(values) - 1))]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
