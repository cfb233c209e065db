"""Regenerate tests/data/golden_astronaut_raw_alpha.png, the golden matte, from the reference path: onnxruntime
running the original u2netp.onnx (the file our embedded weights were converted from), fed by our preprocessing
and rendered raw (the network's matte, min-max normalised and resized to the photo; no edge option).

    python scripts/make_golden_matte.py /path/to/u2netp.onnx      # scripts/build_u2netp_weights.py --onnx-out

So the snapshot does not come from the code it checks: tests/test_pipeline.py compares our fp32 pipeline with
it, and, where the ONNX file is at hand (CI), regenerates it with this script's function and compares again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHOTO = ROOT / "assets" / "examples" / "astronaut.png"
TARGET = ROOT / "tests" / "data" / "golden_astronaut_raw_alpha.png"


def golden_alpha(onnx_path: str | Path) -> np.ndarray:
    """The astronaut's raw matte (H, W) uint8 with onnxruntime's network in place of ours."""
    import onnxruntime as ort

    from matting.pipeline import Pipeline
    from matting.settings import EdgeSettings

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def reference_network(x: torch.Tensor) -> torch.Tensor:   # the file's first output is already the sigmoid
        return torch.from_numpy(session.run(None, {name: x.float().numpy()})[0])

    pipe = Pipeline(device="cpu", precision="fp32", warm_up=False, cache_bytes=0)
    pipe.runner = reference_network
    return pipe.render(pipe.matte(PHOTO), EdgeSettings.raw()).alpha


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    from PIL import Image

    Image.fromarray(golden_alpha(argv[0])).save(TARGET, optimize=True)
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
