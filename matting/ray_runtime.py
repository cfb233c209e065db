"""Starting or joining Ray for the batch (`--ray`) and the app's model replicas; Ray is optional
(``pip install -r requirements-ray.txt``) and imported only here and in the modules that run on it.

    with ray_session("local") as ray: ...    # a private Ray on this machine, on 127.0.0.1, no dashboard
    with ray_session("auto") as ray: ...     # the cluster this machine belongs to (`ray start` ran here)
    with ray_session("10.0.0.5:6379") as ray: ...

The workers must import this project: a private Ray gets it on PYTHONPATH (same machine); a cluster gets the
project folder shipped as the job's working_dir (Ray uploads it, without the virtual environment and the tests),
so every node needs only the requirements installed. A session that finds Ray already initialised (a test's
cluster, an embedding program) uses it and leaves it running.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import socket
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

from .errors import RayUnavailable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL = "local"
CONNECT_TIMEOUT_S = 5.0   # a cluster's head that does not accept a connection in this long is not there
# A cluster address as `ray start` prints it (host:port), Ray Client's ray://host:port, or `auto`.
_ADDRESS = re.compile(r"^(auto|local|(ray://)?[A-Za-z0-9_.\[\]:-]+:\d+)$")
# What a cluster job does not need from the project folder (Ray's upload limit is about 500 MB).
_NOT_SHIPPED = [".venv", ".git", ".devcarry", ".whl", "tests", "docs", "__pycache__", "*.pyc", ".pytest_cache"]


def is_address(text: str) -> bool:
    """Whether ``text`` names a Ray to use (``local``, ``auto``, ``host:port``, ``ray://host:port``)."""
    return bool(_ADDRESS.match(text))


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--ray needs Ray: pip install -r requirements-ray.txt") from None
    return ray


@contextmanager
def ray_session(address: str | None = LOCAL, *, num_cpus: int | None = None):
    """Ray initialised for the length of the block, shut down after it (when this session started it)."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    _quiet_ray()
    address = address or LOCAL
    problem = _unreachable(address)
    if problem:   # Ray itself would retry for minutes, printing C++ warnings, before it gave up
        raise RayUnavailable(f"cannot join Ray at {address}: {problem}")
    try:
        with _without_ray_level_line():
            _init(ray, address, num_cpus)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise RayUnavailable(f"cannot start or join Ray at {address}: {' '.join(str(exc).split())}") from None
    try:
        yield ray
    finally:
        # A Ray object (an object or actor reference, a Serve handle) freed after ray.shutdown() reaches for the
        # gone core worker, and Ray then ends the whole process with status 1 ("The core worker has already been
        # shutdown ... The process will exit", below the log level set here): the likely cause of two silent
        # deaths of the test suite right after a Ray module. So the garbage that holds Ray objects goes first, and
        # the engines let go of their actors and handles before this (ray_batch.MattePool, ray_serve).
        gc.collect()
        ray.shutdown()


def _unreachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why nothing answers at a ``host:port`` (or ``ray://host:port``) address, or None when something does (or the
    address is ``local`` or ``auto``, which Ray resolves itself)."""
    if address in (LOCAL, "auto"):
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")   # an IPv6 address in brackets
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__   # e.g. "Connection refused", or TimeoutError
        return (f"nothing answers at {host}:{port} ({reason}). Is `ray start --head` running there, and is this "
                "its port (the head prints it; 6379 by default, 10001 for ray://)?")


def _init(ray, address: str, num_cpus: int | None) -> None:
    if address == LOCAL:
        # The node's address is 127.0.0.1 and there is no dashboard (start-up 3 s, not 7). Ray 2.60 still binds
        # some of its own servers (gRPC, the dashboard agent, metrics) on every interface: see docs/SCALE.md.
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=num_cpus,
                 logging_level=logging.ERROR, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}})
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                 runtime_env={"working_dir": str(PROJECT_ROOT), "excludes": _NOT_SHIPPED})


@contextmanager
def _without_ray_level_line():
    """Ray's C++ core announces the log level it read from RAY_BACKEND_LOG_LEVEL on the process's standard error
    as it starts, whatever that level ("logging.cc:303: Set ray log level from environment variable ..."): that
    line is dropped, anything else Ray writes there meanwhile is passed on."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:   # no standard error to keep clean (a daemon's closed descriptor)
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if "Set ray log level from environment" not in line))
            sys.stderr.flush()


def _pythonpath() -> str:
    extra = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(PROJECT_ROOT)] + ([extra] if extra else []))


def _quiet_ray() -> None:
    """Ray's start-up banners, progress bars and tuning hints off: the batch prints its own progress and its own
    per-image errors, and Ray raises its real failures as exceptions. RAY_BACKEND_LOG_LEVEL=info shows Ray's own
    C++ log lines again."""
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data\..*")
    from ray.data import DataContext

    for handler in logging.getLogger("ray.data").handlers:   # the console; ray-data.log keeps everything
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.ERROR)

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def cluster_gpus(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def cluster_cpus(ray) -> int:
    return int(ray.cluster_resources().get("CPU", 0))
