"""A matting dataset on disk: images/ with alpha/ ground truth (and optional trimaps/), read as arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import MattingError


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    alpha: Path
    trimap: Path | None


def find_samples(dataset: Path) -> list[Sample]:
    """Every image of DATASET/images with a ground truth DATASET/alpha/<stem>.png, sorted by name."""
    dataset = Path(dataset)
    images, alphas = dataset / "images", dataset / "alpha"
    if not images.is_dir() or not alphas.is_dir():
        raise MattingError(f"{dataset} must hold images/ and alpha/ folders")
    samples = []
    for path in sorted(images.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        alpha = alphas / f"{path.stem}.png"
        if not alpha.is_file():
            raise MattingError(f"no ground truth for {path.name}: {alpha} is missing")
        trimap = dataset / "trimaps" / f"{path.stem}_trimap1.png"
        samples.append(Sample(path.stem, path, alpha, trimap if trimap.is_file() else None))
    if not samples:
        raise MattingError(f"no images found in {images}")
    return samples


def read_grey(path: Path) -> np.ndarray:
    """An 8- or 16-bit single-channel PNG as (H, W) uint8 / uint16 (colour files are converted to grey)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise MattingError(f"cannot read {path}")
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
    return image


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise MattingError(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
