"""Matting quality on a dataset with ground truth: SAD, MSE, Grad and Conn per image and as a mean, with timings.

    python -m matting.eval ../shared/evaldata/alphamatting-public            # the default edges
    python -m matting.eval DATASET --raw                                      # the plain network output
    python -m matting.eval DATASET --refine-radius 4 --refine-eps 1e-3 --json old.json
    python -m matting.eval DATASET --out runs/default --grid GT03,GT07      # + predictions and picture grids
    python -m matting.eval DATASET --variant hr-gf                            # an experimental refinement
    python -m matting.eval DATASET --foreground                               # the decontamination test

DATASET holds images/<name>.<png|jpg|...> and alpha/<name>.png (8- or 16-bit grey). An optional
trimaps/<name>_trimap1.png adds a second table: the same measures over that trimap's unknown band.
The measures are those of matting.metrics, on the whole image, alpha in [0, 1].

Timing: each image from its file to the final full-resolution alpha and RGBA cutout (decode, network, edges,
decontamination when on; no encoding), median of --repeat runs; the network's matte cache is off, so every run
pays for the network. --out DIR writes DIR/pred/<name>.png (our alpha), DIR/grid.png (input, ground truth, ours,
error) and DIR/decontamination.png (a soft-edge crop of each grid case on a contrasting colour, without and with
decontamination).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from . import foreground, metrics, ops
from .engine_flags import add_engine_flags, engine_options
from .errors import MattingError
from .settings import EdgeSettings
from .process import configure_process

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
TILE_HEIGHT = 220          # grid rows, px
CROP_SIDE = 160            # decontamination crops, px of the full-resolution image, shown at 2x


# ------------------------------------------------------------------------------------------------ dataset


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


# ------------------------------------------------------------------------ experimental refinements
# Kept so that docs/QUALITY.md can be reproduced: each one was measured against the engine's refinement and lost
# (or won too little for its cost). Each maps (result, full-size photo, settings) to a (1, 1, H, W) alpha and
# replaces the engine's refine step; threshold, erode, feather and the input's own alpha are not applied.

def _fgf(result, photo, settings, matte=None):
    matte = result.matte if matte is None else matte
    return ops.fast_guided_filter(result.guide, matte, photo, settings.refine_radius, settings.refine_eps)


def _hr_gf(result, photo, settings):
    """Guided filter at an intermediate resolution (longer side <= 1024): the matte upsampled, the colour
    filter run there with the radius scaled from network pixels, its coefficients upsampled to full size."""
    h, w = photo.shape[-2:]
    work_hw = ops.fit_size((h, w), 1024)
    guide = ops.resize(photo, work_hw, antialias=True)
    matte = ops.resize(result.matte, work_hw, antialias=False)
    radius = max(1, round(settings.refine_radius * work_hw[0] / result.matte.shape[-2]))
    if work_hw == (h, w):
        return ops.guided_filter(guide, matte, radius, settings.refine_eps).clamp(0, 1)
    return ops.fast_guided_filter(guide, matte, photo, radius, settings.refine_eps)


def _sharpen(result, photo, settings):
    """The network matte's contrast doubled around 0.5 before the guided filter."""
    return _fgf(result, photo, settings, ((result.matte - 0.5) * 2.0 + 0.5).clamp(0, 1))


def _band(result, photo, settings):
    """Guided filter only within the network's uncertain band (0.01 < m < 0.99, grown by 16 px); elsewhere
    the network matte cut at 0.5."""
    matte = ops.resize(result.matte, tuple(photo.shape[-2:]), antialias=False)
    band = ops.erode_dilate(((matte > 0.01) & (matte < 0.99)).float(), 16)
    return torch.where(band > 0, _fgf(result, photo, settings), (matte >= 0.5).float())


def _cascade(result, photo, settings):
    """The engine's guided filter, then a second colour guided filter at full resolution (radius 4)."""
    return ops.guided_filter(photo, _fgf(result, photo, settings), 4, settings.refine_eps).clamp(0, 1)


