"""Inputs of the ONNX equivalence check, rebuilt identically wherever they are needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


def photo_input(name: str = "astronaut.png") -> np.ndarray:
    """The U^2-Net preprocessing done with Pillow and numpy only: resize, divide by max, ImageNet mean/std."""
    image = Image.open(EXAMPLES / name).convert("RGB").resize((320, 320), Image.Resampling.BILINEAR)
    x = np.asarray(image, np.float32).transpose(2, 0, 1) / 255.0
    x = x / x.max()
    return ((x - MEAN) / STD)[None].astype(np.float32)


def reference_inputs() -> dict[str, np.ndarray]:
    return {
        "random": np.random.default_rng(20240611).standard_normal((1, 3, 320, 320)).astype(np.float32),
        "photo": photo_input(),
    }
