"""A bounded load test of the web app, on loopback only (127.0.0.1), from several client processes.

    python scripts/load_test.py --users 8 --duration 120                     # starts python app.py itself
    python scripts/load_test.py --users 64 --processes 8 --device cuda --duration 120 --json load64.json
    python scripts/load_test.py --url http://127.0.0.1:7860 --users 4 --duration 30

What it does:
1. unless ``--url`` is given, starts ``python app.py --port <free port> --device <--device>`` as a subprocess,
   with GRADIO_ANALYTICS_ENABLED=False and GRADIO_TEMP_DIR set to a fresh temp folder (so the folder can be
   measured and is removed afterwards); it waits for the page to answer;
2. runs ``--users`` simulated visitors spread over ``--processes`` client processes, one thread and one
   session per visitor. A visitor talks as the page does (``--client page``, scripts/page_client.py: kept
   connections) or through gradio_client (``--client gradio``: a new HTTP client per call, about 100 ms more
   per event, and one process tops out near 18 requests/s, docs/RELIABILITY.md).
   Each visitor loops until the deadline, doing what the page does: uploads a photo from assets/examples (or
   ``--photos``) through the UI's /upload event (every ``--matte-every``-th time through /matte instead), then lets
   go of a slider ``--releases`` times (the live view's exact_render, a POST outside the queue: the page draws
   the drag itself, so only the release reaches the server) and every ``--download-every``-th photo downloads
   the full-resolution cutout. A short think time separates actions. With ``--ramp S`` the visitors arrive evenly
   over S seconds (as Locust's spawn rate does) instead of all in the first one, and the report adds each kind's
   p50 / p95 over the requests that started after the ramp (``--warm-up`` sets another cut): 64 first uploads at
   the same instant wait behind each other, and in a 30 s run that burst alone decides the upload's p95. Every
   upload is a fresh variant of the example (a few pixels changed) so the engine's cache does not hide the
   network; ``--no-vary`` sends the files as they are;
3. samples, every ``--sample-every`` seconds, the server process's RSS and CPU (psutil), the GPU's utilisation
   and memory (nvidia-smi, when there is one), and the sizes of Gradio's temp folder and the app's own output
   folder;
4. prints a markdown report (throughput, p50/p95 latency per request kind, rejected requests because the queue
   was full, timeouts, other errors, the samples, whether RSS trends upward after warm-up) and writes the same
   as JSON with ``--json``.

Bounded: every loop checks the deadline, every request has a client-side timeout (``--timeout``), processes and
threads are joined with a limit. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import psutil  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
LOOPBACK = "127.0.0.1"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
KINDS = ("upload", "release", "download", "matte")
SPAWN_S = 8.0   # the client processes start their visitors together, this long after being launched

# The UI's /upload inputs after the image: threshold, feather, erode, refine, refine_radius, use_input_alpha,
# decontaminate, bg_mode, bg_color (the same order as demo/ui.py's `edges` and `background`).
DEFAULT_UI = dict(threshold=0.0, feather=0.0, erode=0, refine=True, refine_radius=None, use_input_alpha=True,
                  decontaminate=True, bg_mode="transparent", bg_color="#ffffff")


def cpu_model() -> str:
    """The CPU's name: lent machines of one kind differ (64 users gave 53 to 86 requests/s on four H200 hosts)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU unknown"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def check_loopback(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme != "http" or parsed.hostname != LOOPBACK:
        raise SystemExit(f"error: --url must be http://{LOOPBACK}:PORT (loopback only), not {url!r}")
    return url.rstrip("/") + "/"


def wait_for_page(url: str, deadline: float, process: subprocess.Popen | None) -> None:
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"error: the app exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"error: {url} did not answer in time")


