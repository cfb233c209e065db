"""A helper process of the engine's own: ``python -m <module> <read fd> <write fd> [more fds]`` with a pipe each way.

Not multiprocessing's spawn: a spawned child imports the parent's main module again (the app, a test runner, a
benchmark), while a helper needs only the engine. The encoder helpers (batch_encode.py) and the extra batch
engines (batch_engines.py) start this way.

A helper runs in a session of its own, so a Ctrl-C at the terminal reaches only the parent: the command line's
first Ctrl-C lets the images in progress finish (cli.py), which they could not if it also stopped the helpers
doing them. A helper ends when its parent closes the pipe, or dies."""

from __future__ import annotations

import os
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path


def start_helper(module: str, *extra_fds: int) -> tuple[subprocess.Popen, Connection, Connection]:
    """(process, connection to send to it, connection to receive from it). ``extra_fds`` are passed on after the
    two pipe ends and stay open here."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    try:
        process = subprocess.Popen([sys.executable, "-m", module, str(to_child_r), str(from_child_w),
                                    *map(str, extra_fds)],
                                   pass_fds=(to_child_r, from_child_w, *extra_fds), env=env, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    except BaseException:
        for fd in (to_child_w, from_child_r):
            os.close(fd)
        raise
    finally:
        os.close(to_child_r)
        os.close(from_child_w)
    widen_pipe(to_child_w)
    widen_pipe(from_child_r)
    return process, Connection(to_child_w, readable=False), Connection(from_child_r, writable=False)


def widen_pipe(fd: int) -> None:
    """1 MB pipes (Linux) instead of 64 KB: an image crosses in a few writes, not seventy, each of which gives up
    and takes back the GIL that the render thread is waiting for."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass
