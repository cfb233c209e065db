"""Several batch engines (matting/batch_engines.py): this process and helper processes share a run's images, and
the run reads as one engine's: every image once, the same names and pixels, resume, zip in and out, a cancel, a
helper that dies mid-run. One pool of two engines serves the module (each helper loads the model once): on the
CPU in CI, sharing the GPU on a GPU host."""

from __future__ import annotations

import os
import signal
import threading
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from matting.batch import run_batch
from matting.batch_engines import EnginePool, batch_engines
from matting.batch_runtime import inference_threads
from matting.errors import MattingError
from tests.test_batch import files_under, image_bytes, write

# On a GPU host the engines share the GPU, as they are meant to; CI runs them on the CPU.
OPTIONS = {"device": "cuda" if torch.cuda.is_available() else "cpu"}


@pytest.fixture(scope="module")
def engines():
    with batch_engines(OPTIONS, engines=2, wait=True) as (pipeline, executor):
        yield pipeline, executor


def photos(folder, count: int, start: int = 0):
    for i in range(start, start + count):
        write(folder / ("sub" if i % 3 == 0 else "") / f"p{i:02d}.jpg", image_bytes(seed=i))
    return folder


def alpha_of(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)[..., 3].astype(int)


def test_two_engines_make_every_image_once_with_one_engines_names_and_pixels(engines, tmp_path):
    pipeline, executor = engines
    folder = photos(tmp_path / "in", 7)
    seen = []
    two = run_batch([folder], tmp_path / "two", recursive=True, pipeline=pipeline, executor=executor,
                    kinds=("cutout", "alpha"), on_result=lambda result, *_: seen.append(result.name))
    one = run_batch([folder], tmp_path / "one", recursive=True, pipeline=pipeline, kinds=("cutout", "alpha"))
    assert (two.done, two.failed, two.cancelled) == (7, 0, False)
    assert sorted(seen) == sorted(r.name for r in one.results) and len(set(seen)) == 7
    assert files_under(tmp_path / "two") == files_under(tmp_path / "one")
    for name in files_under(tmp_path / "one"):
        if not name.endswith("_alpha.png"):
            assert np.abs(alpha_of(tmp_path / "two" / name) - alpha_of(tmp_path / "one" / name)).max() <= 1, name
    # the helper's images are among them: its stages' time is counted with this process's
    assert two.stage_threads["infer"] == 2 * one.stage_threads["infer"]
    assert [r.order for r in two.results] == sorted(r.order for r in two.results)


def test_the_timeline_holds_every_engines_stages(engines, tmp_path):
    from matting.batch_timeline import Timeline

    pipeline, executor = engines
    timeline = Timeline()
    summary = run_batch([photos(tmp_path / "in", 8)], tmp_path / "out", recursive=True, pipeline=pipeline,
                        executor=executor, timeline=timeline)
    assert summary.done == 8
    for stage in ("read", "decode", "infer"):   # the helper's spans too: the same busy time as the stage table
        spans = sum(end - start for name, start, end in timeline.spans if name == stage)
        assert spans == pytest.approx(summary.stage_busy[stage], rel=1e-6), stage


def test_a_rerun_resumes_from_the_record_the_helpers_outputs_went_into(engines, tmp_path):
    pipeline, executor = engines
    folder = photos(tmp_path / "in", 4)
    first = run_batch([folder], tmp_path / "out", recursive=True, pipeline=pipeline, executor=executor)
    again = run_batch([folder], tmp_path / "out", recursive=True, pipeline=pipeline, executor=executor)
    assert first.done == 4 and (again.done, again.skipped) == (0, 4)


def test_results_the_plan_settles_come_out_once_with_the_engines(engines, tmp_path):
    """Photos done before (skipped) and an input that is not there, among photos to do: each is reported once,
    the plan's with the engines' results."""
    pipeline, executor = engines
    folder = photos(tmp_path / "in", 9)
    run_batch([folder / "p01.jpg", folder / "p05.jpg", folder / "p07.jpg"], tmp_path / "out", pipeline=pipeline,
              executor=executor)
    seen = []
    again = run_batch([folder / "p01.jpg", folder / "p02.jpg", folder / "gone.jpg", folder / "p04.jpg",
                       folder / "p05.jpg", folder / "p07.jpg", folder / "p08.jpg"], tmp_path / "out",
                      pipeline=pipeline, executor=executor, on_result=lambda result, *_: seen.append(result.name))
    assert (again.done, again.skipped, again.failed, again.cancelled) == (3, 3, 1, False)
    assert sorted(seen) == sorted(r.name for r in again.results) and len(set(seen)) == 7


