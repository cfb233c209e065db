"""Store onnxruntime's output of the original u2netp.onnx for the equivalence test, so CI needs no ONNX file.

    python scripts/make_reference_outputs.py /path/to/u2netp.onnx

Inputs are rebuilt by the test itself (tests/reference_inputs.py): a seeded random tensor and a real photo.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reference_inputs import reference_inputs  # noqa: E402


def main(onnx_path: str) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = {key: session.run(None, {name: x})[0] for key, x in reference_inputs().items()}
    target = ROOT / "tests" / "data" / "u2netp_onnx_reference.npz"
    np.savez_compressed(target, **outputs)
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])
