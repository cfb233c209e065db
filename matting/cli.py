"""Command line: ``python -m matting INPUT... -o OUTPUT``.

INPUT: image files, folders (``-r`` for sub-folders), glob patterns (quoted, for shells that do not expand them)
or zip archives. OUTPUT: a folder, or a path ending in .zip.

Writes OUTPUT/<stem>.png (RGBA cutout at the input's full, upright resolution); ``--alpha`` adds <stem>_alpha.png
(the matte), ``--composite`` adds <stem>_composite.jpg on ``--background``. Folder and zip inputs keep their
sub-folders in the output; same-named inputs get _2, _3 ... (see matting/batch_outputs.py). Outputs that already
exist are skipped, so an interrupted run resumes where it stopped; ``--overwrite`` redoes them.

Exit status: 0 when every input was done or skipped, 1 when any failed (each failure one line on stderr, as it
happens, so a long run's first failures show at once), 2 for a usage or setup error (bad option, model or output
location), 130 when stopped with Ctrl-C (what was written stays valid).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from .crop import parse_margin
from .engine_flags import add_engine_flags, engine_options, positive_int
from .errors import MattingError
from .settings import EdgeSettings, parse_color

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _output_path(text: str) -> Path:
    if not text.strip():   # Path("") would be the working folder, where the inputs may be
        raise argparse.ArgumentTypeError("an empty name: name a folder, or a path ending in .zip")
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m matting", description="Cut the subject out of photos.",
                                     epilog="Exit status: 0 all done or skipped, 1 some inputs failed, "
                                            "2 usage or setup error, 130 interrupted.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders, glob patterns or .zip archives")
    parser.add_argument("-o", "--output", type=_output_path, required=True,
                        help="output folder (created if needed), or a path ending in .zip")
    parser.add_argument("-r", "--recursive", action="store_true", help="also take images in sub-folders")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo inputs whose outputs already exist (default: skip them, so a rerun resumes)")

    kinds = parser.add_argument_group("outputs")
    kinds.add_argument("--no-cutout", dest="cutout", action="store_false",
                       help="do not write <stem>.png, the RGBA cutout (written by default)")
    kinds.add_argument("--alpha", action="store_true", help="also write <stem>_alpha.png, the matte")
    kinds.add_argument("--composite", action="store_true",
                       help="also write <stem>_composite.jpg, the subject on --background")
    kinds.add_argument("--background", default=None, metavar="COLOR",
                       help="composite colour, #RRGGBB or r,g,b (default white; implies --composite)")
    kinds.add_argument("--crop", nargs="?", const="0", default=None, metavar="MARGIN",
                       help="trim every output to the subject's bounding box plus MARGIN on each side: pixels (10) "
                            "or a percentage of the box (5%%); no MARGIN: the box itself")
    kinds.add_argument("--composite-format", choices=("jpg", "png"), default="jpg",
                       help="file type of the composite (default jpg)")

    edges = EdgeSettings()
    edge = parser.add_argument_group("edges")
    edge.add_argument("--raw", action="store_true", help="turn every edge option off: the model's matte resized")
    edge.add_argument("--threshold", type=float, default=edges.threshold,
                      help="cut the matte to binary at this level, 0..1 (default 0: keep soft edges)")
    edge.add_argument("--feather", type=float, default=edges.feather, help="soften edges, Gaussian sigma in px")
    edge.add_argument("--erode", type=int, default=edges.erode,
                      help="shrink (<0) or grow (>0) the foreground by this many px")
    edge.add_argument("--refine", action=argparse.BooleanOptionalAction, default=edges.refine,
                      help="guided-filter refinement with the full-resolution photo (default on)")
    edge.add_argument("--decontaminate", action=argparse.BooleanOptionalAction, default=edges.decontaminate,
                      help="replace the old background's colour in soft edges by the subject's "
                           f"(default {'on' if edges.decontaminate else 'off'})")

    engine = parser.add_argument_group("engine")
    add_engine_flags(engine)
    engine.add_argument("--batch-size", type=positive_int, default=None,
                        help="images per network call (default 16 on a GPU, 1 on the CPU)")
    engine.add_argument("--workers", type=positive_int, default=None,
                        help="threads for decoding and for encoding, each (default: the CPU cores; on a GPU 4, "
                             "at most the cores / engines, or 16 without fpng); with --ray, tasks at once "
                             "(default: the CPUs the actors leave)")
    engine.add_argument("--engines", type=positive_int, default=None,
                        help="engine processes sharing the device, each with its own copy of the model (default: 4 "
                             "on a GPU with 16 or more CPU cores, 2 with 12 to 15, else 1; docs/CLI.md)")
    engine.add_argument("--no-progress", dest="progress", action="store_false", help="no progress display")
    engine.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="run the stages on Ray (pip install -r requirements-ray.txt): no ADDRESS starts a "
                             "private one on this machine, 'auto' or HOST:PORT joins a cluster (docs/SCALE.md)")
    return parser


def edge_settings(args: argparse.Namespace) -> EdgeSettings:
    if args.raw:
        return EdgeSettings.raw()
    return EdgeSettings(threshold=args.threshold, feather=args.feather, erode=args.erode, refine=args.refine,
                        decontaminate=args.decontaminate)


def output_kinds(args: argparse.Namespace) -> tuple[str, ...]:
    composite = args.composite or args.background is not None
    kinds = tuple(kind for kind, wanted in (("cutout", args.cutout), ("alpha", args.alpha),
                                            ("composite", composite)) if wanted)
    if not kinds:
        raise MattingError("nothing to write: --no-cutout needs --alpha or --composite")
    return kinds


def main(argv: list[str] | None = None) -> int:
    from .batch_progress import Progress

    # Intermixed: inputs may come after options too (`photos/ -r archive.zip -o out.zip`); plain parse_args
    # stops taking inputs at the first option.
    args = build_parser().parse_intermixed_args(argv)
    _take_input_after_ray(args)
    progress = Progress(enabled=args.progress)
    try:
        settings = edge_settings(args)
        kinds = output_kinds(args)
        background = parse_color(args.background) if args.background is not None else None
        args.crop_margin = parse_margin(args.crop) if args.crop is not None else None
        if args.ray is not None and (args.engines or 1) > 1:
            raise MattingError("--engines is for this machine's engine; with --ray, Ray places the work "
                               "(--workers sets its tasks)")
        if args.ray is not None:
            from .ray_batch import ray_batch_engine

            progress.status("starting Ray and its actors...")
            with ray_batch_engine(args.ray, engine_options(args), args.batch_size) as (engine, executor):
                return run(args, engine, settings, kinds, background, executor=executor, progress=progress)
        from .batch_engines import batch_engines, default_engines
        from .process import configure_process

        if args.engines is None:
            args.engines = default_engines(args.device)
        configure_process()
        progress.status("loading the model...")
        with batch_engines(engine_options(args), args.engines, args.batch_size,
                           workers=args.workers) as (pipeline, executor):
            return run(args, pipeline, settings, kinds, background, executor=executor, progress=progress)
    except MattingError as exc:
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _take_input_after_ray(args: argparse.Namespace) -> None:
    """`--ray photos/`: an optional value that is no Ray address is an input, not the address."""
    from .ray_runtime import is_address

    if args.ray is not None and not is_address(args.ray):
        args.inputs.append(args.ray)
        args.ray = "local"


def run(args: argparse.Namespace, pipeline, settings: EdgeSettings, kinds, background, executor=None,
        progress=None) -> int:
    from .batch import run_batch
    from .batch_progress import Progress

    progress = progress or Progress(enabled=args.progress)
    counts = {"processed": 0, "failed": 0}
    cancel = threading.Event()

    def on_result(result, finished: int, total: int) -> None:
        if result.status != "skipped":
            counts["processed"] += 1
        if result.status == "failed":   # at once: a run of hours should not keep its first failure to the end
            counts["failed"] += 1
            progress.write(f"failed: {result.name}: {result.error}")
        for notice in result.notices:
            progress.write(f"{result.name}: {notice}")
        progress.update(finished, total, counts["processed"], counts["failed"])

    try:
        progress.status("listing the inputs...")
        with _stop_on_ctrl_c(cancel, progress):
            summary = run_batch(args.inputs, args.output, pipeline=pipeline, settings=settings, kinds=kinds,
                                background=background, composite_format=args.composite_format,
                                overwrite=args.overwrite, recursive=args.recursive, batch_size=args.batch_size,
                                workers=args.workers, cancel=cancel, on_result=on_result,
                                crop=getattr(args, "crop_margin", None), executor=executor,
                                on_planned=lambda total: progress.update(0, total, 0, 0, force=True))
    except MattingError as exc:   # the output location (OutputError) or the engine cannot be used at all
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        progress.close()
        print("interrupted: files already written are complete; run again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    progress.close()
    _print_summary(summary, pipeline, getattr(args, "engines", None) or 1)
    if summary.cancelled:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK


def _print_summary(summary, pipeline, engines: int = 1) -> None:
    engines_note = _engines_used(summary, pipeline, engines)
    line = (f"{summary.done} done, {summary.skipped} skipped, {summary.failed} failed in {summary.seconds:.1f} s "
            f"({summary.images_per_second:.1f} images/s; {pipeline.summary()}{engines_note})")
    if summary.repeats:
        line += f"; {summary.repeats} named again by a later input, done once"
    if summary.cancelled:
        line += f"; stopped early, {summary.total - len(summary.results)} not started: run again to resume"
    elif summary.skipped and not summary.done and not summary.failed:
        line += "; everything was already done (--overwrite redoes it)"
    print(line, file=sys.stderr)


def _engines_used(summary, pipeline, engines: int) -> str:
    """With --engines: how many took part (helpers still loading when a short run ended did not)."""
    if engines < 2 or not summary.stage_threads:
        return ""
    from .batch_runtime import inference_threads

    used = max(1, summary.stage_threads.get("infer", 0) // inference_threads(pipeline.device))
    return f"; {used} of {engines} engine processes" if used < engines else f"; {engines} engine processes"


@contextmanager
def _stop_on_ctrl_c(cancel: threading.Event, progress):
    """First Ctrl-C: finish cleanly (stop starting images, keep what is written). Second: the usual interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        progress.write("stopping after the images in progress (Ctrl-C again to quit at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