def _levels(result, photo, settings):
    """The engine's guided filter, then levels: 0.02 -> 0 and 0.98 -> 1 (clears the faint haze)."""
    return ((_fgf(result, photo, settings) - 0.02) / 0.96).clamp(0, 1)


VARIANTS: dict[str, Callable] = {"hr-gf": _hr_gf, "sharpen": _sharpen, "band": _band, "cascade": _cascade,
                                 "levels": _levels}


# ------------------------------------------------------------------------------------------ running


@dataclass
class ImageResult:
    name: str
    size: tuple[int, int]                # (width, height)
    ms: float
    scores: dict[str, float]
    unknown: dict[str, float] | None     # over Trimap1's unknown band
    timings: list[float] = field(default_factory=list)


@dataclass
class Report:
    config: dict
    images: list[ImageResult]

    def mean(self, unknown: bool = False) -> dict[str, float] | None:
        rows = [r.unknown if unknown else r.scores for r in self.images]
        if not rows or any(r is None for r in rows):
            return None
        return {k: float(np.mean([r[k] for r in rows])) for k in metrics.METRIC_NAMES}

    @property
    def ms_median(self) -> float:
        return float(statistics.median(r.ms for r in self.images))

    @property
    def ms_mean(self) -> float:
        return float(np.mean([r.ms for r in self.images]))

    def as_dict(self) -> dict:
        return {"config": self.config, "mean": self.mean(), "mean_trimap1_unknown": self.mean(unknown=True),
                "ms_median": self.ms_median, "ms_mean": self.ms_mean,
                "images": [asdict(r) for r in self.images]}


def predict(pipe, sample: Sample, settings: EdgeSettings, variant: str | None = None):
    """(result, alpha uint8 (H, W), rgba uint8 (H, W, 4)) for one image, from its file."""
    result = pipe.matte(sample.image, name=sample.image.name)
    if variant is None:
        rendered = pipe.render(result, settings)
        return result, rendered.alpha, rendered.rgba
    photo = ops.to_float_image(result.image)
    with torch.inference_mode():
        alpha = VARIANTS[variant](result, photo, settings)
        colour = foreground.decontaminate(photo, alpha) if settings.decontaminate else photo
        alpha_u8 = ops.to_uint8_hwc(alpha)[0]
        rgba = torch.cat([ops.to_uint8_hwc(colour)[0], alpha_u8], dim=-1)
    return result, alpha_u8[..., 0].cpu().numpy(), rgba.cpu().numpy()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate_dataset(samples: list[Sample], pipe, settings: EdgeSettings, *, variant: str | None = None,
                     repeat: int = 1, out: Path | None = None, keep: set[str] = frozenset(),
                     progress: Callable[[ImageResult], None] | None = None):
    """Score every sample; returns (Report, {name: MatteResult} for the names in ``keep``)."""
    rows, kept = [], {}
    for sample in samples:
        gt = read_grey(sample.alpha)
        times = []
        for _ in range(max(1, repeat)):
            _sync(pipe.device)
            start = time.perf_counter()
            result, alpha, _ = predict(pipe, sample, settings, variant)
            _sync(pipe.device)
            times.append((time.perf_counter() - start) * 1000)
        if alpha.shape != gt.shape[:2]:
            raise MattingError(f"{sample.name}: prediction {alpha.shape} and ground truth {gt.shape} differ "
                               "(was the image reduced by --max-side?)")
        mask = metrics.unknown_region(read_grey(sample.trimap)) if sample.trimap else None
        row = ImageResult(sample.name, (alpha.shape[1], alpha.shape[0]), float(statistics.median(times)),
                          metrics.evaluate(alpha, gt).as_dict(),
                          metrics.evaluate(alpha, gt, mask).as_dict() if mask is not None else None, times)
        rows.append(row)
        if out is not None:
            (out / "pred").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / "pred" / f"{sample.name}.png"), alpha)
        if sample.name in keep:
            kept[sample.name] = result
        if progress:
            progress(row)
    return Report(describe(pipe, settings, variant, repeat), rows), kept


