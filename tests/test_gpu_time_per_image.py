"""scripts/gpu_time_per_image.py, the device's own bound per image (issue 17): it runs the batch engine's calls on
real crops and reports a time per image; on CUDA also the profiler's sum (the H200's figures are in BENCHMARKS.md)."""

import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_time_per_image.py"


def test_it_reports_the_wall_time_per_image_on_the_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_time_per_image", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--device", "cpu", "--megapixels", "0.1", "--count", "3", "--stack", "2",
                        "--photos", str(tmp_path / "none")]) == 0
    line = capsys.readouterr().out.strip()
    found = re.fullmatch(r"0\.1 MP on cpu, one thread, 3 images in stacks of 2: ([0-9.]+) ms of wall per image", line)
    assert found and float(found.group(1)) > 0
