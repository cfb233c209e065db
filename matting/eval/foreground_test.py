"""The decontamination test: photos composited over known colours from a known foreground, and how far each
foreground estimate is from it."""

from __future__ import annotations

import statistics
import time

import cv2
import numpy as np
import torch

from .. import foreground, metrics, ops
from ..settings import EdgeSettings
from .dataset import Sample, read_grey, read_rgb
from .scoring import _sync


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
