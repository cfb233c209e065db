"""scripts/gil_wait_probe.py (issue 17): it times the GIL's return in the batch's inference thread, once per network
batch, and reports it after the bench."""

import importlib.util
import re
import sys
import threading
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gil_wait_probe.py"


def load():
    spec = importlib.util.spec_from_file_location("gil_wait_probe", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_probe_sees_a_busy_python_thread_as_a_wait():
    """With a thread spinning in Python beside it, sleep(0) gets the lock back only after a switch interval. Before
    each call this thread runs Python for two intervals, so the spinner is already asking for the lock; even so, on
    a loaded machine the spinner is not always on a core to take it, so the test asks for half the calls (on this
    2-core machine with three busy processes beside it 31-40 of 40 waited; without the spinner 0-8)."""
    script = load()
    stop = threading.Event()
    interval = sys.getswitchinterval()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        seen = []
        calls = script.probed(lambda run, jobs: seen.append(jobs))
        for i in range(40):
            end = time.perf_counter() + 2 * interval
            while time.perf_counter() < end:
                pass
            calls(None, [i])
    finally:
        stop.set()
        spinner.join()
    assert seen == [[i] for i in range(40)] and len(script.waits) == 40
    assert sum(wait >= 0.5 * interval for wait in script.waits) >= 20, script.waits   # alone: microseconds
    assert re.match(r"GIL probe: 40 network batches in this process; the lock back after sleep\(0\): median ",
                    script.summary(script.waits))


def test_it_runs_the_batch_bench_and_reports_every_network_batch(capsys, tmp_path):
    import matting.batch

    script = load()
    original = matting.batch._Run._infer
    start = time.perf_counter()
    assert script.main(["--batch", "--device", "cpu", "--count", "3", "--megapixels", "0.1",
                        "--photos", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    found = re.search(r"GIL probe: (\d+) network batches", out)
    assert found and 1 <= int(found.group(1)) <= 3, out          # CPU: one image per network batch
    assert time.perf_counter() - start < 120
    assert matting.batch._Run._infer is original   # the engine as it was, for the tests after this one
