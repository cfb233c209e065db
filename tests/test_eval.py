"""python -m matting.eval on a tiny dataset made here (the real benchmark set is not needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from matting import eval as matting_eval
from matting import metrics
from matting.errors import MattingError
from matting.settings import EdgeSettings

ROOT = Path(__file__).resolve().parents[1]


def make_dataset(root: Path, count: int = 3, size=(72, 96)) -> Path:
    """images/ (a bright soft-edged blob on a textured background), alpha/ (its truth), trimaps/ for some."""
    rng = np.random.default_rng(0)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    for folder in ("images", "alpha", "trimaps"):
        (root / folder).mkdir(parents=True)
    for k in range(count):
        cy, cx = h / 2 + 4 * k, w / 2 - 5 * k
        radius = np.hypot((yy - cy) / 0.8, xx - cx)
        alpha = np.clip((22 - radius) / 1.5 + 0.5, 0, 1)
        # A smooth background (as behind real subjects, out of focus), with a little noise.
        bg = np.stack([40 + 40 * xx / w, 60 + 30 * np.sin(yy / 9.0 + k), 120 - 50 * yy / h], axis=2)
        bg = bg + rng.normal(0, 2, (h, w, 3))
        fg = np.array([230.0, 200 - 30 * k, 60.0])
        image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
        cv2.imwrite(str(root / "images" / f"s{k}.png"), cv2.cvtColor(image.round().astype(np.uint8), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "alpha" / f"s{k}.png"), (alpha * 255).round().astype(np.uint8))
        trimap = np.where(alpha > 0.99, 255, np.where(alpha < 0.01, 0, 128)).astype(np.uint8)
        trimap = cv2.dilate((trimap == 128).astype(np.uint8), np.ones((5, 5), np.uint8)) * 128 + \
            (trimap == 255) * (1 - cv2.dilate((trimap == 128).astype(np.uint8), np.ones((5, 5), np.uint8))) * 255
        cv2.imwrite(str(root / "trimaps" / f"s{k}_trimap1.png"), trimap.astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("evalset"))


@pytest.fixture(scope="module")
def pipe():
    from matting.pipeline import Pipeline

    return Pipeline(device="cpu", cache_bytes=0)


def test_finds_samples_and_complains_clearly(tmp_path, dataset):
    samples = matting_eval.find_samples(dataset)
    assert [s.name for s in samples] == ["s0", "s1", "s2"]
    assert all(s.trimap is not None for s in samples)
    with pytest.raises(MattingError, match="images/ and alpha/"):
        matting_eval.find_samples(tmp_path)
    broken = make_dataset(tmp_path / "broken", count=1)
    (broken / "alpha" / "s0.png").unlink()
    with pytest.raises(MattingError, match="no ground truth for s0.png"):
        matting_eval.find_samples(broken)


def test_cli_scores_times_and_writes_predictions_and_grids(dataset, tmp_path, capsys):
    out, report = tmp_path / "run", tmp_path / "run.json"
    code = matting_eval.main([str(dataset), "--device", "cpu", "--out", str(out), "--json", str(report),
                              "--grid", "s0,s2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Whole image" in printed and "Trimap1" in printed and "mean" in printed and "s1" in printed
    data = json.loads(report.read_text())
    assert data["config"]["settings"]["decontaminate"] is True and data["config"]["variant"] is None
    rows = data["images"]
    assert [r["name"] for r in rows] == ["s0", "s1", "s2"] and all(r["ms"] > 0 for r in rows)
    for row in rows:  # the numbers are those of the written predictions
        pred = cv2.imread(str(out / "pred" / f"{row['name']}.png"), cv2.IMREAD_UNCHANGED)
        gt = cv2.imread(str(dataset / "alpha" / f"{row['name']}.png"), cv2.IMREAD_UNCHANGED)
        assert pred.shape == gt.shape and pred.dtype == np.uint8
        assert row["scores"] == pytest.approx(metrics.evaluate(pred, gt).as_dict())
        assert row["unknown"]["sad"] <= row["scores"]["sad"] + 1e-12
    assert data["mean"]["sad"] == pytest.approx(np.mean([r["scores"]["sad"] for r in rows]))
    grid = cv2.imread(str(out / "grid.png"))
    assert grid.shape[0] > 2 * matting_eval.TILE_HEIGHT and grid.shape[1] > 4 * 100
    assert cv2.imread(str(out / "decontamination.png")) is not None


def test_raw_settings_reach_the_report(dataset, tmp_path):
    report = tmp_path / "raw.json"
    assert matting_eval.main([str(dataset), "--device", "cpu", "--raw", "--limit", "1", "--json", str(report)]) == 0
    settings = json.loads(report.read_text())["config"]["settings"]
    assert settings["refine"] is False and settings["decontaminate"] is False


@pytest.mark.parametrize("variant", sorted(matting_eval.VARIANTS))
def test_experimental_variants_run(dataset, pipe, variant):
    samples = matting_eval.find_samples(dataset)[:1]
    report, _ = matting_eval.evaluate_dataset(samples, pipe, EdgeSettings(), variant=variant)
    row = report.images[0]
    assert row.size == (96, 72) and np.isfinite(list(row.scores.values())).all()
    assert report.config["variant"] == variant
    assert "mean" in matting_eval.format_table(report)


def test_precision_reaches_the_pipeline(dataset, tmp_path, capsys):
    assert matting_eval.main([str(dataset), "--device", "cpu", "--precision", "fp16", "--limit", "1"]) == 2
    assert "fp16 is for CUDA" in capsys.readouterr().err   # refused by the pipeline, one line
    for precision in ("fp32", "bf16"):  # one of them differs from auto's choice, with AMX or without
        report = tmp_path / f"{precision}.json"
        assert matting_eval.main([str(dataset), "--device", "cpu", "--precision", precision, "--limit", "1",
                                  "--json", str(report)]) == 0
        assert json.loads(report.read_text())["config"]["pipeline"]["precision"] == precision


def test_unknown_grid_name_is_an_error(dataset, capsys):
    assert matting_eval.main([str(dataset), "--device", "cpu", "--grid", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_foreground_test_shows_decontamination_helping(dataset, tmp_path, capsys):
    report = tmp_path / "fg.json"
    assert matting_eval.main([str(dataset), "--device", "cpu", "--foreground", "--json", str(report)]) == 0
    rows = json.loads(report.read_text())["images"]
    assert len(rows) == 3
    mean = {k: np.mean([r[k] for r in rows]) for k in rows[0] if k != "name"}
    assert mean["colour_error_decontaminated"] < 0.9 * mean["colour_error_plain"]
    assert "Decontamination" in capsys.readouterr().out


def test_quality_grid_pieces():
    pred = np.zeros((10, 10), np.uint8)
    gt = np.full((10, 10), 255, np.uint8)
    err = matting_eval.error_map(pred, gt)
    assert err.shape == (10, 10, 3) and err.dtype == np.uint8 and err.mean() > 200
    alpha = np.zeros((50, 60), np.uint8)
    alpha[30:40, 40:50] = 128
    ys, xs = matting_eval.soft_edge_crop(alpha, side=20)
    assert alpha[ys, xs].shape == (20, 20) and (alpha[ys, xs] == 128).sum() == 100
    rgb = np.zeros((50, 60, 3), np.uint8)
    rgb[..., 1] = 200                                       # a green background
    colour = matting_eval.contrasting_colour(rgb, np.zeros((50, 60), np.uint8))
    assert colour[1] == 0 and colour[0] == 255 == colour[2]


def test_module_entry_point_help():
    done = subprocess.run([sys.executable, "-m", "matting.eval", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "--decontaminate" in done.stdout and "--variant" in done.stdout
