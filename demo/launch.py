"""The web app's command line: flags, the model loaded once, the server started. ``python app.py`` and, once
installed with pip, ``matting-app`` run ``main``.

    python app.py                              # local only, language from the browser
    python app.py --lang zh --port 8080
    python app.py --host 0.0.0.0 --auth alice:secret
    python app.py --ray --replicas 2           # the network and full-size renders on 2 Ray Serve replicas
    MATTING_AUTH=alice:secret python app.py --share

The model is loaded once, before the server starts; every visitor shares it. Nothing here imports gradio until
the server is built, so ``--help`` and the start-up checks answer at once.
"""

from __future__ import annotations

import os
import time

_START = time.perf_counter()

# Before gradio is imported: no usage analytics, no telemetry, no request leaves the machine.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from contextlib import ExitStack  # noqa: E402
from pathlib import Path  # noqa: E402

from matting.engine_flags import add_engine_flags, engine_options, positive_int  # noqa: E402

AUTH_ENV = "MATTING_AUTH"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Image matting web app (Gradio). Everything runs on this machine.")
    parser.add_argument("--host", default=os.environ.get("MATTING_HOST", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface; "
                             "env MATTING_HOST)")
    # A string default goes through ``type`` too: a bad MATTING_PORT is the same one-line usage error.
    parser.add_argument("--port", type=port_number, default=os.environ.get("MATTING_PORT", "7860"),
                        help="port (default 7860; env MATTING_PORT)")
    parser.add_argument("--share", action="store_true",
                        help="also open a public *.gradio.live link through Gradio's tunnel (needs internet); "
                             "use with --auth")
    parser.add_argument("--auth", default=None, metavar="USER:PASS",
                        help=f"require this login (env {AUTH_ENV}=USER:PASS; the flag wins)")
    add_engine_flags(parser)
    parser.add_argument("--lang", default=os.environ.get("MATTING_LANG", "auto"), choices=("auto", "en", "zh"),
                        help="UI language: auto follows the browser (default; env MATTING_LANG)")
    parser.add_argument("--max-file-size", type=file_size, default=None, metavar="SIZE",
                        help="largest accepted upload, e.g. 100mb (default 100mb)")
    parser.add_argument("--queue-size", type=positive_int, default=None,   # 0 silently meant the default 64
                        help="most events waiting in the queue before new ones are refused (default 64)")
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="send the network and full-resolution renders to model replicas on Ray Serve (pip "
                             "install -r requirements-ray.txt): no ADDRESS starts a private Ray on this machine, "
                             "'auto' or HOST:PORT joins a cluster (docs/SCALE.md)")
    parser.add_argument("--replicas", type=positive_int, default=1, metavar="N",
                        help="model replicas with --ray (default 1; one GPU each where the cluster has them)")
    return parser


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:   # 99999 was an OverflowError traceback from the socket
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {port}")
    return port


_SIZE_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}   # Gradio's: 1 kb is 1024 b


def file_size(text: str) -> str:
    """A size as Gradio takes it ("100mb", "40 KB"), checked here: Gradio's own parse raised a ValueError
    traceback at launch for "12zz", after the model had loaded."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (a whole number and b, kb, mb, gb or tb, "
                                         f"e.g. 100mb)")
    return f"{int(match.group(1))}{unit}"


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """'user:pass' -> ('user', 'pass'); the password may itself contain ':'."""
    if value is None or not value.strip():
        return None
    user, sep, password = value.strip().partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth / MATTING_AUTH must look like USER:PASS, both non-empty")
    return user, password


def share_warning(share: bool, auth) -> str | None:
    if share and auth is None:
        return ("WARNING: --share without --auth: the public *.gradio.live link lets ANYONE on the internet "
                "upload images to this machine and use its CPU/GPU. Add --auth USER:PASS (or set "
                f"{AUTH_ENV}=USER:PASS) to require a login.")
    return None


def port_problem(host: str, port: int) -> str | None:
    """Why the app could not listen on host:port, in one line with what to do; None when it can."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))   # no SO_REUSEADDR: a port someone listens on is refused, as uvicorn's is
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (f"port {port} on {host} is already in use (another copy of the app?); choose another with "
                    f"--port {port + 1} or MATTING_PORT={port + 1}")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"no permission to listen on port {port} (ports below 1024 need root); choose one above 1024"
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host and --port"
    return None


