"""U^2-Net (full), U^2-Net human segmentation and ISNet: the authors' key names and shapes, and loading from
their .pth layout and from rembg-style folded ONNX graphs (made here from random weights)."""

from __future__ import annotations

import io

import pytest
import torch

from matting.models import create_model, fuse_batchnorm, get_spec
from matting.models.weights import state_from_onnx
from tests.test_models import randomize

# Spot checks read off the authors' constructors (U-2-Net model/u2net.py, DIS IS-Net/models/isnet.py).
AUTHORS_SHAPES = {
    "u2net": {"stage1.rebnconvin.conv_s1.weight": (64, 3, 3, 3), "stage5d.rebnconvin.conv_s1.weight": (512, 1024, 3, 3),
              "stage4.rebnconv4.bn_s1.running_var": (128,), "side3.weight": (1, 128, 3, 3), "side4.weight": (1, 256, 3, 3),
              "outconv.weight": (1, 6, 1, 1), "stage1d.rebnconv1d.conv_s1.weight": (64, 32, 3, 3)},
    "isnet-general-use": {"conv_in.weight": (64, 3, 3, 3), "stage1.rebnconvin.conv_s1.weight": (64, 64, 3, 3),
                          "stage6.rebnconv4.conv_s1.weight": (256, 256, 3, 3), "side6.weight": (1, 512, 3, 3),
                          "stage2d.rebnconv1d.conv_s1.weight": (64, 64, 3, 3)},
}
AUTHORS_KEY_COUNT = {"u2net": 798, "u2net_human_seg": 798, "isnet-general-use": 798}
PARAMS = {"u2net": 44_009_869, "u2net_human_seg": 44_009_869, "isnet-general-use": 44_046_790}


@pytest.mark.parametrize("name", ["u2net", "u2net_human_seg", "isnet-general-use"])
def test_key_names_and_shapes(name):
    model = get_spec(name).builder()
    state = model.state_dict()
    assert len(state) == AUTHORS_KEY_COUNT[name]
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    for key, shape in AUTHORS_SHAPES.get(name.replace("_human_seg", ""), {}).items():
        assert tuple(state[key].shape) == shape, key
    assert "outconv.weight" not in state if name.startswith("isnet") else "outconv.weight" in state


@pytest.mark.parametrize("name", ["u2net", "isnet-general-use"])
def test_authors_pth_and_folded_onnx_load(name, tmp_path):
    pytest.importorskip("onnx")  # only to write the test graph; loading needs no onnx package
    spec = get_spec(name)
    source = randomize(spec.builder(), seed=7)
    pth = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), pth)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        expected = source(x)
    from_pth = create_model(name, weights=pth)
    with torch.inference_mode():
        torch.testing.assert_close(from_pth(x), expected, atol=2e-3, rtol=1e-3)

    folded = fuse_batchnorm(source)
    folded.logits_only = False  # rembg's graphs carry every side output
    onnx_path = tmp_path / f"{name}.onnx"
    torch.onnx.export(folded, torch.zeros(1, 3, 64, 64), onnx_path, dynamo=False, opset_version=11)
    from_onnx = create_model(name, weights=onnx_path)
    with torch.inference_mode():
        torch.testing.assert_close(from_onnx(x), expected, atol=2e-3, rtol=1e-3)


def test_onnx_of_another_model_is_refused_clearly(tmp_path):
    pytest.importorskip("onnx")
    small = fuse_batchnorm(randomize(get_spec("u2netp").builder()))
    buffer = io.BytesIO()
    torch.onnx.export(small, torch.zeros(1, 3, 64, 64), buffer, dynamo=False, opset_version=11)
    target = fuse_batchnorm(get_spec("isnet-general-use").builder().eval())
    with pytest.raises(Exception, match="different"):
        state_from_onnx(target, buffer.getvalue())


def test_isnet_preprocessing_spec():
    spec = get_spec("isnet-general-use")
    assert spec.input_hw == (1024, 1024) and spec.mean == (0.5, 0.5, 0.5) and spec.std == (1.0, 1.0, 1.0)
    assert not spec.scale_by_max