def folder_bytes(folder: Path, only_prefix: str | None = None, skip_prefix: str | None = None) -> int:
    """Total size of the files under ``folder``; top-level entries filtered by name prefix."""
    total = 0
    if not folder.is_dir():
        return 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if only_prefix and not entry.name.startswith(only_prefix):
            continue
        if skip_prefix and entry.name.startswith(skip_prefix):
            continue
        try:
            if entry.is_file():
                total += entry.stat().st_size
            elif entry.is_dir():
                for base, _, files in os.walk(entry):
                    for name in files:
                        try:
                            total += os.stat(os.path.join(base, name)).st_size
                        except OSError:
                            pass   # removed while walking
        except OSError:
            pass
    return total


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def is_queue_full(exc: BaseException) -> bool:
    """gradio_client raises QueueError("Queue is full! Please try again.") when the server refuses the event."""
    from gradio_client.utils import QueueError

    text = str(exc).lower()
    return "queue is full" in text or (isinstance(exc, QueueError) and "full" in text)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        # when each of those requests started, in seconds from the start of the load (the same order)
        self.started: dict[str, list[float]] = defaultdict(list)
        # ms by kind and part: "handler" (the server's own time, where the reply says it) and where it went, each
        # as [started, ms]
        self.parts: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
        self.rejected: dict[str, int] = defaultdict(int)
        self.timeouts: dict[str, int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.error_samples: list[str] = []

    def ok(self, kind: str, seconds: float, parts: dict | None = None, started: float = 0.0) -> None:
        with self.lock:
            self.latency[kind].append(seconds)
            self.started[kind].append(started)
            for name, ms in (parts or {}).items():
                self.parts[kind][name].append([started, ms])

    def latencies(self, kind: str, after: float = 0.0) -> list[float]:
        """The kind's latencies (s) of the requests that started ``after`` seconds into the load or later."""
        return [s for s, t in zip(self.latency.get(kind, []), self.started.get(kind, [])) if t >= after]

    def part(self, kind: str, name: str, after: float = 0.0) -> list[float]:
        return [ms for t, ms in self.parts.get(kind, {}).get(name, []) if t >= after]

    def as_dict(self) -> dict:
        return dict(latency=dict(self.latency), started=dict(self.started),
                    parts={kind: dict(named) for kind, named in self.parts.items()},
                    rejected=dict(self.rejected),
                    timeouts=dict(self.timeouts), errors=dict(self.errors), error_samples=self.error_samples)

    def merge(self, other: dict) -> None:
        for kind, values in other["latency"].items():
            self.latency[kind].extend(values)
            self.started[kind].extend(other["started"][kind])
        for kind, named in other.get("parts", {}).items():
            for name, values in named.items():
                self.parts[kind][name].extend(values)
        for name in ("rejected", "timeouts", "errors"):
            for kind, count in other[name].items():
                getattr(self, name)[kind] += count
        self.error_samples.extend(other["error_samples"][:max(0, 10 - len(self.error_samples))])

    def failed(self, kind: str, exc: BaseException) -> None:
        with self.lock:
            if is_queue_full(exc):
                self.rejected[kind] += 1
            elif isinstance(exc, TimeoutError) or type(exc).__name__.endswith("Timeout"):   # httpx's too
                self.timeouts[kind] += 1
            else:
                self.errors[kind] += 1
                if len(self.error_samples) < 10:
                    self.error_samples.append(f"{kind}: {type(exc).__name__}: {str(exc)[:200]}")


def memory_kinds(pid: int) -> dict[str, int | None]:
    """The server's resident memory by kind (Linux /proc/PID/status, bytes): ordinary heap pages (anon), mapped
    files, shared memory, and locked or pinned pages (where CUDA's page-locked host buffers may show, depending on
    how the driver pins them), so a rising RSS says which kind rises."""
    fields = {"RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem", "VmLck": "locked", "VmPin": "pinned"}
    found = dict.fromkeys(fields.values())
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in fields:
                    found[fields[name]] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return found


def gpu_sample() -> tuple[float | None, float | None]:
    """(utilisation %, memory used MiB) of the first GPU from nvidia-smi, or (None, None) without one."""
    if shutil.which("nvidia-smi") is None:
        return None, None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5).stdout.splitlines()[0]
        util, mem = (float(v) for v in out.split(","))
        return util, mem
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None, None


