"""Per-stage speed of the engine against the seed project's naive pipeline, measured in one run.

    python -m matting.bench                 # auto device, photos from ../shared/evaldata/photos when present
    python -m matting.bench --device cpu --repeat 7 --json out.json

For a small (about 1 MP) and a large (8 MP) JPEG it prints medians per stage: decode, preprocess, inference,
postprocess (a render), encode, plus end-to-end times (JPEG bytes to a displayable preview, and a re-render with
new edge settings). The naive pipeline is the seed's: Pillow decode, Pillow LANCZOS to 1024 x 1024, the network
without inference mode in fp32, a per-pixel Python threshold loop, Pillow PNG. Ratios are naive / ours.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..decode import decode_image
from ..encode import encode_jpeg, encode_png
from ..models import create_model
from ..pipeline import Pipeline
from ..process import configure_process
from ..settings import EdgeSettings

PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "evaldata" / "photos"
LARGE_PHOTO = "Issue_177.jpg"  # 3264 x 2448, a real 8 MP camera JPEG


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, repeat: int, device: torch.device) -> float:
    times = []
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def load_test_images(photos: Path) -> dict[str, bytes]:
    """{'1 MP': jpeg bytes, '8 MP': jpeg bytes}: real photos when available, else synthetic ones."""
    large = photos / LARGE_PHOTO
    if large.is_file():
        big = Image.open(large).convert("RGB")
        large_bytes = large.read_bytes()
    else:
        print(f"note: {large} not found; using a synthetic 8 MP image", file=sys.stderr)
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:2448, 0:3264]
        pixels = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
        pixels[800:1600, 1000:2200] = rng.integers(0, 255, (800, 1200, 3), dtype=np.uint8)
        big = Image.fromarray(pixels)
        large_bytes = _jpeg(big)
    small = big.resize((1152, 864) if big.width >= big.height else (864, 1152), Image.Resampling.LANCZOS)
    return {"1 MP": _jpeg(small), "8 MP": large_bytes}


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def bench_ours(pipe: Pipeline, data: bytes, repeat: int) -> dict[str, float]:
    device = pipe.device
    settings = EdgeSettings()
    stages: dict[str, list[float]] = {}
    end_to_end = []
    for _ in range(repeat):
        pipe.cache.clear()  # every repeat runs the network, as a new upload would
        sync(device)
        start = time.perf_counter()
        result = pipe.matte(data)
        preview = pipe.render(result, settings, preview=True)
        end_to_end.append((time.perf_counter() - start) * 1000)
        for stage, ms in {**result.timings, **{f"preview {k}": v for k, v in preview.timings.items()}}.items():
            stages.setdefault(stage, []).append(ms)
    row = {stage: statistics.median(values) for stage, values in stages.items()}
    row["end to end: bytes -> preview"] = statistics.median(end_to_end)
    feathers = iter(np.linspace(0.5, 6, 1000))
    row["re-render, preview"] = median_ms(
        lambda: pipe.render(result, settings.with_(feather=float(next(feathers))), preview=True), repeat, device)
    row["re-render, full resolution"] = median_ms(
        lambda: pipe.render(result, settings.with_(feather=float(next(feathers)))), repeat, device)
    full = pipe.render(result, settings, background=(255, 255, 255))
    row["encode RGBA PNG (full)"] = median_ms(lambda: encode_png(full.rgba), repeat, device)
    row["encode alpha PNG (full)"] = median_ms(lambda: encode_png(full.alpha), repeat, device)
    row["encode composite JPEG (full)"] = median_ms(lambda: encode_jpeg(full.composite), repeat, device)
    row["encode preview PNG"] = median_ms(lambda: encode_png(preview.rgba), repeat, device)
    row["decode only (CPU)"] = median_ms(lambda: decode_image(data), repeat, device)
    return row


def bench_naive(model: torch.nn.Module, device: torch.device, data: bytes, repeat: int) -> dict[str, float]:
    """The seed's pipeline, stage by stage, on the same device and model."""
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    state: dict = {}

    def decode():
        state["image"] = Image.open(io.BytesIO(data)).convert("RGB")

    def preprocess():
        work = state["image"].resize((1024, 1024), Image.Resampling.LANCZOS)
        small = np.asarray(work.resize((320, 320), Image.Resampling.LANCZOS), np.float32) / 255.0
        small = (small / small.max() - mean) / std
        state["x"] = torch.from_numpy(small.transpose(2, 0, 1)[None].copy()).to(device)

    def inference():  # no inference_mode, no no_grad: autograd records the whole graph
        out = torch.sigmoid(model(state["x"]))
        out = (out - out.min()) / (out.max() - out.min())
        state["matte"] = torch.nn.functional.interpolate(out, size=(1024, 1024), mode="bilinear")[0, 0]
        state["matte"] = state["matte"].detach().cpu().numpy()

    def postprocess():  # per-pixel Python loop, as the seed did
        matte = state["matte"]
        alpha = np.zeros(matte.shape, np.uint8)
        for y in range(matte.shape[0]):
            for x in range(matte.shape[1]):
                alpha[y, x] = 255 if matte[y, x] > 0.5 else int(matte[y, x] * 255)
        mask = Image.fromarray(alpha).resize(state["image"].size, Image.Resampling.LANCZOS)
        rgba = state["image"].copy()
        rgba.putalpha(mask)
        state["rgba"] = rgba

    def encode():
        state["rgba"].save(io.BytesIO(), "PNG")

    row = {}
    for name, fn, n in [("decode", decode, repeat), ("preprocess", preprocess, repeat),
                        ("inference", inference, repeat), ("postprocess", postprocess, min(repeat, 2)),
                        ("encode RGBA PNG (full)", encode, min(repeat, 3))]:
        row[name] = median_ms(fn, n, device)
    row["end to end: bytes -> preview"] = sum(row[k] for k in ("decode", "preprocess", "inference", "postprocess"))
    return row