@pytest.mark.parametrize("folder", [True, False])
def test_a_helpers_share_forgets_each_job_once_its_result_is_sent(pipe, tmp_path, monkeypatch, folder):
    """In a helper process, each job's entry and its output files' places go when its result is sent, not at the
    run's end (1.8 KB an image: 183 MB per helper at 100,000)."""
    import queue

    from matting import batch_engine_helper as helper
    from matting.batch_inputs import discover, source_of
    from matting.settings import EdgeSettings

    shares = []

    class Recorded(helper._Incoming):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            shares.append(self)

    monkeypatch.setattr(helper, "_Incoming", Recorded)
    found = discover([photos(tmp_path / "in", 5)], recursive=True)
    described = [{"order": i, "name": item.name, "source": source_of(item), "names": {"cutout": f"p{i}.png"},
                  "targets": {f"p{i}.png": str(tmp_path / f"p{i}.png")} if folder else None, "notices": [],
                  "stamp": ""} for i, item in enumerate(found.items)]
    chunks, sent = queue.SimpleQueue(), []
    chunks.put(described)
    chunks.put([])
    spec = {"folder": folder, "batch_size": 2, "timeline": False, "settings": EdgeSettings(), "kinds": ("cutout",),
            "background": None, "workers": 1, "crop": None}
    helper._run_share(pipe, sent.append, 1, spec, chunks, threading.Event())
    results = [message for message in sent if message[0] == "result"]
    assert len(results) == 5 and all(message[2].status == "done" for message in results)
    (share,) = shares
    assert share.by_order == {} and getattr(share.sink, "targets", {}) == {}
    assert all(message[3] is not None for message in results) != folder   # zip members came back as bytes
    found.close()


def test_zip_in_and_zip_out_through_the_helper(engines, tmp_path):
    pipeline, executor = engines
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(5):
            z.writestr(f"set/z{i}.png", image_bytes("PNG", seed=10 + i))
        z.writestr("set/broken.jpg", b"not an image")
    summary = run_batch([archive], tmp_path / "out.zip", pipeline=pipeline, executor=executor)
    assert (summary.done, summary.failed) == (5, 1)
    assert "set/broken.jpg" in [r.name for r in summary.results if r.status == "failed"]
    with zipfile.ZipFile(tmp_path / "out.zip") as z:
        names = sorted(z.namelist())
        assert names == [f"set/z{i}.png" for i in range(5)]
        for name in names:
            with z.open(name) as member, Image.open(member) as image:
                assert image.mode == "RGBA" and image.size == (64, 48)


def test_a_cancel_stops_both_engines_and_the_next_run_finishes_the_rest(engines, tmp_path):
    pipeline, executor = engines
    folder = photos(tmp_path / "in", 12)
    cancel = threading.Event()
    first = run_batch([folder], tmp_path / "out", recursive=True, pipeline=pipeline, executor=executor, cancel=cancel,
                      on_result=lambda *_: cancel.set())
    assert first.cancelled and first.done < 12
    written = files_under(tmp_path / "out")
    assert len(written) == first.done   # nothing half-written, nothing written after the run returned
    rest = run_batch([folder], tmp_path / "out", recursive=True, pipeline=pipeline, executor=executor)
    assert (rest.done, rest.skipped, rest.failed) == (12 - first.done, first.done, 0)


def test_a_run_does_not_wait_for_helpers_still_loading_and_they_join_when_ready(tmp_path, monkeypatch):
    """Helpers load in the background: a run started before they are ready goes on without them, and they take
    images once they are (here the helper's start is held back until the first run is over)."""
    import matting.batch_engines as engines_module

    release, real_send = threading.Event(), engines_module._Helper.send

    def held_start(self, message):
        if message and message[0] == "start" and not release.is_set():
            threading.Thread(target=lambda: (release.wait(30), real_send(self, message)), daemon=True).start()
            return
        real_send(self, message)

    monkeypatch.setattr(engines_module._Helper, "send", held_start)
    with batch_engines(OPTIONS, engines=2) as (pipeline, executor):
        one_engine = inference_threads(pipeline.device)
        first = run_batch([photos(tmp_path / "a", 3)], tmp_path / "out_a", recursive=True, pipeline=pipeline,
                          executor=executor)
        assert (first.done, first.stage_threads["infer"]) == (3, one_engine)   # this process's engine alone
        release.set()
        during = run_batch([photos(tmp_path / "b", 24)], tmp_path / "out_b", recursive=True, pipeline=pipeline,
                           executor=executor)   # the helper may join part-way
        assert (during.done, during.failed) == (24, 0) and len({r.name for r in during.results}) == 24
        executor.pool.wait_ready()
        after = run_batch([photos(tmp_path / "c", 8)], tmp_path / "out_c", recursive=True, pipeline=pipeline,
                          executor=executor)
        assert (after.done, after.stage_threads["infer"]) == (8, 2 * one_engine)
        assert len(files_under(tmp_path / "out_c")) == 8