class Pinger(threading.Thread):
    """The server's event loop, seen from outside: a small async route (the queue's status) asked every
    ``every`` seconds until stopped. Slow answers there mean every request waits for the loop, whatever it asks."""

    def __init__(self, url: str, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.url, self.every = f"{url}gradio_api/queue/status", every
        self.stop = threading.Event()
        self.latency: list[float] = []
        self.failures = 0

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    response.read()
                self.latency.append(time.perf_counter() - start)
            except (urllib.error.URLError, OSError):
                self.failures += 1
            self.stop.wait(self.every)


class Sampler(threading.Thread):
    """RSS of the server process and folder sizes, every ``every`` seconds until stopped."""

    def __init__(self, pid: int | None, temp_dir: Path | None, every: float) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid) if pid else None
        self.temp_dir = temp_dir
        self.every = every
        self.stop = threading.Event()
        self.samples: list[dict] = []
        self.start_time = time.monotonic()

    def sample(self) -> None:
        rss = cpu = None
        kinds = memory_kinds(self.process.pid) if self.process is not None else {}
        if self.process is not None:
            try:
                rss = self.process.memory_info().rss
                cpu = self.process.cpu_percent(None)   # since the last sample; 100 = one core busy
            except psutil.Error:
                pass
        app_out = gradio_rest = None
        if self.temp_dir is not None:
            app_out = folder_bytes(self.temp_dir, only_prefix="matting-app-")
            gradio_rest = folder_bytes(self.temp_dir, skip_prefix="matting-app-")
        gpu_util, gpu_mem = gpu_sample()
        self.samples.append(dict(t=round(time.monotonic() - self.start_time, 1), rss=rss, **kinds, cpu_pct=cpu,
                                 gpu_util=gpu_util, gpu_mem_mib=gpu_mem, gradio_temp=gradio_rest,
                                 app_outputs=app_out))

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every)


def make_upload(examples: list[Path], images: dict[Path, Image.Image], folder: Path, user: int, n: int,
                vary: bool, rng: random.Random) -> Path:
    source = examples[(user + n) % len(examples)]
    if not vary:
        return source
    image = images[source].copy()
    pixels = image.load()
    for _ in range(8):   # a few changed pixels: a new file, new content hash, so the network runs
        x, y = rng.randrange(image.width), rng.randrange(image.height)
        pixels[x, y] = tuple(rng.randrange(256) for _ in range(len(image.getbands())))
    if source.suffix.lower() == ".png":
        path = folder / f"u{user:02d}_{n:04d}.png"
        image.save(path, compress_level=1)
    else:   # camera photos go as JPEGs, as they come from a camera
        path = folder / f"u{user:02d}_{n:04d}.jpg"
        image.save(path, quality=90)
    return path


RELEASES = (("feather", (2.0, 4.0, 8.0, 12.0)), ("threshold", (0.0, 0.2, 0.5)), ("erode", (-2, 0, 2)),
            ("refine_radius", (4, 8, 12)))


class GradioClientVisitor:
    """A visitor through gradio_client (``--client gradio``): a new HTTP client per upload, join and stream."""

    def __init__(self, url: str, args, downloads: Path):
        from gradio_client import Client

        self.client = Client(url, analytics_enabled=False, verbose=False, download_files=str(downloads),
                             httpx_kwargs={"timeout": args.timeout})
        self.session_hash = self.client.session_hash
        self.live_id = next(c["id"] for c in self.client.config["components"]
                            if c.get("props", {}).get("elem_id") == "live-view")

    def _run(self, api_name: str, inputs, timeout: float):
        job = self.client.submit(*inputs, api_name=api_name)
        try:
            return job.result(timeout=timeout)
        except Exception:
            job.cancel()
            raise

    def upload(self, path: Path, ui: dict, timeout: float):
        from gradio_client import handle_file

        return self._run("/upload", (handle_file(str(path)), *ui.values()), timeout)

    def matte(self, path: Path, timeout: float):
        from gradio_client import handle_file

        return self._run("/matte", (handle_file(str(path)), 0.0, 0.0, 0, True, True), timeout)

    def download(self, ui: dict, timeout: float):
        return self._run("/download_rgba", (None, *ui.values(), False, "0"), timeout)

    def close(self) -> None:
        pass


class PageVisitor:
    """A visitor the way the page talks (``--client page``, scripts/page_client.py): one keep-alive connection
    pool, upload + queue join + event stream per event; files fetched from their links."""

    def __init__(self, url: str, args, downloads: Path):
        from page_client import PageSession

        self.session = PageSession(url, timeout=args.timeout)
        self.session_hash = self.session.session_hash
        self.live_id = self.session.component_id("live-view")

    def upload(self, path: Path, ui: dict, timeout: float):
        """The live view's payload, with "client_parts": the ms of the file's POST, the join, the wait in Gradio's
        queue (until the stream says the event started) and the event's run as the stream saw it."""
        start = time.perf_counter()
        file = self.session.upload(path, timeout)
        posted, marks = time.perf_counter(), {}
        value = self.session.call("/upload", file, *ui.values(), timeout=timeout, marks=marks)[0]
        if isinstance(value, dict) and {"joined", "process_starts", "process_completed"} <= set(marks):
            value["client_parts"] = {"file_post": (posted - start) * 1000,
                                     "join": (marks["joined"] - posted) * 1000,
                                     "queue_wait": (marks["process_starts"] - marks["joined"]) * 1000,
                                     "event_run": (marks["process_completed"] - marks["process_starts"]) * 1000}
        return value

    def matte(self, path: Path, timeout: float):
        files = self.session.call("/matte", self.session.upload(path, timeout), 0.0, 0.0, 0, True, True, None,
                                  timeout=timeout)
        return [self.session.fetch(f, timeout) for f in files if isinstance(f, dict) and "path" in f]

    def download(self, ui: dict, timeout: float):
        update = self.session.call("/download_rgba", None, *ui.values(), False, "0", timeout=timeout)[0]
        return self.session.fetch(update.get("value") or update, timeout)

    def close(self) -> None:
        self.session.close()


