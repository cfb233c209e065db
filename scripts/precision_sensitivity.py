"""Which layers of a model cannot take reduced precision: the evidence behind a weights entry's ``float32_chains``.

    python scripts/precision_sensitivity.py                          # u2netp, the example photos, bf16
    python scripts/precision_sensitivity.py ../shared/evaldata/photos/*.jpg --inside stage2d

For each module (the model's children, or those of ``--inside``) the network's matte is compared with the
float32 matte on the same inputs: with only that module in reduced precision, and with everything but it. Then
everything reduced, and everything reduced but the spec's float32 chains (what the engine runs). Mean absolute
difference in 1/255 of the matte, and the share of pixels off by more than 0.1. No ground truth is needed, so
the choice is not tuned on the evaluation set.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matting.bench.inference import example_photos, network_inputs  # noqa: E402
from matting.models.precision import with_precision  # noqa: E402
from matting.models.registry import create_model, get_spec  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Reduced(nn.Module):
    """One module of a float32 network run in ``dtype`` (weights rounded once, input and output cast)."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner = inner.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.to(self.dtype)).float()


def mattes(model: nn.Module, inputs: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [torch.sigmoid(model(x.to(dtype)).float()) for x in inputs]


def score(outputs: list[torch.Tensor], reference: list[torch.Tensor]) -> str:
    diffs = [(o - r).abs() for o, r in zip(outputs, reference)]
    mean = sum(d.mean().item() for d in diffs) / len(diffs) * 255
    far = sum((d > 0.1).float().mean().item() for d in diffs) / len(diffs) * 100
    return f"{mean:8.3f} {far:7.2f} %"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path, help="photos (default: assets/examples)")
    parser.add_argument("--model", default="u2netp")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--inside", default="", help="look at the children of this module instead")
    args = parser.parse_args()
    dtype, device = DTYPES[args.dtype], torch.device(args.device)
    spec = get_spec(args.model)

    def fresh() -> nn.Module:
        return create_model(args.model, args.weights).to(device=device, memory_format=torch.channels_last).eval()

    paths = args.images or example_photos()
    inputs = [x.contiguous(memory_format=torch.channels_last) for x in network_inputs(paths, spec, device)]
    base = fresh()
    reference = mattes(base, inputs, torch.float32)
    parent = base.get_submodule(args.inside)
    names = [name for name, child in parent.named_children() if any(True for _ in child.parameters())]
    prefix = f"{args.inside}." if args.inside else ""

    def reduced(only: list[str]) -> str:
        model = copy.deepcopy(base)
        for name in only:
            model.set_submodule(prefix + name, Reduced(model.get_submodule(prefix + name), dtype))
        return score(mattes(model, inputs, torch.float32), reference)

    print(f"{args.model}, {len(inputs)} photos, {args.dtype} against fp32: mean |difference| of the matte in "
          f"1/255, and pixels off by more than 0.1")
    print(f"{'module':<24} {'alone in ' + args.dtype:>20} {'all but it':>20}")
    for name in names:
        print(f"{prefix + name:<24} {reduced([name]):>20} {reduced([n for n in names if n != name]):>20}")
    print(f"{'everything':<24} {score(mattes(with_precision(fresh(), dtype), inputs, dtype), reference):>20}")
    chains = (spec.embedded.float32_chains if spec.embedded else None) or ()
    kept = ", ".join(name for chain in chains for name in chain) or "none"
    print(f"{'everything but ' + kept:<24} "
          f"{score(mattes(with_precision(fresh(), dtype, chains), inputs, dtype), reference):>20}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