def test_a_helper_that_cannot_start_leaves_the_run_to_the_others_and_says_why(tmp_path, monkeypatch, caplog):
    """Not waited for, a helper that fails to load (here: it is given weights that do not exist, as if its GPU had
    no room) is logged and the run goes on without it."""
    import matting.batch_engines as engines_module

    real_send = engines_module._Helper.send
    missing = str(tmp_path / "missing.safetensors")

    def broken_start(self, message):
        if message and message[0] == "start":
            message = (message[0], {**message[1], "weights": missing}, *message[2:])
        real_send(self, message)

    monkeypatch.setattr(engines_module._Helper, "send", broken_start)
    with batch_engines(OPTIONS, engines=2) as (pipeline, executor):
        deadline = time.monotonic() + 60
        while executor.pool.helpers[0].state == "starting" and time.monotonic() < deadline:
            executor.pool.catch_up()   # what a run does first
            time.sleep(0.05)
        summary = run_batch([photos(tmp_path / "in", 5)], tmp_path / "out", recursive=True, pipeline=pipeline,
                            executor=executor)
        assert (summary.done, summary.failed) == (5, 0)
        assert summary.stage_threads["infer"] == inference_threads(pipeline.device)   # this engine alone
    assert "a batch engine process cannot start" in caplog.text and "missing.safetensors" in caplog.text


def test_a_helper_killed_mid_run_loses_no_image(tmp_path):
    folder = photos(tmp_path / "in", 10)
    kill_helper, killed = _signal_a_helper_at_the_first_result(signal.SIGKILL)
    with batch_engines(OPTIONS, engines=2, wait=True) as (pipeline, executor):
        summary = run_batch([folder], tmp_path / "out", recursive=True, pipeline=pipeline, executor=executor,
                            on_result=kill_helper)
        assert killed
        assert (summary.done, summary.failed, summary.cancelled) == (10, 0, False)
        assert len(summary.results) == len({r.name for r in summary.results}) == 10
        assert len(files_under(tmp_path / "out")) == 10
        # the engine goes on without it
        again = run_batch([photos(tmp_path / "more", 3, start=20)], tmp_path / "out2", recursive=True,
                          pipeline=pipeline, executor=executor)
        assert again.done == 3


def _helper_pids() -> set[int]:
    return _children_running("matting.batch_engine_helper")


def _signal_a_helper_at_the_first_result(signum):
    """(on_result callback, the pid it signalled): at the first result, ``signum`` to a helper started after this
    call (not the module pool's)."""
    others, signalled = _helper_pids(), []

    def callback(result, finished, total):
        if not signalled:
            pid = next(iter(_helper_pids() - others))
            os.kill(pid, signum)
            signalled.append(pid)
    return callback, signalled


def test_an_engine_whose_pipeline_cannot_be_built_fails_saying_why_and_leaves_no_helper(tmp_path):
    options = {**OPTIONS, "weights": str(tmp_path / "no-such-weights.safetensors")}
    before = _helper_pids()   # the module's pool
    with pytest.raises(MattingError, match="no-such-weights"):   # this process's Pipeline fails first
        with batch_engines(options, engines=2):
            pass
    pool = EnginePool(options, 1, None)   # a helper's own failure, as the engine reports it
    try:
        with pytest.raises(MattingError, match="a batch engine process cannot start: .*no-such-weights"):
            pool.wait_ready()
    finally:
        pool.close()
    assert _helper_pids() == before


def test_the_helpers_run_in_sessions_of_their_own_and_stop_with_the_engine():
    before = _helper_pids()
    with batch_engines(OPTIONS, engines=3):
        helpers = _helper_pids() - before
        assert len(helpers) == 2
        # a terminal's Ctrl-C goes to its foreground group: it must reach this process, which stops them cleanly
        assert all(os.getpgid(pid) != os.getpgid(0) for pid in helpers)
    assert _helper_pids() == before


