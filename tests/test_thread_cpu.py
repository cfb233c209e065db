"""scripts/thread_cpu.py, the per-thread CPU profile of issue 17: it finds the CPU a command's threads and child
processes spend, by process and thread name."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "thread_cpu.py"

# A parent that starts a child; the child burns {spin} s of CPU in a named thread, the parent little. The script
# samples every 0.2 s, so up to a sample's worth of a child that ends may go unseen: the tests allow for it.
BUSY_CHILD = """
import subprocess, sys
child = '''
import threading, time
def spin():
    end = time.process_time() + {spin}
    while time.process_time() < end:
        pass
t = threading.Thread(target=spin, name="busy-worker"); t.start(); t.join()
'''
subprocess.run([sys.executable, "-c", child], check=True)
"""


def profile(tmp_path, images: int, spin: float, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--images", str(images), "--py-spy",
                           str(tmp_path / "no-py-spy"), *options, "--", sys.executable, "-c",
                           BUSY_CHILD.format(spin=spin)], capture_output=True, text=True, timeout=60)


def total_seconds(stdout: str) -> float:
    line = next(line for line in stdout.splitlines() if line.startswith("CPU seconds in all"))
    return float(line.split(":")[1].split(",")[0])


def test_it_counts_a_child_processs_threads_cpu(tmp_path):
    out = profile(tmp_path, 2, 1.2)
    assert out.returncode == 0, out.stderr
    total = total_seconds(out.stdout)
    assert 0.7 <= total < 5.0, out.stdout            # the child's 1.2 s, whatever thread it was seen in
    rows = [line.split(" | ") for line in out.stdout.splitlines() if line.startswith("| main")]
    assert rows and sum(float(r[2]) for r in rows) >= 0.7   # counted under the process that spent it


def test_a_shorter_runs_profile_is_subtracted_and_per_image_is_over_the_extra_images(tmp_path):
    """The long run spins 1.2 s more than the short one; both start the same two interpreters (the start-up)."""
    saved = tmp_path / "short.json"
    short = profile(tmp_path, 1, 0.3, "--save", str(saved))
    assert short.returncode == 0, short.stderr
    assert json.loads(saved.read_text())["images"] == 1
    long = profile(tmp_path, 5, 1.5, "--minus", str(saved))
    assert long.returncode == 0, long.stderr
    extra = total_seconds(long.stdout)
    assert 0.6 <= extra <= 1.8, long.stdout          # the extra 1.2 s, up to a sample lost at each end
    line = next(line for line in long.stdout.splitlines() if line.startswith("CPU seconds in all"))
    per_image = float(line.split(",")[1].split("ms per image")[0])
    # Both figures are printed rounded (the total to 0.01 s, the per-image to 0.01 ms): compare within that.
    assert per_image == pytest.approx(1000 * extra / 4, abs=1000 * 0.005 / 4 + 0.005), line
    assert "(4 images) beyond the 1 images" in line
    backwards = profile(tmp_path, 1, 0.1, "--minus", str(saved))
    assert backwards.returncode != 0 and "the shorter run goes in --minus" in backwards.stderr
