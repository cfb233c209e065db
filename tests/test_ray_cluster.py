"""`--ray` joining a two-node cluster (ray.cluster_utils.Cluster, both nodes on loopback), and the command's own
private Ray leaving no process behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matting import cli

ray = pytest.importorskip("ray", reason="requirements-ray.txt is not installed")
psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
RAY_PROCESSES = ("raylet", "gcs_server", "ray::", "plasma_store", "default_worker.py", "log_monitor.py")
pytestmark = pytest.mark.timeout(300)


def ray_processes() -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or ())
        if any(marker in line for marker in RAY_PROCESSES):
            found.append(line[:120])
    return found


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in EXAMPLES.glob("*.*"):
        if path.suffix in (".png", ".jpg"):
            shutil.copy(path, folder / path.name)
    return folder


def no_ray_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while ray_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    return not ray_processes()


def test_the_command_starts_its_own_ray_and_leaves_no_process(photos, tmp_path):
    assert no_ray_within(15), f"a Ray from an earlier test is still running: {ray_processes()}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "matting", str(photos), "-o", str(tmp_path / "out"), "--ray",
                           "--no-progress"], capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "4 done, 0 skipped, 0 failed" in done.stderr
    # Ray kept quiet: no C++ log line (such as the level it read from RAY_BACKEND_LOG_LEVEL), only our summary
    assert [line for line in done.stderr.splitlines() if line.strip()] == [done.stderr.strip()], done.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == \
        ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png"]
    assert no_ray_within(15), ray_processes()


def test_an_address_where_nothing_answers_fails_at_once_and_says_what_to_check(capfd):
    """Ray itself retries such an address for minutes, printing its C++ warnings."""
    from matting.errors import RayUnavailable
    from matting.ray_runtime import ray_session

    assert not ray.is_initialized()
    with socket.socket() as probe:   # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(RayUnavailable, match=f"nothing answers at 127.0.0.1:{port} .*ray start --head"):
            with ray_session(address):
                pytest.fail("joined a Ray that is not there")
    assert time.monotonic() - started < 20 and not ray.is_initialized()
    assert capfd.readouterr().err == ""   # no C++ retry warnings


def test_a_two_node_cluster_gives_the_local_engines_files(photos, tmp_path, capsys, monkeypatch):
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    # Both nodes listen on loopback only. Ray turns a loopback address into this machine's network address
    # before connecting (right on a real cluster, where the head is another machine); Ray's own switch for
    # single-machine clusters keeps it on loopback.
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)

    assert cli.main([str(photos), "-o", str(tmp_path / "local"), "--alpha", "--no-progress"]) == cli.EXIT_OK
    # On this fresh cluster, Ray Data's own actors must be up before the first run: the engine starts them beside
    # its MatteActors, so the run does not wait for them (docs/SCALE.md, session 15).
    ready_before_the_run = []
    run = cli.run

    def look_then_run(*args, **kwargs):
        titles = " ".join(" ".join(p.info["cmdline"] or ()) for p in psutil.process_iter(["cmdline"]))
        ready_before_the_run.extend(name for name in ("_StatsActor", "_AutoscalingCoordinatorActor") if name in titles)
        return run(*args, **kwargs)

    monkeypatch.setattr(cli, "run", look_then_run)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "node_ip_address": "127.0.0.1",
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        # Joining by address: the project travels as the job's working_dir, as on a real cluster.
        code = cli.main([str(photos), "-o", str(tmp_path / "ray"), "--alpha", "--no-progress",
                         "--ray", cluster.address])
        assert code == cli.EXIT_OK, capsys.readouterr().err
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert "4 done, 0 skipped, 0 failed" in capsys.readouterr().err
    assert ready_before_the_run == ["_StatsActor", "_AutoscalingCoordinatorActor"]
    ours = sorted(p.name for p in (tmp_path / "ray").iterdir() if not p.name.startswith("."))
    assert ours == sorted(p.name for p in (tmp_path / "local").iterdir() if not p.name.startswith("."))
    assert len(ours) == 8
    for name in ours:
        a = np.asarray(Image.open(tmp_path / "ray" / name)).astype(int)
        b = np.asarray(Image.open(tmp_path / "local" / name)).astype(int)
        alpha = (a, b) if a.ndim == 2 else (a[..., 3], b[..., 3])
        assert np.abs(alpha[0] - alpha[1]).max() <= 1, name
