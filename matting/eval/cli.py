"""The evaluation's command line, `python -m matting.eval` (see the package docstring for what it does)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import metrics
from ..engine_flags import add_engine_flags, engine_options
from ..errors import MattingError
from ..process import configure_process
from ..settings import EdgeSettings
from .dataset import Sample, find_samples, read_grey
from .foreground_test import foreground_test, format_foreground
from .pictures import decontamination_grid, quality_grid, write_png
from .scoring import ImageResult, describe, evaluate_dataset, format_table
from .variants import VARIANTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m matting.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="folder with images/ and alpha/ (and optionally trimaps/)")
    add_engine_flags(parser)
    edges = EdgeSettings()
    parser.add_argument("--raw", action="store_true", help="every edge option off: the network's matte resized")
    parser.add_argument("--threshold", type=float, default=edges.threshold)
    parser.add_argument("--feather", type=float, default=edges.feather)
    parser.add_argument("--erode", type=int, default=edges.erode)
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=edges.refine)
    parser.add_argument("--refine-radius", type=int, default=edges.refine_radius,
                        help=f"guided filter radius in network pixels (default {edges.refine_radius})")
    parser.add_argument("--refine-eps", type=float, default=edges.refine_eps,
                        help=f"guided filter regularisation (default {edges.refine_eps:g})")
    parser.add_argument("--decontaminate", action=argparse.BooleanOptionalAction, default=edges.decontaminate,
                        help="estimate the foreground colour on soft edges (default on; changes colour, not alpha)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default=None,
                        help="an experimental refinement instead of the engine's (see docs/QUALITY.md)")
    parser.add_argument("--repeat", type=int, default=1, help="time each image this many times (median)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--out", type=Path, default=None, help="write predictions and picture grids here")
    parser.add_argument("--grid", default=None,
                        help="comma-separated image names for the grids (default: the 4 with the most soft alpha)")
    parser.add_argument("--json", type=Path, default=None, help="write every number to this JSON file")
    parser.add_argument("--foreground", action="store_true",
                        help="run the decontamination test on synthetic composites instead")
    return parser


def edge_settings(args: argparse.Namespace) -> EdgeSettings:
    if args.raw:
        return EdgeSettings.raw()
    return EdgeSettings(threshold=args.threshold, feather=args.feather, erode=args.erode, refine=args.refine,
                        refine_radius=args.refine_radius, refine_eps=args.refine_eps,
                        decontaminate=args.decontaminate)


def default_grid_names(samples: list[Sample], count: int = 4) -> list[str]:
    def soft(sample):
        gt = metrics.as_unit_alpha(read_grey(sample.alpha))
        return ((gt > 0) & (gt < 1)).sum()
    return [s.name for s in sorted(samples, key=soft, reverse=True)[:count]]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_process()
    try:
        samples = find_samples(args.dataset)[: args.limit]
        settings = edge_settings(args)
    except MattingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = [n for n in args.grid.split(",") if n] if args.grid else []
    unknown = set(names) - {s.name for s in samples}
    if unknown:
        print(f"error: --grid names not in the dataset: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    try:
        from ..pipeline import Pipeline

        # No matte cache: every timed run pays for the network, as a new image would.
        pipe = Pipeline(**engine_options(args), cache_bytes=0)
    except MattingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(samples)} images from {args.dataset}; {pipe.summary()}; settings {settings.as_dict()}"
          + (f"; variant {args.variant}" if args.variant else ""), file=sys.stderr)

    if args.foreground:
        rows = foreground_test(samples, pipe, settings)
        print(format_foreground(rows))
        if args.json:
            args.json.write_text(json.dumps({"config": describe(pipe, settings, None, 3), "images": rows},
                                            indent=1))
        return 0

    if args.out and not names:
        names = default_grid_names(samples)

    def progress(row: ImageResult) -> None:
        s = row.scores
        print(f"  {row.name}: SAD {s['sad']:.2f} Grad {s['grad']:.2f} {row.ms:.0f} ms", file=sys.stderr)

    try:
        report, kept = evaluate_dataset(samples, pipe, settings, variant=args.variant, repeat=args.repeat,
                                        out=args.out, keep=set(names), progress=progress)
    except MattingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(report))
    if report.mean(unknown=True) is not None:
        print()
        print(format_table(report, unknown=True))
    if args.out:
        chosen = [s for s in samples if s.name in names]
        predictions = {s.name: read_grey(args.out / "pred" / f"{s.name}.png") for s in chosen}
        write_png(args.out / "grid.png", quality_grid(chosen, predictions))
        if args.variant is None:
            write_png(args.out / "decontamination.png", decontamination_grid(chosen, kept, pipe, settings))
        print(f"wrote {args.out}/pred/*.png and the grids", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.as_dict(), indent=1))
    return 0

