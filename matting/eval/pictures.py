"""Pictures of an evaluation: the grid (input, ground truth, ours, error) and the decontamination crops."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..settings import EdgeSettings
from .dataset import Sample, read_grey, read_rgb


TILE_HEIGHT = 220          # grid rows, px
CROP_SIDE = 160            # decontamination crops, px of the full-resolution image, shown at 2x


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)


def _grey3(alpha: np.ndarray) -> np.ndarray:
    return np.repeat(alpha[..., None], 3, axis=2)


def error_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """|pred - gt| as a colour map: black where right, through red to yellow where wrong (RGB uint8)."""
    err = np.abs(pred.astype(np.int16) - gt.astype(np.int16)).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(err, cv2.COLORMAP_HOT), cv2.COLOR_BGR2RGB)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = np.ascontiguousarray(tile).copy()
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    cv2.rectangle(tile, (0, 0), (w + 8, h + 10), (32, 32, 32), -1)
    cv2.putText(tile, text, (4, h + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _stack_rows(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    lines = []
    for tiles in rows:
        spaced = []
        for tile in tiles:
            spaced += [tile, np.full((tile.shape[0], gap, 3), 255, np.uint8)]
        lines.append(np.concatenate(spaced[:-1], axis=1))
    width = max(line.shape[1] for line in lines)
    padded = []
    for line in lines:
        padded += [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255),
                   np.full((gap, width, 3), 255, np.uint8)]
    return np.concatenate(padded[:-1], axis=0)


def quality_grid(samples: list[Sample], predictions: dict[str, np.ndarray], height: int = TILE_HEIGHT) -> np.ndarray:
    """Rows of (input, ground truth, ours, |error|) for the given samples, RGB uint8."""
    rows = []
    for sample in samples:
        pred, gt = predictions[sample.name], read_grey(sample.alpha)
        gt8 = gt if gt.dtype == np.uint8 else (gt / 257).round().astype(np.uint8)
        tiles = [read_rgb(sample.image), _grey3(gt8), _grey3(pred), error_map(pred, gt8)]
        labels = [sample.name, "ground truth", "ours", "|ours - truth|"]
        rows.append([_label(_fit_height(t, height), text) for t, text in zip(tiles, labels)])
    return _stack_rows(rows)


def soft_edge_crop(alpha: np.ndarray, side: int = CROP_SIDE) -> tuple[slice, slice]:
    """The side x side window holding the most soft alpha (hair, fur): where a halo would show."""
    h, w = alpha.shape
    side = min(side, h, w)
    soft = ((alpha > 25) & (alpha < 230)).astype(np.float32)
    counts = cv2.boxFilter(soft, -1, (side, side), normalize=False, borderType=cv2.BORDER_CONSTANT)
    half = side // 2
    valid = counts[half:h - side + half + 1, half:w - side + half + 1]
    y, x = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return slice(y, y + side), slice(x, x + side)


def contrasting_colour(rgb: np.ndarray, alpha: np.ndarray) -> tuple[int, int, int]:
    """A flat colour far from the old background, so any of it left on the edge shows: the complement of the
    background's mean colour, stretched to full saturation (white or black when the background is grey)."""
    background = rgb[alpha < 13]
    mean = background.mean(axis=0) if len(background) else np.full(3, 128.0)
    complement = 255.0 - mean
    spread = complement.max() - complement.min()
    if spread < 24:
        return (255, 255, 255) if mean.mean() < 128 else (0, 0, 0)
    return tuple(int(round(c)) for c in (complement - complement.min()) * 255.0 / spread)


def decontamination_grid(samples: list[Sample], results: dict, pipe, settings: EdgeSettings,
                         zoom: int = 2) -> np.ndarray:
    """Rows of (input crop, cutout on a contrasting colour without / with decontamination, their difference x 4)
    on the image's softest CROP_SIDE-px window, zoomed ``zoom`` times."""
    rows = []
    for sample in samples:
        result = results[sample.name]
        rgb = result.image.cpu().numpy()
        plain = pipe.render(result, settings.with_(decontaminate=False)).rgba
        colour = contrasting_colour(rgb, plain[..., 3])
        clean = pipe.render(result, settings.with_(decontaminate=True), background=colour).composite
        dirty = pipe.render(result, settings.with_(decontaminate=False), background=colour).composite
        ys, xs = soft_edge_crop(plain[..., 3])
        change = np.clip(np.abs(clean.astype(np.int16) - dirty.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
        tiles = [rgb[ys, xs], dirty[ys, xs], clean[ys, xs], change[ys, xs]]
        tiles = [cv2.resize(t, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) for t in tiles]
        labels = [f"{sample.name} crop", "cutout, photo colours", "cutout, decontaminated", "|change| x 4"]
        rows.append([_label(t, text) for t, text in zip(tiles, labels)])
    return _stack_rows(rows)


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
