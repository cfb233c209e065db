"""The batch benchmark's own measuring (matting/bench/batch.py): its figures are only as good as these."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from matting.bench.batch import PeakRSS

HOLD_MIB = 300


def test_peak_rss_counts_a_child_that_starts_after_it_and_reads_the_process_table_once_a_second(monkeypatch):
    calls = []
    real_children = psutil.Process.children

    def counted(self, *args, **kwargs):
        calls.append(time.monotonic())
        return real_children(self, *args, **kwargs)

    monkeypatch.setattr(psutil.Process, "children", counted)
    own = psutil.Process().memory_info().rss
    code = (f"import time; block = bytearray({HOLD_MIB} << 20); block[::4096] = b'x' * len(block[::4096]); "
            "print('ready', flush=True); time.sleep(30)")
    started = time.monotonic()
    with PeakRSS() as rss:
        time.sleep(0.1)
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(1.5)   # at least one lookup of the children after it started
        finally:
            child.kill()
            child.wait()
    elapsed = time.monotonic() - started
    assert rss.peak >= own + (HOLD_MIB - 20) * 2**20
    # 20 ms samples for about 1.6 s (longer where the child is slow to start): dozens of samples, but the process
    # table read once a second, not at every sample
    assert 1 <= len(calls) <= elapsed / PeakRSS.CHILDREN_EVERY_S + 1, (calls, elapsed)


def test_a_rows_png_encoder_is_its_own(monkeypatch):
    """--png-encoder cpu device: each row runs with its own MATTING_PNG_ENCODER, and the environment is as before
    once the row ends (the CLI row that follows builds its environment from it)."""
    from matting.bench import batch as bench_batch

    seen = []
    monkeypatch.setattr(bench_batch, "_run_ours", lambda *a: seen.append(os.environ.get("MATTING_PNG_ENCODER")) or {})
    monkeypatch.delenv("MATTING_PNG_ENCODER", raising=False)
    bench_batch.run_ours(None, None, None, 1, "device")
    assert seen == ["device"] and "MATTING_PNG_ENCODER" not in os.environ
    monkeypatch.setenv("MATTING_PNG_ENCODER", "cpu")
    bench_batch.run_ours(None, None, None, 1, "device")
    bench_batch.run_ours(None, None, None, 1, None)
    assert seen == ["device", "device", "cpu"] and os.environ["MATTING_PNG_ENCODER"] == "cpu"


def test_a_rows_jpeg_decoder_is_its_own_beside_its_png_encoder(monkeypatch):
    """--jpeg-decoder: the same for MATTING_JPEG_DECODER, set together with the PNG encoder and both put back."""
    from matting.bench import batch as bench_batch

    seen = []
    monkeypatch.setattr(bench_batch, "_run_ours", lambda *a: seen.append(
        (os.environ.get("MATTING_JPEG_DECODER"), os.environ.get("MATTING_PNG_ENCODER"))) or {})
    monkeypatch.delenv("MATTING_JPEG_DECODER", raising=False)
    monkeypatch.setenv("MATTING_PNG_ENCODER", "cpu")
    bench_batch.run_ours(None, None, None, 1, "device", "device")
    bench_batch.run_ours(None, None, None, 1, None, "device")
    bench_batch.run_ours(None, None, None, 1, None, None)
    assert seen == [("device", "device"), ("device", "cpu"), (None, "cpu")]
    assert "MATTING_JPEG_DECODER" not in os.environ and os.environ["MATTING_PNG_ENCODER"] == "cpu"


def test_the_bench_starts_the_engines_the_command_line_would(monkeypatch, tmp_path):
    """Without --engines the bench measures what `python -m matting` runs by default (default_engines), so its
    figure is the one users get; a count given is used as it is."""
    from matting.bench import batch as bench_batch

    class Stop(Exception):
        pass

    seen = []

    def run_ours(images, out, args, engines, *rest):
        seen.append(engines)
        raise Stop

    monkeypatch.setattr(bench_batch, "reuse_or_make_images", lambda *args: "made")
    monkeypatch.setattr(bench_batch, "run_ours", run_ours)
    monkeypatch.setattr(bench_batch, "default_engines", lambda device: 4 if device == "cuda" else 1)
    for argv in (["--device", "cuda"], ["--device", "cpu"], ["--device", "cuda", "--engines", "2"]):
        with pytest.raises(Stop):
            bench_batch.main(["--keep", str(tmp_path), *argv])
    assert seen == [4, 1, 2]


def test_the_machines_busy_share_counts_idle_and_io_wait_as_free():
    from collections import namedtuple

    from matting.bench.batch import busy_share

    Times = namedtuple("Times", "user system idle iowait")
    assert busy_share(Times(0, 0, 0, 0), Times(60, 20, 15, 5)) == 0.8
    assert busy_share(Times(1, 1, 1, 1), Times(1, 1, 1, 1)) is None   # no time passed


def test_a_run_on_a_saturated_machine_names_the_cpu_as_its_limit():
    from matting.bench.batch import CPU_BOUND, limit_line

    row = {"busiest_threads": "upload + infer", "limiting_stage": "encode"}
    assert limit_line({**row, "machine_cpu_busy": 0.97}).startswith("**limit: the CPU**")
    assert "upload + infer" in limit_line({**row, "machine_cpu_busy": 0.97})
    assert limit_line({**row, "machine_cpu_busy": CPU_BOUND - 0.01}).startswith("**limit: upload + infer**")
    assert limit_line({**row, "machine_cpu_busy": None}) == "**limit: upload + infer** (the busiest)"


def test_machine_cpu_sees_a_busy_core():
    from matting.bench.batch import MachineCPU

    with MachineCPU() as cpu:
        end = time.process_time() + 0.3
        while time.process_time() < end:
            pass
    # at least this process's one core of the machine's, while it spun
    assert cpu.busy is not None and cpu.busy >= 0.8 / (os.cpu_count() or 1)


def test_images_are_made_once_and_made_again_when_the_run_asks_for_others(tmp_path, monkeypatch):
    from matting.bench import batch as bench_batch

    made = []

    def fake_make(folder, count, megapixels, photos):
        made.append((count, megapixels))
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (folder / f"img_{i:05d}.jpg").write_bytes(b"jpeg")
        return f"{count} fakes"

    monkeypatch.setattr(bench_batch, "make_images", fake_make)
    folder, photos = tmp_path / "images", tmp_path / "photos"
    assert bench_batch.reuse_or_make_images(folder, 3, 1.0, photos) == "3 fakes"
    assert bench_batch.reuse_or_make_images(folder, 3, 1.0, photos) == "3 fakes" and made == [(3, 1.0)]
    bench_batch.reuse_or_make_images(folder, 3, 8.0, photos)           # other sizes: made again
    (folder / "img_00001.jpg").unlink()                                 # one missing: made again
    bench_batch.reuse_or_make_images(folder, 3, 8.0, photos)
    bench_batch.reuse_or_make_images(folder, 2, 8.0, photos)           # fewer: made again, the rest removed
    assert made == [(3, 1.0), (3, 8.0), (3, 8.0), (2, 8.0)] and len(list(folder.glob("img_*.jpg"))) == 2
    (folder / "mine.txt").write_text("the caller's")                    # the folder is the caller's: kept
    bench_batch.reuse_or_make_images(folder, 4, 8.0, photos)
    assert (folder / "mine.txt").read_text() == "the caller's" and len(list(folder.glob("img_*.jpg"))) == 4
