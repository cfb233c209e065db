"""Scoring a dataset: each image from its file to the final alpha, its measures against the ground truth and
its time, and the tables that print them."""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from .. import foreground, metrics, ops
from ..errors import MattingError
from ..settings import EdgeSettings
from .dataset import Sample, read_grey
from .variants import VARIANTS


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
