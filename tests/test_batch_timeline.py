"""matting/batch_timeline.py: each stage's busy share over the run (the bench's --profile), from spans that
run_batch records as its stages work."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from matting.batch import STAGES, run_batch
from matting.batch_timeline import Timeline


def test_a_stage_busy_throughout_is_full_in_every_slice_and_a_span_is_split_where_slices_meet():
    timeline = Timeline()
    timeline.add("infer", 10.0, 14.0)        # the whole run, one thread
    timeline.add("decode", 10.0, 11.0)       # the first slice, one of two threads
    timeline.add("decode", 11.5, 12.5)       # half in the second slice, half in the third
    rows = timeline.shares({"infer": 1, "decode": 2}, slices=4)
    assert [(a, b) for a, b, _ in rows] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0)]
    assert [row[2]["infer"] for row in rows] == [1.0, 1.0, 1.0, 1.0]
    assert [row[2]["decode"] for row in rows] == [0.5, 0.25, 0.25, 0.0]
    assert list(rows[0][2]) == ["infer", "decode"]   # in the order the stages first appear


def test_the_table_names_each_stage_with_its_threads_and_prints_shares_as_percent():
    timeline = Timeline()
    timeline.add("encode", 0.0, 2.0)
    timeline.add("encode", 0.0, 1.0)
    table = timeline.markdown({"encode": 4}, slices=2).splitlines()
    assert table == ["| seconds | encode (4) |", "| --- | ---: |", "| 0.0-1.0 | 50% |", "| 1.0-2.0 | 25% |"]
    assert Timeline().markdown({}) == "(no stage ran)" and Timeline().shares({}) == []


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(4):
        image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        image[24:72, 32:96] = (230, 180, 40)
        Image.fromarray(image).save(tmp_path / f"p{i}.png")
    return tmp_path


def test_a_batch_records_every_stage_of_every_image_within_the_run(pipe, photos, tmp_path):
    timeline = Timeline()
    before = time.perf_counter()
    summary = run_batch([photos], tmp_path / "out", pipeline=pipe, kinds=("cutout", "alpha"), batch_size=1,
                        workers=2, timeline=timeline)
    after = time.perf_counter()
    assert summary.done == 4
    stages = [stage for stage, _, _ in timeline.spans]
    assert set(stages) == set(STAGES)
    for stage in ("read", "decode", "upload", "encode", "write"):
        assert stages.count(stage) == 4, stage          # once per image
    assert stages.count("infer") == stages.count("render") == 4   # batch size 1: one network call per image
    assert all(before <= start <= end <= after for _, start, end in timeline.spans)
    for stage in STAGES:   # the spans add up to the summary's busy seconds
        spans = sum(end - start for s, start, end in timeline.spans if s == stage)
        assert spans == pytest.approx(summary.stage_busy.get(stage, 0.0), rel=0.05, abs=1e-4), stage
