"""Command line: ``python -m matting INPUT... -o OUTDIR``.

Writes OUTDIR/<stem>.png (RGBA cutout at the input's full, upright resolution); ``--alpha`` adds
OUTDIR/<stem>_alpha.png. Exit status 1 when any input failed, each failure one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import MattingError
from .settings import EdgeSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m matting", description="Cut the subject out of photos.")
    parser.add_argument("inputs", nargs="+", type=Path, help="image files")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--alpha", action="store_true", help="also write <stem>_alpha.png, the matte")
    parser.add_argument("--raw", action="store_true", help="turn every edge option off: the model's matte resized")
    edges = EdgeSettings()
    parser.add_argument("--threshold", type=float, default=edges.threshold,
                        help="cut the matte to binary at this level, 0..1 (default 0: keep soft edges)")
    parser.add_argument("--feather", type=float, default=edges.feather, help="soften edges, Gaussian sigma in px")
    parser.add_argument("--erode", type=int, default=edges.erode,
                        help="shrink (<0) or grow (>0) the foreground by this many px")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=edges.refine,
                        help="guided-filter refinement with the full-resolution photo (default on)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N; env MATTING_DEVICE")
    parser.add_argument("--model", default="u2netp", help="model name (default u2netp, embedded)")
    parser.add_argument("--weights", type=Path, default=None, help="weights file: .safetensors, .pth or .onnx")
    parser.add_argument("--max-side", type=int, default=None, help="working resolution cap in px (default 4096)")
    return parser


def edge_settings(args: argparse.Namespace) -> EdgeSettings:
    if args.raw:
        return EdgeSettings.raw()
    return EdgeSettings(threshold=args.threshold, feather=args.feather, erode=args.erode, refine=args.refine)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = edge_settings(args)
        from .pipeline import Pipeline

        pipeline = Pipeline(model=args.model, weights=args.weights, device=args.device, max_side=args.max_side)
    except MattingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    from .encode import write_image

    failed = 0
    start = time.perf_counter()
    for path in args.inputs:
        try:
            result = pipeline.matte(path, name=path.name)
            rendered = pipeline.render(result, settings)
            write_image(args.output / f"{path.stem}.png", rendered.rgba)
            if args.alpha:
                write_image(args.output / f"{path.stem}_alpha.png", rendered.alpha)
            for notice in result.notices:
                print(f"{path.name}: {notice}", file=sys.stderr)
        except (MattingError, OSError) as exc:
            failed += 1
            message = str(exc) if isinstance(exc, MattingError) else f"{path}: {exc.strerror or exc}"
            print(f"failed: {message}", file=sys.stderr)
    done = len(args.inputs) - failed
    print(f"{done} done, {failed} failed in {time.perf_counter() - start:.1f} s ({pipeline.summary()})",
          file=sys.stderr)
    return 1 if failed else 0