def test_an_engine_keeps_its_encoder_helpers_for_its_runs_and_closes_them_at_its_end(tmp_path, monkeypatch):
    monkeypatch.setenv("MATTING_ENCODE_PROCESSES", "2")   # helpers on the CPU too

    def encoder_helpers() -> set[int]:
        return _children_running("matting.batch_encode")

    before = encoder_helpers()
    with batch_engines(OPTIONS, engines=1, workers=2) as (pipeline, executor):
        kept = encoder_helpers() - before
        assert len(kept) == 2   # started with the engine, before any run
        summary = run_batch([photos(tmp_path / "in", 3)], tmp_path / "out", recursive=True, pipeline=pipeline,
                            executor=executor, workers=2)
        assert summary.done == 3 and encoder_helpers() - before == kept
    assert encoder_helpers() == before


@pytest.mark.parametrize("given, run_given, expected", [(None, None, 3), (5, None, 5), (None, 2, 2)])
def test_engines_take_their_share_of_the_cores_unless_told(monkeypatch, given, run_given, expected):
    """Without --workers each of four engines gets default_workers(device, 4) decoders and encoders: the helpers,
    the kept encoder helpers and this process's own run alike; a count given (to the engines or the run) wins."""
    import matting.batch_engines as be
    import matting.pipeline

    seen = {}

    class Pool:
        def __init__(self, options, count, batch_size, workers):
            seen["helpers"] = workers

        def close(self):
            pass

    monkeypatch.setattr(be, "EnginePool", Pool)
    monkeypatch.setattr(be, "keep_run_encoders", lambda device, workers: seen.setdefault("kept", workers))
    monkeypatch.setattr(be, "drop_kept_encoder", lambda kept: None)
    monkeypatch.setattr(be, "EnginesRun", lambda *args: seen.setdefault("run", args[8]))
    monkeypatch.setattr(be.rt, "default_workers", lambda device, engines=1: {1: 4, 4: 3}[engines])
    monkeypatch.setattr(matting.pipeline, "Pipeline", lambda **options: "pipe")
    with batch_engines(OPTIONS, engines=4, workers=given) as (pipeline, executor):
        executor(pipeline, None, [], None, (), None, 16, run_given, threading.Event())
    assert seen == {"helpers": given or 3, "kept": given or 3, "run": expected}


def test_chunks_shrink_as_the_run_drains_so_the_engines_end_together():
    from matting.batch_engines import next_chunk

    assert next_chunk(16, 2000, 4) == 32   # two network batches while plenty is left
    assert next_chunk(16, 50, 4) == 7      # a small run is spread: a share of what is left, not 32 to one helper
    assert [next_chunk(16, left, 4) for left in (256, 255, 100, 9, 8, 1)] == [32, 32, 13, 2, 1, 1]
    assert next_chunk(1, 100, 2) == 4      # the CPU's batch of one: chunks of 4 as before
    # handed out one after another, 50 images go 7, 6, 5, 4, 4, 3, ...: the largest chunk is 7, not 32
    left, taken = 50, []
    while left:
        taken.append(min(left, next_chunk(16, left, 4)))
        left -= taken[-1]
    assert max(taken) == 7 and sum(taken) == 50


def _children_running(module: str) -> set[int]:
    import psutil

    found = set()
    for child in psutil.Process().children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and module in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            pass
    return found


def test_a_helper_that_goes_silent_with_images_in_hand_is_stopped_and_they_come_out(tmp_path, monkeypatch):
    """A helper that stops answering (here: frozen with SIGSTOP after the first result) would hold its images, and
    the run, for ever: after SILENT_S it is stopped and its images go back to the queue."""
    import matting.batch_engines as engines_module

    monkeypatch.setattr(engines_module, "SILENT_S", 1.0)
    folder = photos(tmp_path / "in", 12)
    freeze_helper, frozen = _signal_a_helper_at_the_first_result(signal.SIGSTOP)
    with batch_engines(OPTIONS, engines=2, wait=True) as (pipeline, executor):
        started = time.monotonic()
        summary = run_batch([folder], tmp_path / "out", recursive=True, pipeline=pipeline, executor=executor,
                            on_result=freeze_helper)
        assert frozen and time.monotonic() - started < 60
        assert frozen[0] not in _helper_pids()   # stopped by the engine, not at its end
        assert (summary.done, summary.failed) == (12, 0)
        assert len(files_under(tmp_path / "out")) == 12