def user_loop(user: int, url: str, args, deadline: float, stats: Stats, work_dir: Path,
              examples: list[Path], images: dict[Path, Image.Image]) -> None:
    import httpx

    load_start = deadline - args.duration
    # --ramp: visitors arrive one after another over that many seconds, not all in the first one
    time.sleep(max(0.0, min(load_start + user * args.ramp / args.users, deadline) - time.monotonic()))
    rng = random.Random(user)
    folder = work_dir / f"user{user:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    downloads = folder / "downloads"
    try:
        visitor = (PageVisitor if args.client == "page" else GradioClientVisitor)(url, args, downloads)
    except Exception as exc:   # noqa: BLE001 - counted and reported
        stats.failed("connect", exc)
        return
    live_id = visitor.live_id
    http = httpx.Client(timeout=args.timeout)

    def timed(kind: str, run) -> object | None:
        remaining = deadline + args.grace - time.monotonic()
        if remaining <= 0:
            return None
        start = time.perf_counter()
        started = time.monotonic() - load_start
        try:
            value = run(min(args.timeout, remaining))
        except Exception as exc:   # noqa: BLE001 - every failure is counted by kind
            stats.failed(kind, exc)
            return None
        # Uploads and slider releases say how long their handler took: the rest of the wait is the way there and
        # back (HTTP, Gradio's queue, the event loop) and this client.
        reply = value if isinstance(value, dict) else {}
        parts = {**reply.get("server_parts", {}), **reply.get("client_parts", {})}
        if "server_ms" in reply:
            parts["handler"] = reply["server_ms"]
        stats.ok(kind, time.perf_counter() - start, parts, started)
        return value

    def release(image_id: str, ui: dict):
        def run(timeout: float):
            body = {"data": {"image_id": image_id, **ui}, "component_id": live_id, "fn_name": "exact_render",
                    "session_hash": visitor.session_hash}
            reply = http.post(f"{url}gradio_api/component_server/", json=body, timeout=timeout)
            reply.raise_for_status()
            answer = reply.json()
            if "exact" not in answer:
                raise RuntimeError(f"exact_render answered {str(answer)[:120]}")
            return answer
        return run

    def think() -> None:
        pause = rng.uniform(*args.think)
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    n = 0
    try:
        while time.monotonic() < deadline:
            path = make_upload(examples, images, folder, user, n, args.vary, rng)
            ui = dict(args.ui_defaults)
            use_matte = args.matte_every > 0 and n % args.matte_every == args.matte_every - 1
            download = args.download_every > 0 and n % args.download_every == args.download_every - 1
            n += 1
            if use_matte:
                timed("matte", lambda timeout: visitor.matte(path, timeout))
            else:
                value = timed("upload", lambda timeout: visitor.upload(path, ui, timeout))
                for i in range(args.releases):
                    if not isinstance(value, dict) or time.monotonic() >= deadline:
                        break
                    think()
                    name, choices = RELEASES[i % len(RELEASES)]
                    ui[name] = rng.choice(choices)
                    timed("release", release(value["id"], ui))
                if isinstance(value, dict) and download and time.monotonic() < deadline:
                    think()
                    timed("download", lambda timeout: visitor.download(dict(ui), timeout))
            if path.parent == folder:
                path.unlink(missing_ok=True)
            shutil.rmtree(downloads, ignore_errors=True)   # the client's copies of the files
            think()
    finally:
        http.close()
        visitor.close()


