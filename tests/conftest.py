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


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every device the tests can run on: the CPU, plus CUDA when available."""
    return torch.device(request.param)
