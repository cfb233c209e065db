"""Our pipeline against rembg on a matting dataset, side by side in one run: quality (SAD, MSE, Grad, Conn) and
milliseconds per image, for the table in docs/QUALITY.md.

    pip install -r requirements-bench.txt
    export U2NET_HOME=/tmp/u2net && mkdir -p $U2NET_HOME
    python scripts/build_u2netp_weights.py --output /tmp/u2netp.safetensors --onnx-out $U2NET_HOME/u2netp.onnx
    python scripts/eval_rembg.py ../shared/evaldata/alphamatting-public --repeat 3 --json docs/quality/rembg.json

rembg runs u2netp through onnxruntime from $U2NET_HOME/u2netp.onnx (the same weights as our embedded model; it
is never downloaded: the script stops if the file is missing), with ``remove(image, session=new_session("u2netp"))``
plain and with ``alpha_matting=True`` at its default thresholds (240 / 10, erode 10). For every image the
configurations run in turn, --repeat times each, so machine load falls on all of them alike; each figure is the
median of its runs. Every configuration is timed from the file on disk to an RGBA cutout in memory (decode,
network, edges, colour; no encoding). rembg is used by this script only, never by the engine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matting.process import configure_process  # noqa: E402
from matting import metrics  # noqa: E402
from matting.eval import (ImageResult, Report, colour_error, find_samples, format_table, read_grey,  # noqa: E402
                          read_rgb, synthetic_composite)
from matting.settings import EdgeSettings  # noqa: E402


def rembg_runner(alpha_matting: bool):
    from PIL import Image
    from rembg import new_session, remove

    session = new_session("u2netp")

    def run(path: Path) -> np.ndarray:
        cutout = remove(Image.open(io.BytesIO(path.read_bytes())), session=session, alpha_matting=alpha_matting)
        return np.asarray(cutout)[..., 3]
    return run


DEFAULT = "ours: default"
PEER = "rembg u2netp + alpha matting"


def print_speed_ratios(reports: dict[str, Report]) -> None:
    """How many times faster each of our configurations is than rembg with alpha matting: over the whole set,
    at the per-image median, and the median of the per-image ratios (the issue's "5 times faster")."""
    peer = reports[PEER]
    print(f"\nSpeed against {PEER}: over the set / median ms / median of per-image ratios")
    for name, report in reports.items():
        if not name.startswith("ours"):
            continue
        total = sum(r.ms for r in peer.images) / sum(r.ms for r in report.images)
        per_image = statistics.median(p.ms / o.ms for p, o in zip(peer.images, report.images))
        print(f"{name:<32} {total:7.1f}x {peer.ms_median / report.ms_median:7.1f}x {per_image:7.1f}x")


def ours_runner(pipe, settings: EdgeSettings):
    def run(path: Path) -> np.ndarray:
        result = pipe.matte(path, name=path.name)
        return pipe.render(result, settings).alpha
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--repeat", type=int, default=1, help="runs per image and configuration (median)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--fp32", action="store_true",
                        help="also run our default pipeline with the network in fp32, where auto picked bf16 (AMX)")
    parser.add_argument("--foreground", action="store_true",
                        help="also score pymatting's foreground estimator on the decontamination test")
    args = parser.parse_args()
    configure_process()

    home = Path(os.environ.get("U2NET_HOME", "~/.u2net")).expanduser()
    if not (home / "u2netp.onnx").is_file():
        print(f"error: {home / 'u2netp.onnx'} is missing; set U2NET_HOME and extract it with "
              "scripts/build_u2netp_weights.py --onnx-out (see this script's help). Nothing is downloaded.",
              file=sys.stderr)
        return 2
    from matting.pipeline import Pipeline

    pipe = Pipeline(device=args.device, cache_bytes=0)
    print(f"ours: {pipe.summary()}", file=sys.stderr)
    configs = {
        "ours: plain network (--raw)": ours_runner(pipe, EdgeSettings.raw()),
        DEFAULT: ours_runner(pipe, EdgeSettings()),
        **({"ours: default, fp32 network": ours_runner(Pipeline(device=args.device, precision="fp32", cache_bytes=0),
                                                       EdgeSettings())} if args.fp32 and pipe.precision != "fp32"
           else {}),
        "rembg u2netp": rembg_runner(False),
        PEER: rembg_runner(True),
    }
    samples = find_samples(args.dataset)[: args.limit]
    rows: dict[str, list[ImageResult]] = {name: [] for name in configs}
    for sample in samples:
        gt = read_grey(sample.alpha)
        mask = metrics.unknown_region(read_grey(sample.trimap)) if sample.trimap else None
        for name, run in configs.items():
            times = []
            for _ in range(max(1, args.repeat)):
                start = time.perf_counter()
                alpha = run(sample.image)
                times.append((time.perf_counter() - start) * 1000)
            rows[name].append(ImageResult(
                sample.name, (alpha.shape[1], alpha.shape[0]), float(statistics.median(times)),
                metrics.evaluate(alpha, gt).as_dict(),
                metrics.evaluate(alpha, gt, mask).as_dict() if mask is not None else None, times))
        print(f"  {sample.name}: " + ", ".join(f"{n} {rows[n][-1].ms:.0f} ms" for n in configs), file=sys.stderr)

    reports = {name: Report({"config": name, "repeat": args.repeat}, images) for name, images in rows.items()}
    for name, report in reports.items():
        print(f"\n## {name}\n{format_table(report)}")
    print("\nSummary (means over the set; ms: median and mean per image)")
    print(f"{'configuration':<32} {'SAD':>8} {'MSE':>8} {'Grad':>8} {'Conn':>8} {'ms med':>8} {'ms mean':>8}")
    for name, report in reports.items():
        m = report.mean()
        print(f"{name:<32} {m['sad']:8.2f} {m['mse']:8.4f} {m['grad']:8.2f} {m['conn']:8.2f} "
              f"{report.ms_median:8.0f} {report.ms_mean:8.0f}")
    print_speed_ratios(reports)
    print("\nSame, over the unknown region of Trimap1")
    for name, report in reports.items():
        m = report.mean(unknown=True)
        if m:
            print(f"{name:<32} {m['sad']:8.2f} {m['mse']:8.4f} {m['grad']:8.2f} {m['conn']:8.2f}")
    results = {name: r.as_dict() for name, r in reports.items()}
    if args.foreground:
        results["pymatting_foreground"] = pymatting_foreground(samples)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def pymatting_foreground(samples) -> dict:
    """rembg's foreground estimator (pymatting's multi-level estimate_foreground_ml) on the synthetic composites
    of python -m matting.eval --foreground, with the true alpha: the colour error to compare with ours."""
    from pymatting import estimate_foreground_ml

    photos = [read_rgb(s.image) for s in samples]
    rows = []
    for k, sample in enumerate(samples):
        image, fg, a = synthetic_composite(samples, photos, k)
        estimate_foreground_ml(image[:8, :8] / 255.0, a[:8, :8])  # compile outside the timing
        start = time.perf_counter()
        estimate = estimate_foreground_ml(image / 255.0, a)
        ms = (time.perf_counter() - start) * 1000
        rows.append({"name": sample.name, "colour_error": colour_error(estimate, fg, a), "ms": ms})
    mean = float(np.mean([r["colour_error"] for r in rows]))
    median_ms = float(statistics.median(r["ms"] for r in rows))
    print(f"\npymatting estimate_foreground_ml on the synthetic composites (true alpha): colour error "
          f"{mean:.2f} levels, {median_ms:.0f} ms median per image")
    return {"mean_colour_error": mean, "ms_median": median_ms, "images": rows}


if __name__ == "__main__":
    sys.exit(main())