def describe(pipe, settings: EdgeSettings, variant: str | None, repeat: int) -> dict:
    return {"pipeline": pipe.info(), "settings": settings.as_dict(), "variant": variant, "repeat": repeat,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine()}


# ------------------------------------------------------------------------------------------- tables


def format_table(report: Report, unknown: bool = False) -> str:
    title = ("Over the unknown region of Trimap1" if unknown else "Whole image") + \
        " (SAD, Grad, Conn: sums / 1000; MSE: mean; alpha in [0, 1])"
    lines = [title, f"{'image':<12} {'size':>11} {'SAD':>9} {'MSE':>8} {'Grad':>9} {'Conn':>9} {'ms':>8}"]
    for r in report.images:
        s = r.unknown if unknown else r.scores
        if s is None:
            continue
        lines.append(f"{r.name:<12} {r.size[0]:>5}x{r.size[1]:<5} {s['sad']:9.2f} {s['mse']:8.4f} "
                     f"{s['grad']:9.2f} {s['conn']:9.2f} {r.ms:8.0f}")
    m = report.mean(unknown)
    if m is not None:
        lines.append(f"{'mean':<12} {'':>11} {m['sad']:9.2f} {m['mse']:8.4f} {m['grad']:9.2f} {m['conn']:9.2f} "
                     f"{report.ms_mean:8.0f}")
        lines.append(f"{'median ms':<12} {'':>11} {'':>9} {'':>8} {'':>9} {'':>9} {report.ms_median:8.0f}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- grids


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


# ------------------------------------------------------------------------------ decontamination test


def _composite(fg: np.ndarray, alpha: np.ndarray, colour) -> np.ndarray:
    a = alpha[..., None]
    return a * fg + (1.0 - a) * np.asarray(colour, dtype=np.float64)


TEST_BACKGROUNDS = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0, 1.0, 0.0))


