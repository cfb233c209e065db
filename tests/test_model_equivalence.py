"""The PyTorch U^2-Net-P with the embedded weights computes what the original ONNX file computes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from matting.models import create_model
from tests.reference_inputs import reference_inputs

REFERENCE = Path(__file__).parent / "data" / "u2netp_onnx_reference.npz"
ONNX_ENV = "MATTING_U2NETP_ONNX"  # .ci/run extracts the original file from its PyPI wheel and sets this


@pytest.fixture(scope="module")
def model():
    return create_model("u2netp")


def torch_output(model, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(model(torch.from_numpy(x))).numpy()


@pytest.mark.parametrize("case", ["random", "photo"])
def test_matches_stored_onnxruntime_output(model, case):
    expected = np.load(REFERENCE)[case]
    got = torch_output(model, reference_inputs()[case])
    assert got.shape == expected.shape == (1, 1, 320, 320)
    assert np.abs(got - expected).max() < 1e-4
    assert expected.std() > 1e-3  # not a constant output that anything would match


@pytest.mark.skipif(not os.environ.get(ONNX_ENV), reason=f"${ONNX_ENV} not set (the original ONNX is not at hand)")
@pytest.mark.parametrize("case", ["random", "photo"])
def test_matches_live_onnxruntime(model, case):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(os.environ[ONNX_ENV], providers=["CPUExecutionProvider"])
    x = reference_inputs()[case]
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.abs(torch_output(model, x) - expected).max() < 1e-4


@pytest.mark.skipif(not os.environ.get(ONNX_ENV), reason=f"${ONNX_ENV} not set (the original ONNX is not at hand)")
def test_onnx_file_loads_like_embedded_weights(model):
    from_onnx = create_model("u2netp", weights=os.environ[ONNX_ENV])
    x = torch.from_numpy(reference_inputs()["random"])
    with torch.inference_mode():
        assert torch.equal(from_onnx(x), model(x))
