"""scripts/thread_cpu.py, the per-thread CPU profile of issue 17: it finds the CPU a command's threads and child
processes spend, by process and thread name."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "thread_cpu.py"

# A parent that starts a child; the child burns 1.2 s of CPU in a named thread, the parent little. The script samples
# every 0.2 s, so up to a sample's worth of a child that ends may go unseen: the test asks for 0.7 s.
BUSY_CHILD = """
import subprocess, sys
child = '''
import threading, time
def spin():
    end = time.process_time() + 1.2
    while time.process_time() < end:
        pass
t = threading.Thread(target=spin, name="busy-worker"); t.start(); t.join()
'''
subprocess.run([sys.executable, "-c", child], check=True)
"""


def test_it_counts_a_child_processs_threads_cpu(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--images", "2", "--py-spy", str(tmp_path / "no-py-spy"),
                          "--", sys.executable, "-c", BUSY_CHILD], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    total_line = next(line for line in out.stdout.splitlines() if line.startswith("CPU seconds in all"))
    total = float(total_line.split(":")[1].split(",")[0])
    assert 0.7 <= total < 5.0, out.stdout            # the child's 1.2 s, whatever thread it was seen in
    rows = [line.split(" | ") for line in out.stdout.splitlines() if line.startswith("| main")]
    assert rows and sum(float(r[2]) for r in rows) >= 0.7   # counted under the process that spent it
