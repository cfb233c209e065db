"""Shared pytest fixtures."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_configure(config):
    """The process settings the app and the CLI run with (no TF32 on the GPU, the heap tuning), so a test of a
    Pipeline it builds itself sees what they see."""
    from matting.process import configure_process

    configure_process()


@pytest.fixture(scope="module")
def pipe():
    """A CPU pipeline of the embedded model, one per test module (a module may override it with other options)."""
    from matting.pipeline import Pipeline

    return Pipeline(device="cpu")


@pytest.fixture(scope="module")
def app():
    """`python app.py`'s demo served on 127.0.0.1 for one test module (tests/app_server.py)."""
    from tests.app_server import running_app

    return running_app()


@pytest.fixture
def other_weights(tmp_path):
    """Weights other than the embedded ones (one weight nudged, as fine-tuning would): what we measured on the
    embedded file (its fp32 layers, its int8 network) does not hold for them."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from matting.models.registry import get_spec

    with safe_open(str(get_spec("u2netp").default_weights), "pt") as source:
        tensors = {name: source.get_tensor(name) for name in source.keys()}
        metadata = source.metadata()
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + 1e-3
    path = tmp_path / "finetuned.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every device the tests can run on: the CPU, plus CUDA when available."""
    return torch.device(request.param)