def client_process(index: int, users: list[int], url: str, args, start_at: float, out_path: str) -> None:
    """One client process: its visitors as threads, from the wall-clock time ``start_at`` (every process starts
    together, after their imports) for ``args.duration`` s; writes its stats as JSON to ``out_path``."""
    if args.client_nice:
        os.nice(args.client_nice)   # the server has the machine first, as it would with remote visitors
    examples, images = load_examples(args.photos)
    work_dir = Path(tempfile.mkdtemp(prefix=f"matting-load-{index}-"))
    stats = Stats()
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + args.duration
    cpu_start = time.process_time()   # this client's own CPU: a busy client inflates every latency it measures
    threads = [threading.Thread(target=user_loop, daemon=True,
                                args=(u, url, args, deadline, stats, work_dir, examples, images)) for u in users]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(1.0, deadline + args.grace + args.timeout - time.monotonic()))
        result = stats.as_dict()
        result["stragglers"] = sum(t.is_alive() for t in threads)
        result["cpu_s"] = time.process_time() - cpu_start
        Path(out_path).write_text(json.dumps(result), encoding="utf-8")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def load_examples(folder: Path | None) -> tuple[list[Path], dict[Path, Image.Image]]:
    folder = folder or EXAMPLES
    examples = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not examples:
        raise SystemExit(f"error: no .png or .jpg photos in {folder}")
    images = {}
    for path in examples:
        with Image.open(path) as image:
            images[path] = image.convert("RGB")
    return examples, images


def trend(values: list[float]) -> dict:
    """Mean of the middle third vs the last third of the series (the first third is warm-up)."""
    if len(values) < 3:
        return dict(middle_mean=None, last_mean=None, change_pct=None, upward=None)
    third = len(values) // 3
    middle = values[third:2 * third]
    last = values[2 * third:]
    mid_mean, last_mean = statistics.fmean(middle), statistics.fmean(last)
    change = 100.0 * (last_mean - mid_mean) / mid_mean if mid_mean else 0.0
    return dict(middle_mean=mid_mean, last_mean=last_mean, change_pct=round(change, 1), upward=change > 5.0)


def read_memory_log(path: Path) -> dict:
    """The app's own account of its memory (matting.memory.MemoryLog, every 10 s, when this script started it):
    the lines, and the middle-third / last-third trend of each figure."""
    try:
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        lines = []
    fields = [name for name in ("rss", "heap_in_use", "heap_free", "heap_mapped", "pinned_held")
              if lines and all(isinstance(line.get(name), int) for line in lines)]
    return {"lines": lines, "trends": {name: trend([line[name] for line in lines]) for name in fields}}


def ms_or_none(seconds: float | None) -> int | None:
    return None if seconds is None else round(1000 * seconds)