def known_foreground(rgb: np.ndarray, alpha_u8: np.ndarray) -> np.ndarray:
    """A foreground colour for every pixel: the photo where the truth is opaque, elsewhere the colour of the
    nearest opaque pixel. The photo's own soft pixels hold its old background, so they cannot serve as F."""
    opaque = alpha_u8 == alpha_u8.max()
    if opaque.all() or not opaque.any():
        return rgb
    _, labels = cv2.distanceTransformWithLabels((~opaque).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    sources = np.flatnonzero(opaque.ravel())   # label k is the k-th opaque pixel in scan order
    return rgb.reshape(-1, 3)[sources[labels.ravel() - 1]].reshape(rgb.shape)


def synthetic_composite(samples: list[Sample], photos: list[np.ndarray], k: int):
    """(I uint8 (H, W, 3), F float (H, W, 3), a float (H, W)) of sample k for the decontamination test."""
    gt = read_grey(samples[k].alpha)
    fg = known_foreground(photos[k], gt).astype(np.float64) / 255.0
    a = metrics.as_unit_alpha(gt)
    other = photos[(k + len(samples) // 2) % len(samples)]
    bg = cv2.resize(other, (fg.shape[1], fg.shape[0]), interpolation=cv2.INTER_AREA)[:, ::-1] / 255.0
    mixed = a[..., None] * fg + (1.0 - a[..., None]) * bg
    return np.clip(np.round(mixed * 255), 0, 255).astype(np.uint8), fg, a


def colour_error(estimate: np.ndarray, fg: np.ndarray, alpha: np.ndarray) -> float:
    """Mean over the soft pixels of alpha |F_est - F| in 8-bit levels (channel mean)."""
    soft = (alpha > 0) & (alpha < 1)
    return float((alpha[..., None] * np.abs(estimate - fg))[soft].mean() * 255) if soft.any() else 0.0


def foreground_test(samples: list[Sample], pipe, settings: EdgeSettings, repeat: int = 3) -> list[dict]:
    """Decontamination measured on synthetic composites with a known foreground.

    Each photo's known_foreground() becomes F of a new image I = a F + (1 - a) B with the ground-truth alpha a
    and, as B, another photo of the set (half the set further on, mirrored), rounded to 8 bits. Then:

    * colour error: mean over the soft pixels (0 < a < 1) of a |F_est - F| in 8-bit levels, averaged over the
      channels. It equals the error of a composite onto any new background with the true alpha; F_est = I
      without decontamination.
    * with our alpha: our whole pipeline runs on I; its alpha and F_est (I, or decontaminated) are composited
      onto black, white and green and compared with the true composite (channel mean, averaged over the three
      backgrounds): the mean |difference| over the truth's soft pixels in 8-bit levels (edge composite error),
      and over the whole image as sum / 1000 (composite SAD, where the alpha's own errors dominate).
    """
    photos = [read_rgb(s.image) for s in samples]
    plain = settings.with_(decontaminate=False)
    rows = []
    for k, sample in enumerate(samples):
        image, fg, a = synthetic_composite(samples, photos, k)
        soft = (a > 0) & (a < 1)

        def estimate(img_u8: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, float]:
            img = ops.to_float_image(torch.from_numpy(img_u8).to(pipe.device))
            al = torch.from_numpy(alpha).float()[None, None].to(pipe.device)
            times = []
            for _ in range(repeat):
                _sync(pipe.device)
                start = time.perf_counter()
                out = foreground.decontaminate(img, al)
                _sync(pipe.device)
                times.append((time.perf_counter() - start) * 1000)
            return out[0].permute(1, 2, 0).double().cpu().numpy(), float(statistics.median(times))

        observed = image / 255.0
        est_true, ms = estimate(image, a)
        result = pipe.matte(image, name=sample.name)
        ours = pipe.render(result, plain, want_rgba=False).alpha / 255.0
        est_ours, _ = estimate(image, ours)

        def composite_errors(est: np.ndarray) -> tuple[float, float]:
            diffs = [np.abs(_composite(est, ours, c) - _composite(fg, a, c)).mean(axis=2) for c in TEST_BACKGROUNDS]
            edge = float(np.mean([d[soft].mean() for d in diffs]) * 255) if soft.any() else 0.0
            return edge, float(np.mean([d.sum() for d in diffs]) / 1000)

        (edge_plain, sad_plain), (edge_dec, sad_dec) = composite_errors(observed), composite_errors(est_ours)
        rows.append({"name": sample.name, "colour_error_plain": colour_error(observed, fg, a),
                     "colour_error_decontaminated": colour_error(est_true, fg, a),
                     "edge_composite_error_plain": edge_plain, "edge_composite_error_decontaminated": edge_dec,
                     "composite_sad_plain": sad_plain, "composite_sad_decontaminated": sad_dec,
                     "decontaminate_ms": ms})
    return rows


FOREGROUND_COLUMNS = (("colour err", "colour_error_plain"), ("decont.", "colour_error_decontaminated"),
                      ("edge comp.", "edge_composite_error_plain"), ("decont.", "edge_composite_error_decontaminated"),
                      ("comp. SAD", "composite_sad_plain"), ("decont.", "composite_sad_decontaminated"))


def format_foreground(rows: list[dict]) -> str:
    lines = ["Decontamination on synthetic composites: colour error (true alpha) and edge composite error (our "
             "alpha) in 8-bit levels over the soft pixels; composite SAD (our alpha) as sum / 1000",
             f"{'image':<12}" + "".join(f" {title:>10}" for title, _ in FOREGROUND_COLUMNS) + f" {'ms':>7}"]
    for r in rows:
        lines.append(f"{r['name']:<12}" + "".join(f" {r[key]:10.2f}" for _, key in FOREGROUND_COLUMNS)
                     + f" {r['decontaminate_ms']:7.1f}")
    lines.append(f"{'mean':<12}" + "".join(f" {np.mean([r[key] for r in rows]):10.2f}"
                                           for _, key in FOREGROUND_COLUMNS)
                 + f" {statistics.median(r['decontaminate_ms'] for r in rows):7.1f} (median ms)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m matting.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="folder with images/ and alpha/ (and optionally trimaps/)")
    add_engine_flags(parser)
    edges = EdgeSettings()
    parser.add_argument("--raw", action="store_true", help="every edge option off: the network's matte resized")
    parser.add_argument("--threshold", type=float, default=edges.threshold)
    parser.add_argument("--feather", type=float, default=edges.feather)
    parser.add_argument("--erode", type=int, default=edges.erode)
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=edges.refine)
    parser.add_argument("--refine-radius", type=int, default=edges.refine_radius,
                        help=f"guided filter radius in network pixels (default {edges.refine_radius})")
    parser.add_argument("--refine-eps", type=float, default=edges.refine_eps,
                        help=f"guided filter regularisation (default {edges.refine_eps:g})")
    parser.add_argument("--decontaminate", action=argparse.BooleanOptionalAction, default=edges.decontaminate,
                        help="estimate the foreground colour on soft edges (default on; changes colour, not alpha)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default=None,
                        help="an experimental refinement instead of the engine's (see docs/QUALITY.md)")
    parser.add_argument("--repeat", type=int, default=1, help="time each image this many times (median)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--out", type=Path, default=None, help="write predictions and picture grids here")
    parser.add_argument("--grid", default=None,
                        help="comma-separated image names for the grids (default: the 4 with the most soft alpha)")
    parser.add_argument("--json", type=Path, default=None, help="write every number to this JSON file")
    parser.add_argument("--foreground", action="store_true",
                        help="run the decontamination test on synthetic composites instead")
    return parser


def edge_settings(args: argparse.Namespace) -> EdgeSettings:
    if args.raw:
        return EdgeSettings.raw()
    return EdgeSettings(threshold=args.threshold, feather=args.feather, erode=args.erode, refine=args.refine,
                        refine_radius=args.refine_radius, refine_eps=args.refine_eps,
                        decontaminate=args.decontaminate)


def default_grid_names(samples: list[Sample], count: int = 4) -> list[str]:
    def soft(sample):
        gt = metrics.as_unit_alpha(read_grey(sample.alpha))
        return ((gt > 0) & (gt < 1)).sum()
    return [s.name for s in sorted(samples, key=soft, reverse=True)[:count]]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_process()
    try:
        samples = find_samples(args.dataset)[: args.limit]
        settings = edge_settings(args)
    except MattingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = [n for n in args.grid.split(",") if n] if args.grid else []
    unknown = set(names) - {s.name for s in samples}
    if unknown:
        print(f"error: --grid names not in the dataset: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    try:
        from .pipeline import Pipeline

        # No matte cache: every timed run pays for the network, as a new image would.
        pipe = Pipeline(**engine_options(args), cache_bytes=0)
    except MattingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(samples)} images from {args.dataset}; {pipe.summary()}; settings {settings.as_dict()}"
          + (f"; variant {args.variant}" if args.variant else ""), file=sys.stderr)

    if args.foreground:
        rows = foreground_test(samples, pipe, settings)
        print(format_foreground(rows))
        if args.json:
            args.json.write_text(json.dumps({"config": describe(pipe, settings, None, 3), "images": rows},
                                            indent=1))
        return 0

    if args.out and not names:
        names = default_grid_names(samples)

    def progress(row: ImageResult) -> None:
        s = row.scores
        print(f"  {row.name}: SAD {s['sad']:.2f} Grad {s['grad']:.2f} {row.ms:.0f} ms", file=sys.stderr)

    try:
        report, kept = evaluate_dataset(samples, pipe, settings, variant=args.variant, repeat=args.repeat,
                                        out=args.out, keep=set(names), progress=progress)
    except MattingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(report))
    if report.mean(unknown=True) is not None:
        print()
        print(format_table(report, unknown=True))
    if args.out:
        chosen = [s for s in samples if s.name in names]
        predictions = {s.name: read_grey(args.out / "pred" / f"{s.name}.png") for s in chosen}
        write_png(args.out / "grid.png", quality_grid(chosen, predictions))
        if args.variant is None:
            write_png(args.out / "decontamination.png", decontamination_grid(chosen, kept, pipe, settings))
        print(f"wrote {args.out}/pred/*.png and the grids", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.as_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
