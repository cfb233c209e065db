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
    """With a thread spinning in Python beside it, sleep(0) gets the lock back only after a switch interval."""
    script = load()
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        seen = []
        calls = script.probed(lambda run, jobs: seen.append(jobs))
        for i in range(5):
            calls(None, [i])
    finally:
        stop.set()
        spinner.join()
    assert seen == [[0], [1], [2], [3], [4]] and len(script.waits) == 5
    assert sorted(script.waits)[2] >= 0.5 * sys.getswitchinterval()   # alone it would be microseconds
    assert re.match(r"GIL probe: 5 network batches in this process; the lock back after sleep\(0\): median ",
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