def mib(value) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def dash(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def steady_kinds(stats: Stats, after: float) -> dict:
    """p50 / p95 of each kind over the requests that started ``after`` seconds into the load or later."""
    kinds = {}
    for kind in KINDS:
        lat = stats.latencies(kind, after)
        if lat:
            handler = [ms / 1000 for ms in stats.part(kind, "handler", after)]
            kinds[kind] = dict(ok=len(lat), p50_ms=ms_or_none(percentile(lat, 50)),
                               p95_ms=ms_or_none(percentile(lat, 95)),
                               server_p50_ms=ms_or_none(percentile(handler, 50)),
                               server_p95_ms=ms_or_none(percentile(handler, 95)))
    return kinds


def parts_summary(stats: Stats, after: float = 0.0) -> dict:
    """{kind: {part: [p50, p95] ms}} over the requests that started ``after`` seconds into the load or later."""
    summary = {}
    for kind, named in stats.parts.items():
        values = {name: stats.part(kind, name, after) for name in named}
        summary[kind] = {name: [round(percentile(v, 50), 1), round(percentile(v, 95), 1)]
                         for name, v in values.items() if v}
    return summary


def build_report(args, stats: Stats, samples: list[dict], elapsed: float, machine: str) -> dict:
    kinds = {}
    total_ok = 0
    for kind in (*KINDS, "connect"):
        lat = stats.latency.get(kind, [])
        count = len(lat) + stats.rejected.get(kind, 0) + stats.timeouts.get(kind, 0) + stats.errors.get(kind, 0)
        if not count:
            continue
        total_ok += len(lat)
        handler = [ms / 1000 for ms in stats.part(kind, "handler")]
        kinds[kind] = dict(requests=count, ok=len(lat),
                           p50_ms=ms_or_none(percentile(lat, 50)), p95_ms=ms_or_none(percentile(lat, 95)),
                           server_p50_ms=ms_or_none(percentile(handler, 50)),
                           server_p95_ms=ms_or_none(percentile(handler, 95)),
                           rejected_queue_full=stats.rejected.get(kind, 0), timeouts=stats.timeouts.get(kind, 0),
                           errors=stats.errors.get(kind, 0))
    rss = [s["rss"] for s in samples if s["rss"] is not None]
    return dict(users=args.users, processes=args.processes, device=args.device if not args.url else "as started",
                duration_s=args.duration,
                elapsed_s=round(elapsed, 1), machine=machine,
                vary=args.vary, releases_per_upload=args.releases, throughput_rps=round(total_ok / elapsed, 2),
                ok_requests=total_ok, kinds=kinds, error_samples=stats.error_samples, samples=samples,
                rss_trend=trend(rss), ramp_s=args.ramp, warm_up_s=args.warm_up,
                steady=steady_kinds(stats, args.warm_up) if args.warm_up > 0 else None,
                steady_parts_ms=parts_summary(stats, args.warm_up) if args.warm_up > 0 else None)


def print_report(report: dict) -> None:
    print(f"\n## Load test: {report['users']} users in {report['processes']} client processes, "
          f"{report['elapsed_s']} s, app on {report['device']} ({report['machine']})\n")
    print(f"Throughput: **{report['throughput_rps']} requests/s** ({report['ok_requests']} completed)\n")
    print("| kind | requests | ok | p50 ms | p95 ms | handler p50 ms | handler p95 ms | rejected (queue full) "
          "| timeouts | other errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, row in report["kinds"].items():
        print(f"| {kind} | {row['requests']} | {row['ok']} | {dash(row['p50_ms'])} | {dash(row['p95_ms'])}"
              f" | {dash(row.get('server_p50_ms'))} | {dash(row.get('server_p95_ms'))} | {row['rejected_queue_full']}"
              f" | {row['timeouts']} | {row['errors']} |")
    ping = report.get("ping")
    if ping and ping["count"]:
        print(f"\nThe event loop (a small async route every 0.25 s): p50 {ping['p50_ms']} / p95 {ping['p95_ms']} ms, "
              f"{ping['failures']} failures. Client processes' CPU: {report['client_cpu_pct']} % (100 = one core).")
    for kind, named in report.get("handler_parts_ms", {}).items():
        parts = ", ".join(f"{name} {p50:.0f} / {p95:.0f}" for name, (p50, p95) in named.items())
        print(f"The {kind}'s parts, p50 / p95 ms: {parts}.")
    if report.get("steady"):
        print(f"\nAfter the first {report['warm_up_s']:g} s (visitors arrived over {report['ramp_s']:g} s):\n")
        print("| kind | ok | p50 ms | p95 ms | handler p50 ms | handler p95 ms |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for kind, row in report["steady"].items():
            print(f"| {kind} | {row['ok']} | {dash(row['p50_ms'])} | {dash(row['p95_ms'])}"
                  f" | {dash(row['server_p50_ms'])} | {dash(row['server_p95_ms'])} |")
        for kind, named in report["steady_parts_ms"].items():
            parts = ", ".join(f"{name} {p50:.0f} / {p95:.0f}" for name, (p50, p95) in named.items())
            print(f"The {kind}'s parts after it, p50 / p95 ms: {parts}.")
    if report["error_samples"]:
        print("\nError samples:")
        for line in report["error_samples"]:
            print(f"- {line}")
    print("\n| t (s) | server RSS MiB | of it heap (anon) | locked / pinned | server CPU % | GPU % | GPU MiB "
          "| Gradio temp MiB (uploads) | app outputs MiB |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in report["samples"]:
        print(f"| {s['t']} | {mib(s['rss'])} | {mib(s.get('anon'))} | {mib(s.get('locked'))} / {mib(s.get('pinned'))}"
              f" | {dash(s['cpu_pct'])}"
              f" | {dash(s['gpu_util'])} | {dash(s['gpu_mem_mib'])}"
              f" | {mib(s['gradio_temp'])} | {mib(s['app_outputs'])} |")
    busy = [s for s in report["samples"][1:-1] if s["cpu_pct"] is not None]
    if busy:
        cpu = statistics.median(s["cpu_pct"] for s in busy)
        gpu = [s["gpu_util"] for s in busy if s["gpu_util"] is not None]
        print(f"\nUnder load (median of the samples): server CPU {cpu:.0f} % (100 = one core)"
              + (f", GPU {statistics.median(gpu):.0f} %" if gpu else ""))
    memory = report.get("memory_log") or {}
    if memory.get("lines"):
        fields = list(memory["trends"])
        first = memory["lines"][0]["time"]
        print("\nWhat the server's memory is made of (its own log, matting/memory.py; MiB):\n")
        print("| t (s) | " + " | ".join(fields) + " |")
        print("| ---: |" + " ---: |" * len(fields))
        for line in memory["lines"]:
            print(f"| {line['time'] - first:.0f} | " + " | ".join(mib(line[name]) for name in fields) + " |")
        print("\nLast third against the middle third: " + ", ".join(
            f"{name} {t['change_pct']:+.1f} %" for name, t in memory["trends"].items() if t["change_pct"] is not None))
    t = report["rss_trend"]
    if t["upward"] is None:
        print("\nRSS trend: too few samples.")
    else:
        verdict = "trends UPWARD" if t["upward"] else "does not trend upward"
        print(f"\nRSS after warm-up {verdict}: middle third mean {mib(t['middle_mean'])} MiB, last third mean "
              f"{mib(t['last_mean'])} MiB ({t['change_pct']:+.1f} %; upward means > +5 %).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bounded load test of the matting web app (loopback only).")
    parser.add_argument("--users", type=int, default=8, help="concurrent simulated visitors (default 8)")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load (default 120)")
    parser.add_argument("--url", default=None, help=f"an app already running at http://{LOOPBACK}:PORT")
    parser.add_argument("--temp-dir", type=Path, default=None,
                        help="with --url: the server's GRADIO_TEMP_DIR, to measure it (default: "
                             "$GRADIO_TEMP_DIR or <tmp>/gradio)")
    parser.add_argument("--pid", type=int, default=None, help="with --url: the server's process id (for RSS)")
    parser.add_argument("--processes", type=int, default=None,
                        help="client processes the visitors are spread over (default: one per 8 visitors)")
    parser.add_argument("--device", default="cpu", help="the started app's --device (default cpu)")
    parser.add_argument("--client-nice", type=int, default=10,
                        help="niceness of the client processes, which share this machine with the server "
                             "(default 10: the server's work comes first, as with visitors on other machines; "
                             "0 to compete as equals)")
    parser.add_argument("--client", choices=("page", "gradio"), default="page",
                        help="how visitors talk to the app: 'page' as the browser does (kept connections, "
                             "scripts/page_client.py; default), 'gradio' through gradio_client (a new HTTP "
                             "client per call: about 100 ms more per event, and fewer requests per process)")
    parser.add_argument("--photos", type=Path, default=None,
                        help="folder of .jpg/.png photos to upload (default assets/examples)")
    parser.add_argument("--releases", type=int, default=4,
                        help="slider releases (exact renders) after each upload (default 4)")
    parser.add_argument("--download-every", type=int, default=3,
                        help="every Nth photo's full-resolution cutout is downloaded (default 3; 0: never)")
    parser.add_argument("--matte-every", type=int, default=4,
                        help="every Nth photo goes through /matte instead of /upload (default 4; 0: never)")
    parser.add_argument("--ramp", type=float, default=0.0,
                        help="seconds over which the visitors arrive, evenly spaced (default 0: all at once, a "
                             "burst of first uploads whose waits dominate a short run's p95)")
    parser.add_argument("--warm-up", type=float, default=None,
                        help="also report each kind's p50 / p95 over the requests that started this many seconds "
                             "into the load or later (default: the ramp's length)")
    parser.add_argument("--think", type=float, nargs=2, default=(0.2, 0.8), metavar=("MIN", "MAX"),
                        help="seconds between a visitor's actions (default 0.2 0.8)")
    parser.add_argument("--no-vary", dest="vary", action="store_false",
                        help="upload the example files unchanged (the engine's cache then skips the network)")
    parser.add_argument("--timeout", type=float, default=60.0, help="client-side timeout per request (s)")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="seconds after the deadline that requests in flight may still finish")
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS/folder sampling period (s)")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--json", type=Path, default=None, help="write the report here as JSON")
    parser.add_argument("--queue-size", type=int, default=None,
                        help="the started app's --queue-size (a small one shows the queue-full path)")
    args = parser.parse_args(argv)
    if args.users < 1 or args.users > 256 or args.duration <= 0 or args.duration > 3600:
        parser.error("--users must be 1..256 and --duration 0..3600 s")
    args.processes = max(1, min(args.users, args.processes or -(-args.users // 8), 32))
    if not 0 <= args.ramp < args.duration:
        parser.error("--ramp must be at least 0 and shorter than --duration")
    args.warm_up = args.ramp if args.warm_up is None else args.warm_up
    if not 0 <= args.warm_up < args.duration:
        parser.error("--warm-up must be at least 0 and shorter than --duration")

    from matting.settings import EdgeSettings

    DEFAULT_UI["refine_radius"] = EdgeSettings().refine_radius
    DEFAULT_UI["decontaminate"] = EdgeSettings().decontaminate
    args.ui_defaults = dict(DEFAULT_UI)   # the client processes are spawned: they get it through args

    work_dir = Path(tempfile.mkdtemp(prefix="matting-load-"))
    process = None
    owned_temp = None
    pid = args.pid
    try:
        if args.url:
            url = check_loopback(args.url)
            temp_dir = args.temp_dir or Path(os.environ.get("GRADIO_TEMP_DIR")
                                             or Path(tempfile.gettempdir()) / "gradio")
            wait_for_page(url, time.monotonic() + args.startup_timeout, None)
        else:
            port = free_port()
            owned_temp = Path(tempfile.mkdtemp(prefix="matting-load-gradio-"))
            temp_dir = owned_temp
            env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(owned_temp),
                       HF_HUB_DISABLE_TELEMETRY="1", MATTING_MEMORY_LOG=str(work_dir / "memory.jsonl"))
            log = open(work_dir / "server.log", "wb")
            command = [sys.executable, str(ROOT / "app.py"), "--host", LOOPBACK, "--port", str(port),
                       "--device", args.device]
            if args.queue_size:
                command += ["--queue-size", str(args.queue_size)]
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            pid = process.pid
            url = f"http://{LOOPBACK}:{port}/"
            wait_for_page(url, time.monotonic() + args.startup_timeout, process)
        print(f"App at {url}; {args.users} users for {args.duration:.0f} s ...", file=sys.stderr, flush=True)

        stats = Stats()
        start_at = time.time() + SPAWN_S
        context = multiprocessing.get_context("spawn")
        groups = [list(range(args.users))[i::args.processes] for i in range(args.processes)]
        outputs = [work_dir / f"client{i}.json" for i in range(args.processes)]
        clients = [context.Process(target=client_process, args=(i, group, url, args, start_at, str(out)))
                   for i, (group, out) in enumerate(zip(groups, outputs))]
        for process_ in clients:
            process_.start()
        time.sleep(max(0.0, start_at - time.time()))
        sampler = Sampler(pid, temp_dir, args.sample_every)
        sampler.start()
        pinger = Pinger(url)
        pinger.start()
        client_cpu = 0.0
        start = time.monotonic()
        limit = start + args.duration + args.grace + args.timeout + 10
        for process_ in clients:
            process_.join(timeout=max(1.0, limit - time.monotonic()))
        stragglers = 0
        for process_, out in zip(clients, outputs):
            if process_.is_alive():
                process_.terminate()
                process_.join(timeout=10)
            if out.exists():
                result = json.loads(out.read_text(encoding="utf-8"))
                stats.merge(result)
                stragglers += result["stragglers"]
                client_cpu += result.get("cpu_s", 0.0)
            else:
                stats.errors["client process"] += 1
        elapsed = min(time.monotonic() - start, args.duration + args.grace)
        sampler.stop.set()
        pinger.stop.set()
        sampler.join(timeout=10)
        pinger.join(timeout=15)
        sampler.sample()   # one final sample after the load
        machine = (f"{platform.system()} {platform.machine()}, {cpu_model()}, "
                   f"{psutil.cpu_count(logical=True)} CPU threads, "
                   f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}")
        report = build_report(args, stats, sampler.samples, elapsed, machine)
        report["stragglers"] = stragglers
        report["client_cpu_pct"] = round(100 * client_cpu / elapsed)
        report["handler_parts_ms"] = parts_summary(stats)
        report["memory_log"] = read_memory_log(work_dir / "memory.jsonl")
        report["ping"] = dict(count=len(pinger.latency), failures=pinger.failures,
                              p50_ms=ms_or_none(percentile(pinger.latency, 50)),
                              p95_ms=ms_or_none(percentile(pinger.latency, 95)))
        print_report(report)
        if stragglers:
            print(f"\n{stragglers} visitor thread(s) were still waiting past the limit.")
        if args.json:
            args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
        return 0
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(work_dir, ignore_errors=True)
        if owned_temp is not None:
            shutil.rmtree(owned_temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