def peak_gpu_memory(pipe: Pipeline, data: bytes) -> float | None:
    if pipe.device.type != "cuda":
        return None
    pipe.cache.clear()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(pipe.device)
    base = torch.cuda.memory_allocated(pipe.device)
    result = pipe.matte(data)
    pipe.render(result, EdgeSettings(feather=3, erode=2), background=(0, 0, 0))
    return (torch.cuda.max_memory_allocated(pipe.device) - base) / 2**20


ROW_ORDER = ["decode", "hash", "preprocess", "inference", "preview postprocess", "preview download",
             "end to end: bytes -> preview", "re-render, preview", "re-render, full resolution",
             "encode RGBA PNG (full)", "encode alpha PNG (full)", "encode composite JPEG (full)",
             "encode preview PNG", "decode only (CPU)", "postprocess"]


def print_table(results: dict, out=sys.stdout) -> None:
    for size, (ours, naive) in results.items():
        print(f"\n{size}", file=out)
        print("| stage | ours ms | naive ms | naive / ours |", file=out)
        print("| --- | ---: | ---: | ---: |", file=out)
        for stage in [s for s in ROW_ORDER if s in ours or s in naive]:
            a, b = ours.get(stage), naive.get(stage)
            ratio = f"{b / a:.1f}x" if a and b else ""
            fa = f"{a:.1f}" if a is not None else ""
            fb = f"{b:.1f}" if b is not None else ""
            print(f"| {stage} | {fa} | {fb} | {ratio} |", file=out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--batch" in argv:  # batch throughput: a benchmark of its own (matting/bench/batch.py)
        from . import batch as bench_batch

        return bench_batch.main(argv)
    if "--png" in argv:  # PNG encoders side by side (matting/bench/png.py)
        from . import png as bench_png

        return bench_png.main(argv)
    parser = argparse.ArgumentParser(prog="python -m matting.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--no-naive", action="store_true", help="skip the seed's pipeline")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    configure_process()

    start = time.perf_counter()
    pipe = Pipeline(device=args.device)
    print(f"pipeline: {pipe.summary()}, loaded in {(time.perf_counter() - start) * 1000:.0f} ms "
          f"(torch {torch.__version__}, {torch.get_num_threads()} CPU threads)")
    images = load_test_images(args.photos)
    # The seed's model: its own fp32 copy, so the pipeline's fp16 weights and CUDA graphs stay untouched.
    naive_model = None if args.no_naive else create_model(pipe.spec.name, pipe.weights, device=pipe.device)
    results = {}
    for size, data in images.items():
        ours = bench_ours(pipe, data, args.repeat)
        naive = {} if args.no_naive else bench_naive(naive_model, pipe.device, data, args.repeat)
        results[size] = (ours, naive)
    peak = peak_gpu_memory(pipe, images["8 MP"])
    print_table(results)
    if peak is not None:
        print(f"\npeak GPU memory for one 8 MP photo (matte + full render + composite): {peak:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"info": pipe.info(), "results": results, "peak_gpu_mib": peak}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
