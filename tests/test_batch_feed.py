"""matting/batch_feed.py and run_batch's plan in a thread: the engines start on the first planned jobs while the
rest are planned, every result the plan settles is reported once, a plan's error or a cancel ends the run with
nothing left running."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from matting import batch
from matting.batch import run_batch
from matting.batch_feed import JobFeed, each_job

from .test_batch import by_name, image_bytes, write


def job(order: int):
    return SimpleNamespace(order=order)


def steps(*entries):
    """Plan steps from "j3" (the job of order 3) and "r5" (a settled result of order 5)."""
    for entry in entries:
        kind, order = entry[0], int(entry[1:])
        yield (job(order), None) if kind == "j" else (None, SimpleNamespace(order=order))


def test_jobs_come_out_in_plan_order_and_given_back_ones_first():
    feed = JobFeed.of([job(i) for i in range(5)])
    first = feed.take(2)
    assert [j.order for j in first] == [0, 1] and feed.left() == 3
    feed.give_back(first[::-1])
    assert [j.order for j in feed.take(10)] == [0, 1, 2, 3, 4]
    assert feed.take(1) == [] and len(feed) == 5 and feed.ended


def test_a_take_waits_for_the_planner_and_ends_with_the_plan():
    """An engine asking for jobs waits while they are being planned (a chunk waits for all of it), and gets []
    once the plan has ended and nothing is left."""
    feed = JobFeed(4)
    gate = threading.Event()

    def slow_plan():
        yield job(0), None
        gate.wait(10)
        yield job(1), None
        yield job(2), None
        yield None, SimpleNamespace(order=3)

    planner = threading.Thread(target=feed.fill, args=(slow_plan(),))
    planner.start()
    assert [j.order for j in feed.take(1)] == [0]
    got = []
    taker = threading.Thread(target=lambda: got.append(feed.take(2)))
    taker.start()
    taker.join(0.3)
    assert taker.is_alive() and feed.left() == 3, "a chunk waits until it is planned"
    gate.set()
    taker.join(10)
    planner.join(10)
    assert [j.order for j in got[0]] == [1, 2]
    assert feed.take(5) == [] and feed.settled()[0].order == 3 and len(feed) == 3


def test_a_waiting_take_gives_up_when_the_run_stops():
    feed = JobFeed(3)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert feed.take(1, stop.is_set) == []
    assert time.monotonic() - started < 5


def test_settled_results_are_held_until_a_run_attaches_then_handed_over_in_order_before_the_end():
    """Every settled result reaches the run before the feed says it has ended (so a run that has taken its last
    job has had them all), in the order planned; without a run they wait to be collected."""
    feed = JobFeed(6)
    feed.fill(steps("r0", "j1"), None)
    assert [r.order for r in feed.settled()] == [0] and feed.settled() == []

    feed = JobFeed(6)
    seen = []
    planner = threading.Thread(target=feed.fill, args=(steps("r0", "j1", "r2", "r3", "j4", "r5"),))
    feed.attach(lambda result: seen.append((result.order, feed.ended)))
    planner.start()
    planner.join(10)
    assert seen == [(0, False), (2, False), (3, False), (5, False)] and feed.ended
    assert [j.order for j in feed.take(2)] == [1, 4]

    feed = JobFeed(3)
    feed.fill(steps("r0", "r1"), None)
    handed = []
    feed.attach(handed.append)
    feed.attach(None)
    feed.fill(steps("r2"), None)
    assert [r.order for r in handed] == [0, 1] and [r.order for r in feed.settled()] == [2]


def test_the_plan_stops_on_cancel_or_stop_and_keeps_its_error():
    cancel = threading.Event()

    def plan():
        yield job(0), None
        cancel.set()
        yield job(1), None
        yield job(2), None

    feed = JobFeed(3)
    feed.fill(plan(), cancel)
    assert len(feed) == 2 and feed.ended and feed.error is None

    feed = JobFeed(3)
    feed.stop()
    feed.fill(steps("j0", "j1"), None)
    assert len(feed) == 1

    def failing():
        yield job(0), None
        raise PermissionError("the record cannot be written")

    feed = JobFeed(3)
    feed.fill(failing(), None)
    assert isinstance(feed.error, PermissionError) and feed.ended and len(feed) == 1


def test_each_job_goes_through_a_list_or_a_feed():
    assert [j.order for j in each_job([job(1), job(2)], lambda: False)] == [1, 2]
    assert [j.order for j in each_job(JobFeed.of([job(1), job(2)]), lambda: False)] == [1, 2]
    assert list(each_job(JobFeed.of([job(1)]), lambda: True)) == []


# ---------------------------------------------------------------- run_batch with its plan in a thread
RUN_THREADS = ("matting-plan", "matting-feed", "matting-decode", "matting-infer", "matting-post", "matting-render")


def run_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(RUN_THREADS)]


def photos(folder, count: int):
    for i in range(count):
        write(folder / f"p{i}.jpg", image_bytes(seed=i))
    return folder


def test_the_first_images_are_done_while_the_rest_are_still_being_planned(tmp_path, pipe, monkeypatch):
    """The plan of the last photo is held until a result has come out: with the whole plan made first (as
    before) no result could come, and the hold runs out."""
    src = photos(tmp_path / "in", 4)
    first_result, held_out = threading.Event(), []
    real_stamp = batch.input_stamp

    def stamp(item):
        if item.name == "p3.jpg":
            held_out.append(not first_result.wait(20))
        return real_stamp(item)

    monkeypatch.setattr(batch, "input_stamp", stamp)
    summary = run_batch([src], tmp_path / "out", pipeline=pipe, on_result=lambda *_: first_result.set())
    assert held_out == [False], "no image came out before the plan had ended"
    assert summary.done == 4 and not summary.cancelled
    assert run_threads() == []


def test_a_resumed_run_reports_each_photo_once_with_skipped_ones_among_the_done(tmp_path, pipe):
    """Photos already done (skipped), photos to do and an unreadable one interleaved in the plan: each is
    reported once, the counts add up, and the outputs are all there."""
    src = photos(tmp_path / "in", 6)
    run_batch([src / "p1.jpg", src / "p4.jpg"], tmp_path / "out", pipeline=pipe)
    write(src / "p5.jpg", b"not an image")
    seen = []
    summary = run_batch([src], tmp_path / "out", pipeline=pipe,
                        on_result=lambda result, done, total: seen.append((result.name, done, total)))
    assert sorted(name for name, _, _ in seen) == [f"p{i}.jpg" for i in range(6)]
    assert [done for _, done, _ in seen] == list(range(1, 7)) and {total for _, _, total in seen} == {6}
    results = by_name(summary)
    assert {name for name, r in results.items() if r.status == "skipped"} == {"p1.jpg", "p4.jpg"}
    assert results["p5.jpg"].status == "failed" and summary.done == 3
    assert all((tmp_path / "out" / f"p{i}.png").is_file() for i in (0, 1, 2, 3, 4))


def test_an_error_of_the_plan_fails_the_run_and_leaves_nothing_running(tmp_path, pipe, monkeypatch):
    src = photos(tmp_path / "in", 4)

    def stamp(item):
        if item.name == "p2.jpg":
            raise PermissionError("cannot read the record")
        return ""

    monkeypatch.setattr(batch, "input_stamp", stamp)
    with pytest.raises(PermissionError, match="cannot read the record"):
        run_batch([src], tmp_path / "out", pipeline=pipe)
    assert run_threads() == []


def test_a_cancel_stops_the_plan_too(tmp_path, pipe, monkeypatch):
    """Cancelled at the first result: the run ends as cancelled, the planner stops where it was (it does not
    go on through the rest) and no thread is left."""
    src = photos(tmp_path / "in", 8)
    cancel, planned = threading.Event(), []
    real_stamp = batch.input_stamp

    def stamp(item):
        planned.append(item.name)
        if item.name == "p4.jpg":
            cancel.wait(20)
        return real_stamp(item)

    monkeypatch.setattr(batch, "input_stamp", stamp)
    summary = run_batch([src], tmp_path / "out", pipeline=pipe, cancel=cancel, on_result=lambda *_: cancel.set())
    assert summary.cancelled and summary.done < 8
    assert planned == [f"p{i}.jpg" for i in range(5)], "the plan went on after the cancel"
    assert run_threads() == []


def test_an_executor_that_takes_a_list_gets_the_whole_plan_after_the_settled_results(tmp_path, pipe):
    """Executors that do not say they take a feed (Ray's) get every job at once, as a list, once every result the
    plan settled has been reported."""
    src = photos(tmp_path / "in", 3)
    reported, given = [], []

    class ListRun(batch._Run):
        def __init__(self, pipe, sink, jobs, *args, **kwargs):
            given.append((type(jobs), [j.item.name for j in jobs], list(reported)))
            super().__init__(pipe, sink, jobs, *args, **kwargs)

    summary = run_batch([src / "gone.jpg", src], tmp_path / "out", pipeline=pipe, executor=ListRun,
                        on_result=lambda result, *_: reported.append(result.name))
    (missing,) = [r for r in summary.results if r.status == "failed"]
    assert given == [(list, ["p0.jpg", "p1.jpg", "p2.jpg"], [missing.name])]
    assert summary.done == 3 and reported[0] == missing.name
