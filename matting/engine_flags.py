"""The engine's command-line flags (--device --precision --model --weights --max-side), defined once for app.py,
the CLI and the evaluation (no torch import here: a command's --help and its argument errors stay instant)."""

from __future__ import annotations

import argparse
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
PRECISION_CHOICES = ("auto", *PRECISIONS)
PRECISION_HELP = ("network precision (auto: fp16 on CUDA; on the CPU int8 through OpenVINO where it has VNNI, else "
                  "bf16 where it has AMX, else fp32; fp32 is exact); env MATTING_PRECISION")


def positive_int(text: str) -> int:
    """A flag's whole number of at least 1 (a count, a size), or argparse's one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_engine_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The flags that choose and size the engine; their values go to Pipeline(model=, weights=, device=,
    precision=, max_side=) as they are (None: the engine's default or its environment variable)."""
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N; env MATTING_DEVICE")
    parser.add_argument("--precision", default=None, choices=PRECISION_CHOICES, help=PRECISION_HELP)
    parser.add_argument("--model", default="u2netp", help="model name (default u2netp, embedded)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="weights file for --model: .safetensors, .pth or .onnx (default: the embedded ones)")
    parser.add_argument("--max-side", type=int, default=None,
                        help="largest working side in px; larger photos are reduced, with a notice "
                             "(default 4096; env MATTING_MAX_SIDE)")


def engine_options(args: argparse.Namespace) -> dict:
    """The parsed engine flags as Pipeline's keyword arguments."""
    return dict(model=args.model, weights=args.weights, device=args.device, precision=args.precision,
                max_side=args.max_side)
