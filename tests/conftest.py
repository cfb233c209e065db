"""Shared pytest fixtures."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every device the tests can run on: the CPU, plus CUDA when available."""
    return torch.device(request.param)
