"""Derive assets/models/u2netp_int8.onnx, the int8 network of the CPU fast path, from the embedded fp32 weights.

    python scripts/build_u2netp_int8.py [--output PATH]

What it does, with nothing downloaded:
1. builds matting's U^2-Net-P with the embedded weights (assets/models/u2netp.safetensors) and exports it to ONNX
   (opset 17, batch 1, 320 x 320, input "x", output "logits");
2. calibrates activation ranges (min/max) on the example photos of assets/examples, each also mirrored and as
   two centred zooms (16 inputs), prepared exactly as the pipeline prepares a photo;
3. quantizes statically to QDQ form with onnxruntime's quantizer: weights int8 per output channel, activations
   uint8 per tensor; the layers the embedded weights keep in fp32 (``float32_chains``: the ill-conditioned pair
   ``stage2d.rebnconv2d`` -> ``stage2d.rebnconv1d``, see matting/models/precision.py) stay float32.

matting/openvino_runner.py runs the result with OpenVINO. Needs the development requirements (onnx,
onnxruntime) besides the runtime ones. tests/test_int8.py rebuilds the file and checks it computes what the
committed one computes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

OUTPUT = ROOT / "assets" / "models" / "u2netp_int8.onnx"
ZOOMS = (0.6, 0.8)


def calibration_inputs(spec) -> list[torch.Tensor]:
    """The example photos as the pipeline feeds them to the network, each also mirrored and zoomed in."""
    from matting.bench.inference import example_photos, network_inputs

    inputs = []
    for x in network_inputs(example_photos(), spec, torch.device("cpu")):
        inputs += [x, x.flip(-1)]
        size = x.shape[-1]
        for zoom in ZOOMS:
            crop = int(size * zoom)
            top = (size - crop) // 2
            inputs.append(torch.nn.functional.interpolate(x[..., top:top + crop, top:top + crop], size=(size, size),
                                                          mode="bilinear", antialias=True))
    return inputs


def fp32_convs(spec, graph) -> list[str]:
    """ONNX node names of the convolutions in the spec's float32 chains (the exporter names them by module)."""
    chains = spec.embedded.float32_chains or ()
    prefixes = ["/" + name.replace(".", "/") + "/" for chain in chains for name in chain]
    names = [node.name for node in graph.node if node.op_type == "Conv" and node.name.startswith(tuple(prefixes))]
    if len(names) != sum(len(chain) for chain in chains):
        raise SystemExit(f"expected one convolution per float32 layer, found {names}")
    return names


def build(output: Path) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from matting.models import create_model, get_spec

    spec = get_spec("u2netp")
    model = create_model("u2netp").eval()
    inputs = calibration_inputs(spec)

    class Photos(CalibrationDataReader):
        def __init__(self):
            self._left = iter([{"x": x.numpy()} for x in inputs])

        def get_next(self):
            return next(self._left, None)

    with tempfile.TemporaryDirectory() as tmp:
        exported, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        torch.onnx.export(model, torch.zeros(1, 3, *spec.input_hw), str(exported), opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["logits"])
        quant_pre_process(str(exported), str(prepared))
        keep = fp32_convs(spec, onnx.load(str(prepared)).graph)
        output.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(str(prepared), str(output), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=keep)
    print(f"wrote {output} ({output.stat().st_size:,} bytes); kept in fp32: {', '.join(keep)}")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    build(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
