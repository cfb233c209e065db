"""matting/batch.py's stages and threads, with a fake pipeline: what each stage gets, which thread runs it, what a
failure or a cancel in one stage does to the others, the bound on images in flight, the run's clocks.

The fake stands in for Pipeline only (prepare, infer, render_many, render): decoding, naming, resume, the encoder
and the sinks are the real ones, on tiny PNGs. No network runs, so every test takes a fraction of a second.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import matting.batch as batch
from matting import batch_runtime as rt
from matting.batch import BatchSummary, _check_options, _Job, _Run, failure_reason, run_batch
from matting.batch_encode import ThreadEncoder
from matting.batch_timeline import Timeline
from matting.crop import CropMargin
from matting.errors import CorruptImageError, InvalidParameterError
from matting.notices import Notice
from matting.settings import EdgeSettings

# A stage that loses an image leaves run_batch waiting for it: end such a test instead of hanging (each takes
# well under a second when the engine is right)
pytestmark = pytest.mark.timeout(20, method="thread")

CPU = torch.device("cpu")
W, H = 24, 16
WAIT = 10  # seconds: the bound on every wait for a thread in these tests


def png(seed: int = 0, size=(W, H)) -> bytes:
    """Noise with a red block in the middle: the fake's matte is the block (the subject)."""
    pixels = np.random.default_rng(seed).integers(0, 150, (size[1], size[0], 3), dtype=np.uint8)
    pixels[size[1] // 4: 3 * size[1] // 4, size[0] // 4: 3 * size[0] // 4] = (250, 40, 40)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def inputs(folder: Path, count: int, size=(W, H)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"p{i:02d}.png" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(png(i, size))
    return paths


class FakePipe:
    """Pipeline's batch methods, recorded with the thread that called them; ``fail`` names the images each step
    fails on, ``delay`` slows a step (seconds per call), ``hook`` runs inside a step (step -> fn(names))."""

    max_pixels = 10_000_000

    def __init__(self, device=CPU, fail=None, delay=None, hook=None):
        self.device = device
        self.fail, self.delay, self.hook = fail or {}, delay or {}, hook or {}
        self.calls: list[tuple[str, list[str], str]] = []
        self.kwargs: list[dict] = []
        self.took: list[tuple[str, list[str], float]] = []   # each step's own wall time (a loaded machine's too)
        self.lock = threading.Lock()

    def _step(self, step: str, names: list[str]) -> None:
        with self.lock:
            self.calls.append((step, names, threading.current_thread().name))
        started = time.perf_counter()
        if step in self.hook:
            self.hook[step](names)
        time.sleep(self.delay.get(step, 0))
        with self.lock:
            self.took.append((step, names, time.perf_counter() - started))
        bad = [name for name in names if name in self.fail.get(step, ())]
        if bad:
            raise RuntimeError(f"{step} failed on {bad[0]}")

    def names(self, step: str) -> list[list[str]]:
        with self.lock:
            return [names for s, names, _ in self.calls if s == step]

    def threads(self, step: str) -> set[str]:
        with self.lock:
            return {thread for s, _, thread in self.calls if s == step}

    def prepare(self, image, name, use_cache=True):
        self.kwargs.append({"use_cache": use_cache})
        self._step("prepare", [name])
        return SimpleNamespace(name=name, rgb=image.rgb, notices=[Notice("cmyk")])

    def infer(self, results):
        self._step("infer", [r.name for r in results])

    def render_many(self, results, settings, background=None, want_rgba=True, png_kinds=()):
        self._step("render_many", [r.name for r in results])
        return [self._rendered(r, settings, background, want_rgba) for r in results]

    def render(self, result, settings, background=None, want_rgba=True):
        self._step("render", [result.name])
        return self._rendered(result, settings, background, want_rgba)

    def _rendered(self, result, settings, background, want_rgba):
        from matting.result import Rendered

        with self.lock:
            self.kwargs.append({"settings": settings, "background": background, "want_rgba": want_rgba})
        rgb = result.rgb
        alpha = np.where(rgb[..., 0] > 200, 255, 0).astype(np.uint8)
        rgba = np.dstack([rgb, alpha]) if want_rgba else None
        composite = None if background is None else np.where(alpha[..., None] > 0, rgb, np.uint8(background))
        return Rendered(alpha=alpha, rgba=rgba, composite=composite, size=(rgb.shape[1], rgb.shape[0]),
                        is_preview=False)


@pytest.fixture
def fake_gpu(monkeypatch):
    """The GPU layout on the CPU: a device of type cuda, its stream calls recorded with their threads."""
    device = SimpleNamespace(type="cuda")
    streams = []

    class OwnStream:
        def __init__(self, dev):
            streams.append(("own_stream", dev, threading.current_thread().name))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(rt, "own_stream", OwnStream)
    monkeypatch.setattr(rt, "enter_own_stream",
                        lambda dev: streams.append(("enter_own_stream", dev, threading.current_thread().name)))
    monkeypatch.setattr(rt, "sync_own_stream",
                        lambda dev: streams.append(("sync_own_stream", dev, threading.current_thread().name)))
    monkeypatch.setenv("MATTING_ENCODE_PROCESSES", "0")  # the encoder's helpers are test_batch_encode.py's
    return SimpleNamespace(device=device, streams=streams)


def run_in_thread(fn, *args, **kwargs):
    """run_batch in a thread of its own, so a test can watch it and never hangs: (thread, box with its outcome)."""
    box = {}

    def target():
        try:
            box["summary"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


ENGINE_THREADS = ("matting-feed", "matting-infer", "matting-decode", "matting-render", "matting-post")


def engine_threads() -> list[str]:
    """The batch engine's threads alive now (other parts of the program, e.g. the app's upload cap, have their
    own "matting-" threads running in the same test process)."""
    return [t.name for t in threading.enumerate() if t.name.startswith(ENGINE_THREADS)]


# ---------------------------------------------------------------- summary arithmetic
def test_utilisation_is_busy_time_per_thread_over_the_wall_time_and_the_highest_limits():
    summary = BatchSummary(results=[], done=0, skipped=0, failed=0, seconds=2.0, images_per_second=0.0,
                           stage_busy={"decode": 1.0, "infer": 3.0, "render": 0.5}, cancelled=False,
                           stage_threads={"decode": 4, "infer": 2})
    assert summary.utilisation() == pytest.approx({"decode": 0.125, "infer": 0.75, "render": 0.25})
    assert summary.limiting_stage() == "infer"
    summary.stage_threads = {"decode": 1, "infer": 8}  # infer spread over 8 threads: decode now limits
    assert summary.limiting_stage() == "decode"
    instant = BatchSummary([], 0, 0, 0, 0.0, 0.0, {"read": 2e-9}, False)
    assert instant.utilisation() == pytest.approx({"read": 2.0})  # no division by a zero wall time
    assert BatchSummary([], 0, 0, 0, 1.0, 0.0, {}, False).limiting_stage() is None


def test_stages_that_share_threads_are_added_up_to_find_the_busiest_threads():
    """On a GPU one inference thread uploads and runs the network: 45 % busy on each stage is a thread 90 % busy,
    busier than the encoders at 70 % (what session 23's first H200 call showed, and the stage table hid)."""
    summary = BatchSummary(results=[], done=0, skipped=0, failed=0, seconds=1.0, images_per_second=0.0,
                           stage_busy={"decode": 1.6, "upload": 0.45, "infer": 0.45, "encode": 2.8, "write": 0.0},
                           cancelled=False, stage_threads={"decode": 4, "upload": 1, "infer": 1, "encode": 4,
                                                          "write": 4},
                           stage_groups=[("read", "decode"), ("upload", "infer"), ("render",), ("encode", "write")])
    assert summary.limiting_stage() == "encode"
    assert summary.thread_utilisation() == pytest.approx({"read + decode": 0.4, "upload + infer": 0.9,
                                                          "encode + write": 0.7})
    assert summary.busiest_threads() == "upload + infer"
    summary.stage_groups = []   # an executor that says nothing of its threads: each stage alone
    assert summary.busiest_threads() == "encode"


# ---------------------------------------------------------------- options
@pytest.mark.parametrize("kinds, fmt, background, expected", [
    ("alpha", "jpg", None, (("alpha",), "jpg", None)),
    (("cutout", "alpha", "cutout"), "JPEG", None, (("cutout", "alpha"), "jpg", None)),
    (["composite"], ".png", None, (("composite",), "png", (255, 255, 255))),
    (("composite", "alpha"), ".JPEG", "#00ff00", (("composite", "alpha"), "jpg", (0, 255, 0))),
    (("cutout",), "png", "10, 20, 30", (("cutout",), "png", (10, 20, 30))),
])
def test_options_are_checked_and_spelled_one_way(kinds, fmt, background, expected):
    assert _check_options(kinds, fmt, background) == expected


def test_an_image_background_is_kept_as_it_is():
    picture = np.zeros((4, 4, 3), np.uint8)
    assert _check_options(("composite",), "jpg", picture)[2] is picture


@pytest.mark.parametrize("options, message", [
    ({"kinds": ("sticker", "alpha")}, "output kinds must be some of cutout, alpha, composite; got sticker, alpha"),
    ({"kinds": ()}, "output kinds must be some of cutout, alpha, composite; got none"),
    ({"composite_format": "gif"}, "composite format must be jpg or png, got 'gif'"),
    ({"batch_size": 0}, "batch size must be at least 1, got 0"),
    ({"workers": 0}, "workers must be at least 1, got 0"),
    ({"workers": -3}, "workers must be at least 1, got -3"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, options, message):
    src = inputs(tmp_path / "in", 1)
    pipe = FakePipe()
    with pytest.raises(InvalidParameterError) as error:
        run_batch(src, tmp_path / "out", pipeline=pipe, **options)
    assert str(error.value) == message
    assert not (tmp_path / "out").exists() and pipe.calls == []


def test_batch_size_and_workers_of_one_are_accepted(tmp_path):
    summary = run_batch(inputs(tmp_path / "in", 2), tmp_path / "out", pipeline=FakePipe(), batch_size=1, workers=1)
    assert summary.done == 2 and summary.stage_threads["decode"] == 1


def test_without_a_pipeline_the_shared_one_is_used(tmp_path, monkeypatch):
    import matting.pipeline

    pipe = FakePipe()
    monkeypatch.setattr(matting.pipeline, "get_pipeline", lambda: pipe)
    summary = run_batch(inputs(tmp_path / "in", 1), tmp_path / "out", kinds="alpha")
    assert summary.done == 1 and pipe.names("prepare") == [["p00.png"]]


# ---------------------------------------------------------------- what run_batch hands on and reports
class RecordingExecutor:
    """What run_batch gives its executor, and a run that reports every job done."""

    def __init__(self):
        self.args = self.kwargs = None

    def __call__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.jobs = args[2]
        return self

    def results(self):
        for job in reversed(self.jobs):  # finished in the reverse order
            yield job.outcome("done", size=(1, 1))

    def busy(self):
        return {"infer": 1.5}

    def threads(self):
        return {"infer": 3}

    cancelled = True


def test_the_executor_gets_the_plan_and_the_defaults_of_the_device(tmp_path):
    src = inputs(tmp_path / "in", 3)
    executor, pipe, seen = RecordingExecutor(), FakePipe(), []
    crop = CropMargin(5)
    summary = run_batch(src, tmp_path / "out", pipeline=pipe, kinds=("cutout", "composite"), crop=crop,
                        executor=executor, on_result=lambda r, n, t: seen.append((r.name, n, t)))
    (got_pipe, sink, jobs, settings, kinds, background, batch_size, workers, cancel, got_crop,
     (manifest, recipe)) = executor.args
    assert got_pipe is pipe and sink.folder == tmp_path / "out"
    assert [(j.item.name, j.order) for j in jobs] == [("p00.png", 0), ("p01.png", 1), ("p02.png", 2)]
    assert settings == EdgeSettings() and kinds == ("cutout", "composite") and background == (255, 255, 255)
    assert (batch_size, workers) == (rt.default_batch_size(CPU), None)  # workers: the executor's own choice
    assert isinstance(cancel, threading.Event) and not cancel.is_set() and got_crop is crop
    assert manifest.path == sink.manifest_path and len(recipe) == 16
    assert executor.kwargs == {"timeline": None}
    assert seen == [("p02.png", 1, 3), ("p01.png", 2, 3), ("p00.png", 3, 3)]  # as they came
    assert [r.name for r in summary.results] == ["p00.png", "p01.png", "p02.png"]  # input order
    assert (summary.done, summary.total, summary.cancelled) == (3, 3, True)
    assert summary.stage_busy == {"infer": 1.5} and summary.stage_threads == {"infer": 3}
    assert summary.images_per_second == pytest.approx(3 / summary.seconds)


def test_a_local_run_without_workers_takes_the_devices_default(tmp_path, monkeypatch):
    monkeypatch.setattr(rt, "cpu_cores", lambda: 3)
    summary = run_batch(inputs(tmp_path / "in", 1), tmp_path / "out", pipeline=FakePipe())
    assert summary.stage_threads["decode"] == summary.stage_threads["encode"] == rt.default_workers(CPU) == 3


def test_a_gpu_run_without_workers_takes_the_gpus_defaults(tmp_path, fake_gpu, monkeypatch):
    monkeypatch.setattr(rt, "cpu_cores", lambda: 64)  # a CPU run would take 32 workers and 64 inference threads
    summary = run_batch(inputs(tmp_path / "in", 1), tmp_path / "out", pipeline=FakePipe(fake_gpu.device))
    assert summary.stage_threads["decode"] == rt.default_workers(fake_gpu.device) == 16
    assert summary.stage_threads["infer"] == 1


def test_the_callers_choices_reach_the_executor(tmp_path):
    executor, cancel, settings, timeline = RecordingExecutor(), threading.Event(), EdgeSettings(feather=2), Timeline()
    run_batch(inputs(tmp_path / "in", 1), tmp_path / "out", pipeline=FakePipe(), settings=settings, batch_size=3,
              workers=5, cancel=cancel, executor=executor, timeline=timeline)
    assert executor.kwargs == {"timeline": timeline}
    assert executor.args[3] is settings and executor.args[5] is None  # no composite: no background
    assert executor.args[6:9] == (3, 5, cancel)


def test_with_nothing_to_run_no_executor_starts_and_early_results_come_first(tmp_path):
    src = inputs(tmp_path / "in", 2)
    run_batch(src, tmp_path / "out", pipeline=FakePipe())
    executor, seen = RecordingExecutor(), []
    missing = tmp_path / "gone.png"
    summary = run_batch([*src, missing], tmp_path / "out", pipeline=FakePipe(), executor=executor,
                        on_result=lambda r, n, t: seen.append((r.name, r.status, n, t)))
    assert executor.args is None
    assert seen == [("p00.png", "skipped", 1, 3), ("p01.png", "skipped", 2, 3), (str(missing), "failed", 3, 3)]
    assert (summary.skipped, summary.failed, summary.cancelled, summary.total) == (2, 1, False, 3)
    assert summary.stage_busy == {} and summary.stage_threads == {}
    assert summary.results[0].outputs == [tmp_path / "out" / "p00.png"]
    assert summary.results[2].error_code == "input_error"


def test_early_results_are_reported_before_the_images_that_run(tmp_path):
    src = inputs(tmp_path / "in", 3)
    run_batch(src[1:2], tmp_path / "out", pipeline=FakePipe())
    seen = []
    summary = run_batch([*src, tmp_path / "gone.png"], tmp_path / "out", pipeline=FakePipe(),
                        on_result=lambda r, n, t: seen.append((r.name, r.status, n, t)))
    assert seen[:2] == [("p01.png", "skipped", 1, 4), (str(tmp_path / "gone.png"), "failed", 2, 4)]
    assert sorted(seen[2:]) == [("p00.png", "done", 3, 4), ("p02.png", "done", 4, 4)] or sorted(
        seen[2:]) == [("p00.png", "done", 4, 4), ("p02.png", "done", 3, 4)]
    assert [r.name for r in summary.results] == ["p00.png", "p01.png", "p02.png", str(tmp_path / "gone.png")]
    assert [r.order for r in summary.results] == [0, 1, 2, 3]


def test_the_output_folder_inside_an_input_folder_is_not_an_input(tmp_path):
    src = tmp_path / "in"
    inputs(src, 1)
    first = run_batch([src], src / "out", pipeline=FakePipe(), recursive=True)
    again = run_batch([src], src / "out", pipeline=FakePipe(), recursive=True)
    assert (first.total, again.total, again.skipped) == (1, 1, 1)


# ---------------------------------------------------------------- planning: redone and removed
def test_outputs_made_another_way_are_redone_and_those_not_asked_for_removed(tmp_path):
    src, out = inputs(tmp_path / "in", 1), tmp_path / "out"
    run_batch(src, out, pipeline=FakePipe(), kinds=("cutout", "alpha"))
    assert (out / "p00_alpha.png").exists()
    summary = run_batch(src, out, pipeline=FakePipe(), kinds=("cutout",), settings=EdgeSettings(feather=3))
    result = summary.results[0]
    assert result.status == "done"
    assert [n.code for n in result.notices] == ["redone", "removed", "cmyk"]  # planning's, then the pipeline's
    assert str(result.notices[1]) == "removed p00_alpha.png: made with other settings, and not asked for now"
    assert not (out / "p00_alpha.png").exists() and (out / "p00.png").exists()
    again = run_batch(src, out, pipeline=FakePipe(), kinds=("cutout",), settings=EdgeSettings(feather=3))
    assert again.skipped == 1 and again.results[0].notices == []
    other = run_batch(src, out, pipeline=FakePipe(), kinds=("cutout",), settings=EdgeSettings(feather=4))
    assert [n.code for n in other.results[0].notices] == ["redone", "cmyk"]  # the removal was recorded: once only
    overwritten = run_batch(src, out, pipeline=FakePipe(), kinds=("cutout", "alpha"), overwrite=True)
    assert overwritten.results[0].notices == [Notice("cmyk")]  # overwrite asked for: nothing to say


# ---------------------------------------------------------------- threads and stages
def test_on_the_cpu_each_image_renders_alone_in_its_inference_thread(tmp_path, monkeypatch):
    decoded_in = set()
    real_decode = batch.decode_image
    monkeypatch.setattr(batch, "decode_image", lambda data, **kw: (
        decoded_in.add(threading.current_thread().name), real_decode(data, **kw))[1])
    monkeypatch.setattr(rt, "CPU_INFER_THREADS", 1)
    torch_threads = []
    pipe = FakePipe(hook={"infer": lambda names: torch_threads.append(torch.get_num_threads())})
    summary = run_batch(inputs(tmp_path / "in", 4), tmp_path / "out", pipeline=pipe, kinds=("cutout", "alpha"),
                        batch_size=2, workers=2)
    assert summary.done == 4
    assert {name.split("_")[0] for name in decoded_in} == {"matting-decode"}
    assert pipe.threads("prepare") == pipe.threads("infer") == pipe.threads("render_many") == {"matting-infer-0"}
    assert all(len(names) == 1 for names in pipe.names("render_many"))
    assert sorted(n for names in pipe.names("infer") for n in names) == [f"p0{i}.png" for i in range(4)]
    assert all(kw["use_cache"] is False for kw in pipe.kwargs if "use_cache" in kw)
    assert set(torch_threads) == {rt.CPU_TORCH_THREADS}
    assert summary.stage_threads == {"read": 2, "decode": 2, "upload": 1, "infer": 1, "render": 1, "encode": 2,
                                     "write": 2}
    assert summary.stage_groups == [("read", "decode"), ("upload", "infer", "render"), ("encode", "write")]
    assert engine_threads() == []


def test_on_a_gpu_batches_render_together_in_the_render_threads(tmp_path, fake_gpu, monkeypatch):
    warmed, switch, torch_threads = [], [], []
    monkeypatch.setattr(rt, "warm_graphs", lambda pipe, size, settings: warmed.append((pipe, size, settings)))
    pipe = FakePipe(fake_gpu.device, delay={"render_many": 0.05}, hook={"infer": lambda names: (
        switch.append(sys.getswitchinterval()), torch_threads.append(torch.get_num_threads()))})
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        summary = run_batch(inputs(tmp_path / "in", 12), tmp_path / "out", pipeline=pipe, batch_size=4, workers=3)
    finally:
        torch.set_num_threads(before)
    assert set(torch_threads) == {3}  # the CPU's one torch thread per engine thread is not for a GPU run
    assert summary.done == 12 and warmed == [(pipe, 4, EdgeSettings())]   # the run's edges: refinement graphs
    assert pipe.threads("infer") == {"matting-infer-0"}
    assert {name.split("_")[0] for name in pipe.threads("render_many")} == {"matting-render"}
    assert pipe.names("render") == [] and max(map(len, pipe.names("render_many"))) > 1
    assert max(map(len, pipe.names("infer"))) <= 4
    assert switch and all(s == pytest.approx(rt.gpu_switch_interval()) for s in switch)
    streams = fake_gpu.streams
    assert [s for s in streams if s[0] == "own_stream"] == [("own_stream", fake_gpu.device, "matting-infer-0")]
    entered = [s for s in streams if s[0] == "enter_own_stream"]
    assert entered and all(s[1] is fake_gpu.device and s[2].startswith("matting-render") for s in entered)
    # renders slower than the network: tasks wait for the two render threads, never a third
    assert len(pipe.threads("render_many")) == len(entered) == rt.GPU_RENDER_THREADS
    syncs = [s for s in streams if s[0] == "sync_own_stream"]
    assert len(syncs) == len(pipe.names("infer")) and {s[2] for s in syncs} == {"matting-infer-0"}
    assert summary.stage_threads == {"read": 3, "decode": 3, "upload": 1, "infer": 1, "render": 2, "encode": 3,
                                     "write": 3}
    assert summary.stage_groups == [("read", "decode"), ("upload", "infer"), ("render",), ("encode", "write")]


def test_the_render_gets_the_background_only_for_a_composite_and_the_rgba_only_for_a_cutout(tmp_path):
    pipe = FakePipe()
    run_batch(inputs(tmp_path / "in", 1), tmp_path / "a", pipeline=pipe, kinds=("alpha",), background="#ff0000")
    run_batch(inputs(tmp_path / "in", 1), tmp_path / "b", pipeline=pipe, kinds=("cutout", "composite"),
              background="#ff0000", settings=EdgeSettings(erode=1))
    renders = [kw for kw in pipe.kwargs if "want_rgba" in kw]
    assert renders == [{"settings": EdgeSettings(), "background": None, "want_rgba": False},
                       {"settings": EdgeSettings(erode=1), "background": (255, 0, 0), "want_rgba": True}]
    composite = np.asarray(Image.open(tmp_path / "b" / "p00_composite.jpg"))
    assert composite[0, 0].tolist() == pytest.approx([255, 0, 0], abs=8)  # the corner lies outside the subject


def test_the_decoder_gets_the_pipelines_pixel_limit(tmp_path):
    pipe = FakePipe()
    pipe.max_pixels = W * H - 1
    summary = run_batch(inputs(tmp_path / "in", 1), tmp_path / "out", pipeline=pipe)
    assert summary.results[0].error_code == "image_too_large" and pipe.calls == []


# ---------------------------------------------------------------- the bound on images in flight
@pytest.mark.parametrize("batch_size, workers, bound", [(1, 1, 5), (2, 2, 10), (3, 1, 11)])
def test_images_in_flight_reach_the_bound_and_never_pass_it(tmp_path, monkeypatch, batch_size, workers, bound):
    """An image takes its slot when the feeder starts it and gives it back when the caller has it: with the
    caller slow, the pipeline fills to batch_size x (inference threads + 2) + 2 x workers and stops there."""
    monkeypatch.setattr(rt, "CPU_INFER_THREADS", 1)
    pipe = FakePipe()
    in_flight, running = [], set()

    def on_result(result, finished, total):
        if finished == 1:
            time.sleep(0.3)  # the stages fill up meanwhile
            running.update(name.split("_")[0] for name in engine_threads())
        in_flight.append(len(pipe.names("prepare")) - finished)  # this one's slot is already given back

    summary = run_batch(inputs(tmp_path / "in", bound + 6), tmp_path / "out", pipeline=pipe, batch_size=batch_size,
                        workers=workers, on_result=on_result)
    assert summary.done == bound + 6
    assert max(in_flight) == bound
    assert running == {"matting-feed", "matting-infer-0", "matting-decode", "matting-post"}


# ---------------------------------------------------------------- batching
def make_run(pipe, batch_size=3, **kwargs) -> _Run:
    return _Run(pipe, None, [], EdgeSettings(), ("cutout",), None, batch_size, 1, threading.Event(), **kwargs)


def test_the_inference_thread_takes_what_is_ready_up_to_the_batch_size_and_never_waits():
    run = make_run(FakePipe(), batch_size=3)
    jobs = [_Job(SimpleNamespace(name=f"p{i}"), {}, i) for i in range(5)]
    for job in jobs:
        run.to_infer.put(job)
    assert run._next_batch() == (jobs[:3], False)
    assert run._next_batch() == (jobs[3:], False)  # two ready: taken at once
    run.to_infer.put(jobs[0])
    run.to_infer.put(batch._STOP)
    run.to_infer.put(jobs[1])
    assert run._next_batch() == ([jobs[0]], True)  # the stop ends the batch and the thread
    assert run._next_batch() == ([jobs[1]], False)
    run.to_infer.put(batch._STOP)
    assert run._next_batch() == ([], True)


def test_a_render_task_stacks_the_waiting_batches_up_to_sixteen_images():
    pipe = FakePipe()
    run = make_run(pipe)
    posted = []
    run.post_pool = SimpleNamespace(submit=lambda fn, job: posted.append(job.item.name))
    for b in range(5):
        run.to_render.put([_Job(SimpleNamespace(name=f"b{b}i{i}"), {}, payload=SimpleNamespace(
            name=f"b{b}i{i}", rgb=np.zeros((2, 2, 3), np.uint8), notices=[])) for i in range(4)])
    run._render_waiting()
    assert pipe.names("render_many") == [[f"b{b}i{i}" for b in range(4) for i in range(4)]]
    run._render_waiting()
    run._render_waiting()  # nothing left: no render
    assert pipe.names("render_many")[1:] == [[f"b4i{i}" for i in range(4)]]
    assert len(posted) == 20 and batch.RENDER_JOBS == 16


# ---------------------------------------------------------------- failures stay with their image
def first_image_alone(monkeypatch) -> list[str]:
    """The first image decodes at once and the others slowly, so the first batch is that image alone. Returns the
    names of the images waiting for the network so far (decoded and queued), for hold_until_queued."""
    real_decode, count = batch.decode_image, []
    real_job, queued = batch._Run._decode, []

    def decode(data, **kw):
        count.append(1)
        time.sleep(0.03 if len(count) > 1 else 0)
        return real_decode(data, **kw)

    def decode_job(self, job):
        real_job(self, job)   # ends by queueing the job for the network
        queued.append(job.item.name)

    monkeypatch.setattr(batch, "decode_image", decode)
    monkeypatch.setattr(batch._Run, "_decode", decode_job)
    return queued


def hold_until_queued(queued: list[str], count: int) -> None:
    """In a network step: wait until ``count`` images have been queued for the network, so that the next batch
    takes them all at once whatever the machine's load (a fixed sleep is not enough on a loaded one)."""
    deadline = time.monotonic() + WAIT
    while len(queued) < count:
        assert time.monotonic() < deadline, f"only {queued} queued"
        time.sleep(0.005)


def test_a_failed_stacked_render_is_redone_one_by_one_and_fails_only_the_bad_image(tmp_path, fake_gpu, monkeypatch):
    queued = first_image_alone(monkeypatch)
    pipe = FakePipe(fake_gpu.device, fail={"render_many": {"p02.png"}, "render": {"p02.png"}},
                    hook={"infer": lambda names: hold_until_queued(queued, 4) if names == ["p00.png"] else None})
    summary = run_batch(inputs(tmp_path / "in", 4), tmp_path / "out", pipeline=pipe, batch_size=3, workers=1,
                        kinds=("alpha", "composite"), background="#0000ff", settings=EdgeSettings(erode=2))
    assert pipe.names("render_many") == [["p00.png"], ["p01.png", "p02.png", "p03.png"]]
    assert pipe.names("render") == [["p01.png"], ["p02.png"], ["p03.png"]]
    assert [r.status for r in summary.results] == ["done", "done", "failed", "done"]
    assert summary.results[2].error == "unexpected error: RuntimeError: render failed on p02.png"
    assert summary.results[2].error_code == "unexpected" and summary.results[2].outputs == []
    assert (tmp_path / "out" / "p03_composite.jpg").exists() and not (tmp_path / "out" / "p02_alpha.png").exists()
    # one by one with what the stacked render was given
    assert [kw for kw in pipe.kwargs if "want_rgba" in kw] == [
        {"settings": EdgeSettings(erode=2), "background": (0, 0, 255), "want_rgba": False}] * 3


@pytest.mark.parametrize("step", ["prepare", "infer", "render_many"])
def test_a_failure_in_one_step_fails_only_that_image(tmp_path, step, monkeypatch):
    monkeypatch.setattr(rt, "CPU_INFER_THREADS", 1)
    pipe = FakePipe(fail={step: {"p01.png"}, "render": {"p01.png"}})
    summary = run_batch(inputs(tmp_path / "in", 3), tmp_path / "out", pipeline=pipe)
    assert [r.status for r in summary.results] == ["done", "failed", "done"]
    failed_step = "render" if step == "render_many" else step  # the stacked render's failure is the one-by-one's
    assert summary.results[1].error == f"unexpected error: RuntimeError: {failed_step} failed on p01.png"
    assert summary.results[1].error_code == "unexpected"
    assert (summary.done, summary.failed) == (2, 1)


def test_a_failed_upload_leaves_the_rest_of_its_batch_to_the_network(tmp_path, fake_gpu):
    pipe = FakePipe(fake_gpu.device, fail={"prepare": {"p01.png"}}, delay={"prepare": 0.02})
    summary = run_batch(inputs(tmp_path / "in", 3), tmp_path / "out", pipeline=pipe, batch_size=3)
    assert [r.status for r in summary.results] == ["done", "failed", "done"]
    assert "p01.png" not in [n for names in pipe.names("infer") for n in names]


def test_a_failed_inference_fails_its_whole_batch_and_only_it(tmp_path, fake_gpu, monkeypatch):
    queued = first_image_alone(monkeypatch)
    # p00 goes alone and holds the network until p01..p03 are all waiting: they go in as one batch
    pipe = FakePipe(fake_gpu.device, fail={"infer": {"p01.png"}},
                    hook={"infer": lambda names: hold_until_queued(queued, 4) if names == ["p00.png"] else None})
    summary = run_batch(inputs(tmp_path / "in", 4), tmp_path / "out", pipeline=pipe, batch_size=4, workers=1)
    assert pipe.names("infer") == [["p00.png"], ["p01.png", "p02.png", "p03.png"]]
    assert [r.status for r in summary.results] == ["done", "failed", "failed", "failed"]
    assert {r.error for r in summary.results[1:]} == {"unexpected error: RuntimeError: infer failed on p01.png"}
    assert pipe.names("render_many") == [["p00.png"]]


# ---------------------------------------------------------------- the caller's thread stops the run
def test_an_on_result_that_raises_stops_the_run_and_nothing_is_written_after(tmp_path, monkeypatch):
    closed = []
    monkeypatch.setattr(batch, "make_encoder", lambda device, workers: Recorder(closed))
    pipe = FakePipe(delay={"render_many": 0.01})

    def on_result(result, finished, total):
        raise KeyError("stop")

    monkeypatch.setattr(rt, "CPU_INFER_THREADS", 1)
    with pytest.raises(KeyError):  # at most 5 images in flight: most of the 20 never start
        run_batch(inputs(tmp_path / "in", 20), tmp_path / "out", pipeline=pipe, on_result=on_result, batch_size=1,
                  workers=1)
    written, calls = sorted((tmp_path / "out").iterdir()), len(pipe.calls)
    assert engine_threads() == [] and closed == [True]
    time.sleep(0.2)
    assert sorted((tmp_path / "out").iterdir()) == written and len(pipe.calls) == calls
    assert len(pipe.names("prepare")) < 20


class Recorder(ThreadEncoder):
    """The real thread encoder, its calls recorded."""

    def __init__(self, closed=None):
        self.calls, self.closed = [], closed if closed is not None else []

    def __call__(self, formats, alpha, rgba, composite, paths=None):
        self.calls.append({"formats": formats, "alpha": alpha, "rgba": rgba, "composite": composite,
                           "paths": paths, "thread": threading.current_thread().name})
        return super().__call__(formats, alpha, rgba, composite, paths)

    def close(self):
        self.closed.append(True)


# ---------------------------------------------------------------- cancel
def test_a_cancel_before_the_start_starts_nothing(tmp_path):
    cancel = threading.Event()
    cancel.set()
    pipe = FakePipe()
    summary = run_batch(inputs(tmp_path / "in", 4), tmp_path / "out", pipeline=pipe, cancel=cancel)
    assert pipe.calls == [] and summary.results == []
    assert (summary.cancelled, summary.total, summary.done) == (True, 4, 0)


@pytest.mark.parametrize("step, unfinished", [("prepare", "render_many"), ("infer", "render_many"),
                                              ("render_many", None)])
def test_a_cancel_during_a_step_lets_no_later_stage_start(tmp_path, monkeypatch, step, unfinished):
    """The image being worked on when the cancel comes is dropped at the next stage's door; nothing after it
    starts; what was reported is complete on disk."""
    monkeypatch.setattr(rt, "CPU_INFER_THREADS", 1)
    cancel = threading.Event()
    pipe = FakePipe(hook={step: lambda names: cancel.set() if names == ["p02.png"] else None})
    seen = []
    summary = run_batch(inputs(tmp_path / "in", 8), tmp_path / "out", pipeline=pipe, cancel=cancel, batch_size=1,
                        workers=1, on_result=lambda r, n, t: seen.append(r.name))
    assert summary.cancelled and summary.total == 8
    assert "p02.png" not in seen and not (tmp_path / "out" / "p02.png").exists()
    assert [r.name for r in summary.results] == sorted(seen) and set(seen) <= {"p00.png", "p01.png"}
    assert [n for names in pipe.names("prepare") for n in names][-1] == "p02.png"  # nothing started after it
    if unfinished:
        assert ["p02.png"] not in pipe.names(unfinished)
    for name in seen:
        assert Image.open(tmp_path / "out" / name).size == (W, H)


def test_a_cancel_drops_the_images_waiting_for_a_decoder(tmp_path, monkeypatch):
    cancel = threading.Event()
    decoded = []
    real_decode = batch.decode_image

    def slow_decode(data, **kw):
        decoded.append(1)
        if len(decoded) > 1:   # the decoder is busy with p01 until the cancel, however long p00 takes to prepare
            cancel.wait(WAIT)
        time.sleep(0.05)
        return real_decode(data, **kw)

    monkeypatch.setattr(batch, "decode_image", slow_decode)
    pipe = FakePipe(hook={"prepare": lambda names: cancel.set()})
    summary = run_batch(inputs(tmp_path / "in", 8), tmp_path / "out", pipeline=pipe, cancel=cancel, workers=1)
    assert summary.cancelled and summary.results == []
    assert len(decoded) <= 2 and pipe.names("prepare") == [["p00.png"]]


def test_a_cancel_returns_soon_while_the_feeder_waits_for_a_slot(tmp_path):
    cancel = threading.Event()
    pipe = FakePipe()
    thread, box = run_in_thread(run_batch, inputs(tmp_path / "in", 12), tmp_path / "out", pipeline=pipe,
                                cancel=cancel, batch_size=1, workers=1,
                                on_result=lambda r, n, t: time.sleep(0.3) if n == 1 else None)
    time.sleep(0.15)  # the caller sleeps in its first on_result: the feeder has used every slot
    cancel.set()
    started = time.monotonic()
    thread.join(WAIT)
    assert time.monotonic() - started < 0.6 and box["summary"].cancelled


def test_a_cancel_while_an_image_decodes_and_the_feeder_waits_still_ends_the_run(tmp_path, monkeypatch):
    """The feeder, told to stop while it waits for a slot, still waits for the decodes under way before it tells
    the inference thread that nothing more comes: the image decoded meanwhile is not left behind."""
    monkeypatch.setattr(rt, "CPU_INFER_THREADS", 1)
    cancel, real_decode = threading.Event(), batch.decode_image

    def decode(data, **kw):
        time.sleep(0.1)  # meanwhile the feeder starts 5 images and waits for a slot
        cancel.set()
        time.sleep(0.2)
        return real_decode(data, **kw)

    monkeypatch.setattr(batch, "decode_image", decode)
    thread, box = run_in_thread(run_batch, inputs(tmp_path / "in", 8), tmp_path / "out", pipeline=FakePipe(),
                                cancel=cancel, batch_size=1, workers=1)
    thread.join(WAIT)
    assert not thread.is_alive() and box["summary"].cancelled and box["summary"].results == []


def test_the_run_is_not_cancelled_when_every_image_came_back(tmp_path):
    summary = run_batch(inputs(tmp_path / "in", 3), tmp_path / "out", pipeline=FakePipe())
    assert not summary.cancelled and summary.done == 3


def test_a_cancel_at_the_last_image_still_says_cancelled(tmp_path):
    cancel = threading.Event()
    summary = run_batch(inputs(tmp_path / "in", 3), tmp_path / "out", pipeline=FakePipe(), cancel=cancel,
                        on_result=lambda r, n, t: cancel.set() if n == t else None)
    assert summary.cancelled and summary.done == 3


# ---------------------------------------------------------------- clocks
def test_each_stage_is_clocked_and_an_image_time_is_its_own_stages(tmp_path, monkeypatch):
    """Each stage's clock holds its own step's time and no other step's. The bounds come from what each step took
    (FakePipe.took), not from its nominal sleep: on a loaded machine a 0.03 s sleep can take 0.1 s."""
    monkeypatch.setattr(rt, "CPU_INFER_THREADS", 1)
    pipe = FakePipe(delay={"prepare": 0.05, "infer": 0.07, "render_many": 0.09})
    summary = run_batch(inputs(tmp_path / "in", 3), tmp_path / "out", pipeline=pipe, batch_size=1, workers=1)
    busy = summary.stage_busy
    assert set(busy) == set(batch.STAGES)
    took = {stage: sum(t for step, _, t in pipe.took if step == name)
            for stage, name in (("upload", "prepare"), ("infer", "infer"), ("render", "render_many"))}
    assert took["upload"] >= 0.15 and took["infer"] >= 0.21 and took["render"] >= 0.27   # the sleeps themselves
    for stage, own in took.items():
        # its clock encloses its step; what else it holds is a few lines of Python, far less than another stage's
        # steps (a stage clocked into another's would add at least 0.15 s)
        assert own <= busy[stage] < own + 0.1, (stage, busy, took)
    assert busy["read"] + busy["decode"] + busy["encode"] + busy["write"] < 0.2
    for result in summary.results:
        own = sum(t for _, names, t in pipe.took if names == [result.name])
        assert own >= 0.21 and 1000 * own <= result.ms < 1000 * own + 150, (result.name, result.ms, own)
    assert sum(r.ms for r in summary.results) == pytest.approx(sum(busy.values()) * 1000, rel=1e-9)


def test_images_that_fail_early_count_only_the_stages_they_went_through(tmp_path):
    for i in range(3):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"bad{i}.png").write_bytes(b"not an image")
    summary = run_batch([tmp_path / "in"], tmp_path / "out", pipeline=FakePipe())
    assert summary.failed == 3 and set(summary.stage_busy) == {"read"}  # a decode that fails is not clocked
    assert {r.error_code for r in summary.results} == {"unsupported_format"}


def test_an_inference_time_is_shared_among_its_batch(tmp_path, fake_gpu, monkeypatch):
    queued = first_image_alone(monkeypatch)

    def hold_p00(names):   # p00 holds the network 0.3 s more once the four others wait: they go in as one batch
        if names == ["p00.png"]:
            hold_until_queued(queued, 5)
            time.sleep(0.3)

    pipe = FakePipe(fake_gpu.device, delay={"infer": 0.1, "render_many": 0.1}, hook={"infer": hold_p00})
    summary = run_batch(inputs(tmp_path / "in", 5), tmp_path / "out", pipeline=pipe, batch_size=4, workers=1)
    assert pipe.names("infer") == [["p00.png"], ["p01.png", "p02.png", "p03.png", "p04.png"]]
    # p00: 0.1 s + 0.3 s and its wait; the four: one 0.1 s step, 0.025 s each, not 0.1 s each
    ms = {r.name: r.ms for r in summary.results}
    assert all(ms["p00.png"] - ms[n] > 300 for n in ("p01.png", "p04.png"))
    took = {step: sum(t for s, _, t in pipe.took if s == step) for step in ("infer", "render_many")}
    assert took["infer"] >= 0.5 and took["render_many"] >= 0.2   # two renders of 0.1 s, the four's shared
    # each step clocked once (the four's step charged to each of them would add 0.3 s); the bounds are what the
    # steps took, which a loaded machine stretches
    assert took["infer"] <= summary.stage_busy["infer"] < took["infer"] + 0.1
    assert took["render_many"] <= summary.stage_busy["render"] < took["render_many"] + 0.1


def test_the_timeline_has_one_span_per_network_call_and_per_stage_the_busy_time(tmp_path, fake_gpu, monkeypatch):
    """A batch's inference and a stacked render are one span each, not one per image; every stage's spans add up
    to its busy time."""
    first_image_alone(monkeypatch)
    timeline = Timeline()
    pipe = FakePipe(fake_gpu.device, delay={"infer": 0.2, "render_many": 0.02})  # the others arrive meanwhile
    summary = run_batch(inputs(tmp_path / "in", 5), tmp_path / "out", pipeline=pipe, batch_size=4, workers=1,
                        timeline=timeline)
    spans = {}
    for stage, start, end in timeline.spans:
        assert end >= start
        spans.setdefault(stage, []).append(end - start)
    assert len(spans["infer"]) == len(pipe.names("infer")) < 5
    assert len(spans["render"]) == len(pipe.names("render_many"))
    assert len(spans["decode"]) == len(spans["write"]) == 5
    assert {stage: sum(s) for stage, s in spans.items()} == pytest.approx(summary.stage_busy, rel=1e-6, abs=1e-9)


# ---------------------------------------------------------------- failures' words
@pytest.mark.parametrize("exc, text, code", [
    (CorruptImageError("the file  is\ndamaged"), "the file is damaged", "corrupt_image"),
    (OSError(28, "No space left on device"), "cannot write the output: No space left on device", "write_error"),
    (OSError("disk gone"), "cannot write the output: disk gone", "write_error"),
    (MemoryError(), "out of memory while processing this image", "out_of_memory"),
    (ValueError("bad\n  value\there"), "unexpected error: ValueError: bad value here", "unexpected"),
])
def test_a_failure_reads_as_one_line_with_its_kind(exc, text, code, caplog):
    with caplog.at_level(logging.ERROR, logger="matting.batch"):
        assert failure_reason(exc) == (text, code)
    if code == "unexpected":  # a bug of ours: logged with its traceback
        assert [(r.getMessage(), r.exc_info[1]) for r in caplog.records] == [("unexpected error in the batch engine",
                                                                              exc)]
    else:
        assert caplog.records == []


# ---------------------------------------------------------------- writing
def test_folder_outputs_are_written_by_the_encoder_and_zip_outputs_here(tmp_path, monkeypatch):
    encoders, made = [], []

    def recording(device, workers):
        encoders.append((device, workers))
        made.append(Recorder())
        return made[-1]

    monkeypatch.setattr(batch, "make_encoder", recording)
    src = inputs(tmp_path / "in", 1)
    run_batch(src, tmp_path / "out", pipeline=FakePipe(), kinds=("cutout", "alpha"), workers=3)
    folder = made[0].calls[0]
    assert folder["formats"] == [("cutout", "png"), ("alpha", "png")]
    assert folder["paths"] == [tmp_path / "out" / "p00.png", tmp_path / "out" / "p00_alpha.png"]
    assert encoders == [(CPU, 3)] and made[0].closed == [True]
    assert {call["thread"].split("_")[0] for call in made[0].calls} == {"matting-post"}
    summary = run_batch(src, tmp_path / "out.zip", pipeline=FakePipe(), kinds=("composite",),
                        composite_format="png")
    zipped = made[1].calls[0]
    assert zipped["paths"] is None and zipped["alpha"] is None and zipped["formats"] == [("composite", "png")]
    assert summary.results[0].outputs == [Path("p00_composite.png")]
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert zf.namelist() == ["p00_composite.png"]
        assert Image.open(io.BytesIO(zf.read("p00_composite.png"))).size == (W, H)


def test_every_encoder_process_gets_a_thread_to_feed_it_even_beyond_the_workers(tmp_path, monkeypatch):
    """With more helper processes than workers (MATTING_ENCODE_PROCESSES), as many images are encoded at once as
    there are helpers: a barrier of 3 parties passes only if 3 encode calls are in flight together."""
    together = threading.Barrier(3, timeout=WAIT)

    class ThreeAtOnce(Recorder):
        processes = 3   # as a ProcessEncoder of 3 helpers says

        def __call__(self, formats, alpha, rgba, composite, paths=None):
            together.wait()
            return super().__call__(formats, alpha, rgba, composite, paths)

    made = []
    monkeypatch.setattr(batch, "make_encoder", lambda device, workers: made.append(ThreeAtOnce()) or made[-1])
    summary = run_batch(inputs(tmp_path / "in", 6), tmp_path / "out", pipeline=FakePipe(), workers=1)
    assert [r.status for r in summary.results] == ["done"] * 6
    assert len({call["thread"] for call in made[0].calls}) == 3
    assert summary.stage_threads["encode"] == summary.stage_threads["write"] == 3
    assert summary.stage_threads["decode"] == 1


def test_a_failed_write_fails_only_its_image_and_is_redone_next_time(tmp_path, monkeypatch):
    class DiskFull(Recorder):
        def __call__(self, formats, alpha, rgba, composite, paths=None):
            if paths[0].name == "p01.png":
                raise OSError(28, "No space left on device")
            return super().__call__(formats, alpha, rgba, composite, paths)

    monkeypatch.setattr(batch, "make_encoder", lambda device, workers: DiskFull())
    src = inputs(tmp_path / "in", 3)
    summary = run_batch(src, tmp_path / "out", pipeline=FakePipe())
    assert [r.status for r in summary.results] == ["done", "failed", "done"]
    failed = summary.results[1]
    assert (failed.error, failed.error_code) == ("cannot write the output: No space left on device", "write_error")
    assert failed.outputs == [] and set(summary.stage_busy) >= {"render", "encode"}
    monkeypatch.setattr(batch, "make_encoder", lambda device, workers: Recorder())
    again = run_batch(src, tmp_path / "out", pipeline=FakePipe())
    assert [r.status for r in again.results] == ["skipped", "done", "skipped"]


def test_images_are_encoded_in_as_many_threads_as_workers(tmp_path, monkeypatch):
    class Slow(Recorder):
        def __call__(self, *args):
            time.sleep(0.03)
            return super().__call__(*args)

    encoders = []
    monkeypatch.setattr(batch, "make_encoder", lambda device, workers: encoders.append(Slow()) or encoders[-1])
    run_batch(inputs(tmp_path / "in", 10), tmp_path / "out", pipeline=FakePipe(), workers=2)
    assert len({call["thread"] for call in encoders[0].calls}) == 2


def test_the_crop_is_made_before_encoding(tmp_path):
    summary = run_batch(inputs(tmp_path / "in", 1), tmp_path / "out", pipeline=FakePipe(),
                        kinds=("cutout", "alpha", "composite"), crop=CropMargin(1))
    box = (W // 4 - 1, H // 4 - 1, 3 * W // 4 + 1, 3 * H // 4 + 1)  # the red block and a pixel around it
    size = (box[2] - box[0], box[3] - box[1])
    for path in summary.results[0].outputs:
        assert Image.open(path).size == size, path.name
    alpha = np.asarray(Image.open(tmp_path / "out" / "p00_alpha.png"))
    assert alpha[0].max() == 0 and alpha[1, 1:-1].min() == 255  # the margin's row, then the subject
