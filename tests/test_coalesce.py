"""Concurrent network requests share batches (matting/coalesce.py), in the engine and on its own."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from matting.coalesce import Coalescer
from matting.pipeline import Pipeline

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


class Recorder:
    """A process function that records its batches; the first batch can be held until released."""

    def __init__(self, hold_first: bool = False, fail_on: object = None):
        self.batches: list[list] = []
        self.hold = threading.Event()
        self.started = threading.Event()
        self.hold_first = hold_first
        self.fail_on = fail_on

    def __call__(self, items: list) -> None:
        self.batches.append(list(items))
        self.started.set()
        if self.hold_first and len(self.batches) == 1:
            assert self.hold.wait(10)
        if self.fail_on in items:
            raise RuntimeError(f"cannot process {self.fail_on}")


def call_in_threads(coalescer: Coalescer, groups: list[list]) -> list[BaseException | None]:
    errors: list[BaseException | None] = [None] * len(groups)

    def call(i: int) -> None:
        try:
            coalescer.run(groups[i])
        except BaseException as exc:  # noqa: BLE001
            errors[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(groups))]
    for thread in threads:
        thread.start()
    return threads, errors


def test_requests_that_arrive_during_a_batch_share_the_next_one():
    recorder = Recorder(hold_first=True)
    coalescer = Coalescer(recorder, max_batch=16, max_wait_ms=0)
    first, _ = call_in_threads(coalescer, [["a"]])
    assert recorder.started.wait(5)
    others, errors = call_in_threads(coalescer, [["b"], ["c", "d"], ["e"]])
    while sum(len(r.items) for r in coalescer._pending) < 4:   # all three are waiting behind the first batch
        threading.Event().wait(0.005)
    recorder.hold.set()
    for thread in first + others:
        thread.join(10)
    assert recorder.batches[0] == ["a"]
    assert sorted(recorder.batches[1]) == ["b", "c", "d", "e"] and len(recorder.batches) == 2
    assert errors == [None, None, None] and coalescer.largest == 4


def test_a_lone_request_runs_alone_and_callers_get_their_own_items_done():
    recorder = Recorder()
    coalescer = Coalescer(recorder, max_wait_ms=0)
    coalescer.run(["x"])
    coalescer.run([])            # nothing to do: returns at once, no batch
    assert recorder.batches == [["x"]] and coalescer.batches == 1


def test_the_wait_gathers_requests_that_arrive_together():
    """The first request waits for company: five threads started together share one batch. (The wait is long
    and the batch limit five, so the batch goes as soon as all are in: no timing luck needed.)"""
    recorder = Recorder()
    coalescer = Coalescer(recorder, max_batch=5, max_wait_ms=10_000)
    threads, errors = call_in_threads(coalescer, [[i] for i in range(5)])
    for thread in threads:
        thread.join(10)
    assert sorted(recorder.batches[0]) == [0, 1, 2, 3, 4] and len(recorder.batches) == 1 and errors == [None] * 5


def test_batches_are_bounded_in_size():
    recorder = Recorder(hold_first=True)
    coalescer = Coalescer(recorder, max_batch=3, max_wait_ms=0)
    first, _ = call_in_threads(coalescer, [["first"]])
    assert recorder.started.wait(5)
    others, _ = call_in_threads(coalescer, [[i] for i in range(7)] + [list("ABCDE")])
    while sum(len(r.items) for r in coalescer._pending) < 12:
        threading.Event().wait(0.005)
    recorder.hold.set()
    for thread in first + others:
        thread.join(10)
    sizes = [len(b) for b in recorder.batches[1:]]
    assert sum(sizes) == 12 and all(size <= 3 or batch == list("ABCDE")
                                    for size, batch in zip(sizes, recorder.batches[1:]))


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_batch_still_runs():
    recorder = Recorder(fail_on="bad")
    coalescer = Coalescer(recorder, max_batch=2, max_wait_ms=10_000)
    threads, errors = call_in_threads(coalescer, [["ok"], ["bad"]])
    for thread in threads:
        thread.join(10)
    assert all(isinstance(e, RuntimeError) and "bad" in str(e) for e in errors)
    coalescer.run(["later", "still"])          # a full batch goes at once
    assert recorder.batches[-1] == ["later", "still"]


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        Coalescer(lambda items: None, max_batch=0)
    with pytest.raises(ValueError):
        Coalescer(lambda items: None, max_wait_ms=-1)


def test_pipeline_mattes_concurrent_uploads_in_one_batch_with_the_same_result():
    """Two threads matte different photos at the same moment: one network run, each its own matte (the same as
    alone, within batch arithmetic)."""
    pipe = Pipeline(device="cpu", coalesce_ms=2000, warm_up=False)   # generous: a loaded machine decodes slowly
    names = ["coffee.png", "rocket.jpg"]
    results: dict[str, object] = {}
    calls = pipe.runner.calls
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, pipe.matte(EXAMPLES / n))) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert pipe.runner.calls == calls + 1 and pipe._coalescer.largest == 2
    alone = Pipeline(device="cpu", coalesce_ms=-1, warm_up=False)
    assert alone._coalescer is None
    for name in names:
        torch.testing.assert_close(results[name].matte, alone.matte(EXAMPLES / name).matte, atol=1e-4, rtol=0)
        assert results[name].name == name


def test_coalescing_is_on_for_cuda_and_off_for_the_cpu_by_default():
    assert Pipeline(device="cpu", warm_up=False)._coalescer is None
    if torch.cuda.is_available():
        assert Pipeline(device="cuda", warm_up=False)._coalescer.max_wait > 0