def host_warning(host: str, auth) -> str | None:
    if host not in ("127.0.0.1", "localhost", "::1") and auth is None:
        return (f"note: listening on {host} without --auth: anyone who can reach this machine on the network "
                "can use the app.")
    return None


def main(argv: list[str] | None = None) -> int:
    from matting.memory import limit_heap_arenas

    # First of all: glibc fixes its arena limit for good once more than eight arenas exist, and each thread the
    # server starts (Gradio, uvicorn, torch) may make one of its own, keeping its freed memory (memory.py).
    limit_heap_arenas()
    prog = "python app.py" if Path(sys.argv[0]).name == "app.py" else "matting-app"
    args = build_parser(prog).parse_args(argv)
    try:
        auth = parse_auth(args.auth if args.auth is not None else os.environ.get(AUTH_ENV))
        if args.lang not in ("auto", "en", "zh"):   # from MATTING_LANG, which argparse does not check
            raise ValueError(f"unknown language {args.lang!r}: use auto, en or zh")
        if args.replicas != 1 and args.ray is None:
            raise ValueError("--replicas needs --ray (the replicas run on Ray Serve)")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = port_problem(args.host, args.port)   # before the model loads: a taken port fails in a second
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    for warning in (share_warning(args.share, auth), host_warning(args.host, auth)):
        if warning:
            print(warning, file=sys.stderr, flush=True)

    from matting.errors import MattingError
    from matting.memory import MEMORY_LOG_ENV, HeapTrimmer, MemoryLog
    from matting.pipeline import get_pipeline
    from matting.process import configure_process

    configure_process()   # heap thresholds, no TF32 (matting/process.py)
    HeapTrimmer().start()  # a server's worker threads would otherwise keep freed buffers resident (memory.py)
    if os.environ.get(MEMORY_LOG_ENV):
        MemoryLog(os.environ[MEMORY_LOG_ENV]).start()   # what the RSS is made of, for load tests

    print("Loading the model…", file=sys.stderr, flush=True)
    engine = ExitStack()   # with --ray: the replicas and Ray, torn down when the app stops
    try:
        if args.ray is not None:
            from matting.ray_serve import served_pipeline

            pipe = engine.enter_context(served_pipeline(args.ray, args.replicas, engine_options(args)))
        else:
            pipe = get_pipeline(**engine_options(args))
    except MattingError as exc:
        engine.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with engine:
        return _serve(args, auth, pipe)


def _serve(args, auth, pipe) -> int:
    info = pipe.info()
    print(f"Model {pipe.summary()}, weights {info['weights']}, loaded in {info['load_ms']} ms",
          file=sys.stderr, flush=True)

    try:
        import demo as webapp
        webapp.build_demo   # gradio is imported here (demo/__init__.py)
    except ImportError as exc:
        print(f"error: the web app needs gradio ({exc}); install it with pip install -r requirements.txt, or "
              "pip install '.[app]' from the checkout", file=sys.stderr)
        return 2

    app = webapp.build_demo(pipe, lang=args.lang, queue_size=args.queue_size)
    options = webapp.launch_options(app, server_name=args.host, server_port=args.port, share=args.share,
                                    auth=auth, prevent_thread_lock=True)
    if args.max_file_size:
        options["max_file_size"] = args.max_file_size
    try:
        app.launch(**options)
    except OSError as exc:   # taken between the check and the launch
        print(f"error: {port_problem(args.host, args.port) or exc}", file=sys.stderr)
        return 2
    print(f"Ready in {time.perf_counter() - _START:.1f} s since start.", file=sys.stderr, flush=True)
    if args.share and auth is None:
        print(share_warning(True, None), file=sys.stderr, flush=True)   # again, next to the printed link
    try:
        app.block_thread()
    except KeyboardInterrupt:
        pass
    return 0
